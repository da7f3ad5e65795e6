"""The coreset baselines: what herding and K-Center select, checked against hand-worked cases."""

from __future__ import annotations

import torch

from dcbench.method.condense import condense
from dcbench.method.seeding import make_generator
from dcbench.testing import tiny_dataset
from dcbench_coresets.method import KCenterMethod, herding_select, kcenter_select


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=make_generator(seed, "coreset-test", *shape))


# --- K-Center and herding ------------------------------------------------------------------------


def brute_force_kcenter(points: torch.Tensor, k: int) -> list[int]:
    """Issue #21 of DatasetCondensation, by hand: nearest the mean first, then the farthest point."""
    mean = points.mean(0)
    chosen = [min(range(len(points)), key=lambda i: float(((points[i] - mean) ** 2).sum()))]
    while len(chosen) < k:

        def gap(i: int) -> float:
            return min(float(((points[i] - points[j]) ** 2).sum()) for j in chosen)

        chosen.append(max((i for i in range(len(points))), key=lambda i: (gap(i), -i)))
    return chosen


def test_kcenter_picks_the_centre_then_the_farthest_points() -> None:
    points = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.1, 0.1], [-9.0, 0.0], [0.0, 5.0]])
    assert kcenter_select(points, 3).tolist() == [2, 1, 3]  # (0.1, 0.1) is nearest the mean (0.22, 1.02)
    for seed in range(5):
        cloud = randn(40, 3, seed=seed)
        assert kcenter_select(cloud, 7).tolist() == brute_force_kcenter(cloud, 7)


def test_herding_tracks_the_mean_greedily() -> None:
    points = torch.tensor([[0.0], [1.0], [4.0], [2.0]])  # mean 1.75
    # step 1: nearest 1.75 is 2.0 (index 3); step 2: target 3.5 - 2.0 = 1.5 -> 1.0 or 2.0 (used): 1.0;
    # step 3: target 5.25 - 3.0 = 2.25 -> 4.0 (|1.75|) vs 0.0 (|2.25|): 4.0
    assert herding_select(points, 3).tolist() == [3, 1, 2]


def test_kcenter_selects_real_images_of_each_class() -> None:
    real = tiny_dataset(per_class=10)
    out = condense(KCenterMethod(), real, 3, 0, "smoke")
    train = {tuple(x.flatten().tolist()) for x in real.train_images}
    assert all(tuple(x.flatten().tolist()) in train for x in out.synthetic.images)
    assert out.synthetic.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert KCenterMethod.opt_in
