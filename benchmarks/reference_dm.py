"""DM side by side with the reference script: seconds per iteration of main_DM.py's loop (the
reference's own ``get_network``, ``DiffAugment`` and loss, VICO-UoE/DatasetCondensation) and of
dcbench's ``dm`` at paper settings, on FashionMNIST at the same IPC, alternating in fresh processes.

    git clone https://github.com/VICO-UoE/DatasetCondensation /tmp/DatasetCondensation
    python benchmarks/reference_dm.py --reference /tmp/DatasetCondensation --ipc 1 --rounds 3 --threads 2

The reference side runs main_DM.py's training loop body (main_DM.py lines 136-193 at 53f63a6: a
fresh ConvNet, DSA with the script's default strategy on 256 real and IPC synthetic images per
class, the mean-embedding loss, one SGD step on the images) on the same normalised images dcbench
loads; its evaluations and image saving are left out, as dcbench's timing leaves out its own.
The dcbench side is ``benchmarks/speed.py``'s DM worker. Each round times ``--iterations``
iterations after one warm-up, per side; the table gives min / median seconds per iteration over
all rounds and the ratio of the medians; the raw numbers go to ``benchmarks/raw/``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _reference_module(reference: Path, name: str, fixes: list[tuple[str, str]]) -> types.ModuleType:
    """The reference's ``name``.py with ``fixes`` (regex, replacement) applied, registered as
    ``name``: two lines torch 2 refuses, rewritten to the same values (the Siamese ``x[:] = x[0]``,
    an in-place copy of a tensor onto itself, as ``x[:] = x[0].clone()``; ``out.view(n, -1)`` of
    a non-contiguous feature map as ``out.reshape(n, -1)``, which copies only when it must)."""
    path = reference / f"{name}.py"
    source = path.read_text()
    for pattern, replacement in fixes:
        source = re.sub(pattern, replacement, source, flags=re.M)
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module
    exec(compile(source, str(path), "exec"), module.__dict__)  # noqa: S102 - the reference's own code
    return module


def reference_worker(reference: Path, ipc: int, iterations: int, threads: int) -> list[float]:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    _reference_module(reference, "networks", [(r"\.view\(out\.size\(0\), -1\)", ".reshape(out.size(0), -1)")])
    utils = _reference_module(reference, "utils", [(r"^(\s+)(\w+)\[:\] = (\2)\[0\]$", r"\1\2[:] = \2[0].clone()")])
    DiffAugment, ParamDiffAug, get_network = utils.DiffAugment, utils.ParamDiffAug, utils.get_network

    from dcbench.data.builtin import load_fashion_mnist

    real = load_fashion_mnist(None)
    images_all, labels_all = real.train_images, real.train_labels
    channel, num_classes, im_size = real.channels, real.num_classes, tuple(real.image_size)
    indices_class = [torch.nonzero(labels_all == c).flatten().tolist() for c in range(num_classes)]
    np.random.seed(0)  # the reference draws its batches from NumPy's global generator

    def get_images(c: int, n: int) -> torch.Tensor:
        return images_all[np.random.permutation(indices_class[c])[:n]]

    image_syn = torch.cat([get_images(c, ipc) for c in range(num_classes)]).clone().requires_grad_(True)
    optimizer_img = torch.optim.SGD([image_syn], lr=1.0, momentum=0.5)
    strategy, param = "color_crop_cutout_flip_scale_rotate", ParamDiffAug()
    times = []
    for it in range(iterations + 1):
        start = time.perf_counter()
        net = get_network("ConvNet", channel, num_classes, im_size)
        net.train()
        for p in net.parameters():
            p.requires_grad = False
        loss = torch.tensor(0.0)
        for c in range(num_classes):
            img_real = get_images(c, 256)
            img_syn = image_syn[c * ipc : (c + 1) * ipc].reshape((ipc, channel, *im_size))
            seed = 1000 * it + c  # the script seeds from the clock; the work is the same
            img_real = DiffAugment(img_real, strategy, seed=seed, param=param)
            img_syn = DiffAugment(img_syn, strategy, seed=seed, param=param)
            output_real = net.embed(img_real).detach()
            output_syn = net.embed(img_syn)
            loss += torch.sum((torch.mean(output_real, dim=0) - torch.mean(output_syn, dim=0)) ** 2)
        optimizer_img.zero_grad()
        loss.backward()
        optimizer_img.step()
        loss.item()
        times.append(time.perf_counter() - start)
    return times[1:]  # the first is warm-up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True, help="a checkout of VICO-UoE/DatasetCondensation")
    parser.add_argument("--ipc", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations per round and side")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(reference_worker(args.reference, args.ipc, args.iterations, args.threads)))
        return
    common = ["--ipc", str(args.ipc), "--iterations", str(args.iterations), "--threads", str(args.threads)]
    sides = {
        "reference": [sys.executable, __file__, "--worker", "--reference", str(args.reference), *common],
        "dcbench": [sys.executable, str(HERE / "speed.py"), "--worker", "method", "dm", str(args.ipc)]
        + ["--repeats", str(args.iterations), "--threads", str(args.threads)],
    }
    seconds: dict[str, list[float]] = {side: [] for side in sides}
    for _ in range(args.rounds):
        for side, cmd in sides.items():  # A/B alternating
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
            if side == "dcbench":
                # speed.py reports a summary; one process's min and median stand for its iterations
                seconds[side] += [result["seconds"]["min"], result["seconds"]["median"]]
            else:
                seconds[side] += result
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    medians = {side: statistics.median(v) for side, v in seconds.items()}
    print(f"# {cpu}, {args.threads} threads, DM at paper settings, FashionMNIST IPC {args.ipc}")
    for side, values in seconds.items():
        print(f"{side:9s} {min(values):.2f} / {medians[side]:.2f} s per iteration (min / median)")
    print(f"dcbench / reference (medians): {medians['dcbench'] / medians['reference']:.2f}x")
    (HERE / "raw").mkdir(exist_ok=True)
    path = HERE / "raw" / f"reference-dm-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.write_text(json.dumps({"cpu": cpu, **{k: str(v) for k, v in vars(args).items()}, "seconds": seconds}))
    print(f"# raw results: {path}")


if __name__ == "__main__":
    main()
