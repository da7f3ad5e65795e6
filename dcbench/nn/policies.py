"""AutoAugment and RandAugment at evaluation, drawn from an explicit generator.

torchvision's ``transforms.v2.AutoAugment`` and ``RandAugment`` draw their choices from the
global RNG. Here the choices (sub-policy, whether each operation fires, the sign of its
magnitude) come from the caller's :class:`torch.Generator`, exactly as torchvision's ``forward``
draws them, and torchvision's own tables and operations apply them, so a protocol's streams fix
every augmented batch and the global RNG is never touched.

As DC-BENCH's evaluator (``custom_aug``), the normalised images are mapped back to pixels,
clamped to [0, 1], quantised to uint8 (the operations' domain: posterize, equalize, solarize),
augmented and normalised again. Unlike DC-BENCH, which hands torchvision the whole batch and so
applies one drawn sub-policy to every image of it, each image draws its own (the AutoAugment and
RandAugment papers' semantics). DC-BENCH's settings: the CIFAR-10 policy, RandAugment with one
operation at magnitude 9.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torchvision.transforms import v2

POLICIES = ("autoaugment", "randaugment")
RANDAUGMENT_OPS = 1  # DC-BENCH: transforms.RandAugment(num_ops=1)


def _coin(generator: torch.Generator) -> float:
    return float(torch.rand((), generator=generator))


def _pick(n: int, generator: torch.Generator) -> int:
    return int(torch.randint(n, (), generator=generator))


def _autoaugment(transform: v2.AutoAugment, image: Tensor, generator: torch.Generator) -> Tensor:
    """torchvision's ``AutoAugment.forward`` on one uint8 image, its draws from ``generator``."""
    height, width = image.shape[-2:]
    policy = transform._policies[_pick(len(transform._policies), generator)]
    for op, probability, magnitude_index in policy:
        if not _coin(generator) <= probability:
            continue
        magnitudes_fn, signed = transform._AUGMENTATION_SPACE[op]
        magnitudes = magnitudes_fn(10, height, width)
        magnitude = 0.0
        if magnitudes is not None:
            magnitude = float(magnitudes[magnitude_index])
            if signed and _coin(generator) <= 0.5:
                magnitude *= -1
        image = transform._apply_image_or_video_transform(
            image, op, magnitude, transform.interpolation, transform._fill
        )
    return image


def _randaugment(transform: v2.RandAugment, image: Tensor, generator: torch.Generator) -> Tensor:
    """torchvision's ``RandAugment.forward`` on one uint8 image, its draws from ``generator``."""
    height, width = image.shape[-2:]
    ops = list(transform._AUGMENTATION_SPACE)
    for _ in range(transform.num_ops):
        op = ops[_pick(len(ops), generator)]
        magnitudes_fn, signed = transform._AUGMENTATION_SPACE[op]
        magnitudes = magnitudes_fn(transform.num_magnitude_bins, height, width)
        magnitude = 0.0
        if magnitudes is not None:
            magnitude = float(magnitudes[transform.magnitude])
            if signed and _coin(generator) <= 0.5:
                magnitude *= -1
        image = transform._apply_image_or_video_transform(
            image, op, magnitude, transform.interpolation, transform._fill
        )
    return image


def policy_augmenter(
    policy: str, mean: Sequence[float], std: Sequence[float], generator: torch.Generator
) -> Callable[[Tensor], Tensor]:
    """``augment(images)`` for a batch of normalised (N, C, H, W) images: each image gets its
    own draw of ``policy`` ("autoaugment": the CIFAR-10 policy; "randaugment")."""
    if policy == "autoaugment":
        transform: v2.AutoAugment | v2.RandAugment = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)
        apply: Callable[..., Tensor] = _autoaugment
    elif policy == "randaugment":
        transform, apply = v2.RandAugment(num_ops=RANDAUGMENT_OPS), _randaugment
    else:
        raise ValueError(f"unknown augmentation policy {policy!r}; choose one of {', '.join(POLICIES)}")

    def augment(images: Tensor) -> Tensor:
        m = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
        s = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
        pixels = (images.detach() * s + m).clamp(0, 1).mul(255).round().to(torch.uint8)
        out = torch.stack([apply(transform, image, generator) for image in pixels])
        return (out.to(images.dtype) / 255 - m) / s

    return augment
