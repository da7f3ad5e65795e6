"""The two terms of CAFE's image objective (official ``distill.py``), as plain functions.

* Layer-wise feature alignment (the code's ``criterion_middle`` plus the first half of
  ``loss_output``): the class-mean feature map of every block, spatial positions kept ("CWFA",
  category-wise feature averaging), real against synthetic, as a summed squared error
  (``MSELoss(reduction='sum')``: no division by the element count), one weight per map, plus the
  same distance between the class means of the embedding.
* Discrimination (the second half of ``loss_output``): every real embedding is scored against the
  K synthetic class-mean embeddings by a plain dot product (no temperature, normalisation or
  bias) and the summed cross-entropy against the real labels is weighted by ``inner_weight``.
  Being a sum over the K*B real images, its scale grows with K and with the real batch size B.

The official code hard-codes 10 classes and 3x32x32 images in its reshapes; here the class count
comes from the labels and any shapes work. Classes may hold different numbers of images (a class
smaller than the real batch), so means are taken by counts.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

SHALLOW_WEIGHT, DEEP_WEIGHT = 0.1, 1.0


def default_map_weights(depth: int) -> tuple[float, ...]:
    """Weights of the ``depth + 1`` maps of ``ConvNet.features`` (each block, then the pooled map).

    The official depth-3 weights of f1..f4 are 0.1, 0.1, 1, 1 (flags ``--fourth_weight``,
    ``--third_weight``, ``--second_weight``, ``--first_weight``: the names run opposite to depth).
    Any depth keeps "1 for the two deepest maps (the last block and the pooled map), 0.1 for the
    rest", which is exactly the official rule at depth 3.
    """
    maps = depth + 1
    return tuple(DEEP_WEIGHT if i >= maps - 2 else SHALLOW_WEIGHT for i in range(maps))


def class_means(x: Tensor, counts: Sequence[int]) -> Tensor:
    """Per-class mean of class-major ``x`` (sum(counts), ...) -> (len(counts), ...), shapes kept.
    Always float32: under bf16 autocast the features are bf16, and their class means are compared
    by differences that bf16's 8-bit mantissa would round away."""
    x = x.float()
    if len(set(counts)) == 1:  # the usual case: one reshape, one reduction
        return x.view(len(counts), counts[0], *x.shape[1:]).mean(1)
    return torch.stack([part.mean(0) for part in x.split(list(counts))])


def squared_error(a: Tensor, b: Tensor) -> Tensor:
    """``MSELoss(reduction='sum')``: the sum of squared differences over every element."""
    return ((a - b) ** 2).sum()


def alignment_loss(
    real_maps: Sequence[Tensor], syn_maps: Sequence[Tensor], map_weights: Sequence[float], embed_weight: float
) -> Tensor:
    """Weighted summed squared error between real and synthetic class-mean features.

    ``real_maps[l]`` / ``syn_maps[l]`` are class means (K, C_l, H_l, W_l) of map l, shallow to
    deep; the last map flattened is the embedding (the official f5), whose class means are aligned
    once more with ``embed_weight``. The deepest map is therefore aligned with total weight
    ``map_weights[-1] + embed_weight``, as in the official code.
    """
    if not len(real_maps) == len(syn_maps) == len(map_weights):
        raise ValueError(f"{len(real_maps)} real maps, {len(syn_maps)} synthetic maps, {len(map_weights)} weights")
    loss = embed_weight * squared_error(real_maps[-1].flatten(1), syn_maps[-1].flatten(1))
    for weight, real_map, syn_map in zip(map_weights, real_maps, syn_maps):
        loss = loss + weight * squared_error(real_map, syn_map)
    return loss


def discrimination_loss(real_embeddings: Tensor, real_labels: Tensor, syn_centres: Tensor) -> Tensor:
    """Summed cross-entropy of ``real_embeddings @ syn_centres.T`` (logits of every real image
    against the K synthetic class centres) against the real labels; multiply by ``inner_weight``."""
    logits = real_embeddings @ syn_centres.t()
    return F.cross_entropy(logits, real_labels, reduction="sum")
