"""Choose a method's `quick` hyperparameters on a validation split of the TRAINING set.

Never the test set: the training set is split (stratified, seeded) into a condensation part and a
validation part; every candidate condenses from the first and is evaluated, with the quick
protocol, on the second. The test set is not loaded into the evaluation at all (the split's
"test" images are the validation images). Seeds default to 100, 101, so the reported benchmark
seeds (0, 1, 2) are not used for selection either.

Every candidate of the grid (the cartesian product of the ``--grid`` values on top of the preset)
is run at every IPC and seed; its condensation seconds are recorded next to its validation
accuracy, so a budget can be enforced: with ``--budget S`` only candidates whose mean condensation
time per cell is within ±``--tolerance`` (25%) of S are eligible. The chosen candidate is the
eligible one with the best mean validation accuracy over IPCs and seeds (ties: the cheaper).

Outputs (``--out``, default ``benchmarks/selection``): ``<method>-<dataset>.csv`` (one row per
candidate, IPC and seed) and ``<method>-<dataset>.md`` (one row per candidate, the choice marked,
the command that made it). Example (the real sweep is CPU-heavy: run it on a quiet machine)::

    .venv/bin/python benchmarks/select_quick.py dm --grid iterations=40,60,100 --grid lr_img=1,3,10 \\
        --budget 20
    # a smoke test: a tiny grid, tiny split, two epochs
    .venv/bin/python benchmarks/select_quick.py random --preset smoke --grid net_width=8,16 --ipcs 1 \\
        --seeds 100 --train 100 --val 50 --epochs 2 --out /tmp/selection
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from dcbench.data.real import RealDataset
from dcbench.evaluation import Protocol, evaluate_synthetic
from dcbench.host.compat import tomllib
from dcbench.host.errors import DcbenchError
from dcbench.method.condense import condense
from dcbench.method.contract import CondenseContext
from dcbench.method.seeding import make_generator
from dcbench.plugins import load_plugins

DEFAULT_OUT = Path(__file__).resolve().parent / "selection"


def validation_split(real: RealDataset, n_train: int, n_val: int, seed: int) -> RealDataset:
    """A dataset whose training images are ``n_train`` of ``real``'s training images and whose
    "test" images are ``n_val`` *other* training images (stratified: equal numbers per class)."""
    k = real.num_classes
    train_per_class, val_per_class = n_train // k, n_val // k
    if train_per_class < 1 or val_per_class < 1:
        raise DcbenchError(
            f"--train {n_train} and --val {n_val} must each give at least one image per class ({k} classes)"
        )
    generator = make_generator(seed, "validation-split")
    train, val = [], []
    for c, indices in enumerate(real.indices_by_class):
        if len(indices) < train_per_class + val_per_class:
            raise DcbenchError(
                f"class {c} of {real.name} has {len(indices)} training images, fewer than "
                f"{train_per_class} + {val_per_class}; lower --train / --val"
            )
        shuffled = indices[torch.randperm(len(indices), generator=generator).to(indices.device)]
        val.append(shuffled[:val_per_class])
        train.append(shuffled[val_per_class : val_per_class + train_per_class])
    train_index, val_index = torch.cat(train).sort().values, torch.cat(val).sort().values
    return RealDataset(
        real.name,
        real.train_images[train_index],
        real.train_labels[train_index],
        real.train_images[val_index],
        real.train_labels[val_index],
        real.mean,
        real.std,
        real.class_names,
    )


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``key=v1,v2`` items (values as TOML: numbers, booleans, quoted or bare strings)."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip() or not raw.strip():
            raise DcbenchError(f"--grid expects key=v1,v2,..., got {item!r}")
        values = []
        for text in raw.split(","):
            try:
                values.append(tomllib.loads(f"v = {text.strip()}")["v"])
            except tomllib.TOMLDecodeError:
                values.append(text.strip())  # a bare word is a string
        grid[key.strip()] = values
    return grid


def candidates(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = sorted(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))] or [{}]


def describe(candidate: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in candidate.items()) or "(preset)"


def run(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame]:
    registry = load_plugins()
    method = registry.method(args.method)
    grid = parse_grid(args.grid or [])
    for candidate in candidates(grid):
        method.make_config(args.preset, candidate)  # a bad key or value fails before any work
    device = torch.device(args.device)
    real = registry.dataset(args.dataset).loader(Path(args.data_root) if args.data_root else None)
    split = validation_split(real, args.train, args.val, args.split_seed).to(device)
    del real  # the test set goes no further
    overrides = {k: v for k, v in (("models", args.models), ("epochs", args.epochs)) if v is not None}
    protocol = Protocol.for_preset(args.preset, args.dataset, args.augmentation, "ConvNet", **overrides)
    rows = []
    ctx = CondenseContext(device=device, architectures=registry.architectures)
    for number, candidate in enumerate(candidates(grid)):
        for ipc in args.ipcs:
            for seed in args.seeds:
                ctx.metrics.clear()
                condensed = condense(method, split, ipc, seed, args.preset, candidate, ctx)
                evaluation = evaluate_synthetic(
                    condensed.synthetic, split, protocol, seed, device, registry.architecture(protocol.arch)
                )
                rows.append(
                    {
                        "candidate": number,
                        "settings": describe(candidate),
                        **candidate,
                        "ipc": ipc,
                        "seed": seed,
                        "val_acc": 100 * evaluation.mean,
                        "condense_s": condensed.seconds,
                        "eval_s": evaluation.seconds,
                        "protocol": protocol.name,
                    }
                )
                print(
                    f"[{number + 1}/{len(candidates(grid))}] {describe(candidate)} IPC {ipc} seed {seed}: "
                    f"{100 * evaluation.mean:.1f}% validation, {condensed.seconds:.1f} s condensation",
                    file=sys.stderr,
                    flush=True,
                )
    results = pd.DataFrame(rows)
    return results, summarise(results, args.budget, args.tolerance)


def summarise(results: pd.DataFrame, budget: float | None, tolerance: float) -> pd.DataFrame:
    """One row per candidate: validation accuracy and condensation seconds per IPC and overall,
    whether it fits the budget, and the choice."""
    per_ipc = results.pivot_table(
        index=["candidate", "settings"], columns="ipc", values=["val_acc", "condense_s"], aggfunc="mean"
    )
    per_ipc.columns = [f"{name} IPC {ipc}" for name, ipc in per_ipc.columns]
    overall = results.groupby(["candidate", "settings"])[["val_acc", "condense_s"]].mean()
    summary = per_ipc.join(overall.add_suffix(" mean"))
    summary = summary[sorted(summary.columns, key=lambda c: (not c.startswith("val_acc"), c.endswith("mean")))]
    summary = summary.reset_index().rename(columns={"val_acc mean": "val_acc", "condense_s mean": "condense_s"})
    summary["eligible"] = True if budget is None else (summary["condense_s"] - budget).abs() <= tolerance * budget
    eligible = summary[summary["eligible"]].sort_values(["val_acc", "condense_s"], ascending=[False, True])
    summary["chosen"] = summary["candidate"] == (eligible["candidate"].iloc[0] if len(eligible) else -1)
    return summary


def markdown(summary: pd.DataFrame, args: argparse.Namespace, command: str) -> str:
    budget = (
        f"budget {args.budget:g} s ± {100 * args.tolerance:.0f}% mean condensation time per cell"
        if args.budget is not None
        else "no budget"
    )
    value_columns = [c for c in summary.columns if c.startswith(("val_acc", "condense_s"))]
    shown = {"val_acc": "val_acc (mean)", "condense_s": "condense_s (mean)"}
    header = ["settings", *(shown.get(c, c) for c in value_columns), "eligible", "chosen"]
    lines = [
        f"# `{args.method}` quick hyperparameters on a validation split ({args.dataset})",
        "",
        f"Condensation on {args.train} training images, validation accuracy (%) on {args.val} other "
        f"training images (stratified split, seed {args.split_seed}); the test set is not used. Preset "
        f"`{args.preset}` plus the settings below; seeds {', '.join(map(str, args.seeds))}; IPCs "
        f"{', '.join(map(str, args.ipcs))}; evaluation protocol `{summary.attrs.get('protocol', '')}`; "
        f"{budget}. Chosen: the eligible candidate with the best mean validation accuracy.",
        "",
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * len(value_columns) + "---|---|",
    ]
    for _, row in summary.iterrows():
        cells = [
            row["settings"],
            *(f"{row[c]:.1f}" for c in value_columns),
            "yes" if row["eligible"] else "no",
            "**chosen**" if row["chosen"] else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", f"Made with: `{command}`", ""])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("method")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--grid", action="append", metavar="KEY=V1,V2", help="values to try (repeatable)")
    parser.add_argument("--preset", default="quick", choices=("smoke", "quick", "paper"))
    parser.add_argument("--ipcs", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101])
    parser.add_argument("--train", type=int, default=50000, help="training images to condense from")
    parser.add_argument("--val", type=int, default=10000, help="other training images to validate on")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument(
        "--augmentation",
        default="none",
        choices=("none", "dsa", "dc"),
        help="evaluation augmentation (default: the default benchmark's, none)",
    )
    parser.add_argument("--models", type=int, help="evaluation models (default: the preset's)")
    parser.add_argument("--epochs", type=int, help="evaluation epochs (default: the preset's)")
    parser.add_argument("--budget", type=float, help="target mean condensation seconds per cell")
    parser.add_argument("--tolerance", type=float, default=0.25, help="allowed relative deviation from --budget")
    parser.add_argument("--data-root")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = "benchmarks/select_quick.py " + " ".join(map(shlex.quote, argv if argv is not None else sys.argv[1:]))
    try:
        start = time.perf_counter()
        results, summary = run(args)
    except DcbenchError as exc:
        print(f"select_quick: error: {exc}", file=sys.stderr)
        return 2
    summary.attrs["protocol"] = results["protocol"].iloc[0]
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"{args.method}-{args.dataset}"
    results.to_csv(stem.with_suffix(".csv"), index=False)
    stem.with_suffix(".md").write_text(markdown(summary, args, command))
    chosen = summary[summary["chosen"]]
    print(
        f"chosen: {chosen['settings'].iloc[0] if len(chosen) else 'none (no candidate fits the budget)'}; "
        f"{len(results)} cells in {time.perf_counter() - start:.0f} s -> {stem}.md"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
