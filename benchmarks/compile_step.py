"""One evaluation training step (forward, backward, SGD) of a single ConvNet, eager and compiled,
alternating in one process: the per-step figure that ``speed.py --eval`` (a difference of two
evaluations, each with a test pass) cannot resolve at paper width.

    python benchmarks/compile_step.py --width 128 --images 100 --threads 2
    python benchmarks/compile_step.py --width 128 --images 256 --embed   # DM's real-side pass instead

Prints min / median milliseconds per step over ``--rounds`` rounds of 10 steps each (after two
warm-up steps, which include the compile) and writes them to ``benchmarks/raw/``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from dcbench.method.seeding import make_generator
from dcbench.nn.compiling import compiled
from dcbench.nn.networks import BUILTIN_ARCHITECTURES, build_network

RAW = Path(__file__).resolve().parent / "raw"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--embed", action="store_true", help="time a no-grad embed() of the images (DM's real side), not a step"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    arch = {a.name: a for a in BUILTIN_ARCHITECTURES}["ConvNet"]
    gen = make_generator(0, "compile-step")
    x, y = torch.randn(args.images, 1, 28, 28, generator=gen), torch.randint(0, 10, (args.images,), generator=gen)
    steps = {}
    for mode in ("eager", "compiled"):
        net = build_network(arch, 1, 10, (28, 28), make_generator(0, "compile-step-net"), width=args.width)
        forward = net.embed if args.embed else net
        steps[mode] = (compiled(forward) if mode == "compiled" else forward, torch.optim.SGD(net.parameters(), lr=0.01))

    def step(mode: str) -> None:
        forward, optimizer = steps[mode]
        if args.embed:
            with torch.no_grad():
                forward(x)
            return
        loss = F.cross_entropy(forward(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for mode in steps:  # warm-up: the compile, and the allocator's first sizes
        step(mode)
        step(mode)
    seconds: dict[str, list[float]] = {mode: [] for mode in steps}
    for _ in range(args.rounds):
        for mode in steps:  # A/B alternating
            start = time.perf_counter()
            for _ in range(10):
                step(mode)
            seconds[mode].append((time.perf_counter() - start) / 10)
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    out = {"cpu": cpu, **vars(args), "ms_per_step": {m: [1e3 * s for s in v] for m, v in seconds.items()}}
    unit = "embed" if args.embed else "step"
    for mode, values in seconds.items():
        print(
            f"ConvNet-{args.width} {unit}, {args.images} images, {args.threads} threads, {mode}: "
            f"{1e3 * min(values):.1f} / {1e3 * statistics.median(values):.1f} ms per {unit} (min / median)"
        )
    RAW.mkdir(exist_ok=True)
    path = RAW / f"compile-{unit}-{args.width}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"# raw results: {path}")


if __name__ == "__main__":
    main()
