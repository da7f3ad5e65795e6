"""``torch.compile`` for the evaluation's hot loops: the ``--compile`` modes, when ``auto`` turns it
on, where inductor keeps its code, and whether it can run here at all.

Inductor's CPU code generation fuses the memory-bound passes of a small ConvNet (instance norm,
ReLU, pooling) that eager PyTorch runs as separate sweeps over the activations. Compiling costs
tens of seconds per graph (network, mode, batch shape) the first time on a machine; inductor keeps
the generated code on disk (under dcbench's cache, :func:`inductor_cache_dir`), so later processes
load it in seconds, and within a process every network of the same architecture and shape reuses
the compiled graph. Compiled code sums in another order than eager code, so its numbers agree
within float rounding, not bitwise: a compiled evaluation is its own protocol (``/compiled`` in the
protocol name and hash).
"""

from __future__ import annotations

import logging
import os
import shutil
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from dcbench.data.cache import cache_root
from dcbench.host.errors import DcbenchError

COMPILE_MODES = ("auto", "off", "on")

#: ``auto`` compiles an evaluation on a CPU once a cell trains this many model-epochs or more
#: (models x (epochs + 1)): the paper budget (20 models x 301 epochs), not the quick one, whose 151
#: epochs of one model do not pay back a first compile (benchmarks/RESULTS.md)
AUTO_MIN_CPU_MODEL_EPOCHS = 2000

F = TypeVar("F", bound=Callable[..., Any])


def check_compile_mode(mode: str) -> str:
    if mode not in COMPILE_MODES:
        raise DcbenchError(f"unknown compile mode {mode!r}; choose one of {', '.join(COMPILE_MODES)}")
    return mode


def compile_unavailable(device_type: str) -> str | None:
    """Why ``torch.compile`` cannot run on ``device_type`` here (None when it can): inductor builds
    C++ on a CPU, so it needs a compiler and Python's headers."""
    if device_type == "cpu":
        compiler = os.environ.get("CXX") or "c++"
        if shutil.which(compiler) is None and shutil.which("g++") is None:
            return f"no C++ compiler ({compiler}, g++) on PATH for inductor's CPU code"
        include = sysconfig.get_paths().get("include")
        if not include or not (Path(include) / "Python.h").is_file():
            return "Python's C headers (Python.h) are missing: install the python3-dev package"
    elif device_type != "cuda":
        return f"dcbench compiles only on cpu and cuda, not {device_type}"
    return None


def resolve_compile(mode: str, device_type: str, model_epochs: int) -> bool:
    """Whether to compile an evaluation of ``model_epochs`` (models x epochs) on ``device_type``
    under ``mode``: ``on`` always (a one-line refusal where it cannot run), ``off`` never, ``auto``
    where it is measured to pay on a CPU (:data:`AUTO_MIN_CPU_MODEL_EPOCHS`), and not on a GPU until
    the GPU check has measured it there."""
    check_compile_mode(mode)
    if mode == "off":
        return False
    if mode == "on":
        require_compile(device_type)
        return True
    return (
        compile_unavailable(device_type) is None and device_type == "cpu" and model_epochs >= AUTO_MIN_CPU_MODEL_EPOCHS
    )


def require_compile(device_type: str) -> None:
    """A one-line refusal where ``torch.compile`` cannot run on ``device_type``."""
    reason = compile_unavailable(device_type)
    if reason:
        raise DcbenchError(f"--compile on cannot run here: {reason}; use --compile off")


def inductor_cache_dir() -> Path:
    """Where inductor keeps the code it generates: ``$TORCHINDUCTOR_CACHE_DIR`` when the user set
    it, else ``inductor/`` under dcbench's cache (so that every worker process and later run loads
    a graph compiled once on this machine)."""
    chosen = os.environ.get("TORCHINDUCTOR_CACHE_DIR", "").strip()
    return Path(chosen) if chosen else cache_root() / "inductor"


def compiled(fn: F) -> F:
    """``fn`` (a module or a function) compiled by inductor for fixed shapes: each new batch shape
    is its own graph, which an evaluation has few of (the full batches, the last one, the test
    batch)."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(inductor_cache_dir()))
    # torch's C++ extension helper warns on every CUDA build without a GPU; nothing to act on here
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    return torch.compile(fn, dynamic=False)  # type: ignore[return-value]
