"""Run one method on one dataset: build its config, condense, check and stamp the result."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from dcbench import __version__
from dcbench.data.paths import manifest_source
from dcbench.data.real import RealDataset
from dcbench.host.errors import DcbenchError
from dcbench.host.runtime import autocast, check_precision
from dcbench.method.contract import CondenseContext, Method, StateStore, config_to_dict
from dcbench.method.seeding import check_seed
from dcbench.method.synthetic import SyntheticSet


def config_hash(method: str, config: Mapping[str, Any], precision: str = "fp32") -> str:
    """A short stable hash of a method's resolved config and precision (detects a changed config for
    a cell). fp32 adds nothing, so fp32 hashes are those of stores written before ``--precision``."""
    payload: dict[str, Any] = {"method": method, "config": config}
    if precision != "fp32":
        payload["precision"] = precision
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class Condensed:
    synthetic: SyntheticSet
    seconds: float  # condensation time, including the runs that led to a resumed checkpoint
    metrics: dict[str, Any]
    resumed_at: int | None = None  # the iteration this run resumed at (None: from the start)
    artifacts: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # shared artifacts it used


def condense(
    method: Method,
    real: RealDataset,
    ipc: int,
    seed: int,
    preset: str = "quick",
    overrides: Mapping[str, Any] | None = None,
    ctx: CondenseContext | None = None,
    plugin_version: str | None = None,
    state_store: StateStore | None = None,
    precision: str = "fp32",
) -> Condensed:
    """Condense ``real`` to ``ipc`` images per class with ``method`` and stamp the manifest.

    ``state_store`` (e.g. a :class:`dcbench.method.checkpoint.Checkpointer`) is lent to a method that
    declares ``resumable = True``; others ignore it and restart when run again. ``precision``
    ``bf16`` runs the method's forward passes under ``torch.autocast``."""
    if not isinstance(ipc, int) or ipc <= 0:
        raise DcbenchError(f"IPC must be a positive integer, got {ipc!r}")
    check_seed(seed)
    smallest = min(len(i) for i in real.indices_by_class)
    if ipc > smallest and not method.reference_only:
        raise DcbenchError(f"IPC {ipc} exceeds the {smallest} training images of the smallest class of {real.name}")
    config = method.make_config(preset, overrides)
    ctx = ctx or CondenseContext(device=real.device)
    check_precision(precision, ctx.device.type)
    ctx.precision = precision
    if state_store is not None and method.resumable:
        ctx.state_store = state_store
    in_store_before, used_before = ctx.artifact_store_s, len(ctx.artifacts_used)  # a context may be reused
    start = time.perf_counter()
    with autocast(precision, ctx.device.type):
        synthetic = method.condense(real, ipc, config, seed, ctx)
    # an artifact built on the way (expert trajectories) is a one-off cost, recorded with it
    seconds = time.perf_counter() - start - (ctx.artifact_store_s - in_store_before)
    seconds += ctx.resumed.seconds if ctx.resumed else 0.0
    artifacts = ctx.artifacts_used[used_before:]
    if not isinstance(synthetic, SyntheticSet):
        raise DcbenchError(f"method {method.name!r} returned {type(synthetic).__name__}, not a SyntheticSet")
    synthetic.validate(real.channels, real.image_size, real.num_classes, source=f"method {method.name!r}")
    if not method.reference_only:
        synthetic.check_budget(ipc, real.num_classes, source=f"method {method.name!r}")
    config_dict = config_to_dict(config)
    native = method.native_evaluation(real.name)
    synthetic.manifest.update(
        {
            "format": "dcbench-synthetic/1",
            "method": method.name,
            "method_version": method.version,
            "plugin_version": plugin_version,
            "config": config_dict,
            "config_hash": config_hash(method.name, config_dict, precision),
            "preset": preset,
            "precision": precision,
            "dataset": real.name,
            "class_names": list(real.class_names),
            "ipc": synthetic.ipc,
            "num_classes": real.num_classes,
            "image_shape": [real.channels, *real.image_size],
            "seed": seed,
            "labels": "hard" if synthetic.soft_labels is None else "soft",
            "preprocessing": {
                "normalised": True,
                "mean": list(real.mean),
                "std": list(real.std),
                "zca": bool(real.zca),
                **({"whitening": real.zca} if real.zca else {}),
            },
            "native_eval_augmentation": native.augmentation,
            "native_evaluation": dataclasses.asdict(native),
            "dcbench_version": __version__,
            "torch_version": torch.__version__,
            "platform": platform.platform(),
            "condense_seconds": round(seconds, 3),
        }
    )
    if artifacts:
        synthetic.manifest["artifacts"] = artifacts
    source = manifest_source(real)  # a folder/file dataset: its path, content hash, size and statistics
    if source is not None:
        synthetic.manifest["dataset_source"] = source
    return Condensed(synthetic, seconds, dict(ctx.metrics), ctx.resumed.iteration if ctx.resumed else None, artifacts)
