"""dcbench speed harness: where condensation and evaluation time goes on this machine.

    python benchmarks/speed.py                      # every method at paper settings, IPC 1 and 10
    python benchmarks/speed.py --methods dm --ipcs 1 --repeats 5 --precision bf16
    python benchmarks/speed.py --eval               # evaluation throughput only
    python benchmarks/speed.py --quick-cell         # one quick cafe IPC-1 cell, alone and beside a busy process
    python benchmarks/speed.py --quick-grid         # a 6-cell quick `dcbench run`, alone and beside a busy process

Each measurement runs in a fresh subprocess (its own allocator state and peak RSS) and reports:
seconds per outer iteration (CAFE: per image step and per inner epoch, its two units of work),
warm-up excluded, min and median over ``--repeats``; the process's peak RSS; user and system CPU
seconds of the timed region and the system share; FLOPs per unit counted with
``torch.utils.flop_counter.FlopCounterMode`` and the fraction of this machine's fp32 matmul
throughput, measured in the same process. The table goes to stdout, everything to ``--json`` (by
default a new file under ``benchmarks/raw/``, committed beside the RESULTS.md tables it feeds).
Only public dcbench functions are called, so the same file measures an older checkout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

METHODS = ("dm", "dc", "dsa", "cafe", "cafe_dsa")
RAW = Path(__file__).resolve().parent / "raw"  # raw JSON of every run, beside RESULTS.md
SYSTEM_SHARE_LIMIT = 0.10


# --- measurement helpers (in the worker) ---------------------------------------------------------


def cpu_model() -> str:
    """The CPU's model name. The "of fp32 matmul" column is relative to this CPU's GEMM rate, which
    differs between CPUs far more than the memory-bound passes do (benchmarks/RESULTS.md). Read
    here, not through ``dcbench.host.devices``: the driver imports no dcbench, so it measures old checkouts."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_times() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def matmul_gflops(dtype_name: str = "float32", n: int = 2048, repeats: int = 5) -> float:
    """Best sustained GEMM rate (GFLOP/s) of this process's thread setting."""
    import torch

    dtype = getattr(torch, dtype_name)
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=gen).to(dtype), torch.randn(n, n, generator=gen).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def count_flops(fn: Callable[[], Any]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def precision_context(precision: str) -> contextlib.AbstractContextManager[None]:
    if precision == "fp32":
        return contextlib.nullcontext()
    from dcbench.host.runtime import autocast  # not in checkouts before --precision existed

    return autocast(precision, "cpu")


def summarise(times: list[float]) -> dict[str, float]:
    return {"min": min(times), "median": statistics.median(times), "n": len(times)}


class Timed:
    """Wall and CPU time of a region."""

    def __enter__(self) -> Timed:
        self.wall0, (self.user0, self.sys0) = time.perf_counter(), cpu_times()
        return self

    def __exit__(self, *exc: object) -> None:
        user, system = cpu_times()
        self.wall, self.user, self.system = time.perf_counter() - self.wall0, user - self.user0, system - self.sys0


# --- workers ---------------------------------------------------------------------------------------


def bench_iterations(method_name: str, ipc: int, repeats: int, precision: str) -> dict[str, Any]:
    """DM, DC, DSA: seconds per outer iteration of ``condense`` at paper settings."""
    from dcbench.data.builtin import load_fashion_mnist
    from dcbench.method.contract import CondenseContext
    from dcbench.plugins import load_plugins

    registry = load_plugins()
    method = registry.method(method_name)
    real = load_fashion_mnist(None)
    stamps: list[float] = []
    ctx = CondenseContext(on_progress=lambda step, total, metrics: stamps.append(time.perf_counter()))
    config = method.make_config("paper", {"iterations": 1})
    flops = count_flops(lambda: method.condense(real, ipc, config, 0, CondenseContext()))
    config = method.make_config("paper", {"iterations": repeats + 1})
    with precision_context(precision), Timed() as timed:
        start = time.perf_counter()
        method.condense(real, ipc, config, 0, ctx)
    per_iter = [b - a for a, b in zip([start, *stamps], stamps)][1:]  # the first is warm-up
    result = {
        "unit": "outer iteration",
        "seconds": summarise(per_iter),
        "flops": flops,
        "cpu_user_s": timed.user,
        "cpu_system_s": timed.system,
    }
    if method_name == "dm":
        result["forward"] = bench_dm_forward(real, method, precision, repeats)
    return result


def bench_dm_forward(real: Any, method: Any, precision: str, repeats: int) -> dict[str, Any]:
    """DM's real-side pass alone: the no-grad embedding of 256 images of each class."""
    import torch

    from dcbench.method.contract import CondenseContext
    from dcbench.method.seeding import make_generator
    from dcbench_dm import loss as dm_loss
    from dcbench_dm.method import sample_real_batches

    config = method.make_config("paper")
    net = CondenseContext().build_network("ConvNet", real, make_generator(0, "net", 0), width=128, depth=3)
    net.requires_grad_(False)
    batches = sample_real_batches(real, config.batch_real, make_generator(0, "real", 0))
    per_forward = max(1, getattr(config, "real_chunk", 4096) // config.batch_real)

    def forward() -> None:
        with torch.no_grad():
            dm_loss.embed_class_means(net.embed, batches, per_forward)

    flops = count_flops(forward)
    times = []
    with precision_context(precision):
        forward()
        for _ in range(repeats):
            start = time.perf_counter()
            forward()
            times.append(time.perf_counter() - start)
    return {"unit": "real forward (10 x 256 images)", "seconds": summarise(times), "flops": flops}


def bench_cafe(method_name: str, ipc: int, repeats: int, precision: str) -> dict[str, Any]:
    """CAFE's two units of work at paper settings: an image step (CAFE loss, backward, SGD step,
    accuracy query) and an inner epoch (SGD epoch on the synthetic set, accuracy query)."""
    import torch

    from dcbench.data.builtin import load_fashion_mnist
    from dcbench.method.contract import CondenseContext, class_major_labels, init_synthetic_images
    from dcbench.method.seeding import make_generator
    from dcbench.nn.augment import augment, dsa_strategy_for
    from dcbench.plugins import load_plugins
    from dcbench_cafe import bilevel
    from dcbench_cafe.losses import default_map_weights

    registry = load_plugins()
    method = registry.method(method_name)
    config = method.make_config("paper")
    real = load_fashion_mnist(None)
    strategy = dsa_strategy_for(real.name) if method_name == "cafe_dsa" else ""
    device = torch.device("cpu")
    images = init_synthetic_images(real, ipc, config.init, make_generator(0, "init")).requires_grad_(True)
    labels = class_major_labels(real.num_classes, ipc)
    image_opt = torch.optim.SGD([images], lr=config.lr_img, momentum=config.momentum_img)
    net = (
        CondenseContext()
        .build_network("ConvNet", real, make_generator(0, "net", 0), width=config.net_width, depth=config.net_depth)
        .train()
    )
    net_opt = torch.optim.SGD(net.parameters(), lr=config.lr_net)
    weights = default_map_weights(config.net_depth)
    gens = {name: make_generator(0, name, 0) for name in ("real", "query", "order", "dsa", "inner-dsa")}

    def query() -> None:
        bilevel.query_accuracy(net, real, config.query_per_class, gens["query"], device)

    def image_step() -> None:
        real_b, syn_b = bilevel.class_batches(
            real, images, ipc, config.batch_real, gens["real"], strategy, gens["dsa"], device
        )
        loss = bilevel.cafe_loss(net, real_b, syn_b, weights, config.embed_weight, config.inner_weight)
        image_opt.zero_grad(set_to_none=True)
        loss.backward(inputs=[images])
        image_opt.step()
        query()

    def inner_epoch() -> None:
        bilevel.train_epoch(
            net,
            net_opt,
            images.detach().clone(),
            labels,
            config.batch_train,
            gens["order"],
            lambda x: augment(x, strategy, gens["inner-dsa"]),
        )
        query()

    result: dict[str, Any] = {"unit": "image step / inner epoch"}
    for name, fn in (("image_step", image_step), ("inner_epoch", inner_epoch), ("query", query)):
        flops = count_flops(fn)
        times = []
        with precision_context(precision), Timed() as timed:
            fn()
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
        result[name] = {
            "seconds": summarise(times),
            "flops": flops,
            "cpu_user_s": timed.user,
            "cpu_system_s": timed.system,
        }
    result["seconds"] = result["image_step"]["seconds"]
    result["flops"] = result["image_step"]["flops"]
    result["cpu_user_s"] = sum(result[k]["cpu_user_s"] for k in ("image_step", "inner_epoch", "query"))
    result["cpu_system_s"] = sum(result[k]["cpu_system_s"] for k in ("image_step", "inner_epoch", "query"))
    return result


def bench_evaluation(
    width: int, models: int, ipc: int, epochs: int, precision: str, compiled: bool = False
) -> dict[str, Any]:
    """Evaluation protocol throughput: train seconds per epoch and one test pass (10,000 images);
    the whole evaluation of ``epochs`` epochs (at the quick preset's 150, a quick cell's); compiled,
    the compile seconds of the first run (graphs loaded from inductor's on-disk cache or built)
    apart from the rest."""
    from dcbench.data.builtin import load_fashion_mnist
    from dcbench.evaluation import Protocol, evaluate_synthetic
    from dcbench.method.seeding import make_generator
    from dcbench.method.synthetic import SyntheticSet

    real = load_fashion_mnist(None)
    images, labels = real.sample_per_class(ipc, make_generator(0, "bench-eval"))
    synthetic = SyntheticSet(images, labels)
    extra: dict[str, Any] = {"precision": precision} if precision != "fp32" else {}
    if compiled:
        extra["compiled"] = True

    def run(n_epochs: int) -> float:
        protocol = Protocol(epochs=n_epochs, models=models, arch_options={"width": width}, **extra)
        return evaluate_synthetic(synthetic, real, protocol, 0).seconds

    first = run(0)  # warm-up (and, compiled, the compile of the training and test graphs)
    with Timed() as timed:
        short, long = run(0), run(epochs)
    per_epoch = (long - short) / epochs
    return {
        "unit": "evaluation",
        "compiled": compiled,
        "train_s_per_epoch": per_epoch,
        "test_pass_s": max(short - per_epoch, 0.0),
        "evaluation_s": long,
        "epochs": epochs,
        "compile_s": max(first - short, 0.0) if compiled else 0.0,
        "images_per_s_train": models * len(labels) / per_epoch if per_epoch > 0 else None,
        "cpu_user_s": timed.user,
        "cpu_system_s": timed.system,
    }


def bench_quick_cell(method_name: str, ipc: int) -> dict[str, Any]:
    """One quick cell (condense + evaluate), as `dcbench run` runs it."""
    from dcbench.data.builtin import load_fashion_mnist
    from dcbench.evaluation import Protocol, evaluate_synthetic
    from dcbench.method.condense import condense
    from dcbench.plugins import load_plugins

    registry = load_plugins()
    real = load_fashion_mnist(None)
    with Timed() as timed:
        condensed = condense(registry.method(method_name), real, ipc, 0, "quick")
        evaluation = evaluate_synthetic(condensed.synthetic, real, Protocol.for_preset("quick", real.name), 0)
    return {
        "unit": "quick cell",
        "seconds": {"min": timed.wall, "median": timed.wall, "n": 1},
        "condense_s": condensed.seconds,
        "eval_s": evaluation.seconds,
        "cpu_user_s": timed.user,
        "cpu_system_s": timed.system,
    }


def worker(args: argparse.Namespace) -> None:
    import torch

    import dcbench  # noqa: F401 - before torch: it sets the allocator and OpenMP's spin (dcbench.host.runtime)

    kind, *params = args.worker
    if args.threads:
        torch.set_num_threads(args.threads)
    elif kind == "cell":  # the threads `dcbench run` gives a cell of the default grid (42 cells)
        with contextlib.suppress(ImportError):
            from dcbench.run.grid import plan_workers

            torch.set_num_threads(plan_workers(None, None, "cpu", "quick", 42, []).threads)
    if kind == "method":
        name, ipc = params[0], int(params[1])
        bench = bench_cafe if name.startswith("cafe") else bench_iterations
        result = bench(name, ipc, args.repeats, args.precision)
    elif kind == "eval":
        result = bench_evaluation(
            int(params[0]), int(params[1]), int(params[2]), args.eval_epochs, args.precision, params[3:] == ["on"]
        )
    else:
        result = bench_quick_cell(params[0], int(params[1]))
    result["matmul_gflops_fp32"] = matmul_gflops("float32")
    if args.precision == "bf16":
        result["matmul_gflops_bf16"] = matmul_gflops("bfloat16")
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["threads"] = torch.get_num_threads()
    with contextlib.suppress(ImportError, AttributeError):
        from dcbench import runtime

        result["allocator"] = runtime.allocator()
    print("RESULT " + json.dumps(result))


# --- driver ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def busy_process(enabled: bool) -> Iterator[None]:
    """One competing CPU-bound process (a pure-Python loop) while the block runs."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if enabled else None
    try:
        yield
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


QUICK_GRID_SPEC = """
name = "speed-quick-grid"
preset = "quick"
methods = ["random", "dm", "cafe"]
ipcs = [1]
seeds = [0, 1]
"""


def run_quick_grid(extra: list[str], busy: bool) -> float:
    """Wall seconds of `dcbench run` on a 6-cell quick grid (a fresh results directory)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        spec = os.path.join(tmp, "spec.toml")
        with open(spec, "w") as f:
            f.write(QUICK_GRID_SPEC)
        cmd = [
            sys.executable,
            "-m",
            "dcbench.cli",
            "run",
            spec,
            "--out",
            os.path.join(tmp, "out"),
            "--quiet",
            "--reference",
            "none",
            *extra,
        ]
        with busy_process(busy):
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            return time.perf_counter() - start


def run_worker(job: list[str], args: argparse.Namespace, busy: bool = False) -> dict[str, Any]:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        *job,
        "--repeats",
        str(args.repeats),
        "--precision",
        args.precision,
        "--eval-epochs",
        str(args.eval_epochs),
    ]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    with busy_process(busy):
        proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}"}
    return json.loads(lines[-1][len("RESULT ") :])


