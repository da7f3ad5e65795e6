"""The GPU check: one command, at most about 8 minutes on one GPU, that prints what dcbench does there.

Run it whenever a GPU machine is at hand (it needs no dataset: the images are random, of CIFAR-10's
shape, so only speed and agreement are measured, not accuracy)::

    .venv/bin/python benchmarks/gpu_check.py            # on a machine with CUDA; writes gpu_check.json
    .venv/bin/python benchmarks/gpu_check.py --dry-run  # anywhere: what it would check, each check run
                                                        # at toy size on the CPU to prove the script works

Checks, one row each:

1. ``auto`` picks CUDA (``dcbench.host.devices.resolve_device``).
2. Every installed method condenses a few iterations at its ``paper`` settings: seconds per
   iteration and peak GPU memory (``torch.cuda.max_memory_allocated``).
3. Stacked (vmapped) and sequential evaluation of the same K networks agree, and their speeds.
4. bf16 autocast on CUDA: native (``native_bf16("cuda")``) and a DM iteration's speed-up.
5. The same seed twice gives bitwise the same set with ``torch.use_deterministic_algorithms(True)``
   (``dcbench.host.runtime.deterministic_algorithms``, what ``dcbench run --deterministic`` sets).
6. The conformance kit on ``cuda`` for every installed method.
7. Compiled evaluation (``--compile on``): agreement with eager, the compile seconds and the speed
   of a second compiled run (``auto`` compiles nowhere on a GPU until this row has shown it pays).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dcbench.data.real import RealDataset
from dcbench.evaluation import Protocol, evaluate_synthetic
from dcbench.host.devices import resolve_device
from dcbench.host.runtime import deterministic_algorithms, native_bf16
from dcbench.method.condense import condense
from dcbench.method.contract import CondenseContext
from dcbench.method.seeding import make_generator
from dcbench.plugins import load_plugins
from dcbench.testing import ConformanceSuite

#: config fields that count a method's outer iterations, set to a few for the timing
ITERATION_FIELDS = ("iterations",)
#: the trajectory methods' experts at paper settings are 100 x 50 epochs: two are enough to time them
EXTRA_OVERRIDES = {"mtt": {"experts": 2}, "datm": {"experts": 2}}


def random_cifar(per_class: int, device: torch.device, classes: int = 10) -> RealDataset:
    """Random images of CIFAR-10's shape, class-balanced (speed, not accuracy)."""
    g = make_generator(0, "gpu-check-data")
    n = classes * per_class
    images = torch.randn(n, 3, 32, 32, generator=g)
    labels = torch.arange(classes).repeat_interleave(per_class)
    test_n = min(n, 1000)
    return RealDataset(
        "random-cifar",
        images,
        labels,
        images[:test_n].clone(),
        labels[:test_n].clone(),
        (0.5, 0.5, 0.5),
        (0.25, 0.25, 0.25),
        tuple(f"c{c}" for c in range(classes)),
    ).to(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - start


def check_auto(device: torch.device, dry: bool) -> dict[str, Any]:
    picked = resolve_device("auto")
    ok = picked.type == "cuda" or dry
    return {"check": "auto picks CUDA", "ok": ok, "detail": f"auto -> {picked}"}


def check_methods(device: torch.device, dry: bool, iterations: int) -> list[dict[str, Any]]:
    registry = load_plugins()
    real = random_cifar(10 if dry else 500, device)
    rows = []
    for name, method in sorted(registry.methods.items()):
        if method.reference_only:
            continue
        preset = "smoke" if dry else "paper"
        fields = set(method.make_config(preset).__dataclass_fields__)
        overrides = {f: iterations for f in ITERATION_FIELDS if f in fields}
        if not dry:
            overrides.update(EXTRA_OVERRIDES.get(name, {}))
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        try:
            ctx = CondenseContext(device=device, architectures=registry.architectures)
            ipc = 1 if dry else 10
            out, _ = timed(
                lambda m=method, c=ctx, o=overrides, p=preset, k=ipc: condense(m, real, k, 0, p, o, c), device
            )
            per_iteration = out.seconds / max(1, overrides.get("iterations", 1))
            peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
            rows.append(
                {
                    "check": f"{name} condenses ({preset}, IPC {ipc})",
                    "ok": True,
                    "detail": f"{per_iteration:.3f} s/iteration"
                    + (f", peak {peak:.0f} MiB" if peak is not None else ""),
                }
            )
        except Exception as exc:  # noqa: BLE001 - the table reports every failure and goes on
            rows.append({"check": f"{name} condenses", "ok": False, "detail": f"{type(exc).__name__}: {exc}"})
    return rows


def check_stacked_evaluation(device: torch.device, dry: bool) -> dict[str, Any]:
    real = random_cifar(10, device)
    synthetic = load_plugins().method("random")
    made = condense(synthetic, real, 10 if not dry else 2, 0, "smoke", None, CondenseContext(device=device)).synthetic
    protocol = Protocol.for_preset(
        "smoke" if dry else "quick", models=4 if not dry else 2, **({"epochs": 20} if not dry else {})
    )
    stacked, t_stacked = timed(lambda: evaluate_synthetic(made, real, protocol, 0, device, stacked=True), device)
    sequential, t_seq = timed(lambda: evaluate_synthetic(made, real, protocol, 0, device, stacked=False), device)
    gap = max(abs(a - b) for a, b in zip(stacked.test_accs, sequential.test_accs))
    return {
        "check": "stacked vs sequential evaluation",
        "ok": gap <= 0.02,
        "detail": f"max |Δ acc| {gap:.4f}; stacked {t_stacked:.2f} s, sequential {t_seq:.2f} s",
    }


def check_compiled_evaluation(device: torch.device, dry: bool) -> dict[str, Any]:
    real = random_cifar(10, device)
    made = condense(
        load_plugins().method("random"), real, 10 if not dry else 2, 0, "smoke", None, CondenseContext(device=device)
    ).synthetic
    options: dict[str, Any] = {"models": 4, "epochs": 20} if not dry else {"models": 1}
    eager_protocol = Protocol.for_preset("smoke" if dry else "quick", **options)
    compiled_protocol = Protocol.for_preset("smoke" if dry else "quick", compiled=True, **options)
    eager, t_eager = timed(lambda: evaluate_synthetic(made, real, eager_protocol, 0, device), device)
    first, t_first = timed(lambda: evaluate_synthetic(made, real, compiled_protocol, 0, device), device)
    second, t_second = timed(lambda: evaluate_synthetic(made, real, compiled_protocol, 0, device), device)
    gap = max(abs(a - b) for a, b in zip(eager.test_accs, second.test_accs))
    return {
        "check": "compiled evaluation",
        "ok": gap <= 0.02 and first.test_accs == second.test_accs,
        "detail": f"max |Δ acc| vs eager {gap:.4f}; eager {t_eager:.2f} s, compiled {t_second:.2f} s "
        f"(first run {t_first:.2f} s, with the compile)",
    }


def check_bf16(device: torch.device, dry: bool) -> dict[str, Any]:
    native = native_bf16(device.type)
    if not native:
        return {"check": "bf16 autocast", "ok": dry, "detail": f"not native on {device.type}: refused by dcbench"}
    real = random_cifar(10 if dry else 500, device)
    method = load_plugins().method("dm")
    preset, overrides = ("smoke", None) if dry else ("paper", {"iterations": 5})
    times = {}
    for precision in ("fp32", "bf16", "fp32", "bf16"):
        _, seconds = timed(
            lambda p=precision: condense(
                method, real, 1, 0, preset, overrides, CondenseContext(device=device), precision=p
            ),
            device,
        )
        times.setdefault(precision, []).append(seconds)
    ratio = min(times["fp32"]) / min(times["bf16"])
    return {"check": "bf16 autocast", "ok": True, "detail": f"native; DM {ratio:.2f}x the fp32 speed"}


def check_determinism(device: torch.device, dry: bool) -> dict[str, Any]:
    real = random_cifar(10, device)
    method = load_plugins().method("dc")
    try:
        # the option `dcbench run --deterministic` sets (cuBLAS's workspace setting included)
        with deterministic_algorithms(True, device.type):
            sets = [
                condense(method, real, 1, 0, "smoke", None, CondenseContext(device=device)).synthetic.images
                for _ in range(2)
            ]
    except RuntimeError as exc:
        return {"check": "same seed twice, deterministic algorithms", "ok": False, "detail": str(exc)[:200]}
    same = torch.equal(sets[0], sets[1])
    return {
        "check": "same seed twice, deterministic algorithms",
        "ok": same,
        "detail": "bitwise equal" if same else "sets differ",
    }


def check_conformance(device: torch.device, dry: bool) -> list[dict[str, Any]]:
    registry = load_plugins()
    rows = []
    names = sorted(n for n, m in registry.methods.items() if not m.reference_only)
    for name in names[:1] if dry else names:
        suite = ConformanceSuite(registry.methods[name], devices=[str(device)], smoke_seconds=60)
        try:
            suite.run("device")
            rows.append({"check": f"conformance on {device.type}: {name}", "ok": True, "detail": "device check"})
        except AssertionError as exc:
            rows.append({"check": f"conformance on {device.type}: {name}", "ok": False, "detail": str(exc)[:200]})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="on any machine: toy sizes on the CPU")
    parser.add_argument("--iterations", type=int, default=3, help="outer iterations per method for the timing")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("gpu_check.json"))
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        print("no CUDA device here: run with --dry-run to see what would be checked")
        return 2
    device = torch.device("cuda" if cuda and not args.dry_run else "cpu")
    dry = args.dry_run
    rows = [
        check_auto(device, dry),
        *check_methods(device, dry, args.iterations),
        check_stacked_evaluation(device, dry),
        check_compiled_evaluation(device, dry),
        check_bf16(device, dry),
        check_determinism(device, dry),
        *check_conformance(device, dry),
    ]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (dry run: toy sizes)"
    print(f"dcbench GPU check on {name}, torch {torch.__version__}")
    print("| check | ok | detail |\n|---|---|---|")
    for row in rows:
        print(f"| {row['check']} | {'yes' if row['ok'] else 'NO'} | {row['detail']} |")
    if not dry:
        args.out.write_text(json.dumps({"device": name, "torch": torch.__version__, "rows": rows}, indent=1) + "\n")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
