"""Trajectory matching: unroll a student from an expert's snapshot on the synthetic set and measure
how far it lands from the expert's later snapshot (mtt-distillation ``distill.py`` lines 324-386).

The student is the network evaluated at one flat parameter vector (``torch.func.functional_call``
over views of it, the role of the reference's ``ReparamModule``). Each of ``syn_steps`` steps takes
a minibatch of the synthetic images (a fresh permutation split into ``batch_syn`` chunks, the
chunks taken from the end as the reference's ``pop()``), DSA-augments it, and moves the
parameters by ``- syn_lr * grad`` with the graph kept (``create_graph=True``), so that the loss
back-propagates through every step to the images, the learnable learning rate and (DATM) the
labels.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn import functional as F

Augment = Callable[[Tensor, torch.Generator], Tensor]


def trajectory_matching_loss(student_end: Tensor, start: Tensor, target: Tensor) -> Tensor:
    """‖θ_student − θ_{t+M}‖² / ‖θ_t − θ_{t+M}‖², each divided by the parameter count first (as the
    reference does; the division cancels)."""
    n = student_end.numel()
    param_loss = F.mse_loss(student_end, target, reduction="sum") / n
    param_dist = F.mse_loss(start, target, reduction="sum") / n
    return param_loss / param_dist


def soft_cross_entropy(logits: Tensor, target_logits: Tensor) -> Tensor:
    """DATM's ``SoftCrossEntropy``: cross-entropy against ``softmax(target_logits)``, averaged over
    the batch (``distill/DATM.py`` lines 255-260)."""
    return -(F.softmax(target_logits, dim=1) * F.log_softmax(logits, dim=1)).sum() / logits.shape[0]


class FlatStudent:
    """A network run at a flat parameter vector (no buffers: BatchNorm's statistics are refused)."""

    def __init__(self, net: nn.Module) -> None:
        if any(True for _ in net.buffers()):
            raise ValueError("trajectory matching needs a network without buffers (no BatchNorm statistics)")
        self.net = net
        self.names = [name for name, _ in net.named_parameters()]
        self.shapes = [p.shape for _, p in net.named_parameters()]
        self.sizes = [p.numel() for _, p in net.named_parameters()]
        self.count = sum(self.sizes)

    def __call__(self, flat: Tensor, x: Tensor) -> Tensor:
        views = {name: part.view(shape) for name, part, shape in zip(self.names, flat.split(self.sizes), self.shapes)}
        return functional_call(self.net, views, (x,))


def unroll_student(
    student: FlatStudent,
    start: Tensor,
    images: Tensor,
    labels: Tensor,
    syn_lr: Tensor,
    syn_steps: int,
    batch_syn: int,
    augment: Augment,
    generator: torch.Generator,
    soft_labels: bool = False,
) -> Tensor:
    """The student's parameters after ``syn_steps`` steps from ``start``, differentiable in
    ``images``, ``syn_lr`` and (soft) ``labels``."""
    params = start.detach().requires_grad_(True)
    chunks: list[Tensor] = []
    for _ in range(syn_steps):
        if not chunks:
            chunks = list(torch.randperm(len(images), generator=generator).to(images.device).split(batch_syn))
        index = chunks.pop()
        x = augment(images[index], generator)
        out = student(params, x)
        y = labels[index]
        loss = soft_cross_entropy(out, y) if soft_labels else F.cross_entropy(out, y)
        grad = torch.autograd.grad(loss, params, create_graph=True)[0]
        params = params - syn_lr * grad
    return params
