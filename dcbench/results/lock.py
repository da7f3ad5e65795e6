"""One writer per results store: an OS file lock held for a run's lifetime.

``fcntl.flock`` on ``<store>/.dcbench.results.lock``: the kernel releases it when the holder exits in any
way (kill -9 included), so a lock is never left behind by a dead run. The file also names the
holder (PID, host, start time) for the error line of a second run. Where ``flock`` is missing or
unsupported (Windows, some network file systems) an exclusively created ``.dcbench.pid`` file is
the lock instead; one whose PID is no longer running on this host is stale and taken over.
"""

from __future__ import annotations

import errno
import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from dcbench.host.errors import DcbenchError
from dcbench.host.files import O_NOFOLLOW, open_no_follow

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".dcbench.results.lock"
PID_FILE = ".dcbench.pid"
#: flock errors meaning "not supported here" (use the PID file) rather than "held"
UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


def _holder() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another process (it has not recorded itself yet)"
    text = f"dcbench run PID {holder.get('pid')} on host {holder.get('host')} since {holder.get('started')}"
    if (
        holder.get("host") == socket.gethostname()
        and isinstance(holder.get("pid"), int)
        and not _pid_alive(holder["pid"])
    ):
        text += " (that PID has exited; a child process it started still holds the lock: end it)"
    return text


def _read_holder(path: Path) -> dict[str, Any] | None:
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


class StoreLock:
    """``with StoreLock(root):`` holds the store's lock or raises a one-line DcbenchError."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._fd: int | None = None
        self._pid_file: Path | None = None

    def acquire(self) -> None:
        path = self.root / LOCK_FILE
        if fcntl is not None:
            # not inherited by child processes; never through a link (the holder record would
            # truncate and overwrite the link's target)
            fd = open_no_follow(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise self._in_use(_read_holder(path)) from None
                if exc.errno not in UNSUPPORTED:
                    raise
            else:
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(_holder()).encode(), 0)
                self._fd = fd
                return
        self._acquire_pid_file()

    def _acquire_pid_file(self) -> None:
        path = self.root / PID_FILE
        for _ in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW, 0o644)
            except FileExistsError:
                holder = _read_holder(path)
                stale = (
                    holder is not None
                    and holder.get("host") == socket.gethostname()
                    and isinstance(holder.get("pid"), int)
                    and not _pid_alive(holder["pid"])
                )
                if not stale:
                    raise self._in_use(holder) from None
                path.unlink(missing_ok=True)  # its run died without releasing it
                continue
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(_holder()))
            self._pid_file = path
            return
        raise self._in_use(_read_holder(path))

    def _in_use(self, holder: dict[str, Any] | None) -> DcbenchError:
        return DcbenchError(
            f"results directory {self.root} is in use by {_describe(holder)}; wait for it "
            "to finish or pass another --out"
        )

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None
        if self._pid_file is not None:
            if (_read_holder(self._pid_file) or {}).get("pid") == os.getpid():
                self._pid_file.unlink(missing_ok=True)
            self._pid_file = None

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
