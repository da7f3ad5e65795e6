"""Files dcbench writes: atomically (a temp file renamed into place), with the permissions the
user's umask asks for, and hashed in one way (SHA-256 in 1 MiB chunks).

``tempfile.mkstemp``/``mkdtemp`` (used for atomic writes) create 0600 files and 0700 directories
whatever the umask, so a results directory shared with a group would be unreadable to it.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Any

from dcbench.host.errors import DcbenchError

CHUNK = 1 << 20
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
#: the most a JSON record, manifest or spec of a store may hold (they are a few KB): a bigger one
#: is damage, not data, and is refused before it is read into memory
MAX_RECORD_BYTES = 16 * 2**20


def current_umask() -> int:
    """The process umask (reading it means setting it; it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def chmod_as_created(path: Path | str, directory: bool = False) -> None:
    """Give ``path`` the mode ``open()``/``mkdir()`` would have given it: 0666 (0777) minus the umask."""
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def regular_file_size(path: Path, follow: bool = True, what: str = "") -> int:
    """The size of ``path`` after checking it is a regular file (``follow``: a link to one is
    fine): a FIFO, a device (a link to /dev/zero) or a socket would block or never end when read,
    so they are refused by their metadata, before anything opens them."""
    mode = (os.stat if follow else os.lstat)(path).st_mode
    if not stat.S_ISREG(mode):
        raise DcbenchError(
            f"{path} is {_kind(mode)}, not a regular file; {what or 'replace it by a regular file or remove it'}"
        )
    return os.stat(path).st_size


def format_bytes(size: int) -> str:
    """A file size as a person reads it: ``4 GiB``, ``8.5 GiB``, ``300 MiB``, ``37 KiB``."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 10 and size % scale else f"{value:,.0f} {unit}"
    return f"{size:,} bytes"


def bounded_size(path: Path, limit: int, what: str, fix: str, follow: bool = True) -> int:
    """The size of ``path`` (a regular file, see :func:`regular_file_size`), refused when it is
    larger than ``limit``, the most ``what`` may hold, from its metadata before anything reads
    it: a reader that takes a file whole would otherwise allocate whatever the file's size is."""
    size = regular_file_size(path, follow=follow, what=fix)
    if size > limit:
        # just past the limit, a rounded size would read as the limit itself
        shown = format_bytes(size) if size > limit * 1.05 else f"{size:,} bytes"
        raise DcbenchError(f"{path} is {shown}, more than the {format_bytes(limit)} {what} may hold; {fix}")
    return size


def read_record_text(
    path: Path,
    limit: int = MAX_RECORD_BYTES,
    follow: bool = False,
    what: str = "a dcbench record",
    fix: str = "remove it",
) -> str:
    """A small text file (metrics.json, manifest.json, spec.toml) read whole, refused when it is
    no regular file or is larger than ``limit`` (see :func:`bounded_size`); a store's own are read
    without following a link (what a store holds is in it), a file the user names (``follow``)
    through one. Raises OSError (absent) or DcbenchError (refused)."""
    bounded_size(path, limit, what, fix, follow=follow)
    fd = os.open(path, os.O_RDONLY | (0 if follow else O_NOFOLLOW) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        return f.read(limit + 1).decode()


def open_no_follow(path: Path, flags: int, mode: int = 0o666) -> int:
    """``os.open`` of a file dcbench writes in a directory it owns: never through a symbolic link
    (a link planted in the store could point anywhere) and only a regular file (a FIFO would
    block). O_NONBLOCK makes opening a FIFO fail instead of waiting; it is harmless on files."""
    try:
        fd = os.open(path, flags | O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0), mode)
    except OSError as exc:
        if os.path.islink(path):
            raise DcbenchError(
                f"{path} is a symbolic link; dcbench writes nothing through links in its directories: remove it"
            ) from None
        if exc.errno is not None and os.path.exists(path):
            regular_file_size(path, follow=False, what="dcbench writes only regular files: remove it")
        raise
    mode_found = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode_found):
        os.close(fd)
        raise DcbenchError(
            f"{path} is {_kind(mode_found)}, not a regular file; dcbench writes only regular files: remove it"
        )
    return fd


def open_append(path: Path) -> IO[str]:
    """A log file opened for appending, created if absent, never through a link (see :func:`open_no_follow`)."""
    fd = open_no_follow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "a", buffering=1, newline="")


def real_directory(path: Path, root: Path, create: bool = True) -> Path:
    """``path`` (inside ``root``) as a directory that is really there: every component below
    ``root`` is created if ``create`` and absent, and refused when it is a symbolic link or not a
    directory, so nothing written into ``path`` can land outside ``root``."""
    current = Path(root)
    if create:  # the root is the user's choice (a link to it is fine); what is below it is dcbench's
        current.mkdir(parents=True, exist_ok=True)
    for part in Path(path).relative_to(root).parts:
        current = current / part
        if create:
            try:
                os.mkdir(current)
            except FileExistsError:
                pass
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            return path  # nothing there yet (create=False): nothing to refuse
        if not stat.S_ISDIR(mode):
            raise DcbenchError(
                f"{current} is {_kind(mode)}, not a directory; dcbench writes nothing through links in "
                f"{root}: remove it (its cell is then run again)"
            )
    return path


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


# --- CSV: the one rule for text cells -------------------------------------------------------------

#: a spreadsheet reads a cell starting with one of these as a formula (CSV injection)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def csv_cell(value: Any) -> Any:
    """A text cell a spreadsheet shows as text: one that could start a formula gets a leading
    ``'`` (a number written as text, such as -1.5, stays as it is); one that already starts with
    ``'`` gets another, so :func:`csv_uncell` restores every text exactly."""
    if isinstance(value, str) and (
        value.startswith("'") or (value.startswith(FORMULA_STARTS) and not _is_number(value))
    ):
        return "'" + value
    return value


def csv_uncell(value: Any) -> Any:
    """The text :func:`csv_cell` was given."""
    return value[1:] if isinstance(value, str) and value.startswith("'") else value


def _map_labels(labels: Any, function: Any) -> Any:
    import pandas as pd

    if isinstance(labels, pd.MultiIndex):
        return labels.set_levels([level.map(function) for level in labels.levels], verify_integrity=False)
    return labels.map(function)


def _text_columns(frame: Any) -> list[Any]:
    """Columns that may hold text: object or string dtype (pandas 3 reads text as ``str``)."""
    import pandas as pd

    return [
        column
        for column, dtype in frame.dtypes.items()
        if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)
    ]


def csv_safe(frame: Any) -> Any:
    """``frame`` with every text cell, index label and column label through :func:`csv_cell`;
    numeric columns are untouched (numbers stay numbers)."""
    frame = frame.copy()
    for column in _text_columns(frame):
        frame[column] = frame[column].map(csv_cell)
    frame.index = _map_labels(frame.index, csv_cell)
    frame.columns = _map_labels(frame.columns, csv_cell)
    return frame


def csv_text(frame: Any, index: bool = False) -> str:
    """Every CSV dcbench writes goes through here: text cells cannot run as formulas."""
    return str(csv_safe(frame).to_csv(index=index))


def read_csv(path: Path | str, **kwargs: Any) -> Any:
    """A CSV that dcbench wrote, text cells restored (see :func:`csv_cell`)."""
    import pandas as pd

    frame = pd.read_csv(path, **kwargs)
    for column in _text_columns(frame):
        frame[column] = frame[column].map(csv_uncell)
    frame.columns = _map_labels(frame.columns, csv_uncell)
    return frame
