"""The ``dc`` and ``dsa`` methods: configs, presets and the adapter to the host."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from dcbench.api import (
    CondenseContext,
    DcbenchError,
    Method,
    NativeEvaluation,
    RealDataset,
    SyntheticSet,
    dc_strategy_for,
    dsa_strategy_for,
    parse_strategy,
    real_init_stream,
)

from .gradient_matching import MatchingSettings, condense_by_gradient_matching
from .loops import get_loops
from .matching import METRICS

CLASS_BATCHING = ("none", "synthetic", "all")


@dataclass
class DCConfig:
    """DC settings; the defaults are the reference ``main.py --method DC`` arguments."""

    iterations: int = 1000  # fresh networks, one after another (the paper's K, the reference's Iteration)
    outer_loop: int | None = None  # matching steps per iteration; None = get_loops(ipc)
    inner_loop: int | None = None  # network epochs between matching steps; None = get_loops(ipc)
    batch_real: int = 256  # real images per class per matching step
    batch_train: int = 256  # mini-batch of the inner-loop network training
    lr_img: float = 0.1  # SGD learning rate of the synthetic images
    momentum_img: float = 0.5  # momentum of the image SGD (one optimizer for the whole run)
    lr_net: float = 0.01  # SGD learning rate (no momentum) of the network in the inner loop
    init: str = "noise"  # initial images: "noise" (N(0, 1) in normalised space) or "real" (random real images)
    # gradient distance: "ours" (per weight tensor, 1 - cosine per output row, 1-D tensors skipped),
    # "mse" (squared distance of all gradients as one vector, biases included) or "cos" (1 - its cosine)
    dis_metric: str = "ours"
    model: str = "ConvNet"  # condensation network (a registered architecture; ConvNetBN: see README)
    net_width: int = 128  # channels per layer, ConvNet family only (ignored by other architectures)
    net_depth: int = 3  # conv blocks, ConvNet family only
    net_norm: str = "instancenorm"  # ConvNet family only: instancenorm, batchnorm, layernorm, groupnorm, none
    # per-class gradients computed in one vmapped pass: "none" (the reference's class loop),
    # "synthetic" (synthetic side only; fastest on CPU, see README) or "all"; every mode gives the same values
    class_batching: str = "synthetic"

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"iterations": 2, "batch_real": 8, "net_width": 8, "inner_loop": 1},
        # CPU budget (README): about 6 s per cell like every method's quick preset; one matching
        # step per fresh network, from real images, larger steps (lr_img chosen on a validation
        # split of the training set: benchmarks/selection/dc-fashion-mnist.md)
        "quick": {"iterations": 25, "outer_loop": 1, "batch_real": 64, "lr_img": 1.0, "init": "real", "net_width": 32},
        "paper": {},
    }

    def validate(self) -> None:
        for name in ("iterations", "batch_real", "batch_train", "net_width", "net_depth"):
            if getattr(self, name) < 1:
                raise DcbenchError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("outer_loop", "inner_loop"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise DcbenchError(f"{name} must be at least 1 (or null for the reference table), got {value}")
        for name in ("lr_img", "lr_net"):
            if not getattr(self, name) > 0:
                raise DcbenchError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.momentum_img < 1:
            raise DcbenchError(f"momentum_img must lie in [0, 1), got {self.momentum_img}")
        if self.init not in ("noise", "real"):
            raise DcbenchError(f"unknown init {self.init!r}; use 'noise' or 'real'")
        if self.class_batching not in CLASS_BATCHING:
            raise DcbenchError(
                f"unknown class_batching {self.class_batching!r}; choose one of {', '.join(CLASS_BATCHING)}"
            )
        if self.dis_metric not in METRICS:
            raise DcbenchError(f"unknown dis_metric {self.dis_metric!r}; choose one of {', '.join(METRICS)}")


@dataclass
class DSAConfig(DCConfig):
    """DSA settings: DC's, initialised from real images, plus the augmentation strategy."""

    init: str = "real"
    dsa_strategy: str = ""  # "" = the reference strategy of the dataset (no flip for digits)

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = DCConfig.PRESETS

    def validate(self) -> None:
        super().validate()
        parse_strategy(self.dsa_strategy)


def _settings(config: DCConfig, ipc: int, dsa_strategy: str) -> MatchingSettings:
    outer, inner = get_loops(ipc)
    net_options = (
        {"width": config.net_width, "depth": config.net_depth, "norm": config.net_norm}
        if config.model.startswith("ConvNet")
        else {}
    )
    return MatchingSettings(
        iterations=config.iterations,
        outer_loop=config.outer_loop or outer,
        inner_loop=config.inner_loop or inner,
        batch_real=config.batch_real,
        batch_train=config.batch_train,
        lr_img=config.lr_img,
        momentum_img=config.momentum_img,
        lr_net=config.lr_net,
        init=config.init,
        dis_metric=config.dis_metric,
        model=config.model,
        net_options=net_options,
        dsa_strategy=dsa_strategy,
        class_batching=config.class_batching,
    )


class DCMethod(Method):
    name = "dc"
    label = "DC"
    version = "1.0.0"
    description = "Dataset Condensation with gradient matching (Zhao, Mopuri & Bilen, ICLR 2021)"
    config_class = DCConfig
    native_eval_augmentation = "none"
    resumable = True

    def initial_stream(self, config: Any) -> str:
        return real_init_stream(config.init)

    def native_evaluation(self, dataset: str) -> NativeEvaluation:
        """``main.py`` evaluates DC sets with ``get_daparam``: MNIST with the DC augmentation
        (crop_scale_rotate) for 1000 epochs, every other dataset without augmentation for 300."""
        if dc_strategy_for(dataset) != "none":
            return NativeEvaluation("dc", 1000)
        return NativeEvaluation("none", 300)

    def condense(self, real: RealDataset, ipc: int, config: DCConfig, seed: int, ctx: CondenseContext) -> SyntheticSet:
        images, labels = condense_by_gradient_matching(real, ipc, _settings(config, ipc, ""), seed, ctx)
        return SyntheticSet(images, labels)


class DSAMethod(Method):
    name = "dsa"
    label = "DSA"
    version = "1.0.0"
    description = "Dataset Condensation with Differentiable Siamese Augmentation (Zhao & Bilen, ICML 2021)"
    config_class = DSAConfig
    native_eval_augmentation = "dsa"
    resumable = True

    def initial_stream(self, config: Any) -> str:
        return real_init_stream(config.init)

    def condense(self, real: RealDataset, ipc: int, config: DSAConfig, seed: int, ctx: CondenseContext) -> SyntheticSet:
        strategy = config.dsa_strategy or dsa_strategy_for(real.name)
        ctx.metrics["dsa_strategy"] = strategy
        images, labels = condense_by_gradient_matching(real, ipc, _settings(config, ipc, strategy), seed, ctx)
        return SyntheticSet(images, labels)
