"""CAFE settings: the dataclass defaults are the official ``distill.py`` defaults (the ``paper``
preset) plus the loop caps and the ``faithful`` switch, which the official code does not have.
See README.md for why each preset value was chosen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from dcbench.api import DcbenchError, parse_strategy

INITS = ("noise", "real")


@dataclass
class CafeConfig:
    """Settings of ``cafe``; see README.md for each field's source."""

    iterations: int = 2000  # outer iterations, each with a fresh network (official --Iteration)
    lr_img: float = 0.1  # SGD learning rate of the synthetic images (halved at lr_decay_at)
    momentum_img: float = 0.5  # momentum of the image SGD (one optimizer for the whole run)
    # the image lr is halved at these fractions of ``iterations`` (official: 1200/1600/1800 of 2000)
    lr_decay_at: tuple[float, ...] = (0.6, 0.8, 0.9)
    lr_net: float = 0.01  # inner-loop SGD, no momentum
    batch_real: int = 256  # real images per class per image step
    batch_train: int = 256  # inner-loop minibatch over the synthetic set
    init: str = "noise"  # initial images: "noise" (the official default) or "real" (random real images)
    # one weight per map of ConvNet.features, shallow to deep (depth + 1 maps); None: 1 for the two
    # deepest maps and 0.1 for the others, which is the official (0.1, 0.1, 1, 1) at depth 3
    layer_weights: tuple[float, ...] | None = None
    embed_weight: float = 1.0  # the f5 (embedding) alignment term (no flag in the official code)
    inner_weight: float = 0.01  # the summed discrimination cross-entropy
    lambda_1: float = 0.04  # outer loop stops when the accuracy window spans less than this
    lambda_2: float = 0.03  # inner loop stops when it spans more than this
    window: int = 10  # accuracy checks per window (a literal in the official code)
    query_per_class: int = 128  # real training images per class per accuracy check (a literal in the official code)
    # True: the official never-reset running-sum accuracy; False: the fresh mean per check plus
    # the ``inner_plateau`` exit (see stopping.py)
    faithful: bool = True
    inner_plateau: float = 0.01  # corrected mode only: an inner window spanning less ends the loop
    # cap of the outer loop per iteration (official: none); an inner loop follows every image step
    # but the last, so this caps the inner loops too
    max_image_steps: int = 100
    max_inner_epochs: int = 100  # cap of each inner loop (official: none)
    net_width: int = 128  # channels per layer of the condensation ConvNet (instance norm, ReLU, average pooling)
    net_depth: int = 3  # its conv blocks

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            "iterations": 2,
            "batch_real": 4,
            "query_per_class": 4,
            "window": 2,
            "max_image_steps": 3,
            "max_inner_epochs": 3,
            "net_width": 16,
            "faithful": False,
        },
        # CPU budget: about 6 s per cell like every method's quick preset (README), from real images;
        # lr_img (the paper's 0.1) confirmed on a validation split: benchmarks/selection/cafe-fashion-mnist.md
        "quick": {
            "iterations": 10,
            "batch_real": 16,
            "query_per_class": 10,
            "window": 3,
            "max_image_steps": 5,
            "max_inner_epochs": 10,
            "net_width": 32,
            "faithful": False,
            "init": "real",
        },
        "paper": {},
    }

    def validate(self) -> None:
        for name in (
            "iterations",
            "batch_real",
            "batch_train",
            "window",
            "query_per_class",
            "max_image_steps",
            "max_inner_epochs",
            "net_width",
            "net_depth",
        ):
            if getattr(self, name) < 1:
                raise DcbenchError(f"cafe setting {name!r} must be at least 1, got {getattr(self, name)}")
        for name in ("lr_img", "lr_net"):
            if not getattr(self, name) > 0:
                raise DcbenchError(f"cafe setting {name!r} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.momentum_img < 1:
            raise DcbenchError(f"cafe setting 'momentum_img' must lie in [0, 1), got {self.momentum_img}")
        if any(not 0 <= f <= 1 for f in self.lr_decay_at):
            raise DcbenchError(
                f"cafe setting 'lr_decay_at' holds fractions of the iterations in [0, 1], got {list(self.lr_decay_at)}"
            )
        if self.init not in INITS:
            raise DcbenchError(f"cafe setting 'init' must be one of {', '.join(INITS)}, got {self.init!r}")
        if self.layer_weights is not None and len(self.layer_weights) != self.net_depth + 1:
            raise DcbenchError(
                f"cafe setting 'layer_weights' needs net_depth + 1 = {self.net_depth + 1} weights "
                f"(each block's map, then the pooled map), got {len(self.layer_weights)}"
            )
        weights = [*(self.layer_weights or ()), self.embed_weight, self.inner_weight]
        if any(w < 0 for w in weights):
            raise DcbenchError("cafe loss weights (layer_weights, embed_weight, inner_weight) must be >= 0")
        for name in ("lambda_1", "lambda_2", "inner_plateau"):
            if getattr(self, name) < 0:
                raise DcbenchError(f"cafe setting {name!r} must be >= 0, got {getattr(self, name)}")


@dataclass
class CafeDsaConfig(CafeConfig):
    """Settings of ``cafe_dsa``: CAFE with Siamese DSA, initialised from real images (an assumption:
    the official repository publishes no DSA command; DC/DSA's README initialises DSA runs from real)."""

    init: str = "real"
    dsa_strategy: str = ""  # "" = the reference strategy string of the dataset (no flip for MNIST and SVHN)

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = CafeConfig.PRESETS

    def validate(self) -> None:
        super().validate()
        parse_strategy(self.dsa_strategy)
