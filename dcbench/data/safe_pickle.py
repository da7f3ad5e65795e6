"""Reading untrusted serialised files without running their code.

A pickle can name any Python callable and have the unpickler call it (the ``__reduce__`` trick), so
``pickle.load`` on a downloaded file is arbitrary code execution. CIFAR's ``python`` batches are
pickles, so they are read with :class:`RestrictedUnpickler`, which resolves only the few globals
that rebuilding a NumPy array needs (none of which can run code) and refuses everything else before
it is called. ``torch.save`` files go through :func:`load_tensor_file` (``weights_only=True``, with
errors that say whether the file is foreign, corrupt or hostile).
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dcbench.host.errors import DcbenchError, first_line
from dcbench.host.files import bounded_size

#: the most a pickled batch may hold (CIFAR-100's training batch, the largest, is 155 MB)
MAX_PICKLE_BYTES = 2**30
#: the most a torch.save file may hold (a synthetic set, an imported release or dataset, a
#: checkpoint): far above any condensed set, so a bigger one is damage or a trap
MAX_TENSOR_FILE_BYTES = 4 * 2**30

try:  # NumPy 2 moved its internals to numpy._core; pickles name either path
    from numpy._core.multiarray import _reconstruct
    from numpy._core.numeric import _frombuffer  # type: ignore[attr-defined]  # private: not in NumPy's stubs
except ImportError:  # pragma: no cover - NumPy 1
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]  # the same function, older path
    from numpy.core.numeric import _frombuffer  # type: ignore[no-redef]  # the same function, older path


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol 0-2 pickles use it (bytes stored as latin-1 text), and only that."""
    if not isinstance(text, str) or encoding.lower().replace("-", "") != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode is allowed for latin-1 only, got {encoding!r}")
    return text.encode("latin1")


# (module, name) -> the object it resolves to: array reconstruction only. Each either builds an
# empty array/dtype filled by numpy's own __setstate__, or wraps a buffer; none calls user code.
NUMPY_ARRAY_GLOBALS: dict[tuple[str, str], Any] = {
    **{(f"{core}.multiarray", "_reconstruct"): _reconstruct for core in ("numpy.core", "numpy._core")},
    **{(f"{core}.numeric", "_frombuffer"): _frombuffer for core in ("numpy.core", "numpy._core")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle asked for a Python object outside the allow-list."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.qualified_name = f"{module}.{name}"


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only ``allowed`` globals; any other one is refused unresolved."""

    def __init__(self, file: Any, allowed: dict[tuple[str, str], Any] | None = None, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.allowed = NUMPY_ARRAY_GLOBALS if allowed is None else allowed

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise RefusedGlobal(module, name) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not part of the format")


def load_numpy_pickle(path: Path, what: str) -> Any:
    """Unpickle ``path`` (a ``what``, e.g. "CIFAR-10 batch") allowing only plain data and NumPy
    arrays, as ``pickle.load(encoding="latin1")`` would; one-line errors that name the file."""
    try:
        bounded_size(path, MAX_PICKLE_BYTES, f"a {what}", "re-copy the dataset from its official archive")
        with open(path, "rb") as f:
            return RestrictedUnpickler(f, encoding="latin1").load()
    except DcbenchError:
        raise
    except RefusedGlobal as exc:
        raise DcbenchError(
            f"refused to read {path}: it asks for the Python object {exc.qualified_name}, which "
            f"could run code (a {what} holds only lists, strings and NumPy arrays); delete it and "
            "re-copy the dataset from its official archive"
        ) from None
    except OSError as exc:
        raise DcbenchError(f"cannot read {path} ({exc.strerror or exc}); check its permissions") from None
    except Exception as exc:  # noqa: BLE001 - a damaged pickle raises anything from EOFError to ValueError
        why = f"{type(exc).__name__}: {first_line(exc, 'unreadable', 200)}"
        raise DcbenchError(
            f"{path} is corrupt or not a {what} ({why}); re-copy the dataset from its official archive"
        ) from None


def load_tensor_file(
    path: Path,
    safe_globals: Iterable[Any] = (),
    what: str = "a readable torch.save file",
    advice: str = "re-create it or restore it from a backup",
    limit: int = MAX_TENSOR_FILE_BYTES,
) -> Any:
    """``torch.load(weights_only=True)`` of a file from elsewhere; one-line errors that say whether
    the file holds objects that could run code, is damaged, or is no ``torch.save`` file at all.
    A file larger than ``limit`` is refused before it is opened."""
    path = Path(path)
    try:
        bounded_size(path, limit, what, advice)
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:  # the file itself is unreadable; anything torch raises later is about its content
        raise DcbenchError(
            f"{path}: cannot be read ({exc.strerror or exc}); check the path and its permissions"
        ) from None
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged archive raises anything from RuntimeError to EOFError
        needed = re.search(r"GLOBAL ([\w.]+)", str(exc)) if isinstance(exc, pickle.UnpicklingError) else None
        if needed:
            raise DcbenchError(
                f"{path}: refused to load: it needs the Python object {needed[1]}, and loading that "
                f"could run code (only tensors, lists, dicts and numbers are read); {advice}"
            ) from None
        raise DcbenchError(f"{path}: not {what} ({_why_unreadable(path, exc)}); {advice}") from None


def _why_unreadable(path: Path, exc: BaseException) -> str:
    """Why ``torch.load`` failed, in words (torch's own message blames random bytes on the
    'weights only' restriction, which is misleading)."""
    with open(path, "rb") as f:
        head = f.read(4)
    # torch.save writes a zip archive; files from before torch 1.6 start with a protocol-2 pickle
    if not head.startswith(b"PK\x03\x04") and not head.startswith(b"\x80\x02"):
        return "no torch.save file at all: neither a zip archive nor a legacy torch pickle"
    reason = re.search(r"WeightsUnpickler error:\s*(.+)", str(exc))
    why = reason[1].strip() if reason else f"{type(exc).__name__}: {first_line(exc, 'unreadable', 200).split('. ')[0]}"
    return f"a damaged or truncated torch.save file: {why}"
