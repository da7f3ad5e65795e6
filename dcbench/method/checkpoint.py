"""Checkpoints inside a cell: ``checkpoint.pt`` next to the cell's other files.

A resumable method (``Method.resumable``) offers its state after every outer iteration through
``ctx.checkpoint``; :class:`Checkpointer` writes it when the policy says so (every N iterations or
T of wall time, and once after the last iteration, so an interrupted evaluation does not redo the
condensation), atomically, as tensors and plain values only. Running the same command again
hands the state back through ``ctx.resume()``; the file is deleted once the cell has finished.

A checkpoint carries the identity of the cell that wrote it (method, version, config hash,
dataset, IPC, seed); one from another identity is refused in one line instead of being mixed in.

Testing hook: ``DCBENCH_TEST_KILL_AT_CHECKPOINT=K`` (or ``K@TEXT``: only where the checkpoint's
path contains TEXT) makes the process SIGKILL itself right after writing the checkpoint of
iteration K, deterministically, to test resuming after a hard kill. A resumed run starts after
K and never writes K again, so the fault fires once.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dcbench.data.safe_pickle import load_tensor_file
from dcbench.host.errors import DcbenchError
from dcbench.host.files import atomic_write
from dcbench.method.contract import SavedState

CHECKPOINT_FILE = "checkpoint.pt"
FORMAT = "dcbench-checkpoint/1"
DEFAULT_EVERY = "10m"
KILL_ENV = "DCBENCH_TEST_KILL_AT_CHECKPOINT"
_UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_POLICY = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|min|h)?$")


@dataclass(frozen=True)
class CheckpointPolicy:
    """When to write: every ``iterations`` outer iterations, or every ``seconds`` of wall time."""

    iterations: int | None = None
    seconds: float | None = None

    @classmethod
    def parse(cls, value: str | int | None) -> CheckpointPolicy | None:
        """``500`` (iterations), ``"10m"``, ``"30s"``, ``"2h"`` (time) or ``"off"`` (None)."""
        if value is None:
            value = DEFAULT_EVERY
        if isinstance(value, bool):
            raise DcbenchError(f"checkpoint_every must be iterations (500) or a time (10m), got {value!r}")
        text = str(value).strip().lower()
        if text in ("off", "never", "0"):
            return None
        match = _POLICY.match(text)
        if match is None:
            raise DcbenchError(
                f"checkpoint_every {value!r} is neither a number of iterations (500) nor a time "
                "(30s, 10m, 2h); use 'off' for no checkpoints"
            )
        number, unit = match.groups()
        if unit is None:
            if "." in number:
                raise DcbenchError(f"checkpoint_every {value!r}: iterations must be a whole number")
            return cls(iterations=int(number))
        seconds = float(number) * _UNITS[unit]
        if not seconds > 0:
            raise DcbenchError(f"checkpoint_every {value!r} must be a positive time; use 'off' for no checkpoints")
        return cls(seconds=seconds)

    def __str__(self) -> str:
        if self.iterations is not None:
            return str(self.iterations)
        return f"{self.seconds:g}s"

    def due(self, step: int, total: int, seconds_since_last: float) -> bool:
        if step >= total:
            return True  # the condensed state, so that a kill during evaluation loses no condensation
        if self.iterations is not None:
            return step % self.iterations == 0
        return self.seconds is not None and seconds_since_last >= self.seconds


def checkpoint_identity(
    method: str, method_version: str, config_hash: str, dataset: str, ipc: int, seed: int, zca: bool = False
) -> dict[str, Any]:
    """What must match for a checkpoint to be resumed: the same method code, config and cell (and
    the data's whitening, when there is one)."""
    identity = {
        "method": method,
        "method_version": method_version,
        "config_hash": config_hash,
        "dataset": dataset,
        "ipc": ipc,
        "seed": seed,
    }
    return {**identity, "zca": True} if zca else identity


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint (tensors and plain values only), with a one-line error for anything else."""
    payload = load_tensor_file(path, what="a dcbench checkpoint", advice="delete it to restart the cell")
    if (
        not isinstance(payload, dict)
        or payload.get("format") != FORMAT
        or not isinstance(payload.get("identity"), dict)
        or not isinstance(payload.get("iteration"), int)
        or not isinstance(payload.get("state"), dict)
    ):
        raise DcbenchError(f"{path}: not a {FORMAT} file; delete it to restart the cell")
    return payload


def check_compatible(directory: Path, identity: Mapping[str, Any]) -> None:
    """Refuse (one line) a checkpoint in ``directory`` written by another config or cell."""
    path = directory / CHECKPOINT_FILE
    if path.is_file():
        _check_identity(path, read_checkpoint(path)["identity"], identity)


def _check_identity(path: Path, found: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    differing = [k for k in expected if found.get(k) != expected[k]]
    if differing:
        what = ", ".join(f"{k} {found.get(k)!r} vs {expected[k]!r}" for k in differing)
        raise DcbenchError(
            f"{path} was written by a different config ({what}); delete it to restart "
            "the cell from iteration 0, or run with the settings it was written with"
        )


def plain_state(value: Any, where: str) -> Any:
    """``value`` with tensors detached on the CPU; anything torch.load(weights_only=True) would
    refuse is an error naming where it sits in the state."""
    if isinstance(value, Tensor):
        return value.detach().cpu()
    if isinstance(value, Mapping):
        return {k: plain_state(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain_state(v, f"{where}[{i}]") for i, v in enumerate(value))
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise DcbenchError(
        f"the method's checkpoint state holds a {type(value).__name__} at {where}; "
        "checkpoints hold tensors, numbers, strings, lists and dicts only"
    )


class Checkpointer:
    """The host's :class:`dcbench.method.contract.StateStore`: ``directory/checkpoint.pt``.

    :param log: receives one line per event ("checkpoint at iteration k", "resumed at iteration k").
    """

    def __init__(
        self,
        directory: Path,
        identity: Mapping[str, Any],
        policy: CheckpointPolicy | None,
        log: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.path = Path(directory) / CHECKPOINT_FILE
        self.identity = dict(identity)
        self.policy = policy
        self.log = log
        self.prior_seconds = 0.0  # condensation time that produced a resumed state
        self._started = time.perf_counter()
        self._last_write = self._started
        self._owned = False  # only a checkpoint this cell wrote or accepted is deleted by discard()

    def load(self) -> SavedState | None:
        if not self.path.is_file():
            return None
        payload = read_checkpoint(self.path)
        _check_identity(self.path, payload["identity"], self.identity)
        self._owned = True
        self.prior_seconds = float(payload.get("seconds", 0.0))
        self._started = self._last_write = time.perf_counter()
        self.log(f"resumed at iteration {payload['iteration']} from {self.path}")
        return SavedState(payload["iteration"], payload["state"], self.prior_seconds)

    def save(self, step: int, total: int, make_state: Callable[[], Mapping[str, Any]]) -> None:
        now = time.perf_counter()
        if self.policy is None or not self.policy.due(step, total, now - self._last_write):
            return
        payload = {
            "format": FORMAT,
            "identity": self.identity,
            "iteration": int(step),
            "total": int(total),
            "seconds": self.prior_seconds + (now - self._started),
            "state": plain_state(make_state(), "state"),
        }
        atomic_write(self.path, lambda f: torch.save(payload, f))
        self._owned = True
        self._last_write = time.perf_counter()
        self.log(f"checkpoint at iteration {step}/{total}")
        _maybe_kill(self.path, step)

    def discard(self) -> None:
        """Delete the checkpoint: the cell finished (its outputs are written)."""
        if self._owned:
            self.path.unlink(missing_ok=True)


def _maybe_kill(path: Path, step: int) -> None:
    rule = os.environ.get(KILL_ENV)
    if not rule:
        return
    iteration, _, where = rule.partition("@")
    if iteration.strip() == str(step) and where in str(path):
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
