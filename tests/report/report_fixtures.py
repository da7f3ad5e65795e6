"""Results directories written like the runner does, for the report tests (imported by them)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dcbench.method.synthetic import SyntheticSet

# Level of each method in accuracy (fraction); IPC adds a log-shaped gain.
METHOD_LEVELS = {"random": 0.30, "dc": 0.45, "dm": 0.47, "whole": 0.88}
SEEDS = (0, 1, 2)
EVAL_MODELS = 2
CLASS_NAMES = ("cat", "dog", "frog")


def make_results(
    root: Path,
    tasks: dict[str, tuple[int, ...]],
    methods=tuple(METHOD_LEVELS),
    seeds=SEEDS,
    grids: bool = False,
    whole_per_ipc: bool = False,
    levels: dict[str, float] | None = None,
    archs: tuple[str, ...] = ("ConvNet",),
    seed_sd: float = 0.01,
    own_init: tuple[str, ...] = (),
) -> Path:
    """Write runs.csv (and optionally the cells' synthetic sets) like the runner does.

    ``tasks`` maps dataset -> IPCs. The whole-dataset method is recorded once per dataset with
    ipc 0 (its accuracy does not depend on IPC), or at every IPC with ``whole_per_ipc``. One
    condensation run (run_id) is evaluated on every architecture of ``archs``. Every method but
    ``whole`` and those of ``own_init`` records the shared initial stream, as a real grid does.
    """
    levels = levels or METHOD_LEVELS
    rng = np.random.default_rng(0)
    rows = []
    for method in methods:
        for dataset, ipcs in tasks.items():
            for ipc in (0,) if method == "whole" and not whole_per_ipc else ipcs:
                for synth_seed in seeds:
                    run_id = f"{method}-{dataset}-ipc{ipc}-s{synth_seed}"
                    for arch in archs:
                        seed_effect = rng.normal(0, seed_sd)  # shared by the seed's models
                        for eval_index in range(EVAL_MODELS):
                            accuracy = (
                                levels[method]
                                + 0.05 * np.log10(max(ipc, 1))
                                + seed_effect
                                + rng.normal(0, seed_sd / 2.5)
                            )
                            row = _row(run_id, method, dataset, ipc, arch, synth_seed, eval_index, accuracy)
                            row["init_stream"] = "" if method == "whole" or method in own_init else "init"
                            rows.append(row)
                    if grids and method != "whole":
                        write_synthetic_set(root / "runs" / run_id, ipc, rng)
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / "runs.csv", index=False)
    return root


def _row(
    run_id: str, method: str, dataset: str, ipc: int, arch: str, synth_seed: int, eval_index: int, accuracy: float
) -> dict[str, object]:
    return {
        "run_id": run_id,
        "method": method,
        "reference_only": method == "whole",
        "method_label": "Whole dataset" if method == "whole" else method,
        "method_version": "0.1",
        "dataset": dataset,
        "ipc": ipc,
        "eval_arch": arch,
        "synth_seed": synth_seed,
        "eval_seed": 1000 + eval_index,
        "eval_index": eval_index,
        "test_acc": accuracy,
        "condense_s": 12.5,
        "eval_s": 3.0,
        "peak_rss_mb": 800.0,
        "cuda_peak_mb": np.nan,
        "synth_iters": 20,
        "config_hash": "cafe0123",
        "preset": "smoke",
        "protocol": "convnet-dsa-v1",
        "eval_epochs": 300,
        "eval_augmentation": "dsa",
        "eval_models": EVAL_MODELS,
        "dcbench_version": "0.1.0",
    }


def write_synthetic_set(directory: Path, ipc: int, rng: np.random.Generator) -> None:
    """A tiny normalised 8x8 grey set of len(CLASS_NAMES) classes, with its manifest."""
    n = ipc * len(CLASS_NAMES)
    images = torch.from_numpy(rng.normal(size=(n, 1, 8, 8)).astype(np.float32))
    labels = torch.arange(len(CLASS_NAMES)).repeat_interleave(ipc)
    manifest = {"preprocessing": {"normalised": True, "mean": [0.5], "std": [0.25]}, "class_names": list(CLASS_NAMES)}
    SyntheticSet(images, labels, manifest).save(directory)


def consistent_effect(root: Path, n_tasks: int, n_methods: int = 5) -> Path:
    """N tasks (distinct datasets) x k methods where every task orders the methods the same way."""
    names = ["random", *[f"m{i}" for i in range(1, n_methods)]]
    levels = {name: 0.30 + 0.05 * i for i, name in enumerate(names)}
    return make_results(
        root, {f"D{t}": (1,) for t in range(n_tasks)}, methods=tuple(names), levels=levels, seed_sd=0.002
    )


def png_dpi(path: Path) -> float:
    """Horizontal resolution from a PNG's pHYs chunk (pixels per metre -> dots per inch)."""
    data = path.read_bytes()
    start = data.index(b"pHYs") + 4
    pixels_per_unit, _, unit = struct.unpack(">IIB", data[start : start + 9])
    assert unit == 1  # metre
    return pixels_per_unit * 0.0254
