"""Run one method on one dataset: build its config, condense, check and stamp the result."""
from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from dcbench import __version__
from dcbench.datasets import RealDataset
from dcbench.errors import DcbenchError
from dcbench.methods import CondenseContext, Method, config_to_dict
from dcbench.seeding import check_seed
from dcbench.synthetic import SyntheticSet


def config_hash(method: str, config: Mapping[str, Any]) -> str:
    """A short stable hash of a method's resolved config (detects a changed config for a cell)."""
    text = json.dumps({"method": method, "config": config}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class Condensed:
    synthetic: SyntheticSet
    seconds: float
    metrics: dict[str, Any]


def condense(method: Method, real: RealDataset, ipc: int, seed: int, preset: str = "quick",
             overrides: Mapping[str, Any] | None = None, ctx: CondenseContext | None = None,
             plugin_version: str | None = None) -> Condensed:
    """Condense ``real`` to ``ipc`` images per class with ``method`` and stamp the manifest."""
    if not isinstance(ipc, int) or ipc <= 0:
        raise DcbenchError(f"IPC must be a positive integer, got {ipc!r}")
    check_seed(seed)
    smallest = min(len(i) for i in real.indices_by_class)
    if ipc > smallest and not getattr(method, "reference_only", False):
        raise DcbenchError(f"IPC {ipc} exceeds the {smallest} training images of the smallest class of {real.name}")
    config = method.make_config(preset, overrides)
    ctx = ctx or CondenseContext(device=real.device)
    start = time.perf_counter()
    synthetic = method.condense(real, ipc, config, seed, ctx)
    seconds = time.perf_counter() - start
    if not isinstance(synthetic, SyntheticSet):
        raise DcbenchError(f"method {method.name!r} returned {type(synthetic).__name__}, not a SyntheticSet")
    synthetic.validate(real.channels, real.image_size, real.num_classes, source=f"method {method.name!r}")
    config_dict = config_to_dict(config)
    synthetic.manifest.update({
        "format": "dcbench-synthetic/1",
        "method": method.name,
        "method_version": method.version,
        "plugin_version": plugin_version,
        "config": config_dict,
        "config_hash": config_hash(method.name, config_dict),
        "preset": preset,
        "dataset": real.name,
        "ipc": synthetic.ipc,
        "num_classes": real.num_classes,
        "image_shape": [real.channels, *real.image_size],
        "seed": seed,
        "labels": "hard",
        "preprocessing": {"normalised": True, "mean": list(real.mean), "std": list(real.std), "zca": False},
        "native_eval_augmentation": method.native_eval_augmentation,
        "dcbench_version": __version__,
        "torch_version": torch.__version__,
        "platform": platform.platform(),
        "condense_seconds": round(seconds, 3),
    })
    return Condensed(synthetic, seconds, dict(ctx.metrics))
