"""Stored artifacts: trained networks and expert trajectories that cells share.

An artifact is a directory of files made once by a builder and reused by every cell, worker and
later run that asks for the same thing. Its key is a hash of its **identity**: everything that
changes it (the kind, the data's content fingerprint, the architecture and its options, the
training recipe, the seed, the precision, the builder's version). Two requests share an artifact
exactly when they would build the same one.

- **Built once.** A build holds an OS lock on ``<kind>/<key>.lock`` (``flock``: the kernel
  releases it when the holder dies, kill -9 included). A second process asking for the same
  artifact waits on the lock, then loads what the first one built.
- **Resumable.** The builder writes into ``<kind>/<key>.partial/`` and, after a kill, is called
  again on what is there: it skips the parts it finished. The finished directory is renamed into
  place in one step, so no reader ever sees half an artifact.
- **Checked on load.** ``artifact.json`` records the identity, every file's SHA-256 and size, and
  the build's cost; a damaged or missing file, or an entry made for another identity, is refused
  in one line that names the fix (``dcbench artifacts remove KEY``). Tensor files are read with
  ``weights_only=True``.
- **Cost, once.** The build's wall seconds, the building process's peak resident memory by its end
  and the bytes written are recorded in the entry; a cell that uses the artifact records its key
  and whether it built it, so the report shows the one-off cost beside the per-cell cost.

The store lives under ``$DCBENCH_ARTIFACTS``, else ``<dcbench cache>/artifacts``; with Ray across
machines, point ``DCBENCH_ARTIFACTS`` at a shared filesystem.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import re
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from dcbench import __version__
from dcbench.data.cache import cache_root
from dcbench.host.errors import DcbenchError
from dcbench.host.files import atomic_write_text, file_sha256
from dcbench.host.runtime import peak_rss_mb

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; builds are then not serialised
    fcntl = None  # type: ignore[assignment]

ARTIFACT_FILE = "artifact.json"
ARTIFACT_FORMAT = 1
KIND = re.compile(r"^[a-z][a-z0-9_]*$")
KEY = re.compile(r"^[0-9a-f]{20}$")

#: ``build(directory, step_done)`` fills ``directory``, resuming from what a killed build left
#: there, and calls ``step_done()`` after each part it finished (so a resumed build's recorded
#: cost includes the time of the killed runs)
Builder = Callable[[Path, Callable[[], None]], None]


def artifacts_root() -> Path:
    """``$DCBENCH_ARTIFACTS``, or ``artifacts/`` in the dcbench cache when it is unset or empty."""
    return Path(os.environ.get("DCBENCH_ARTIFACTS") or cache_root() / "artifacts")


def canonical_identity(identity: Mapping[str, Any]) -> str:
    """The identity as canonical JSON (sorted keys); refuses values JSON cannot hold exactly."""
    try:
        return json.dumps(identity, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise DcbenchError(f"an artifact identity must be plain JSON (strings, numbers, lists, dicts): {exc}") from None


def artifact_key(kind: str, identity: Mapping[str, Any]) -> str:
    """20 hex digits of the SHA-256 of the kind and the canonical identity."""
    if not KIND.match(kind):
        raise DcbenchError(f"artifact kind {kind!r} must be lower-case letters, digits and underscores")
    return hashlib.sha256(f"{kind}\n{canonical_identity(identity)}".encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Artifact:
    """A finished, verified artifact: its directory and what ``artifact.json`` records."""

    kind: str
    key: str
    path: Path
    identity: dict[str, Any]
    files: dict[str, dict[str, Any]]  # name -> {"sha256", "bytes"}
    build_s: float
    peak_rss_mb: float | None
    bytes: int
    created: str

    def file(self, name: str) -> Path:
        if name not in self.files:
            raise DcbenchError(f"artifact {self.key} ({self.kind}) has no file {name!r}")
        return self.path / name

    def load(self, name: str) -> Any:
        """A tensor file of the artifact, read with ``weights_only=True`` onto the CPU."""
        try:
            return torch.load(self.file(name), map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
            raise DcbenchError(
                f"artifact {self.key}: cannot read {name} ({type(exc).__name__}); "
                f"remove it with `dcbench artifacts remove {self.key}` and run again"
            ) from None

    def usage(self, built_here: bool) -> dict[str, Any]:
        """What a cell records about an artifact it used."""
        return {
            "kind": self.kind,
            "key": self.key,
            "built_here": built_here,
            "build_s": round(self.build_s, 3),
            "peak_rss_mb": self.peak_rss_mb,
            "bytes": self.bytes,
        }


class ArtifactStore:
    """``get(kind, identity, build)``: the artifact, built here when nobody has built it yet."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else artifacts_root()

    # -- paths --------------------------------------------------------------------------------
    def _kind_dir(self, kind: str) -> Path:
        directory = self.root / kind
        for path in (self.root, directory):
            if path.is_symlink():
                raise DcbenchError(f"{path} is a symbolic link; dcbench writes artifacts only into directories it owns")
        return directory

    def entry_dir(self, kind: str, key: str) -> Path:
        return self._kind_dir(kind) / key

    # -- reading ------------------------------------------------------------------------------
    def find(self, kind: str, identity: Mapping[str, Any]) -> Artifact | None:
        """The verified artifact for ``identity``, or None when it was never finished."""
        key = artifact_key(kind, identity)
        directory = self.entry_dir(kind, key)
        if not (directory / ARTIFACT_FILE).exists():
            return None
        artifact = self._read(directory, kind, key)
        if artifact.identity != json.loads(canonical_identity(identity)):
            raise DcbenchError(
                f"artifact {key} ({kind}) was built for another recipe than the one asked for; "
                f"remove it with `dcbench artifacts remove {key}` and run again"
            )
        self._verify(artifact)
        return artifact

    def _read(self, directory: Path, kind: str, key: str) -> Artifact:
        fix = f"remove it with `dcbench artifacts remove {key}` and run again"
        try:
            record = json.loads((directory / ARTIFACT_FILE).read_text())
            if record.get("format") != ARTIFACT_FORMAT or record.get("kind") != kind or record.get("key") != key:
                raise ValueError("not an artifact record of this kind and key")
            files = {str(n): {"sha256": str(f["sha256"]), "bytes": int(f["bytes"])} for n, f in record["files"].items()}
            if any("/" in n or "\\" in n or n.startswith(".") for n in files):
                raise ValueError("a file name that is not a plain name inside the entry")
            cost = record["cost"]
            return Artifact(
                kind,
                key,
                directory,
                dict(record["identity"]),
                files,
                float(cost["seconds"]),
                None if cost.get("peak_rss_mb") is None else float(cost["peak_rss_mb"]),
                int(cost["bytes"]),
                str(record.get("created", "")),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DcbenchError(f"artifact {key} ({kind}): its {ARTIFACT_FILE} is damaged ({exc}); {fix}") from None

    def _verify(self, artifact: Artifact) -> None:
        fix = f"remove it with `dcbench artifacts remove {artifact.key}` and run again"
        for name, meta in artifact.files.items():
            path = artifact.path / name
            if path.is_symlink() or not path.is_file():
                raise DcbenchError(f"artifact {artifact.key} ({artifact.kind}): {name} is missing; {fix}")
            if path.stat().st_size != meta["bytes"] or file_sha256(path) != meta["sha256"]:
                raise DcbenchError(
                    f"artifact {artifact.key} ({artifact.kind}): {name} is damaged (content hash); {fix}"
                )

    def entries(self) -> list[tuple[str, str, Artifact | str]]:
        """Every entry as (kind, key, artifact or the reason it cannot be read); unfinished builds
        are listed as ``"unfinished build"``."""
        found: list[tuple[str, str, Artifact | str]] = []
        if not self.root.is_dir():
            return found
        for kind_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and KIND.match(p.name)):
            for entry in sorted(kind_dir.iterdir()):
                name = entry.name.removesuffix(".partial")
                if not entry.is_dir() or not KEY.match(name):
                    continue
                if entry.name.endswith(".partial"):
                    found.append((kind_dir.name, name, "unfinished build"))
                    continue
                try:
                    found.append((kind_dir.name, name, self._read(entry, kind_dir.name, name)))
                except DcbenchError as exc:
                    found.append((kind_dir.name, name, str(exc)))
        return found

    # -- building -----------------------------------------------------------------------------
    def get(
        self, kind: str, identity: Mapping[str, Any], build: Builder, log: Callable[[str], None] | None = None
    ) -> tuple[Artifact, bool]:
        """The artifact for ``identity`` and whether this call built it. Builds it under the
        entry's lock when it is not there; a concurrent request waits for that build."""
        artifact = self.find(kind, identity)
        if artifact is not None:
            return artifact, False
        key = artifact_key(kind, identity)
        kind_dir = self._kind_dir(kind)
        try:
            kind_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DcbenchError(
                f"cannot create the artifact store {kind_dir} ({exc.strerror}); "
                "set DCBENCH_ARTIFACTS to a writable directory"
            ) from None
        with _EntryLock(kind_dir / f"{key}.lock", log):
            artifact = self.find(kind, identity)  # built by another process while this one waited
            if artifact is not None:
                return artifact, False
            return self._build(kind, key, identity, build, log), True

    def _build(
        self, kind: str, key: str, identity: Mapping[str, Any], build: Builder, log: Callable[[str], None] | None
    ) -> Artifact:
        final = self.entry_dir(kind, key)
        partial = final.with_name(f"{key}.partial")
        if partial.is_symlink():
            raise DcbenchError(f"{partial} is a symbolic link; remove it")
        resumed = partial.is_dir() and any(partial.iterdir())
        partial.mkdir(exist_ok=True)
        if log is not None:
            log(f"building artifact {kind} {key}" + (" (resuming an interrupted build)" if resumed else ""))
        before, start = _previous_seconds(partial), time.perf_counter()

        def step_done() -> None:
            seconds = before + time.perf_counter() - start
            atomic_write_text(partial / SECONDS_FILE, json.dumps({"seconds": seconds}))

        build(partial, step_done)
        seconds = before + time.perf_counter() - start
        files: dict[str, dict[str, Any]] = {}
        for path in sorted(partial.iterdir()):
            if path.name.startswith(".") or path.name == ARTIFACT_FILE:
                continue
            if path.is_symlink() or not path.is_file():
                raise DcbenchError(f"artifact builder for {kind} left {path.name}, which is not a plain file")
            files[path.name] = {"sha256": file_sha256(path), "bytes": path.stat().st_size}
        total = sum(f["bytes"] for f in files.values())
        record = {
            "format": ARTIFACT_FORMAT,
            "kind": kind,
            "key": key,
            "identity": json.loads(canonical_identity(identity)),
            "files": files,
            "cost": {"seconds": round(seconds, 3), "peak_rss_mb": round(peak_rss_mb(), 1), "bytes": total},
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "dcbench_version": __version__,
        }
        atomic_write_text(partial / ARTIFACT_FILE, json.dumps(record, indent=1) + "\n")
        for leftover in partial.glob(".*"):
            leftover.unlink() if leftover.is_file() else shutil.rmtree(leftover)
        os.replace(partial, final)
        if log is not None:
            log(f"built artifact {kind} {key} in {seconds:.1f}s ({total / 2**20:.1f} MiB)")
        artifact = self.find(kind, identity)
        assert artifact is not None
        return artifact

    # -- removing -----------------------------------------------------------------------------
    def remove(self, key: str) -> list[Path]:
        """Delete every entry (finished or not) with ``key``; returns what was removed."""
        if not KEY.match(key):
            raise DcbenchError(f"{key!r} is not an artifact key (20 hex digits; `dcbench artifacts list` shows them)")
        removed = []
        if self.root.is_dir():
            for kind_dir in self.root.iterdir():
                if kind_dir.is_symlink() or not kind_dir.is_dir():
                    continue
                for path in (kind_dir / key, kind_dir / f"{key}.partial"):
                    if path.is_dir() and not path.is_symlink():
                        with _EntryLock(kind_dir / f"{key}.lock", None):
                            shutil.rmtree(path)
                        removed.append(path)
        if not removed:
            raise DcbenchError(f"no artifact {key} in {self.root}")
        return removed


SECONDS_FILE = ".seconds"  # inside a partial build: the seconds its earlier, killed runs spent


def _previous_seconds(partial: Path) -> float:
    try:
        return float(json.loads((partial / SECONDS_FILE).read_text())["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


class _EntryLock:
    """An exclusive, blocking ``flock`` on one entry's lock file (released by the kernel when the
    holder dies). Where ``flock`` is unsupported the build is not serialised: two processes may
    then both build, and the second rename wins with an identical entry."""

    def __init__(self, path: Path, log: Callable[[str], None] | None) -> None:
        self.path, self.log, self.fd = path, log, -1

    def __enter__(self) -> _EntryLock:
        if fcntl is None:
            return self
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if self.log is not None:
                    self.log(f"waiting for another process building {self.path.stem}")
                fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                os.close(self.fd)
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing releases the flock
            self.fd = -1
