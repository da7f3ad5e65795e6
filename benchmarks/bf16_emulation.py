"""How much slower bf16 autocast is where the CPU has no native bf16, measured on one CPU.

oneDNN can be held below the CPU's instruction set (``ONEDNN_MAX_CPU_ISA``): ``AVX512_CORE`` is
AVX-512 without BF16 or AMX, the Intel Xeon case where ``--precision bf16`` is now refused; the
default uses everything the CPU has. Each child process times the same unit, a ConvNet-128
forward and backward on 256 FashionMNIST-sized images (DM's real batch), in fp32 and under bf16
autocast, alternating, and prints one JSON line::

    .venv/bin/python benchmarks/bf16_emulation.py     # writes benchmarks/bf16_emulation.json
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, statistics, time, torch
from dcbench.api import ConvNet, make_generator
from dcbench.nn.networks import init_parameters
torch.set_num_threads(2)
net = init_parameters(ConvNet(1, 10, (28, 28)), make_generator(0, "bf16"))
x = torch.randn(256, 1, 28, 28, generator=make_generator(0, "x"))
def step(precision):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        loss = net(x).float().logsumexp(1).mean()
    loss.backward()
times = {"fp32": [], "bf16": []}
for _ in range(2):
    step("fp32"); step("bf16")
for _ in range(5):
    for precision in ("fp32", "bf16"):
        t = time.perf_counter(); step(precision); times[precision].append(time.perf_counter() - t)
print(json.dumps({p: {"min": min(v), "median": statistics.median(v)} for p, v in times.items()}))
"""


def measure(isa: str | None) -> dict[str, dict[str, float]]:
    env = {**os.environ}
    if isa:
        env["ONEDNN_MAX_CPU_ISA"] = isa
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    rows = []
    for isa in (None, "AVX512_CORE", "AVX2"):
        result = measure(isa)
        row = {
            "onednn_max_cpu_isa": isa or "(default: all the CPU has)",
            **{f"{p}_{k}_s": round(v, 4) for p, d in result.items() for k, v in d.items()},
            "bf16_over_fp32_median": round(result["bf16"]["median"] / result["fp32"]["median"], 2),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = Path(__file__).with_name("bf16_emulation.json")
    out.write_text(
        json.dumps(
            {"cpu": cpu_model(), "threads": 2, "unit": "ConvNet-128 fwd+bwd, 256 x 1x28x28", "rows": rows}, indent=1
        )
        + "\n"
    )
