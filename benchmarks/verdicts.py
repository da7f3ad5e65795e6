"""Validity and power of the report's within-task verdicts on simulated grids.

    python benchmarks/verdicts.py [--grids 4000] [--out benchmarks/verdicts]

Simulates grids of the default benchmark's shape (7 methods, FashionMNIST IPC 1 and IPC 10, the
spread measured on the 3-seed x 2-network reference of 2026-11-25: see TASKS below) under the model
of :mod:`dcbench.stats.simulation`, and applies the report's family (every pair, paired t or Welch,
Holm over both tasks) to each. Writes ``verdicts.json`` (raw figures) and ``verdicts.md`` (table).
Pure numpy/scipy: the figures do not depend on the CPU.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from dcbench import stats
from dcbench.stats.simulation import TaskModel, simulate_verdicts

METHODS = ("cafe", "cafe_dsa", "dc", "dm", "dsa", "herding", "random")
# Spread (points) read from results/reference/fashion-mnist-quick as committed on 2026-11-25
# (3 seeds x 2 networks): random's seed SD 1.9 (IPC 1) / 2.0 (IPC 10), the condensation methods'
# 0.3-1.3 / 0.2-0.9; networks within a seed 0.6-1.7 / 0.2-0.6.
TASKS = {
    "IPC 1": {"random_seed_sd": 1.9, "loading": 0.6, "method_seed_sd": 0.5, "network_sd": 1.2},
    "IPC 10": {"random_seed_sd": 2.0, "loading": 0.55, "method_seed_sd": 0.3, "network_sd": 0.45},
}
DESIGNS = ((3, 2), (6, 1), (10, 1))  # seeds x networks: the old quick grid, the new one, a larger one


def task_model(name: str, effects: dict[str, float] | None = None) -> TaskModel:
    spread = TASKS[name]
    return TaskModel(
        means={m: (effects or {}).get(m, 0.0) for m in METHODS},
        loading={m: spread["random_seed_sd"] if m == "random" else spread["loading"] for m in METHODS},
        method_seed_sd=spread["method_seed_sd"],
        network_sd=spread["network_sd"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grids", type=int, default=4000)
    parser.add_argument("--out", default=str(Path(__file__).parent / "verdicts"))
    args = parser.parse_args()
    null = [task_model("IPC 1"), task_model("IPC 10")]
    effect = [task_model("IPC 1"), task_model("IPC 10", {"dm": 1.0})]
    family = len(null) * len(METHODS) * (len(METHODS) - 1) // 2
    rows = []
    for seeds, networks in DESIGNS:
        for paired in (True, False):
            rng = np.random.default_rng(20261203)
            type_one = simulate_verdicts(null, seeds, networks, args.grids, paired, rng=rng).any_rejection()
            selected = simulate_verdicts(
                null, seeds, networks, args.grids, paired, rng=rng, best_and_reference_only="random"
            ).any_rejection()
            found = simulate_verdicts(effect, seeds, networks, args.grids, paired, rng=rng)
            rows.append(
                {
                    "seeds": seeds,
                    "networks": networks,
                    "test": "paired t" if paired else "Welch t",
                    "family_error_all_pairs": type_one,
                    "family_error_best_and_reference_only": selected,
                    "power_dm_vs_dc_1_point": found.rejection_rate(1, "dm", "dc"),
                    "power_dm_vs_random_1_point": found.rejection_rate(1, "dm", "random"),
                }
            )
    ipc10 = TASKS["IPC 10"]  # a seed's gain over random with one network: (loadings) S + E - E' + N - N'
    sd_gain = math.sqrt(
        (ipc10["random_seed_sd"] - ipc10["loading"]) ** 2
        + 2 * ipc10["method_seed_sd"] ** 2
        + 2 * ipc10["network_sd"] ** 2
    )
    result = {
        "grids": args.grids,
        "alpha": 0.05,
        "family_size": family,
        "rows": rows,
        "seeds_for_1_point_vs_random_ipc10": stats.seeds_needed(sd_gain, 1.0, 0.05 / family),
        "sd_of_a_seeds_gain_over_random_ipc10": sd_gain,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "verdicts.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"Simulated grids: {args.grids} per row, 7 methods x 2 tasks, Holm over {family} pairs, α = 0.05 "
        "(`python benchmarks/verdicts.py`).",
        "",
        "| seeds × networks | test | family error, all pairs | family error, vs best + vs random only "
        "| power dm − dc = 1 pt (IPC 10) | power dm − random = 1 pt |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['seeds']} × {row['networks']} | {row['test']} | {row['family_error_all_pairs']:.3f} | "
            f"{row['family_error_best_and_reference_only']:.3f} | {row['power_dm_vs_dc_1_point']:.3f} | "
            f"{row['power_dm_vs_random_1_point']:.3f} |"
        )
    (out / "verdicts.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