def fraction(flops: int | None, seconds: float, gflops: float) -> float | None:
    return flops / seconds / (gflops * 1e9) if flops and seconds > 0 else None


def method_rows(name: str, ipc: int, r: dict[str, Any]) -> list[list[str]]:
    if "error" in r:
        return [[name, str(ipc), "ERROR", r["error"], "", "", "", ""]]
    cpu = r["cpu_user_s"] + r["cpu_system_s"]
    sys_share = f"{r['cpu_system_s'] / cpu:.0%}" if cpu > 0 else "-"
    units = (
        [("image step", r["image_step"]), ("inner epoch", r["inner_epoch"]), ("query", r["query"])]
        if "image_step" in r
        else [("iteration", r)] + ([("real forward", r["forward"])] if "forward" in r else [])
    )
    rows = []
    for unit, data in units:
        s = data["seconds"]
        frac = fraction(data.get("flops"), s["min"], r["matmul_gflops_fp32"])
        rows.append(
            [
                name,
                str(ipc),
                unit,
                f"{s['min']:.2f}",
                f"{s['median']:.2f}",
                f"{frac:.0%}" if frac else "-",
                f"{r['peak_rss_mb']:.0f}",
                sys_share,
            ]
        )
    return rows


def print_machine(cpu: str, results: list[dict[str, Any]]) -> None:
    """The line the "of fp32 matmul" column is read against: the CPU, the threads, and the 2048^2
    fp32 GEMM rate that each worker measured for itself (a shared VM's rate drifts between them)."""
    rates = [r["matmul_gflops_fp32"] for r in results if "matmul_gflops_fp32" in r]
    threads = sorted({r["threads"] for r in results if "threads" in r})
    gemm = f"{min(rates):.0f}-{max(rates):.0f} GFLOP/s" if rates else "not measured"
    print(f"# {cpu}, {'/'.join(map(str, threads)) or '?'} torch threads, fp32 GEMM (2048^2 torch.mm) {gemm}")


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))


