"""Per-class parameter gradients of the cross-entropy loss, the quantity DC matches.

The reference runs one forward and one backward pass per class. When no layer mixes samples
(instance/layer/group norm, or BatchNorm frozen to eval as DC does for matching), the gradient of
class ``c``'s mean loss depends on class ``c``'s images only, so all classes can go through ONE
vectorised pass: ``vmap`` over the class dimension of ``grad`` of a ``functional_call``. That gives
the same per-class gradients as the loop (to float rounding) with one large batch instead of K
small ones. Outer autograd sees through ``torch.func.grad``, so the synthetic gradients stay
differentiable with respect to the synthetic images (the second-order term DC needs).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F


def class_gradients(
    net: nn.Module, images: Tensor, labels: Tensor, create_graph: bool, batched: bool = True
) -> list[Tensor]:
    """Gradients of each group's mean cross-entropy with respect to ``net``'s parameters.

    ``images`` (K, n, C, H, W) and ``labels`` (K, n) hold K groups (classes) of n samples. Returns
    one tensor (K, *parameter.shape) per parameter, in ``net.parameters()`` order. With
    ``create_graph`` the result is differentiable with respect to ``images``; otherwise it is
    detached. ``batched=False`` is the reference's class-by-class loop (same values, slower).
    """
    if batched:
        params = {name: p.detach() for name, p in net.named_parameters()}
        buffers = dict(net.named_buffers())

        def group_loss(params: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
            return F.cross_entropy(functional_call(net, (params, buffers), (x,)), y)

        stacked = vmap(grad(group_loss), in_dims=(None, 0, 0))(params, images, labels)
        grads = [stacked[name] for name in params]
    else:
        params_list = list(net.parameters())
        per_group = [
            torch.autograd.grad(F.cross_entropy(net(x), y), params_list, create_graph=create_graph)
            for x, y in zip(images, labels)
        ]
        grads = [torch.stack(g) for g in zip(*per_group)]
    return grads if create_graph else [g.detach() for g in grads]
