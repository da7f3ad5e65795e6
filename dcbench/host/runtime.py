"""How dcbench runs on its hardware: the memory allocator, CPU threads and numeric precision.

Three process-wide settings make the difference between time spent on arithmetic and time spent
elsewhere on a CPU:

* **The allocator.** glibc ``malloc`` serves every allocation above its mmap threshold (at most
  32 MiB) with a fresh ``mmap`` and returns it to the OS on ``free``. A ConvNet-128 activation of a
  real batch is 100 MiB-1.3 GiB, so every training step faults its activations in again page by
  page: measured here, 1.7 million minor faults and more system than user time per DM iteration.
  :func:`keep_freed_memory` makes glibc keep freed memory in the process (no mmap'd chunks, no
  trimming), so after the first iteration the same pages are reused. Resident memory then stays at
  the run's peak, which the chunked real passes of the methods keep small. ``DCBENCH_MALLOC=system``
  leaves glibc's defaults alone. It is applied when :mod:`dcbench` is imported, so the CLI, Ray
  workers and pytest all get it.
* **Threads.** :func:`set_threads` is the ``--threads N`` option. OpenMP's default busy-waiting
  (libgomp spins for up to 300,000 iterations after a parallel region) collapses when another
  process competes for the cores; :func:`prefer_passive_waiting` lowers the spin count before
  torch loads libgomp (measured in ``benchmarks/RESULTS.md``).
* **Precision.** :func:`autocast` is ``--precision``: ``fp32`` (default) or ``bf16`` (CPU with
  AVX-512 BF16 or AMX, CUDA from Ampere on), through ``torch.autocast``.
  :func:`deterministic_algorithms` is ``--deterministic``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import resource
import sys
from collections.abc import Iterator
from pathlib import Path

from dcbench.host.errors import DcbenchError

#: fp16 is not offered: without loss scaling its image gradients underflow; bf16 has fp32's range.
PRECISIONS = ("fp32", "bf16")

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

#: libgomp's spin count when the user has not chosen a wait policy: long enough to keep a quiet
#: machine's short parallel regions hot, short enough that a thread yields its core to a competing
#: process within ~0.1 ms instead of ~30 ms (the default 300,000).
DEFAULT_SPINCOUNT = "10000"

_allocator_state: str | None = None


def keep_freed_memory() -> str:
    """Make glibc keep freed memory in the process; returns what was done (``"mallopt"``,
    ``"system"`` when switched off by ``DCBENCH_MALLOC=system``, or ``"unavailable"``).
    Idempotent."""
    global _allocator_state
    if _allocator_state is not None:
        return _allocator_state
    if os.environ.get("DCBENCH_MALLOC", "").lower() == "system":
        _allocator_state = "system"
        return _allocator_state
    _allocator_state = "unavailable"
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # musl and other libcs have no mallopt
            return _allocator_state
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        # No mmap'd chunks: large blocks come from the heap and are reused after free ...
        ok = mallopt(_M_MMAP_MAX, 0)
        # ... and the heap's top is never handed back (the largest int: "never").
        ok = ok and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
        if ok:
            _allocator_state = "mallopt"
    return _allocator_state


def allocator() -> str:
    """What :func:`keep_freed_memory` did in this process (``"not set"`` before it ran)."""
    return _allocator_state or "not set"


def prefer_passive_waiting() -> None:
    """Shorten OpenMP's busy-wait unless the user chose a policy. Only effective before torch is
    imported (libgomp reads its environment once, when it is loaded)."""
    if "torch" in sys.modules:
        return
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = DEFAULT_SPINCOUNT


def set_threads(threads: int | None) -> int:
    """Use ``threads`` intra-op CPU threads (None: leave torch's choice); returns the count in use."""
    import torch

    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise DcbenchError(f"threads must be a whole number >= 1, got {threads!r}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


#: CPU feature flags (``/proc/cpuinfo``) of native bf16 arithmetic: AVX-512 BF16 and AMX on x86,
#: the Armv8.6 BF16 extension on Arm. oneDNN's own answer is not enough: it reports bf16 support on
#: any AVX-512 CPU (it can emulate it there), where bf16 then runs several times slower than fp32.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpuinfo_flags(text: str) -> frozenset[str] | None:
    """The feature flags of the first CPU in a ``/proc/cpuinfo`` text (x86 ``flags``, Arm
    ``Features``), or None when it names none."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return None


def cpu_has_native_bf16(flags: frozenset[str]) -> bool:
    return bool(flags & BF16_FLAGS)


def _onednn_bf16() -> bool:
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN: no grounds to refuse
        return True


@functools.cache
def native_bf16(device_type: str, cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether bf16 runs natively on this kind of device: a CPU whose flags name AVX-512 BF16, AMX
    or Arm's BF16 (and whose oneDNN may use them: ``ONEDNN_MAX_CPU_ISA`` counts), a CUDA GPU from
    Ampere on. Elsewhere autocast emulates it (benchmarks/RESULTS.md has the measured slowdowns).
    Where ``/proc/cpuinfo`` is unreadable (macOS, Windows) oneDNN's answer stands."""
    import torch

    if device_type == "cpu":
        try:
            flags = cpuinfo_flags(Path(cpuinfo).read_text(errors="replace"))
        except OSError:
            flags = None
        return _onednn_bf16() and (flags is None or cpu_has_native_bf16(flags))
    if device_type == "cuda":
        try:
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:  # torch before the argument
            return bool(torch.cuda.is_bf16_supported())
    return True  # other backends: torch.autocast itself says what it cannot do


def check_precision(precision: str, device_type: str | None = None) -> str:
    """``precision`` if it is known and (given ``device_type``) native there, else a one-line
    :class:`DcbenchError`: an emulated bf16 would only make a run many times slower."""

    if precision not in PRECISIONS:
        raise DcbenchError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "bf16" and device_type is not None and not native_bf16(device_type):
        what = "CPU names no AVX-512 BF16, AMX or Arm BF16" if device_type == "cpu" else f"{device_type} has no bf16"
        raise DcbenchError(
            f"bf16 is not native here (this {what}): autocast would emulate it, 2-12x slower "
            f"than fp32; use --precision fp32"
        )
    return precision


@contextlib.contextmanager
def autocast(precision: str, device_type: str) -> Iterator[None]:
    """Mixed precision for the enclosed forward passes: a no-op for ``fp32``."""
    check_precision(precision, device_type)
    if precision == "fp32":
        yield
        return
    import torch

    with torch.autocast(device_type=device_type, dtype=torch.bfloat16):
        yield


#: what cuBLAS needs to be deterministic on CUDA (torch refuses deterministic matmuls without it);
#: read when a process creates its first cuBLAS handle, so it is set before any CUDA work
CUBLAS_WORKSPACE = ("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool, device_type: str = "cpu") -> Iterator[None]:
    """``torch.use_deterministic_algorithms(True)`` for the enclosed work when ``enabled`` (and, on
    CUDA, cuBLAS's workspace setting, unless the environment has one); the setting is process-wide,
    so the previous one is restored afterwards. A no-op when not ``enabled``."""
    if not enabled:
        yield
        return
    import torch

    previous = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    name, value = CUBLAS_WORKSPACE
    set_here = device_type == "cuda" and name not in os.environ
    if set_here:
        os.environ[name] = value
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        if set_here:
            os.environ.pop(name, None)


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (Linux: write 5 to clear_refs), so that
    :func:`peak_rss_mb` measures from now on; False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB: ``VmHWM`` (since the last :func:`reset_peak_rss`)
    where ``/proc`` has it, else the lifetime ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale / 1024


def available_memory() -> int | None:
    """Bytes the kernel could give new processes without swapping (Linux MemAvailable), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
