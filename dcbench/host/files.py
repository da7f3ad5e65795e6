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
