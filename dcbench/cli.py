"""The ``dcbench`` command line. Every user error ends in one line on stderr and exit status 2."""
from __future__ import annotations

import argparse
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

import torch

from dcbench import __version__
from dcbench.errors import DcbenchError

EXIT_USAGE = 2


def resolve_device(name: str) -> torch.device:
    """``auto`` picks a GPU when there is one; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DcbenchError("--device cuda asked for, but no CUDA GPU is visible; use --device cpu or auto")
    if name != "cpu" and not name.startswith("cuda"):
        raise DcbenchError(f"unknown device {name!r}; use auto, cpu or cuda[:N]")
    return torch.device(name)


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``--set key=value`` pairs, values parsed as TOML (numbers, booleans, strings, lists)."""
    overrides: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise DcbenchError(f"--set expects key=value, got {item!r}")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # a bare word is a string
        if key.strip() in overrides:
            raise DcbenchError(f"--set {key.strip()} is given twice; give each setting once")
        overrides[key.strip()] = value
    return overrides


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _load_real(registry: Any, name: str, data_root: str | None, device: torch.device) -> Any:
    from dcbench.datasets import data_root_option

    return registry.dataset(name).loader(data_root_option(data_root)).to(device)


# --- commands -----------------------------------------------------------------------------------

def cmd_list(args: argparse.Namespace) -> None:
    from dcbench.plugins import load_plugins

    registry = load_plugins()
    print("methods:")
    for name in sorted(registry.methods):
        m = registry.methods[name]
        plugin = registry.owners[("method", name)]
        print(f"  {name:<12} {plugin:<10} {m.version:<8} {m.description}")
    print("datasets:")
    for name in sorted(registry.datasets):
        print(f"  {name:<12} {registry.datasets[name].description}")
    print("architectures:")
    for name in sorted(registry.architectures):
        print(f"  {name:<12} {registry.architectures[name].description}")
    for plugin, reason in registry.broken:
        print(f"broken plugin skipped: {plugin}: {reason}")


def cmd_plugins(args: argparse.Namespace) -> None:
    from dcbench.plugins import load_plugins

    registry = load_plugins()
    for info in registry.plugins.values():
        methods = sorted(n for (kind, n), owner in registry.owners.items() if owner == info.name and kind == "method")
        print(f"{info.name:<22} {info.distribution or '-'} {info.version or '-'}  hooks: {', '.join(info.hooks)}"
              + (f"  methods: {', '.join(methods)}" if methods else ""))
    for plugin, reason in registry.broken:
        print(f"{plugin:<22} BROKEN: {reason}")


