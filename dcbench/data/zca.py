"""ZCA whitening of a dataset, as trajectory matching (MTT, DATM) preprocesses CIFAR.

mtt-distillation's ``utils.get_dataset(..., zca=True)`` fits ``kornia.enhance.ZCAWhitening(eps=0.1)``
on the normalised training images and applies the same transform to the training and the test
images. Here is kornia's ``zca_mean``: over the flattened training images ``X`` (N, D), the mean
``mu`` and the unbiased covariance ``C = (X - mu)^T (X - mu) / (N - 1)``, its SVD ``C = U S U^T``,
and ``T = U diag(1 / sqrt(S + eps)) U^T``; an image ``x`` becomes ``(x - mu) T``. ``eps`` (0.1) is
the regularisation: it bounds the gain of the weakest directions (pixel noise) at ``1/sqrt(eps)``.

The whitened tensors are what a cell's data fingerprint hashes, and a whitened dataset names its
whitening (:attr:`dcbench.data.real.RealDataset.zca`), which every manifest records and every
evaluation checks.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from dcbench.data.real import RealDataset

#: mtt-distillation and DATM: ``ZCAWhitening(eps=0.1, compute_inv=True)``
ZCA_EPS = 0.1


def zca_transform(train_images: Tensor, eps: float = ZCA_EPS) -> tuple[Tensor, Tensor]:
    """``(mean, T)`` of the ZCA whitening fitted on ``train_images`` (N, C, H, W); float64, so
    that the transform does not depend on the thread count."""
    x = train_images.detach().reshape(len(train_images), -1).to(torch.float64)
    mean = x.mean(0, keepdim=True)
    centred = x - mean
    cov = centred.T @ centred / (len(x) - 1)
    u, s, _ = torch.linalg.svd(cov)
    transform = u @ (torch.rsqrt(s + eps).unsqueeze(1) * u.T)
    return mean, transform


def whiten(images: Tensor, mean: Tensor, transform: Tensor) -> Tensor:
    """``(x - mean) T`` for every image, in the images' shape and float32."""
    flat = images.reshape(len(images), -1).to(torch.float64)
    return ((flat - mean) @ transform).to(torch.float32).reshape(images.shape)


def zca_whitened(real: RealDataset, eps: float = ZCA_EPS) -> RealDataset:
    """``real`` with its training and test images whitened by the transform fitted on its
    training images."""
    if real.zca:
        return real
    mean, transform = zca_transform(real.train_images, eps)
    return dataclasses.replace(
        real,
        train_images=whiten(real.train_images, mean, transform),
        test_images=whiten(real.test_images, mean, transform),
        zca=zca_name(eps),
    )


def zca_name(eps: float = ZCA_EPS) -> str:
    """How manifests and protocols name the whitening."""
    return f"zca-eps{eps:g}"
