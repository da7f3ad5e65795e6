"""Differentiable Siamese Augmentation (DSA, Zhao & Bilen 2021) and the DC paper's MNIST augmentation.

Six DSA families: ``color`` (brightness, saturation, contrast), ``crop`` (translation),
``cutout``, ``flip``, ``scale`` and ``rotate``; a strategy string joins family names with ``_``.
As the reference's ``aug_mode='S'``, one call applies ONE family drawn at random.

Randomness comes only from an explicit CPU :class:`torch.Generator` (parameters are drawn on the
CPU and moved to the data), so the global RNG is never touched and the same generator state gives
the same augmentation on every device. The reference shares parameters between a real and a
synthetic batch by reseeding the global RNG with the same seed twice; :func:`siamese_augment`
draws one parameter set and applies it to every batch instead, which is what that reseeding
achieved (one transform for every image of both batches). ``rotate``'s matrix is the reference's
at the negated angle (tests/nn/test_augment.py): the angle is uniform on a range symmetric about 0,
so the rotations are the same in distribution (the sets made with it are unchanged).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from dcbench.host.errors import DcbenchError

FAMILIES = ("color", "crop", "cutout", "flip", "scale", "rotate")
NO_AUGMENTATION = ("", "none", "None")


@dataclass(frozen=True)
class DSAParams:
    """The reference ``ParamDiffAug`` values."""

    prob_flip: float = 0.5
    ratio_scale: float = 1.2
    ratio_rotate: float = 15.0
    ratio_crop_pad: float = 0.125
    ratio_cutout: float = 0.5
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5


DEFAULT_DSA = DSAParams()


def dsa_strategy_for(dataset: str) -> str:
    """The reference strategy string: no flip for digit datasets ("flip is not good for digits")."""
    if dataset.lower().replace("-", "") in {"mnist", "svhn"}:
        return "color_crop_cutout_scale_rotate"
    return "color_crop_cutout_flip_scale_rotate"


def parse_strategy(strategy: str | None) -> tuple[str, ...]:
    """Validate a strategy string and return its families (empty for no augmentation)."""
    if strategy is None or strategy in NO_AUGMENTATION:
        return ()
    families = tuple(strategy.split("_"))
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise DcbenchError(
            f"unknown DSA family {unknown[0]!r} in strategy {strategy!r}; "
            f"use '_'-joined names from {', '.join(FAMILIES)}"
        )
    return families


def _uniform(n: int, generator: torch.Generator, like: Tensor) -> Tensor:
    return torch.rand(n, generator=generator).to(device=like.device, dtype=like.dtype)


def _randint(low: int, high: int, n: int, generator: torch.Generator, like: Tensor) -> Tensor:
    return torch.randint(low, high, (n,), generator=generator).to(like.device)


def _draw(family: str, n: int, x: Tensor, generator: torch.Generator, p: DSAParams) -> dict[str, Tensor]:
    """Per-sample parameters of one family for ``n`` images shaped like ``x``."""
    h, w = x.shape[-2:]
    if family == "color":
        return {
            "brightness": _uniform(n, generator, x),
            "saturation": _uniform(n, generator, x),
            "contrast": _uniform(n, generator, x),
        }
    if family == "crop":
        sx, sy = int(h * p.ratio_crop_pad + 0.5), int(w * p.ratio_crop_pad + 0.5)
        return {"tx": _randint(-sx, sx + 1, n, generator, x), "ty": _randint(-sy, sy + 1, n, generator, x)}
    if family == "cutout":
        ch, cw = int(h * p.ratio_cutout + 0.5), int(w * p.ratio_cutout + 0.5)
        return {
            "ox": _randint(0, h + (1 - ch % 2), n, generator, x),
            "oy": _randint(0, w + (1 - cw % 2), n, generator, x),
        }
    if family == "flip":
        return {"flip": _uniform(n, generator, x) < p.prob_flip}
    if family == "scale":
        return {"sx": _uniform(n, generator, x), "sy": _uniform(n, generator, x)}
    return {"angle": _uniform(n, generator, x)}  # rotate


def _affine(x: Tensor, theta: Tensor) -> Tensor:
    # align_corners=True reproduces the torch 1.2 behaviour the reference numbers were made with.
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, align_corners=True)


def _apply(family: str, x: Tensor, r: dict[str, Tensor], p: DSAParams) -> Tensor:
    n, _, h, w = x.shape
    if family == "color":
        x = x + (r["brightness"].view(n, 1, 1, 1) - 0.5) * p.brightness
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (r["saturation"].view(n, 1, 1, 1) * p.saturation) + mean
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - mean) * (r["contrast"].view(n, 1, 1, 1) + p.contrast) + mean
    if family == "crop":  # translate with zero fill, as the reference (1-px zero pad + clamped index)
        rows = (torch.arange(h, device=x.device).view(1, h, 1) + r["tx"].view(n, 1, 1) + 1).clamp(0, h + 1)
        cols = (torch.arange(w, device=x.device).view(1, 1, w) + r["ty"].view(n, 1, 1) + 1).clamp(0, w + 1)
        padded = F.pad(x, [1, 1, 1, 1])
        batch = torch.arange(n, device=x.device).view(n, 1, 1)
        return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)
    if family == "cutout":
        ch, cw = int(h * p.ratio_cutout + 0.5), int(w * p.ratio_cutout + 0.5)
        rows = torch.arange(h, device=x.device).view(1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, w)
        top = r["ox"].view(n, 1, 1) - ch // 2
        left = r["oy"].view(n, 1, 1) - cw // 2
        inside = (rows >= top) & (rows < top + ch) & (cols >= left) & (cols < left + cw)
        return x * (~inside).unsqueeze(1).to(x.dtype)
    if family == "flip":
        return torch.where(r["flip"].view(n, 1, 1, 1), x.flip(3), x)
    if family == "scale":
        lo = 1.0 / p.ratio_scale
        sx = r["sx"] * (p.ratio_scale - lo) + lo
        sy = r["sy"] * (p.ratio_scale - lo) + lo
        zero = torch.zeros_like(sx)
        theta = torch.stack([torch.stack([sx, zero, zero], 1), torch.stack([zero, sy, zero], 1)], 1)
        return _affine(x, theta)
    angle = (r["angle"] - 0.5) * 2 * p.ratio_rotate / 180 * math.pi
    cos, sin, zero = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, sin, zero], 1), torch.stack([-sin, cos, zero], 1)], 1)
    return _affine(x, theta)


def _pick_family(families: tuple[str, ...], generator: torch.Generator) -> str:
    return families[int(torch.randint(len(families), (1,), generator=generator))]


def augment(x: Tensor, strategy: str | None, generator: torch.Generator, params: DSAParams = DEFAULT_DSA) -> Tensor:
    """Non-Siamese DSA (reference ``seed=-1``): one family per call, parameters drawn per image.

    Used when training networks on synthetic data (inner loops, evaluation).
    """
    families = parse_strategy(strategy)
    if not families:
        return x
    family = _pick_family(families, generator)
    return _apply(family, x, _draw(family, x.shape[0], x, generator, params), params)


def siamese_augment(
    batches: Sequence[Tensor], strategy: str | None, generator: torch.Generator, params: DSAParams = DEFAULT_DSA
) -> list[Tensor]:
    """Siamese DSA: one family and one parameter draw shared by every image of every batch.

    Call it once per class with ``[real_c, synthetic_c]`` to match the reference's per-class seeds.
    """
    families = parse_strategy(strategy)
    if not families:
        return list(batches)
    family = _pick_family(families, generator)
    shared = _draw(family, 1, batches[0], generator, params)
    return [
        _apply(family, b, {k: v.to(b.device).expand(b.shape[0]) for k, v in shared.items()}, params) for b in batches
    ]


DC_AUG_STRATEGY = "crop_scale_rotate"
DC_AUG_OPS = ("crop", "scale", "rotate", "noise")


def dc_strategy_for(dataset: str) -> str:
    """The reference ``get_daparam``: evaluation models on MNIST train with ``crop_scale_rotate``,
    on every other dataset without augmentation. (Its ``crop_noise`` for ConvNetBN evaluation
    models is not used by dcbench's protocols.)"""
    return DC_AUG_STRATEGY if dataset.lower().replace("-", "").replace("_", "") == "mnist" else "none"


def dc_augment(
    x: Tensor,
    generator: torch.Generator,
    strategy: str = DC_AUG_STRATEGY,
    crop: int = 4,
    scale: float = 0.2,
    rotate: int = 45,
    noise: float = 0.001,
) -> Tensor:
    """The DC paper's evaluation augmentation, as the reference ``utils.augment``: for each image
    one op drawn uniformly from ``strategy``.

    - crop: pad ``crop`` px with the per-channel mean of the batch, then crop back to size at a
      random offset in ``0 .. 2*crop-1`` per axis;
    - scale: height and width ``int(U(1-scale, 1+scale) * H)`` drawn independently, nearest resize
      (``F.interpolate``), centred on a zero canvas and centre-cropped: scaling down fills the
      border with zeros (the dataset mean in normalised space, not the batch mean), scaling up
      crops;
    - rotate: ``scipy.ndimage.rotate`` by an integer angle in ``[-rotate, rotate)`` degrees, i.e. a
      cubic spline (order 3) with ``reshape=True``, filled with the mean of the channel means of
      the batch, then centre-cropped;
    - noise: add ``noise * N(0, 1)``.

    What differs from the reference: the draws come from ``generator`` (a torch Generator), not
    numpy's global RNG, so a seed gives other (identically distributed) draws; the reference ran
    scipy 1.1, and later scipy versions treat ``mode='constant'`` slightly differently in the
    border pixels of a rotation. Rotation runs on the CPU (as in the reference) and nothing here
    is differentiable: it augments evaluation training only.
    """
    ops = tuple(strategy.split("_"))
    if strategy in NO_AUGMENTATION:
        return x
    if not set(ops) <= set(DC_AUG_OPS):
        raise DcbenchError(
            f"unknown DC augmentation in {strategy!r}; use '_'-joined names from {', '.join(DC_AUG_OPS)}"
        )
    x = x.detach()
    n, c, h, w = x.shape
    mean = x.mean(dim=(0, 2, 3))  # per channel, over the batch (as the reference)
    out = x.clone()
    rotations: list[tuple[int, int]] = []
    for i, k in enumerate(torch.randint(len(ops), (n,), generator=generator).tolist()):
        if ops[k] == "crop":
            top, left = torch.randint(0, 2 * crop, (2,), generator=generator).tolist()
            out[i] = _dc_crop(x[i], mean, crop, top, left)
        elif ops[k] == "scale":
            factors = 1 + (torch.rand(2, generator=generator, dtype=torch.float64) * 2 - 1) * scale
            out[i] = _dc_scale(x[i], int(factors[0] * h), int(factors[1] * h))  # both of H, as the reference
        elif ops[k] == "rotate":
            rotations.append((i, int(torch.randint(-int(rotate), int(rotate), (1,), generator=generator))))
        else:
            out[i] = x[i] + noise * torch.randn(x.shape[1:], generator=generator).to(x)
    if rotations:
        index = [i for i, _ in rotations]
        images = x[index].cpu().numpy()
        fill = float(mean.mean())
        rotated = np.stack([_dc_rotate(image, angle, fill) for image, (_, angle) in zip(images, rotations)])
        out[index] = torch.from_numpy(rotated).to(out)
    return out


def _dc_crop(image: Tensor, mean: Tensor, crop: int, top: int, left: int) -> Tensor:
    """Pad with the per-channel ``mean``, take the ``(top, left)`` crop of the original size."""
    c, h, w = image.shape
    padded = mean.view(c, 1, 1).expand(c, h + 2 * crop, w + 2 * crop).clone()
    padded[:, crop : crop + h, crop : crop + w] = image
    return padded[:, top : top + h, left : left + w]


def _dc_scale(image: Tensor, height: int, width: int) -> Tensor:
    """Nearest resize to ``height x width``, centred on a zero canvas, centre-cropped to size."""
    c, h, w = image.shape
    resized = F.interpolate(image[None], [height, width])[0]  # mode "nearest", the reference's default
    side = max(height, width, h, w)
    canvas = image.new_zeros(c, side, side)
    top, left = (side - height) // 2, (side - width) // 2
    canvas[:, top : top + height, left : left + width] = resized
    top, left = (side - h) // 2, (side - w) // 2
    return canvas[:, top : top + h, left : left + w]


def _dc_rotate(image: np.ndarray, angle: int, fill: float) -> np.ndarray:
    """``scipy.ndimage.rotate`` (cubic spline, grown canvas filled with ``fill``), centre-cropped."""
    from scipy import ndimage  # imported here: only MNIST's DC evaluation rotates

    _, h, w = image.shape
    rotated = ndimage.rotate(image, angle=angle, axes=(-2, -1), cval=fill)
    top, left = (rotated.shape[-2] - h) // 2, (rotated.shape[-1] - w) // 2
    return rotated[:, top : top + h, left : left + w]
