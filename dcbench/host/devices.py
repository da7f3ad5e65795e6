"""The device a run uses, checked before any work starts, and the hardware's name for the results."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import torch

from dcbench.host.errors import DcbenchError

DEVICE_CHOICES = "auto, cpu, cuda[:N] or mps"


def resolve_device(name: str) -> torch.device:
    """``auto`` picks a CUDA GPU when there is one (MPS only on request: some ``torch.func`` paths
    are slower or missing there); an unavailable device is a one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not torch.backends.mps.is_available():
            why = (
                "this PyTorch build has no MPS support"
                if not torch.backends.mps.is_built()
                else "no Apple GPU is usable here (MPS needs macOS 12.3+ on Apple silicon or an AMD GPU)"
            )
            raise DcbenchError(f"--device mps asked for, but {why}; use --device cpu or auto")
        return torch.device("mps")
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match is None:
        raise DcbenchError(f"unknown device {name!r}; use {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        raise DcbenchError("--device cuda asked for, but no CUDA GPU is visible; use --device cpu or auto")
    count = torch.cuda.device_count()
    if match.group(1) is not None and int(match.group(1)) >= count:
        visible = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
        mask = os.environ.get("CUDA_VISIBLE_DEVICES")
        masked = f" (CUDA_VISIBLE_DEVICES={mask})" if mask is not None else ""
        raise DcbenchError(
            f"--device {name} asked for, but {count} CUDA GPU(s) are visible{masked}; use one of {visible}"
        )
    return torch.device(name)


def device_name(device: torch.device) -> str:
    """The hardware behind a device, as recorded beside it per cell (GPU model, or the CPU's)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple GPU (MPS, {platform.machine()})"
    return _cpu_name()


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"
