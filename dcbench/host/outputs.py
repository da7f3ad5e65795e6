"""Output directories: checked before any work starts, and written so that no file is ever half
written (every file goes to a temp file in the same directory first, then is renamed over)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dcbench.host.errors import DcbenchError

#: refuse to start when less than this is free where the outputs go
MIN_FREE_MB = 50


def describe_os_error(exc: OSError, path: Path | str | None = None) -> str:
    """``PATH: cause`` for an OSError, naming the path the user gave rather than a temp file."""
    where = path if path is not None else (exc.filename or "")
    cause = exc.strerror or str(exc) or type(exc).__name__
    return f"{where}: {cause}" if where else cause


def check_output_dir(path: Path, what: str = "output directory", min_free_mb: int = MIN_FREE_MB) -> None:
    """Refuse, in one line, an output directory that cannot hold the results: a file in the way,
    a directory that cannot be created or written, or a nearly full disk. Creates nothing: a
    refused or failed command leaves no empty directory behind."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DcbenchError(f"{what} {path} is a file, not a directory; choose another path")
    existing = path
    while not existing.exists():  # the directory will be created inside its nearest existing parent
        existing = existing.parent
    if not existing.is_dir():
        raise DcbenchError(
            f"{what} {path} is not writable ({existing} is a file, not a directory); choose another path"
        )
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".dcbench-write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise DcbenchError(
            f"{what} {path} is not writable ({describe_os_error(exc, '')}); choose another path or fix its permissions"
        ) from None
    free_mb = shutil.disk_usage(existing).free / 2**20
    if free_mb < min_free_mb:
        raise DcbenchError(
            f"{what} {path} has only {free_mb:.0f} MB free (at least {min_free_mb} MB needed); "
            "free some space or choose another path"
        )


@contextlib.contextmanager
def staged_directory(final: Path) -> Iterator[Path]:
    """Yield a temp directory inside ``final``; on success move each file written there into
    ``final`` with an atomic rename, so a full disk or a crash leaves the old files whole."""
    final = Path(final)
    try:
        final.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=final, prefix=".staging-"))
    except OSError as exc:
        raise DcbenchError(f"cannot write {describe_os_error(exc, final)}; choose another path") from None
    try:
        yield staging
        for path in sorted(staging.iterdir()):
            with open(path, "rb") as f:
                os.fsync(f.fileno())
            os.replace(path, final / path.name)
    except OSError as exc:
        raise DcbenchError(
            f"cannot write {describe_os_error(exc, final / Path(exc.filename or '').name)}; "
            "free some space or choose another path"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