def cmd_condense(args: argparse.Namespace) -> None:
    from dcbench.condensation import condense
    from dcbench.methods import CondenseContext
    from dcbench.plugins import load_plugins
    from dcbench.seeding import check_seed

    registry = load_plugins()
    method = registry.method(args.method)
    registry.dataset(args.dataset)
    if args.ipc <= 0:
        raise DcbenchError(f"--ipc must be a positive integer, got {args.ipc}")
    check_seed(args.seed, "--seed")
    overrides = parse_overrides(args.set)
    method.make_config(args.preset, overrides)  # fail on a bad setting before loading data
    device = resolve_device(args.device)
    real = _load_real(registry, args.dataset, args.data_root, device)
    ctx = CondenseContext(device=device, architectures=registry.architectures)
    plugin = registry.plugins.get(registry.owners[("method", method.name)])
    result = condense(method, real, args.ipc, args.seed, args.preset, overrides, ctx,
                      plugin_version=plugin.version if plugin else None)
    out = Path(args.output)
    result.synthetic.save(out)
    result.synthetic.save_grid(out / "grid.png", real.mean, real.std)
    print(f"{method.name}: {len(result.synthetic.images)} images ({result.synthetic.ipc} per class) "
          f"of {real.name} in {result.seconds:.1f}s -> {out}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from dcbench.evaluation import Protocol, evaluate_synthetic
    from dcbench.plugins import load_plugins
    from dcbench.seeding import check_seed
    from dcbench.synthetic import load_synthetic

    check_seed(args.seed, "--seed")
    synthetic = load_synthetic(Path(args.path))
    dataset = args.dataset or synthetic.manifest.get("dataset")
    if not dataset:
        raise DcbenchError(f"{args.path}: the manifest names no dataset; pass --dataset")
    registry = load_plugins()
    arch = registry.architecture(args.arch)
    augmentation = args.augmentation or synthetic.manifest.get("native_eval_augmentation", "none")
    overrides: dict[str, Any] = {}
    if args.models:
        overrides["models"] = args.models
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    protocol = Protocol.for_preset(args.preset, dataset, augmentation, arch.name, **overrides)
    device = resolve_device(args.device)
    real = _load_real(registry, dataset, args.data_root, device)
    _check_preprocessing(synthetic.manifest, real, args.path)
    synthetic.validate(real.channels, real.image_size, real.num_classes, source=args.path)
    result = evaluate_synthetic(synthetic, real, protocol, args.seed, device, arch)
    print(f"protocol {protocol.name}: {protocol.models} models, {len(real.test_labels)} test images of {real.name}")
    for i, acc in enumerate(result.test_accs):
        print(f"  model {i}: test accuracy {100 * acc:.2f}%")
    mean = sum(result.test_accs) / len(result.test_accs)
    sd = torch.tensor(result.test_accs).std().item() * 100 if len(result.test_accs) > 1 else float("nan")
    print(f"mean test accuracy {100 * mean:.2f}% (SD {sd:.2f} over {len(result.test_accs)} models) "
          f"in {result.seconds:.1f}s")


def _check_preprocessing(manifest: dict[str, Any], real: Any, path: str) -> None:
    """Refuse a set whose pixels are encoded differently from the dataset (the '25%' trap)."""
    pre = manifest.get("preprocessing")
    if not pre:
        return
    if pre.get("zca"):
        raise DcbenchError(f"{path}: the set is ZCA-whitened; dcbench evaluates mean/std-normalised sets only")
    for key in ("mean", "std"):
        ours = [round(v, 4) for v in getattr(real, key)]
        theirs = [round(float(v), 4) for v in pre.get(key, ours)]
        if ours != theirs:
            raise DcbenchError(f"{path}: normalised with {key} {theirs}, {real.name} uses {ours}; "
                               "re-import it with the right --dataset or renormalise it")


def cmd_run(args: argparse.Namespace) -> None:
    from dcbench.runner import run_benchmark

    if args.ray_address is not None and args.executor != "ray":
        raise DcbenchError("--ray-address is only used by the ray executor; add --executor ray (or drop the address)")
    run_benchmark(spec_path=Path(args.spec) if args.spec else None, preset=args.preset,
                  out=Path(args.out) if args.out else None, executor=args.executor,
                  ray_address=args.ray_address, data_root=args.data_root, device=args.device,
                  show_progress=not args.quiet)


def cmd_report(args: argparse.Namespace) -> None:
    from dcbench.report import write_report

    formats = tuple(f.strip() for f in args.format.split(",")) if args.format else ("csv", "tex", "md", "png")
    path = write_report(Path(args.results_dir), Path(args.out) if args.out else None, reference=args.reference,
                        alpha=args.alpha, formats=formats, paired=args.paired)
    print(f"report written: {path}")


def cmd_new_method(args: argparse.Namespace) -> None:
    from dcbench.scaffold import scaffold_method

    path = scaffold_method(args.name, Path(args.path) if args.path else None)
    print(f"plugin package written to {path}; install it with: pip install -e {path}")


def cmd_import(args: argparse.Namespace) -> None:
    from dcbench.importers import import_synthetic

    written = import_synthetic(Path(args.file), args.format, args.dataset, Path(args.output), args.method)
    for path in written:
        print(f"imported -> {path}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dcbench", description="Benchmark dataset condensation methods.")
    parser.add_argument("--version", action="version", version=f"dcbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-root", help="directory with torchvision-layout datasets (default: $DCBENCH_DATA)")
        p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu or cuda[:N]")

    sub.add_parser("list", help="show methods, datasets and architectures").set_defaults(func=cmd_list)
    sub.add_parser("plugins", help="show loaded plugins and their hooks").set_defaults(func=cmd_plugins)

    p = sub.add_parser("condense", help="condense one dataset with one method")
    p.add_argument("--method", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--ipc", type=int, required=True, help="synthetic images per class")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", default="quick", choices=("smoke", "quick", "paper"))
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a method setting (repeatable)")
    p.add_argument("-o", "--output", required=True, help="output directory")
    common(p)
    p.set_defaults(func=cmd_condense)

    p = sub.add_parser("evaluate", help="train fresh networks on a saved synthetic set and test them")
    p.add_argument("path", help="a directory written by `dcbench condense` or `dcbench import`")
    p.add_argument("--arch", default="ConvNet")
    p.add_argument("--models", type=_positive_int, help="number of evaluation networks (default: preset)")
    p.add_argument("--epochs", type=int, help="training epochs (default: preset)")
    p.add_argument("--augmentation", choices=("none", "dsa", "dc"),
                   help="evaluation augmentation (default: the method's native one)")
    p.add_argument("--preset", default="quick", choices=("smoke", "quick", "paper"))
    p.add_argument("--dataset", help="override the manifest's dataset")
    p.add_argument("--seed", type=int, default=0, help="evaluation seed")
    common(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("run", help="run a benchmark grid (default: the quick FashionMNIST benchmark)")
    p.add_argument("spec", nargs="?", help="a TOML spec (default: the built-in benchmark)")
    p.add_argument("--preset", choices=("smoke", "quick", "paper"), help="overrides the spec's preset")
    p.add_argument("--out", help="results directory (default: results/<name>)")
    p.add_argument("--executor", default="local", choices=("local", "ray"))
    p.add_argument("--ray-address", help="join this Ray cluster (default: start a local one)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    common(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="statistics, tables and plots from a results directory")
    p.add_argument("results_dir")
    p.add_argument("--out", help="output directory (default: RESULTS_DIR/report)")
    p.add_argument("--reference", default="random", help="method every other is compared with")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--format", help="comma-separated subset of csv,tex,md,png")
    p.add_argument("--paired", action="store_true", help="paired t-tests where the seed lists match")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("new-method", help="write a plugin package skeleton for a new method")
    p.add_argument("name")
    p.add_argument("--path", help="where to write it (default: ./dcbench-NAME)")
    p.set_defaults(func=cmd_new_method)

    p = sub.add_parser("import", help="turn a synthetic set released by another project into a dcbench set")
    p.add_argument("file")
    p.add_argument("--format", required=True, choices=("dc-repo",))
    p.add_argument("--dataset", required=True)
    p.add_argument("--method", help="method name to record (default: from the file name)")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=cmd_import)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except DcbenchError as exc:
        print(f"dcbench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("dcbench: interrupted; finished cells are kept, run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - an internal bug still gets one line unless debugging
        if os.environ.get("DCBENCH_DEBUG"):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"dcbench: internal error: {type(exc).__name__}: {first} (set DCBENCH_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
