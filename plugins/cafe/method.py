"""CAFE (Wang, Zhao et al., CVPR 2022) as dcbench methods: ``cafe`` and ``cafe_dsa``.

Both run :func:`.bilevel.condense_cafe`; ``cafe_dsa`` adds Siamese DSA per class to the image
steps and non-Siamese DSA to the inner-loop network training, as the official ``--method DSA``.
"""

from __future__ import annotations

from typing import Any

from dcbench.api import (
    CondenseContext,
    DcbenchError,
    Method,
    NativeEvaluation,
    RealDataset,
    SyntheticSet,
    dc_strategy_for,
    dsa_strategy_for,
    real_init_stream,
)

from .bilevel import condense_cafe
from .config import CafeConfig, CafeDsaConfig


def _check_ipc(ipc: int) -> None:
    if ipc < 1:
        raise DcbenchError(f"ipc must be at least 1, got {ipc}")


class CafeMethod(Method):
    name = "cafe"
    label = "CAFE"
    version = "0.1.0"
    description = (
        "CAFE: layer-wise feature alignment + discrimination loss, dynamic bi-level "
        "optimisation (Wang, Zhao et al., CVPR 2022)"
    )
    config_class = CafeConfig
    native_eval_augmentation = "none"
    resumable = True

    def initial_stream(self, config: Any) -> str:
        return real_init_stream(config.init)

    def native_evaluation(self, dataset: str) -> NativeEvaluation:
        """CAFE's ``distill.py`` evaluates non-DSA sets with DC's ``get_daparam``: MNIST with the DC
        augmentation for 1000 epochs, every other dataset without augmentation for 600."""
        if dc_strategy_for(dataset) != "none":
            return NativeEvaluation("dc", 1000)
        return NativeEvaluation("none", 600)

    def condense(
        self, real: RealDataset, ipc: int, config: CafeConfig, seed: int, ctx: CondenseContext
    ) -> SyntheticSet:
        _check_ipc(ipc)
        return condense_cafe(real, ipc, config, seed, ctx)


class CafeDsaMethod(Method):
    name = "cafe_dsa"
    label = "CAFE+DSA"
    version = "0.1.0"
    description = "CAFE with Siamese differentiable augmentation (the official --method DSA)"
    config_class = CafeDsaConfig
    native_eval_augmentation = "dsa"
    resumable = True

    def initial_stream(self, config: Any) -> str:
        return real_init_stream(config.init)

    def native_evaluation(self, dataset: str) -> NativeEvaluation:
        """``distill.py --method DSA``: 1000 epochs with per-sample DSA on every dataset."""
        return NativeEvaluation("dsa", 1000)

    def condense(
        self, real: RealDataset, ipc: int, config: CafeDsaConfig, seed: int, ctx: CondenseContext
    ) -> SyntheticSet:
        _check_ipc(ipc)
        return condense_cafe(real, ipc, config, seed, ctx, config.dsa_strategy or dsa_strategy_for(real.name))
