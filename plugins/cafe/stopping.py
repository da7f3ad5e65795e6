"""The accuracy-window stopping rules of CAFE's dynamic bi-level optimisation (official ``distill.py``).

After every image step (outer loop) and every network epoch (inner loop) the network's own head
classifies a few real images per class; the per-class accuracies are fed to a rule here.

* Outer ("break outlooper"): stop once the last ``window`` values span less than ``lambda_1``:
  the network's accuracy has become stable.
* Inner ("break innerlooper"): stop once the last ``window`` values span more than ``lambda_2``:
  the network has moved enough. In the corrected mode it also stops once they span less than
  ``plateau``: the accuracy is frozen (e.g. every query image lands in one class, as happens for
  a network fitted to a few noise images), so more epochs can never satisfy the official rule.

The value pushed per check is either the official never-reset running sum, generalised from 10
classes to K: ``acc <- (acc + sum_c acc_c) / K``, i.e. ``mean_t + acc_{t-1} / K`` (about
K/(K-1) times the accuracy at steady state), or, corrected, the plain mean of the per-class
accuracies. Both loops carry a cap on their number of checks; a rule object lives for one loop
(the official code resets the window and the running sum when a loop starts).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

#: why a loop ended
STABLE, MOVED, FROZEN, CAP = "stable", "moved", "frozen", "cap"


class AccuracyWindow:
    """The last ``size`` query accuracies, as running sums (official) or fresh means (corrected)."""

    def __init__(self, num_classes: int, size: int, running_sum: bool) -> None:
        self.num_classes = num_classes
        self.running_sum = running_sum
        self.values: deque[float] = deque(maxlen=size)
        self._running = 0.0

    def push(self, class_accuracies: Sequence[float]) -> float:
        """Add one check's per-class accuracies; return the value that entered the window."""
        if len(class_accuracies) != self.num_classes:
            raise ValueError(f"expected {self.num_classes} per-class accuracies, got {len(class_accuracies)}")
        total = float(sum(class_accuracies))
        if self.running_sum:
            self._running = (self._running + total) / self.num_classes
            value = self._running
        else:
            value = total / self.num_classes
        self.values.append(value)
        return value

    @property
    def full(self) -> bool:
        return len(self.values) == self.values.maxlen

    @property
    def spread(self) -> float:
        """max - min of the values in the window."""
        return max(self.values) - min(self.values)


class _WindowRule:
    """A loop's stopping rule: a window test once the window is full, else the cap on checks."""

    def __init__(self, num_classes: int, window: int, running_sum: bool, cap: int) -> None:
        self.window = AccuracyWindow(num_classes, window, running_sum)
        self.cap = cap
        self.checks = 0

    def update(self, class_accuracies: Sequence[float]) -> str | None:
        """Record one check; return why the loop must stop now, or None to go on."""
        self.checks += 1
        self.window.push(class_accuracies)
        if self.window.full:
            reason = self._test(self.window.spread)
            if reason is not None:
                return reason
        return CAP if self.checks >= self.cap else None

    def _test(self, spread: float) -> str | None:
        raise NotImplementedError


class OuterStop(_WindowRule):
    """Stop the outer loop (image steps) once the accuracy window spans less than ``lambda_1``."""

    def __init__(self, num_classes: int, window: int, running_sum: bool, cap: int, lambda_1: float) -> None:
        super().__init__(num_classes, window, running_sum, cap)
        self.lambda_1 = lambda_1

    def _test(self, spread: float) -> str | None:
        return STABLE if spread < self.lambda_1 else None


class InnerStop(_WindowRule):
    """Stop the inner loop (network epochs) once the window spans more than ``lambda_2`` or, with
    ``plateau > 0``, less than ``plateau`` (the accuracy is frozen)."""

    def __init__(
        self, num_classes: int, window: int, running_sum: bool, cap: int, lambda_2: float, plateau: float = 0.0
    ) -> None:
        super().__init__(num_classes, window, running_sum, cap)
        self.lambda_2 = lambda_2
        self.plateau = plateau

    def _test(self, spread: float) -> str | None:
        if spread > self.lambda_2:
            return MOVED
        return FROZEN if spread < self.plateau else None