def quick_cell_rows(args: argparse.Namespace, out: dict[str, Any]) -> None:
    rows = []
    for busy in (False, True, False, True):
        r = run_worker(["cell", "cafe", "1"], args, busy=busy)
        out["results"].append({"kind": "quick-cell", "busy": busy, **r})
        rows.append(
            [
                "cafe ipc1 quick cell",
                "busy" if busy else "alone",
                f"{r.get('seconds', {}).get('min', float('nan')):.1f}",
                r.get("error", ""),
            ]
        )
    print_table(["what", "load", "seconds", "error"], rows)


def quick_grid_rows(args: argparse.Namespace, out: dict[str, Any]) -> None:
    rows = []
    settings = {"default": [], "--workers 1 --threads 2": ["--workers", "1", "--threads", "2"]}
    for _ in range(max(1, args.repeats // 2)):
        for name, extra in settings.items():
            for busy in (False, True):
                seconds = run_quick_grid(extra, busy)
                out["results"].append({"kind": "quick-grid", "setting": name, "busy": busy, "seconds": seconds})
                rows.append(["6-cell quick grid", name, "busy" if busy else "alone", f"{seconds:.1f}"])
                print(f"# quick grid {name} {'busy' if busy else 'alone'}: {seconds:.1f}s", file=sys.stderr, flush=True)
    print_table(["what", "setting", "load", "seconds"], rows)


def method_tables(args: argparse.Namespace, out: dict[str, Any]) -> None:
    rows = []
    for name in args.methods.split(","):
        for ipc in (int(i) for i in args.ipcs.split(",")):
            r = run_worker(["method", name, str(ipc)], args)
            out["results"].append({"kind": "method", "method": name, "ipc": ipc, **r})
            rows += method_rows(name, ipc, r)
            print(f"# {name} ipc {ipc} done", file=sys.stderr, flush=True)
    print_machine(out["cpu"], [r for r in out["results"] if r.get("kind") == "method"])
    print_table(["method", "ipc", "unit", "min s", "median s", "of fp32 matmul", "peak RSS MB", "system CPU"], rows)


def eval_tables(args: argparse.Namespace, out: dict[str, Any]) -> None:
    """Each evaluation setting ``--repeats`` times, eager and compiled alternating (A/B in one run,
    each in a fresh process: a compiled run loads its graphs from inductor's on-disk cache, built by
    the first); min / median of the evaluation's seconds."""
    modes = args.eval_compile.split(",")
    rows = []
    for width in (int(w) for w in args.eval_widths.split(",")):
        for models in (int(k) for k in args.eval_models.split(",")):
            for ipc in (int(i) for i in args.eval_ipcs.split(",")):
                runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
                for repeat in range(args.repeats):
                    for mode in modes:
                        r = run_worker(["eval", str(width), str(models), str(ipc), mode], args)
                        runs[mode].append(r)
                        out["results"].append(
                            {"kind": "eval", "width": width, "models": models, "ipc": ipc, "repeat": repeat, **r}
                        )
                for mode, results in runs.items():
                    good = [r for r in results if "error" not in r]
                    if not good:
                        rows.append([f"ConvNet-{width}", str(models), str(ipc), mode, "ERROR", results[0]["error"]])
                        continue
                    total = summarise([r["evaluation_s"] for r in good])
                    per_epoch = summarise([r["train_s_per_epoch"] for r in good])
                    test = summarise([r["test_pass_s"] for r in good])
                    compile_s = [r["compile_s"] for r in good]
                    system = sum(r["cpu_system_s"] for r in good)
                    cpu = system + sum(r["cpu_user_s"] for r in good)
                    rows.append(
                        [
                            f"ConvNet-{width}",
                            str(models),
                            str(ipc),
                            mode,
                            f"{total['min']:.2f} / {total['median']:.2f}",
                            f"{per_epoch['min']:.4f} / {per_epoch['median']:.4f}",
                            f"{test['min']:.2f} / {test['median']:.2f}",
                            "-"
                            if mode == "off"
                            else f"{compile_s[0]:.1f} first, {min(compile_s[1:] or compile_s):.1f} cached",
                            f"{max(r['peak_rss_mb'] for r in good):.0f}",
                            f"{system / cpu:.0%}" if cpu else "-",
                        ]
                    )
    print_machine(out["cpu"], [r for r in out["results"] if r.get("kind") == "eval"])
    print_table(
        [
            "network",
            "models",
            "ipc",
            "compile",
            f"evaluation s ({args.eval_epochs} ep) min / med",
            "train s/epoch min / med",
            "test pass s min / med",
            "compile s",
            "peak RSS MB",
            "system CPU",
        ],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--ipcs", default="1,10")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--eval", action="store_true", help="evaluation throughput only")
    parser.add_argument("--with-eval", action="store_true", help="methods and evaluation throughput")
    parser.add_argument("--eval-epochs", type=int, default=10)
    parser.add_argument("--eval-widths", default="32,128")
    parser.add_argument("--eval-models", default="2")
    parser.add_argument("--eval-ipcs", default="1,10,50")
    parser.add_argument(
        "--eval-compile", default="off", help="off, on or off,on (alternating A/B): torch.compile of the evaluation"
    )
    parser.add_argument(
        "--quick-cell", action="store_true", help="a quick cafe IPC-1 cell alone and beside a busy process"
    )
    parser.add_argument(
        "--quick-grid",
        action="store_true",
        help="a 6-cell quick `dcbench run` alone and beside a busy process, with the default "
        "workers and with --workers 1 --threads 2",
    )
    parser.add_argument(
        "--json",
        help="write all results here (default: benchmarks/raw/speed-<UTC time>.json, next to RESULTS.md; "
        "'-' writes none)",
    )
    parser.add_argument("--label", default="", help="a name for this run in the JSON (e.g. before/after)")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    out: dict[str, Any] = {
        "label": args.label,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "python": sys.version.split()[0],
        "precision": args.precision,
        "threads": args.threads,
        "results": [],
    }
    if args.quick_cell:
        quick_cell_rows(args, out)
    if args.quick_grid:
        quick_grid_rows(args, out)
    if not args.eval and not args.quick_cell and not args.quick_grid:
        method_tables(args, out)
    if args.eval or args.with_eval:
        eval_tables(args, out)
    path = args.json or str(RAW / f"speed-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json")
    if path != "-":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as f:
            json.dump(out, f, indent=2)
        print(f"# raw results: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
