"""The distribution-matching loss of DM (reference ``main_DM.py``).

For every class, the squared L2 distance between the mean embedding of a real batch and the mean
embedding of the class's synthetic images (an MMD with a linear kernel), summed over embedding
dimensions and over classes: a sum, not a mean, as the reference accumulates ``loss += ...``.

The reference forwards class by class (instance-norm nets) or all classes at once (BatchNorm
nets). Here every class goes through the network in one batched forward pass and per-class means
are read from slices. For a network without batch statistics every sample is processed on its own,
so this equals the class-by-class loop; for a BatchNorm network it *is* the reference's BN branch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

Embed = Callable[[Tensor], Tensor]


def class_means(embeddings: Tensor, counts: Sequence[int]) -> Tensor:
    """Per-class mean of class-major embeddings ``(sum(counts), D)`` -> ``(len(counts), D)``, in
    float32 (under bf16 autocast the embeddings are bf16; their means are compared by differences)."""
    embeddings = embeddings.float()
    if len(set(counts)) == 1:  # the usual case: one reshape, one reduction
        return embeddings.view(len(counts), counts[0], -1).mean(1)
    # a class smaller than the real batch (the reference then takes all of its images)
    return torch.stack([part.mean(0) for part in embeddings.split(list(counts))])


def embed_class_means(embed: Embed, batches: Sequence[Tensor], classes_per_forward: int | None = None) -> Tensor:
    """Mean embedding ``(K, D)`` of each of the K class batches.

    The batches are concatenated and forwarded together, ``classes_per_forward`` classes at a time
    (None: all at once). Splitting at class boundaries keeps the means exact for per-sample
    networks while bounding the memory of one forward pass.
    """
    step = len(batches) if classes_per_forward is None else max(1, classes_per_forward)
    means = []
    for start in range(0, len(batches), step):
        group = batches[start : start + step]
        means.append(class_means(embed(torch.cat(list(group))), [len(b) for b in group]))
    return torch.cat(means)


def mean_embedding_distance(real_means: Tensor, syn_means: Tensor) -> Tensor:
    """Sum over classes and dimensions of the squared difference of mean embeddings."""
    return ((real_means - syn_means) ** 2).sum()


def distribution_matching_loss(
    embed: Embed,
    real_batches: Sequence[Tensor],
    syn_batches: Sequence[Tensor],
    real_classes_per_forward: int | None = None,
) -> Tensor:
    """DM loss of one iteration; gradients flow only into ``syn_batches``.

    ``real_batches[c]`` and ``syn_batches[c]`` are (augmented) images of class ``c``. The real
    pass runs under ``no_grad`` (the reference detaches it; nothing flows through it), optionally in
    groups of ``real_classes_per_forward`` classes. The synthetic pass is one forward over all
    classes, as the reference keeps every class's graph until its single backward anyway.
    """
    if len(real_batches) != len(syn_batches):
        raise ValueError(f"{len(real_batches)} real vs {len(syn_batches)} synthetic class batches")
    with torch.no_grad():
        real_means = embed_class_means(embed, real_batches, real_classes_per_forward)
    syn_means = embed_class_means(embed, syn_batches)
    return mean_embedding_distance(real_means, syn_means)
