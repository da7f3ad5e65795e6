"""Differentiable Siamese Augmentation (DSA, Zhao & Bilen 2021) and the DC paper's MNIST augmentation.

Six DSA families: ``color`` (brightness, saturation, contrast), ``crop`` (translation),
``cutout``, ``flip``, ``scale`` and ``rotate``; a strategy string joins family names with ``_``.
As the reference's ``aug_mode='S'``, one call applies ONE family drawn at random.

Randomness comes only from an explicit CPU :class:`torch.Generator` (parameters are drawn on the
CPU and moved to the data), so the global RNG is never touched and the same generator state gives
the same augmentation on every device. The reference shares parameters between a real and a
synthetic batch by reseeding the global RNG with the same seed twice; :func:`siamese_augment`
draws one parameter set and applies it to every batch instead, which is what that reseeding
achieved (one transform for every image of both batches).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from dcbench.errors import DcbenchError

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
        raise DcbenchError(f"unknown DSA family {unknown[0]!r} in strategy {strategy!r}; "
                           f"use '_'-joined names from {', '.join(FAMILIES)}")
    return families


def _uniform(n: int, generator: torch.Generator, like: Tensor) -> Tensor:
    return torch.rand(n, generator=generator).to(device=like.device, dtype=like.dtype)


def _randint(low: int, high: int, n: int, generator: torch.Generator, like: Tensor) -> Tensor:
    return torch.randint(low, high, (n,), generator=generator).to(like.device)


def _draw(family: str, n: int, x: Tensor, generator: torch.Generator, p: DSAParams) -> dict[str, Tensor]:
    """Per-sample parameters of one family for ``n`` images shaped like ``x``."""
    h, w = x.shape[-2:]
    if family == "color":
        return {"brightness": _uniform(n, generator, x), "saturation": _uniform(n, generator, x),
                "contrast": _uniform(n, generator, x)}
    if family == "crop":
        sx, sy = int(h * p.ratio_crop_pad + 0.5), int(w * p.ratio_crop_pad + 0.5)
        return {"tx": _randint(-sx, sx + 1, n, generator, x), "ty": _randint(-sy, sy + 1, n, generator, x)}
    if family == "cutout":
        ch, cw = int(h * p.ratio_cutout + 0.5), int(w * p.ratio_cutout + 0.5)
        return {"ox": _randint(0, h + (1 - ch % 2), n, generator, x),
                "oy": _randint(0, w + (1 - cw % 2), n, generator, x)}
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


def siamese_augment(batches: Sequence[Tensor], strategy: str | None, generator: torch.Generator,
                    params: DSAParams = DEFAULT_DSA) -> list[Tensor]:
    """Siamese DSA: one family and one parameter draw shared by every image of every batch.

    Call it once per class with ``[real_c, synthetic_c]`` to match the reference's per-class seeds.
    """
    families = parse_strategy(strategy)
    if not families:
        return list(batches)
    family = _pick_family(families, generator)
    shared = _draw(family, 1, batches[0], generator, params)
    return [_apply(family, b, {k: v.to(b.device).expand(b.shape[0]) for k, v in shared.items()}, params)
            for b in batches]


DC_AUG_STRATEGY = "crop_scale_rotate"


def dc_augment(x: Tensor, generator: torch.Generator, strategy: str = DC_AUG_STRATEGY,
               crop: int = 4, scale: float = 0.2, rotate: float = 45.0, noise: float = 0.001) -> Tensor:
    """The DC paper's evaluation augmentation (used for MNIST): one op per image, drawn per image.

    crop: pad ``crop`` px with the per-channel batch mean, then a random crop back to size;
    scale: independent height/width factors in [1-scale, 1+scale], nearest sampling, centred;
    rotate: an angle in [-rotate, rotate) degrees, filled with the mean; noise: Gaussian.
    Deviation: scale and rotation are batched ``grid_sample`` calls instead of the reference's
    per-image ``F.interpolate`` and ``scipy.ndimage.rotate`` round trips (same transforms, faster).
    """
    ops = tuple(strategy.split("_"))
    known = {"crop", "scale", "rotate", "noise"}
    if not set(ops) <= known:
        raise DcbenchError(f"unknown DC augmentation in {strategy!r}; use '_'-joined names from {sorted(known)}")
    n, c, h, w = x.shape
    choice = torch.randint(len(ops), (n,), generator=generator).to(x.device)
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    out = x.clone()
    for k, op in enumerate(ops):
        idx = (choice == k).nonzero().flatten()
        if idx.numel() == 0:
            continue
        xs, m = x[idx] - mean, idx.numel()
        if op == "crop":
            padded = F.pad(xs, [crop] * 4)  # zero in centred space == mean fill
            dx = torch.randint(0, 2 * crop, (m,), generator=generator).tolist()
            dy = torch.randint(0, 2 * crop, (m,), generator=generator).tolist()
            xs = torch.stack([padded[i, :, a:a + h, b:b + w] for i, (a, b) in enumerate(zip(dx, dy))])
        elif op == "scale":
            f = 1 + (torch.rand(m, 2, generator=generator) * 2 - 1) * scale
            zero = torch.zeros(m)
            theta = torch.stack([torch.stack([1 / f[:, 1], zero, zero], 1),
                                 torch.stack([zero, 1 / f[:, 0], zero], 1)], 1).to(x)
            grid = F.affine_grid(theta, [m, c, h, w], align_corners=False)
            xs = F.grid_sample(xs, grid, mode="nearest", align_corners=False)
        elif op == "rotate":
            angle = torch.randint(-int(rotate), int(rotate), (m,), generator=generator).float() * math.pi / 180
            cos, sin, zero = torch.cos(angle), torch.sin(angle), torch.zeros(m)
            theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1).to(x)
            grid = F.affine_grid(theta, [m, c, h, w], align_corners=False)
            xs = F.grid_sample(xs, grid, align_corners=False)
        else:  # noise
            xs = xs + noise * torch.randn(xs.shape, generator=generator).to(x)
        out[idx] = xs + mean
    return out
