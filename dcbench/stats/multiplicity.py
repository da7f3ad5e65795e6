"""Holm's step-down correction for a family of tests."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def holm(p_values: ArrayLike) -> np.ndarray:
    """Holm's step-down adjusted p-values (valid under any dependence between the tests).

    Sorted ascending, the i-th smallest of m p-values is scaled by (m - i); a running maximum keeps
    the adjusted values in the same order as the raw ones, and they are clipped at 1. NaN p-values
    (untestable comparisons) stay NaN and are not counted in m.
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    tested = np.flatnonzero(np.isfinite(p))
    m = tested.size
    order = tested[np.argsort(p[tested], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def smallest_holm_p(family_size: int, smallest_p: float) -> float:
    """The smallest Holm-adjusted p a family can produce: its first step multiplies by m."""
    return min(1.0, family_size * smallest_p)
