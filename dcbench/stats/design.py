"""Which comparisons are paired, decided from the recorded design before any outcome is read.

Cells of one seed share randomness when the grid is built that way: methods that start from the
real images drawn by ``make_generator(seed, "init")`` (the images ``random`` selects) share their
initial images, and every method at a given seed and network index is evaluated by a network of
the same seed. What a seed starts from is most of the seed-to-seed spread, and a within-seed
difference cancels it: the paired t-test on per-seed means uses that, Welch's test cannot.

Two methods of a task are paired when both record the same shared initial-image stream, ran the
same seeds, and their evaluation networks have the same seeds at every synthesis seed. Anything
else (a method with its own initial images, an imported set, other seeds) keeps Welch, and the
reason is recorded per comparison.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

#: runs.csv column: the seeded stream a cell's initial images come from ("" when its own)
INIT_STREAM = "init_stream"


@dataclass(frozen=True)
class SeedDesign:
    """What the cells of one method in one task share with other methods' cells of a seed."""

    init_stream: str  # "" when the method starts from images of its own, or none was recorded
    eval_seeds: Mapping[int, tuple[int, ...]]  # synthesis seed -> evaluation seeds by network index


@dataclass(frozen=True)
class Pairing:
    paired: bool
    reason: str  # in words, for the report


def design_of(runs: pd.DataFrame) -> SeedDesign:
    """The design of one method's runs in one task (rows: one per evaluation network)."""
    if INIT_STREAM not in runs or "eval_seed" not in runs or runs["eval_seed"].isna().any():
        return SeedDesign("", {})  # not recorded: nothing is known to be shared
    streams = runs[INIT_STREAM].fillna("").astype(str).unique()
    eval_seeds = {
        int(seed): tuple(group.sort_values("eval_index")["eval_seed"].astype("int64").tolist())
        for seed, group in runs.groupby("synth_seed")
    }
    return SeedDesign(streams[0] if len(streams) == 1 else "", eval_seeds)


def pairing(method_a: str, a: SeedDesign, method_b: str, b: SeedDesign) -> Pairing:
    """Paired t or Welch for A vs B, and why: from the designs only, never from the scores."""
    own = [m for m, design in ((method_a, a), (method_b, b)) if not design.init_stream]
    if own:
        return Pairing(False, f"Welch: {' and '.join(own)} records no shared initial images")
    if a.init_stream != b.init_stream:
        return Pairing(False, f"Welch: initial images from different streams ({a.init_stream}, {b.init_stream})")
    if set(a.eval_seeds) != set(b.eval_seeds):
        return Pairing(False, "Welch: different synthesis seeds")
    if len(a.eval_seeds) < 2:
        return Pairing(False, "Welch: fewer than 2 shared seeds")
    if dict(a.eval_seeds) != dict(b.eval_seeds):
        return Pairing(False, "Welch: different evaluation networks at a seed")
    return Pairing(True, f"paired by seed: shared initial images ({a.init_stream}) and evaluation networks")
