"""How many matching steps (outer loop) and network epochs (inner loop) DC runs per iteration.

The reference ``get_loops`` knows six IPCs and exits for any other. :func:`get_loops` keeps those
six and extends them by a written rule instead of exiting:

* ``1 < ipc < 10``: ``(ipc, 50)``: a set this small is one batch per epoch, as at IPC 10, so the
  IPC-10 network schedule carries over;
* ``10 < ipc < 50`` between table entries: ``outer = ipc`` (as every table entry from 10 on) and
  ``inner`` linearly interpolated between the neighbouring entries, halves rounded up;
* ``ipc > 50``: ``(50, 10)``, the largest entry, one of the two settings the authors advise for
  large sets (issue #2 of the reference repository).
"""

from __future__ import annotations

from dcbench.api import DcbenchError

#: the reference table: ipc -> (outer_loop, inner_loop)
REFERENCE_LOOPS: dict[int, tuple[int, int]] = {
    1: (1, 1),
    10: (10, 50),
    20: (20, 25),
    30: (30, 20),
    40: (40, 15),
    50: (50, 10),
}


def get_loops(ipc: int) -> tuple[int, int]:
    """``(outer_loop, inner_loop)`` for ``ipc`` images per class (see the module docstring)."""
    if ipc < 1:
        raise DcbenchError(f"ipc must be at least 1, got {ipc}")
    if ipc in REFERENCE_LOOPS:
        return REFERENCE_LOOPS[ipc]
    if ipc < 10:
        return ipc, REFERENCE_LOOPS[10][1]
    if ipc > 50:
        return REFERENCE_LOOPS[50]
    low = max(k for k in REFERENCE_LOOPS if k < ipc)
    high = min(k for k in REFERENCE_LOOPS if k > ipc)
    inner_low, inner_high = REFERENCE_LOOPS[low][1], REFERENCE_LOOPS[high][1]
    inner = inner_low + (inner_high - inner_low) * (ipc - low) / (high - low)
    return ipc, int(inner + 0.5)  # halves round up
