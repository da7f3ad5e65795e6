"""Files dcbench writes: atomically (a temp file renamed into place), with the permissions the
user's umask asks for, and hashed in one way (SHA-256 in 1 MiB chunks).

``tempfile.mkstemp``/``mkdtemp`` (used for atomic writes) create 0600 files and 0700 directories
whatever the umask, so a results directory shared with a group would be unreadable to it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from dcbench.host.errors import DcbenchError

CHUNK = 1 << 20


def current_umask() -> int:
    """The process umask (reading it means setting it; it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def chmod_as_created(path: Path | str, directory: bool = False) -> None:
    """Give ``path`` the mode ``open()``/``mkdir()`` would have given it: 0666 (0777) minus the umask."""
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(fileobj)`` on a temp file next to ``path``, then rename it over ``path``.

    An OSError (no space, no permission) becomes one line naming ``path`` and the cause; the old
    file, if any, is left whole."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        chmod_as_created(tmp)  # mkstemp makes 0600 files; give the umask's mode like open() would
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise DcbenchError(
                f"cannot write {path}: {exc.strerror or exc}; free some space or choose another path"
            ) from None
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))
