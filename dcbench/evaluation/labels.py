"""What an evaluation network learns from: target distributions and the loss against them."""

from __future__ import annotations

from torch import Tensor
from torch.nn import functional as F


def soft_target_loss(logits: Tensor, target: Tensor, loss: str, temperature: float) -> Tensor:
    """Per-sample loss of ``logits`` against target distributions ``target`` (rows sum to 1) on the
    student's ``log_softmax(logits / T)``: soft cross-entropy, or the distillation KL divergence
    times T² (Hinton et al.; the T² keeps the gradient's scale across temperatures)."""
    log_p = F.log_softmax(logits / temperature, dim=-1)
    if loss == "kl":
        return temperature**2 * (target.xlogy(target) - target * log_p).sum(-1)
    return -(target * log_p).sum(-1)


def soft_label_loss(logits: Tensor, target_logits: Tensor, loss: str, temperature: float) -> Tensor:
    """:func:`soft_target_loss` against ``softmax(target_logits / T)`` (a set's learned labels, a
    teacher's outputs): DATM's soft cross-entropy at T = 1, or the KD loss."""
    return soft_target_loss(logits, F.softmax(target_logits / temperature, dim=-1), loss, temperature)


def one_hot(labels: Tensor, num_classes: int) -> Tensor:
    """Hard labels as target distributions (for mixing them)."""
    return F.one_hot(labels, num_classes).float()
