"""The gradient-matching distance of DC (reference ``match_loss`` / ``distance_wb``).

Every gradient passed here carries a leading dimension K of independent matching problems (the
classes of one outer step): entry ``i`` of ``grads_syn``/``grads_real`` has shape
``(K, *shape_of_parameter_i)``. The result is the sum over the K problems, which is what the
reference accumulates class by class (``loss += match_loss(...)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from dcbench.api import DcbenchError

METRICS = ("ours", "mse", "cos")
#: added to the product of norms, as in the reference, so zero gradients give distance 1, not NaN
EPS = 1e-6


def _rows(grad: Tensor) -> Tensor | None:
    """A stacked parameter gradient (K, *shape) as (K, rows, cols) for the layer-wise distance, or
    None for 1-D parameters (biases, norm scales and shifts), which the reference ignores."""
    shape = grad.shape[1:]
    if len(shape) == 1:
        return None
    if len(shape) == 2:  # linear weight [out, in]
        return grad
    if len(shape) == 3:  # layer-norm weight [C, h, w] -> [C, h*w]
        return grad.reshape(grad.shape[0], shape[0], shape[1] * shape[2])
    return grad.reshape(grad.shape[0], shape[0], -1)  # conv weight [out, in, h, w] -> [out, in*h*w]


def layerwise_distance(grad_syn: Tensor, grad_real: Tensor) -> Tensor:
    """``ours`` for one parameter: sum over output rows of 1 - cosine(real row, synthetic row)."""
    syn, real = _rows(grad_syn), _rows(grad_real)
    if syn is None or real is None:
        return grad_syn.new_zeros(())
    dot = (real * syn).sum(-1)
    norms = real.norm(dim=-1) * syn.norm(dim=-1)
    return (1 - dot / (norms + EPS)).sum()


def match_loss(grads_syn: Sequence[Tensor], grads_real: Sequence[Tensor], metric: str = "ours") -> Tensor:
    """Distance between synthetic and real parameter gradients, summed over the K problems.

    ``ours``: layer-wise, per-output-row cosine distance, 1-D parameters skipped.
    ``mse``: squared Euclidean distance of all gradients (biases included) as one vector.
    ``cos``: 1 - cosine of all gradients (biases included) as one vector.
    """
    if len(grads_syn) != len(grads_real):
        raise ValueError(f"{len(grads_syn)} synthetic vs {len(grads_real)} real gradients")
    if metric == "ours":
        return torch.stack([layerwise_distance(s, r) for s, r in zip(grads_syn, grads_real)]).sum()
    syn = torch.cat([g.flatten(1) for g in grads_syn], dim=1)
    real = torch.cat([g.flatten(1) for g in grads_real], dim=1)
    if metric == "mse":
        return ((syn - real) ** 2).sum()
    if metric == "cos":
        cosine = (real * syn).sum(-1) / (real.norm(dim=-1) * syn.norm(dim=-1) + EPS)
        return (1 - cosine).sum()
    raise DcbenchError(f"unknown gradient distance {metric!r}; choose one of {', '.join(METRICS)}")
