"""Mixup and CutMix at evaluation, drawn from an explicit generator.

The semantics of torchvision's ``transforms.v2.MixUp`` and ``CutMix``: one ratio
``lam ~ Beta(alpha, alpha)`` per batch, each image mixed with the batch rolled by one (the batch
is shuffled already), the targets mixed by the same ratio; CutMix pastes a box of area
``1 - lam`` (centre uniform, clipped at the border) and sets ``lam`` to the area that was kept.
torchvision draws from the global RNG; here ``lam`` comes from a NumPy generator seeded from the
caller's :class:`torch.Generator` (torch has no seeded Beta), the box from that generator.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

MIXINGS = ("none", "mixup", "cutmix")


def _ratio(alpha: float, generator: torch.Generator) -> float:
    seed = int(torch.randint(2**62, (), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def mix_batch(
    images: Tensor, targets: Tensor, mixing: str, alpha: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Mix ``images`` (N, C, H, W) and their target distributions ``targets`` (N, classes)."""
    if mixing == "none" or len(images) < 2:
        return images, targets
    lam = _ratio(alpha, generator)
    if mixing == "mixup":
        mixed = images * lam + images.roll(1, 0) * (1 - lam)
    elif mixing == "cutmix":
        height, width = images.shape[-2:]
        cx = int(torch.randint(width, (), generator=generator))
        cy = int(torch.randint(height, (), generator=generator))
        half_w, half_h = int(0.5 * width * math.sqrt(1 - lam)), int(0.5 * height * math.sqrt(1 - lam))
        x1, x2 = max(cx - half_w, 0), min(cx + half_w, width)
        y1, y2 = max(cy - half_h, 0), min(cy + half_h, height)
        mixed = images.clone()
        mixed[..., y1:y2, x1:x2] = images.roll(1, 0)[..., y1:y2, x1:x2]
        lam = 1.0 - (x2 - x1) * (y2 - y1) / (width * height)
    else:
        raise ValueError(f"unknown mixing {mixing!r}; choose one of {', '.join(MIXINGS)}")
    return mixed, targets * lam + targets.roll(1, 0) * (1 - lam)
