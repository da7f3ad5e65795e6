"""The dataset cache: decompressed copies of compressed dataset files (e.g. Debian's ``*.gz`` IDX files).

An entry belongs to one set of source files: its key is a hash of their resolved paths, so two data
roots never share an entry. It records the SHA-256 of every source file it was made from; each use
re-hashes the sources (the compressed files: FashionMNIST's 30 MB take a few hundredths of a
second) and rebuilds the entry on any difference. So a changed, replaced or truncated source is
never served from a stale copy, and a bad copy elsewhere cannot touch this one's entry. Entries are
built in a temporary directory and renamed into place, so a killed build leaves no half entry.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dcbench.host.errors import DcbenchError
from dcbench.host.files import CHUNK, bounded_size, chmod_as_created, file_sha256, format_bytes

ENTRY_FILE = "entry.json"
ENTRY_FORMAT = 1
_REINSTALL = "re-copy it or reinstall the package that provides it"


def cache_root() -> Path:
    """``$DCBENCH_CACHE``, or ``~/.cache/dcbench`` when it is unset or blank; always absolute (a
    blank or relative value would scatter cache entries into the working directory)."""
    value = os.environ.get("DCBENCH_CACHE", "").strip()
    return (Path(value).expanduser() if value else Path.home() / ".cache" / "dcbench").resolve()


def decompressed_copies(dataset: str, sources: Mapping[str, Path], limit: int) -> dict[str, Path]:
    """Decompressed copies of the gzip files ``sources`` (copy name -> source file), taken from the
    cache entry made from exactly these files with exactly this content, or (re)built. A source
    larger than ``limit`` bytes, compressed or decompressed, is refused (a few KB of gzip can
    expand to gigabytes): before it is hashed, and while it is decompressed."""
    for source in sources.values():
        bounded_size(Path(source), limit, f"a compressed {dataset} file", _REINSTALL)
    resolved = {name: Path(source).resolve() for name, source in sorted(sources.items())}
    key = hashlib.sha256(json.dumps([dataset, {n: str(p) for n, p in resolved.items()}]).encode()).hexdigest()[:16]
    entry = cache_root() / dataset / key
    try:
        hashes = {name: file_sha256(path) for name, path in resolved.items()}
    except OSError as exc:
        raise DcbenchError(
            f"{dataset}: cannot read {exc.filename} ({exc.strerror}); check the file and its permissions"
        ) from None
    record = {
        "format": ENTRY_FORMAT,
        "dataset": dataset,
        "sources": {name: {"path": str(path), "sha256": hashes[name]} for name, path in resolved.items()},
    }
    if not _entry_matches(entry, record):
        _build(entry, record, resolved, dataset, limit)
    return {name: entry / name for name in resolved}


def _entry_matches(entry: Path, record: dict[str, Any]) -> bool:
    """Whether ``entry`` was built from the very sources in ``record`` and its copies are whole."""
    try:
        stored = json.loads((entry / ENTRY_FILE).read_text())
        if {k: stored.get(k) for k in record} != record:
            return False
        sizes = stored["staged"]
        return all((entry / name).stat().st_size == sizes[name] for name in record["sources"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False  # missing, unreadable or damaged: rebuild


def _build(entry: Path, record: dict[str, Any], sources: dict[str, Path], dataset: str, limit: int) -> None:
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}.", suffix=".tmp"))
    except OSError as exc:
        raise _cache_error(entry, exc) from None
    try:
        sizes = {name: _gunzip(source, staging / name, dataset, limit) for name, source in sources.items()}
        (staging / ENTRY_FILE).write_text(json.dumps({**record, "staged": sizes}, indent=2))
        chmod_as_created(staging, directory=True)
        _swap_in(staging, entry, record)
    except OSError as exc:
        raise _cache_error(entry, exc) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _gunzip(source: Path, target: Path, dataset: str, limit: int) -> int:
    """Decompress ``source`` to ``target``, at most ``limit`` bytes: one past it is refused (the
    read stops there, whatever the stream would go on to); a damaged source is named as the
    culprit, a failing write as the cache's problem."""
    written = 0
    with gzip.open(source, "rb") as src, open(target, "wb") as dst:
        while True:
            try:
                chunk = src.read(min(CHUNK, limit + 1 - written))
            except (OSError, EOFError, zlib.error) as exc:
                raise DcbenchError(
                    f"{source} is corrupt or truncated ({type(exc).__name__}: {exc}); {_REINSTALL}"
                ) from None
            if not chunk:
                break
            written += len(chunk)
            if written > limit:
                raise DcbenchError(
                    f"{source} decompresses to more than {format_bytes(limit)}, the most a {dataset} file "
                    f"may hold; {_REINSTALL}"
                )
            dst.write(chunk)
    return target.stat().st_size


def _swap_in(staging: Path, entry: Path, record: dict[str, Any]) -> None:
    """Replace ``entry`` by ``staging`` (rename; a concurrent builder of the same entry may win)."""
    if entry.exists():
        old = entry.with_name(f".{entry.name}.{os.getpid()}.old")
        try:
            os.rename(entry, old)
        except FileNotFoundError:
            pass
        else:
            shutil.rmtree(old, ignore_errors=True)
    try:
        os.rename(staging, entry)
    except OSError:
        if not _entry_matches(entry, record):  # another process put a different entry there
            raise DcbenchError(
                f"the dataset cache entry {entry} changed while it was rebuilt (another dcbench "
                "reading a different copy?); run the command again"
            ) from None


def _cache_error(entry: Path, exc: OSError) -> DcbenchError:
    return DcbenchError(
        f"cannot write the dataset cache at {entry.parent} ({exc.strerror or exc}); free some "
        "space there or set DCBENCH_CACHE to a writable directory"
    )
