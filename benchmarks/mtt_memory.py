"""Peak memory and seconds of one MTT iteration at the reference's settings (the unrolled steps).

One iteration of ``distill.py`` at its defaults: a ConvNet-128 student unrolled ``syn_steps`` = 20
SGD steps on all IPC x classes synthetic images with the graph kept, then the matching loss
back-propagated to the images and the step size. The student starts from random parameters (the
memory does not depend on which snapshot it starts from). Prints one JSON line per shape::

    .venv/bin/python benchmarks/mtt_memory.py            # CIFAR-10 (3x32x32) and FashionMNIST (1x28x28), IPC 1 and 10
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from dcbench.api import ConvNet, augment, make_generator
from dcbench.nn.networks import init_parameters
from dcbench_mtt.experts import MTT_DSA_STRATEGY
from dcbench_mtt.matching import FlatStudent, trajectory_matching_loss, unroll_student


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_iteration(channels: int, side: int, ipc: int, syn_steps: int = 20) -> dict[str, float]:
    before = peak_rss_mb()
    net = init_parameters(ConvNet(channels, 10, (side, side)), make_generator(0, "mem"))
    student = FlatStudent(net)
    start = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    images = torch.randn(10 * ipc, channels, side, side, generator=make_generator(0, "img")).requires_grad_(True)
    labels = torch.arange(10).repeat_interleave(ipc)
    lr = torch.tensor(0.01, requires_grad=True)
    t = time.perf_counter()
    end = unroll_student(
        student,
        start,
        images,
        labels,
        lr,
        syn_steps,
        len(images),
        lambda x, g: augment(x, MTT_DSA_STRATEGY, g),
        make_generator(0, "u"),
    )
    trajectory_matching_loss(end, start, start + 0.01).backward()
    return {
        "shape": f"{channels}x{side}x{side}",
        "ipc": ipc,
        "syn_steps": syn_steps,
        "parameters": student.count,
        "seconds": round(time.perf_counter() - t, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_before_mb": round(before, 1),
        "threads": torch.get_num_threads(),
    }


if __name__ == "__main__":
    if len(sys.argv) == 4:  # one shape, in its own process: its peak is its own
        print(json.dumps(one_iteration(*map(int, sys.argv[1:]))), flush=True)
        sys.exit(0)
    for channels, side in ((3, 32), (1, 28)):
        for ipc in (1, 10):
            subprocess.run([sys.executable, __file__, str(channels), str(side), str(ipc)], check=True)
