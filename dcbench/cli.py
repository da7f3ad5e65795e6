"""The ``dcbench`` command line. Every user error ends in one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from dcbench import __version__
from dcbench.artifacts import Artifact, ArtifactStore
from dcbench.data.builtin import data_root_option
from dcbench.data.paths import path_dataset, source_for_evaluation
from dcbench.data.zca import zca_whitened
from dcbench.evaluation import (
    EVAL_AUGMENTATIONS,
    LABEL_LOSSES,
    LABEL_SOURCES,
    Protocol,
    check_whitening,
    evaluate_synthetic,
)
from dcbench.host.compat import tomllib
from dcbench.host.devices import DEVICE_CHOICES, resolve_device
from dcbench.host.errors import DcbenchError, first_line, one_line
from dcbench.host.files import atomic_write_text, csv_text
from dcbench.host.outputs import check_output_dir, describe_os_error
from dcbench.host.runtime import PRECISIONS, deterministic_algorithms, set_threads
from dcbench.method.checkpoint import Checkpointer, CheckpointPolicy, check_compatible, checkpoint_identity
from dcbench.method.condense import config_hash
from dcbench.method.contract import NativeEvaluation, config_to_dict
from dcbench.method.seeding import check_seed
from dcbench.method.synthetic import MANIFEST_FILE, TENSOR_FILE, load_synthetic
from dcbench.nn.compiling import COMPILE_MODES
from dcbench.nn.mixing import MIXINGS
from dcbench.plugins import load_plugins
from dcbench.report import KNOWN_FORMATS, write_report
from dcbench.report.compare import compare_paths, comparison_text
from dcbench.results.record import EvaluationRecord, cell_id
from dcbench.run.cell import CondenseRequest, condense_into, teacher_for
from dcbench.run.grid import RunOptions, run_grid
from dcbench.run.progress import CellProgressBar
from dcbench.tools.importers import import_synthetic
from dcbench.tools.scaffold import scaffold_method

EXIT_USAGE = 2
EXIT_DIFFERS = 3  # dcbench compare --fail-on-differ: a cell differs from the reference
Subcommands = argparse._SubParsersAction  # what add_subparsers returns (typeshed's name for it)


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


def _tracking_request(text: str) -> tuple[str, bool | str]:
    """``NAME`` (the plugin's default setting) or ``NAME=VALUE``."""
    name, sep, value = text.partition("=")
    if not name.strip() or (sep and not value.strip()):
        raise argparse.ArgumentTypeError(f"expected NAME or NAME=VALUE, got {text!r}")
    return name.strip(), value if sep else True


def _method_names(text: str) -> list[str]:
    """``a,b,c``: method names, none empty or repeated."""
    names = [n.strip() for n in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated method names, each once, got {text!r}")
    return names


def _load_real(registry: Any, name: str, data_root: str | None, device: torch.device) -> Any:

    return registry.dataset(name).loader(data_root_option(data_root)).to(device)


# --- commands -----------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> None:

    registry = load_plugins()
    print("methods:")
    for name in sorted(registry.methods):
        m = registry.methods[name]
        plugin = registry.owners[("method", name)]
        named = (m.opt_in or not registry.shipped("method", name)) and not m.reference_only
        opt_in = " [opt-in: runs where a spec names it]" if named else ""
        print(f"  {name:<12} {plugin:<10} {m.version:<8} {m.description}{opt_in}")
    print("datasets:")
    for name in sorted(registry.datasets):
        print(f"  {name:<12} {registry.datasets[name].description}")
    print("  (or a path: an image folder ROOT/train/<class>/*, ROOT/test/<class>/*, or a .pt/.npz file)")
    print("architectures:")
    for name in sorted(registry.architectures):
        print(f"  {name:<12} {registry.architectures[name].description}")
    for plugin, reason in registry.broken:
        print(f"broken plugin skipped: {plugin}: {reason}")


def cmd_plugins(args: argparse.Namespace) -> None:

    registry = load_plugins()
    for info in registry.plugins.values():
        methods = sorted(n for (kind, n), owner in registry.owners.items() if owner == info.name and kind == "method")
        print(
            f"{info.name:<22} {info.distribution or '-'} {info.version or '-'}  hooks: {', '.join(info.hooks)}"
            + (f"  methods: {', '.join(methods)}" if methods else "")
        )
    for plugin, reason in registry.broken:
        print(f"{plugin:<22} BROKEN: {reason}")


def cmd_condense(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    registry = load_plugins()
    method = registry.method(args.method)
    if args.image_size is not None and args.dataset in registry.datasets:
        raise DcbenchError(f"--image-size applies to a dataset given as a path, not to {args.dataset!r}")
    spec = path_dataset(args.dataset, args.image_size) if args.image_size else registry.dataset(args.dataset)
    if args.ipc <= 0:
        raise DcbenchError(f"--ipc must be a positive integer, got {args.ipc}")
    check_seed(args.seed, "--seed")
    overrides = parse_overrides(args.set)
    config = method.make_config(args.preset, overrides)  # fail on a bad setting before loading data
    policy = CheckpointPolicy.parse(args.checkpoint_every)
    out = Path(args.output)
    precision = args.precision or "fp32"
    identity = checkpoint_identity(
        method.name,
        method.version,
        config_hash(method.name, config_to_dict(config), precision),
        args.dataset,
        args.ipc,
        args.seed,
        args.zca,
    )
    check_compatible(out, identity)  # the same command resumes; another config is refused before any work
    device = resolve_device(args.device)
    _check_condense_output(out, args.overwrite)
    real = spec.loader(data_root_option(args.data_root))
    real = (zca_whitened(real) if args.zca else real).to(device)
    bar = CellProgressBar(position=0)
    label = {"id": cell_id(method.name, args.dataset, args.ipc, args.seed)}
    checkpointer = Checkpointer(out, identity, policy, lambda text: tqdm.write(f"dcbench: {text}", file=sys.stderr))
    try:
        request = CondenseRequest(args.ipc, args.seed, args.preset, overrides, precision, device)
        result = condense_into(
            out,
            method,
            real,
            registry,
            request,
            checkpointer,
            observe=lambda step, total, values: bar.dcbench_condense_progress(
                cell=label, step=step, total=total, metrics=values
            ),
            log=lambda text: tqdm.write(f"dcbench: {text}", file=sys.stderr),
        )
    finally:
        bar.close()
    checkpointer.discard()
    print(
        f"{method.name}: {len(result.synthetic.images)} images ({result.synthetic.ipc} per class) "
        f"of {real.name} in {result.seconds:.1f}s -> {out}"
    )


def _check_condense_output(out: Path, overwrite: bool) -> None:
    """Before any work: a usable directory, and an existing set kept unless --overwrite."""

    if not overwrite and out.is_dir() and any((out / name).exists() for name in (TENSOR_FILE, MANIFEST_FILE)):
        raise DcbenchError(f"{out} already holds a synthetic set; pass --overwrite to replace it or choose another -o")
    check_output_dir(out, "output directory")


def cmd_evaluate(args: argparse.Namespace) -> None:

    check_seed(args.seed, "--seed")
    synthetic = load_synthetic(Path(args.path))
    source = source_for_evaluation(args.dataset, synthetic.manifest)  # an image folder or tensor file
    dataset = source.name if source else args.dataset or synthetic.manifest.get("dataset")
    if not dataset:
        raise DcbenchError(f"{args.path}: the manifest names no dataset; pass --dataset")
    registry = load_plugins()
    arch = registry.architecture(args.arch)
    native = _recorded_native(synthetic.manifest, args.path) if args.augmentation == "native" else None
    protocol = Protocol.for_preset(
        args.preset, dataset, args.augmentation, arch.name, native=native, **_protocol_options(args)
    )
    json_out = Path(args.json) if args.json else None
    if json_out is not None:
        check_output_dir(json_out.parent, "--json directory")
    device = resolve_device(args.device)
    protocol = protocol.with_compile(args.compile or "auto", device.type)
    with deterministic_algorithms(bool(args.deterministic), device.type):  # before any CUDA work
        real = source.load() if source else _load_real(registry, dataset, args.data_root, torch.device("cpu"))
        real = (zca_whitened(real) if args.zca else real).to(device)
        _check_dataset_content(synthetic.manifest, real, args.path)
        _check_preprocessing(synthetic.manifest, real, args.path)
        synthetic.validate(real.channels, real.image_size, real.num_classes, source=args.path)
        check_whitening(synthetic, real, protocol)
        log = lambda text: print(f"dcbench: {text}", file=sys.stderr)  # noqa: E731 - a one-line sink
        teacher = teacher_for(protocol, real, registry, note=log)
        result = evaluate_synthetic(synthetic, real, protocol, args.seed, device, arch, teacher=teacher)
    if protocol.labels == "set" and result.labels_used != "soft":
        log(f"note: {args.path} has no soft labels, so --labels set trained on its hard labels")
    elif protocol.labels == "hard" and synthetic.soft_labels is not None:
        log(f"note: {args.path} carries learned soft labels; --labels set trains on them")
    determinism = ", deterministic algorithms" if args.deterministic else ""
    print(
        f"protocol {protocol.name}: {protocol.models} models, {len(real.test_labels)} test images of {real.name}"
        + determinism
    )
    for i, acc in enumerate(result.test_accs):
        print(f"  model {i}: test accuracy {100 * acc:.2f}%")
    mean = sum(result.test_accs) / len(result.test_accs)
    sd = torch.tensor(result.test_accs).std().item() * 100 if len(result.test_accs) > 1 else float("nan")
    print(
        f"mean test accuracy {100 * mean:.2f}% (SD {sd:.2f} over {len(result.test_accs)} models) "
        f"in {result.seconds:.1f}s"
    )
    if json_out is not None:
        record = {
            "set": str(Path(args.path).resolve()),
            "synthetic_hash": synthetic.manifest.get("content_hash"),
            "method": synthetic.manifest.get("method"),
            "dataset": real.name,
            "ipc": synthetic.ipc,
            "seed": args.seed,
            "device": str(device),
            "mean_test_acc": mean,
            "evaluation": dataclasses.asdict(
                EvaluationRecord(
                    arch=protocol.arch,
                    protocol=result.protocol,
                    seconds=result.seconds,
                    train_seconds=result.train_seconds,
                    test_seconds=result.test_seconds,
                    labels_used=result.labels_used,
                    teacher=result.teacher,
                    test_accs=result.test_accs,
                    train_accs=result.train_accs,
                    eval_seeds=result.eval_seeds,
                )
            ),
        }
        atomic_write_text(json_out, json.dumps(record, indent=1) + "\n")
        print(f"-> {json_out}")


def _recorded_native(manifest: dict[str, Any], path: str) -> NativeEvaluation:
    """The method's own evaluation, as `dcbench condense` recorded it."""
    recorded = manifest.get("native_evaluation")
    try:
        if isinstance(recorded, dict):
            return NativeEvaluation(**recorded)
        return NativeEvaluation(manifest.get("native_eval_augmentation", "none"))
    except TypeError:
        raise DcbenchError(f"{path}: manifest.json has a malformed native_evaluation; pass --augmentation") from None


#: `dcbench evaluate` option -> Protocol field (None: the preset's)
_PROTOCOL_OPTIONS = {
    "models": "models",
    "epochs": "epochs",
    "precision": "precision",
    "lr": "lr",
    "momentum": "momentum",
    "weight_decay": "weight_decay",
    "batch_size": "batch_size",
    "dsa_strategy": "dsa_strategy",
    "mixing": "mixing",
    "mix_alpha": "mix_alpha",
    "teacher_arch": "teacher_arch",
    "teacher_epochs": "teacher_epochs",
}


def _protocol_options(args: argparse.Namespace) -> dict[str, Any]:
    options = {
        field: getattr(args, name) for name, field in _PROTOCOL_OPTIONS.items() if getattr(args, name) is not None
    }
    if args.labels != "hard":
        options.update(labels=args.labels, label_loss=args.label_loss, temperature=args.temperature)
    if args.zca:
        options["zca"] = True
    return options


def _check_dataset_content(manifest: dict[str, Any], real: Any, path: str) -> None:
    """A path dataset whose files changed since the condensation is worth a note (not an error:
    added test images are legitimate; changed statistics are refused by _check_preprocessing)."""
    recorded = (manifest.get("dataset_source") or {}).get("content_hash")
    current = getattr(real, "source", {}).get("content_hash")
    if recorded and current and recorded != current:
        print(
            f"dcbench: note: {real.source['path']} changed since {path} was condensed from it "
            f"(content {recorded[:12]} then, {current[:12]} now)",
            file=sys.stderr,
        )


def _check_preprocessing(manifest: dict[str, Any], real: Any, path: str) -> None:
    """Refuse a set whose pixels are encoded differently from the dataset (the '25%' trap)."""
    pre = manifest.get("preprocessing")
    if not pre:
        return
    for key in ("mean", "std"):
        ours = [round(v, 4) for v in getattr(real, key)]
        theirs = [round(float(v), 4) for v in pre.get(key, ours)]
        if ours != theirs:
            raise DcbenchError(
                f"{path}: normalised with {key} {theirs}, {real.name} uses {ours}; "
                "re-import it with the right --dataset or renormalise it"
            )


def cmd_run(args: argparse.Namespace) -> int:
    """Exit status 0: every cell of the grid is finished; 1: some (or all) cells failed."""

    if args.ray_address is not None and args.executor != "ray":
        raise DcbenchError("--ray-address is only used by the ray executor; add --executor ray (or drop the address)")
    options = RunOptions(
        spec_path=Path(args.spec) if args.spec else None,
        preset=args.preset,
        out=Path(args.out) if args.out else None,
        executor=args.executor,
        ray_address=args.ray_address,
        data_root=args.data_root,
        device=args.device,
        show_progress=not args.quiet,
        threads=args.threads,
        precision=args.precision,
        reference=args.reference,
        checkpoint_every=args.checkpoint_every,
        gpus_per_cell=args.gpus_per_cell,
        tracking=dict(args.track or []),
        tensorboard=args.tensorboard,
        max_retries=args.max_retries,
        workers=args.workers,
        methods=args.methods,
        deterministic=args.deterministic,
        compile=args.compile,
    )
    outcome = run_grid(options)
    return outcome.exit_status


def cmd_compare(args: argparse.Namespace) -> int:

    table = compare_paths(Path(args.run), Path(args.reference), args.alpha, require_overlap=True)
    if args.csv:
        atomic_write_text(Path(args.csv), csv_text(table))
    print(comparison_text(table, Path(args.reference), args.alpha))
    return EXIT_DIFFERS if args.fail_on_differ and (table["verdict"] == "differs").any() else 0


def cmd_report(args: argparse.Namespace) -> None:

    formats = tuple(f.strip() for f in args.format.split(",")) if args.format else KNOWN_FORMATS
    if (Path(args.results_dir) / "runs.csv").is_file():  # else write_report names the missing input
        check_output_dir(Path(args.out) if args.out else Path(args.results_dir) / "report", "report directory")
    path = write_report(
        Path(args.results_dir),
        Path(args.out) if args.out else None,
        reference=args.reference,
        alpha=args.alpha,
        formats=formats,
        pairing=not args.unpaired,
        against=Path(args.against) if args.against else None,
    )
    print(f"report written: {path}")


def cmd_new_method(args: argparse.Namespace) -> None:

    path = scaffold_method(args.name, Path(args.path) if args.path else None)
    print(f"plugin package written to {path}; install it with: pip install -e {path}")


def cmd_artifacts(args: argparse.Namespace) -> None:
    """``list``: every stored artifact with its cost; ``remove KEY``: delete one (finished or not)."""
    store = ArtifactStore()
    if args.action == "remove":
        if not args.keys:
            raise DcbenchError(
                "dcbench artifacts remove needs the key(s) to remove; `dcbench artifacts list` shows them"
            )
        for key in args.keys:
            for path in store.remove(key):
                print(f"removed {path}")
        return
    entries = store.entries()
    print(f"artifacts in {store.root}" + ("" if entries else ": none"))
    for kind, key, entry in entries:
        if isinstance(entry, Artifact):
            print(
                f"  {key}  {kind:<20} {entry.bytes / 2**20:8.1f} MiB  built in {entry.build_s:.0f} s  {entry.created}"
            )
        else:
            print(f"  {key}  {kind:<20} {entry}")


def cmd_import(args: argparse.Namespace) -> None:

    written = import_synthetic(Path(args.file), args.format, args.dataset, Path(args.output), args.method, args.zca)
    for path in written:
        print(f"imported -> {path}")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", help="directory with torchvision-layout datasets (default: $DCBENCH_DATA)")
    p.add_argument("--device", default="auto", help=f"{DEVICE_CHOICES} (auto: a CUDA GPU when there is one)")
    p.add_argument(
        "--threads",
        type=_positive_int,
        help="torch CPU threads (default: torch's choice; for run, "
        "the spec's `threads`, else the cores split between the workers)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="fp32 (default) or bf16 autocast for condensation and evaluation (recorded with the results)",
    )


def _checkpoints(p: argparse.ArgumentParser, default: str | None) -> None:
    p.add_argument(
        "--checkpoint-every",
        default=default,
        metavar="N|TIME",
        help="write checkpoint.pt every N iterations (500) or every TIME (30s, 10m, 2h), or 'off'; "
        "running the same command again resumes from it (default: "
        f"{default or 'the spec, 10m'})",
    )


def _deterministic(p: argparse.ArgumentParser, scope: str) -> None:
    p.add_argument(
        "--deterministic",
        action="store_true",
        default=None,
        help=f"torch.use_deterministic_algorithms(True) for {scope}; on CUDA with CUBLAS_WORKSPACE_CONFIG=:4096:8",
    )


def _compile(p: argparse.ArgumentParser, scope: str) -> None:
    p.add_argument(
        "--compile",
        choices=COMPILE_MODES,
        help=f"torch.compile of {scope}: auto (default: where it pays, a CPU at the paper budget), "
        "on or off; compiled is its own protocol (/compiled in its name), equal to eager within float rounding",
    )


def _add_condense(sub: Subcommands) -> None:
    p = sub.add_parser("condense", help="condense one dataset with one method")
    p.add_argument("--method", required=True)
    p.add_argument(
        "--dataset",
        required=True,
        help="a registered name (see `dcbench list`), an image folder (ROOT/train/<class>/*, "
        "ROOT/test/<class>/*) or a .pt/.npz file",
    )
    p.add_argument(
        "--image-size",
        metavar="N|HxW",
        help="resize a folder/file dataset to this size (default: the images' most common size)",
    )
    p.add_argument("--ipc", type=int, required=True, help="synthetic images per class")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", default="quick", choices=("smoke", "quick", "paper"))
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a method setting (repeatable)")
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.add_argument("--overwrite", action="store_true", help="replace a synthetic set already in the output directory")
    p.add_argument("--zca", action="store_true", help="ZCA-whiten the data first (MTT/DATM's preprocessing, eps 0.1)")
    _common(p)
    _checkpoints(p, "10m")
    p.set_defaults(func=cmd_condense)


def _add_evaluate(sub: Subcommands) -> None:
    p = sub.add_parser("evaluate", help="train fresh networks on a saved synthetic set and test them")
    p.add_argument("path", help="a directory written by `dcbench condense` or `dcbench import`")
    p.add_argument("--arch", default="ConvNet")
    p.add_argument("--models", type=_positive_int, help="number of evaluation networks (default: preset)")
    p.add_argument("--epochs", type=int, help="training epochs (default: preset)")
    p.add_argument(
        "--augmentation",
        choices=(*EVAL_AUGMENTATIONS, "native"),
        default="none",
        help="evaluation augmentation (default: none, as `dcbench run`; native: the method's own paper's)",
    )
    p.add_argument("--preset", default="quick", choices=("smoke", "quick", "paper"))
    p.add_argument("--dataset", help="override the manifest's dataset (a name, an image folder or a .pt/.npz file)")
    p.add_argument("--seed", type=int, default=0, help="evaluation seed")
    p.add_argument(
        "--labels",
        choices=LABEL_SOURCES,
        default="hard",
        help="train on the set's hard labels, its soft labels where it has them (set), or a teacher's (teacher: "
        "a network trained on the whole training set relabels every batch; built once, an artifact)",
    )
    p.add_argument("--label-loss", choices=LABEL_LOSSES, default="soft_ce", help="with soft labels: the loss")
    p.add_argument("--temperature", type=float, default=1.0, help="with soft labels: the softmax temperature")
    p.add_argument("--teacher-epochs", type=_positive_int, help="with --labels teacher: its training epochs (10)")
    p.add_argument("--teacher-arch", help="with --labels teacher: its architecture (default: --arch)")
    p.add_argument("--mixing", choices=MIXINGS, help="mixup or cutmix every training batch (default: none)")
    p.add_argument("--mix-alpha", type=float, help="with --mixing: Beta(alpha, alpha) of the ratio (1.0)")
    p.add_argument("--lr", type=float, help="SGD learning rate (default 0.01)")
    p.add_argument("--momentum", type=float, help="SGD momentum (default 0.9)")
    p.add_argument("--weight-decay", type=float, help="SGD weight decay (default 5e-4)")
    p.add_argument("--batch-size", type=_positive_int, help="training batch size (default 256)")
    p.add_argument("--dsa-strategy", help="with --augmentation dsa: '_'-joined DSA families (default: the dataset's)")
    p.add_argument("--zca", action="store_true", help="ZCA-whiten the data (a set condensed under --zca needs it)")
    p.add_argument("--json", "-o", metavar="FILE", help="also write the result (a cell's evaluation record) as JSON")
    _deterministic(p, "the training and testing")
    _compile(p, "the training and test passes")
    _common(p)
    p.set_defaults(func=cmd_evaluate)


def _add_run(sub: Subcommands) -> None:
    p = sub.add_parser("run", help="run a benchmark grid (default: the quick FashionMNIST benchmark)")
    p.add_argument("spec", nargs="?", help="a TOML spec (default: the built-in benchmark)")
    p.add_argument("--preset", choices=("smoke", "quick", "paper"), help="overrides the spec's preset")
    p.add_argument(
        "--methods",
        type=_method_names,
        metavar="A,B",
        help="run these methods instead of the spec's (default: the methods of the committed default "
        "reference; an opt-in or third-party method runs only where it is named)",
    )
    p.add_argument("--out", help="results directory (default: results/local/<name>, not committed)")
    p.add_argument(
        "--reference",
        default="auto",
        help="compare the run with these results: a results directory or a CSV of published numbers "
        "(method,dataset,ipc,mean,sd,n); default auto: the committed results/reference/ of the "
        "same datasets and preset; none: no comparison",
    )
    p.add_argument("--executor", default="local", choices=("local", "ray"))
    p.add_argument("--ray-address", help="join this Ray cluster (default: start a local one)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    _checkpoints(p, None)
    p.add_argument(
        "--gpus-per-cell",
        type=float,
        metavar="G",
        help="Ray: GPUs per cell, e.g. 0.25 to share a GPU between four cells "
        "(default: the spec's, else 1 when the cluster has GPUs)",
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help="local executor: cells at once, each in its own worker process (default: one per core "
        "on a CPU, with --threads 1 unless given; 1 on a GPU or for smoke grids)",
    )
    p.add_argument(
        "--max-retries",
        type=int,
        default=3,
        metavar="N",
        help="reruns of a cell whose worker process died (Ray or --workers); the rerun resumes from "
        "its checkpoint (default 3)",
    )
    p.add_argument(
        "--tensorboard",
        nargs="?",
        const=True,
        default=None,
        metavar="DIR",
        help="TensorBoard event files per cell in DIR (default DIR: RESULTS/tensorboard); "
        "needs pip install 'dcbench[tensorboard]'; the same as --track tensorboard[=DIR]",
    )
    _deterministic(p, "each cell's condensation and evaluation (recorded per cell; spec key deterministic)")
    _compile(p, "each evaluation's training and test passes (spec key compile)")
    p.add_argument(
        "--track",
        action="append",
        type=_tracking_request,
        metavar="NAME[=VALUE]",
        help="ask the tracking plugin NAME to follow every cell (VALUE: its setting, e.g. a "
        "directory); repeatable; spec table [tracking]",
    )
    _common(p)
    p.set_defaults(func=cmd_run)


def _add_report(sub: Subcommands) -> None:
    p = sub.add_parser("report", help="statistics, tables and plots from a results directory")
    p.add_argument("results_dir")
    p.add_argument("--out", help="output directory (default: RESULTS_DIR/report)")
    p.add_argument("--reference", default="random", help="method every other is compared with")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--format", help="comma-separated subset of csv,tex,md,png,pdf (default: all)")
    p.add_argument(
        "--unpaired",
        action="store_true",
        help="Welch t for every comparison, ignoring the recorded pairing (a sensitivity check)",
    )
    p.add_argument("--against", help="also compare with these results (a results directory or a published-numbers CSV)")
    p.set_defaults(func=cmd_report)


def _add_compare(sub: Subcommands) -> None:
    p = sub.add_parser("compare", help="hold a run against a reference, cell by cell (Welch t, Holm)")
    p.add_argument("run", help="a results directory")
    p.add_argument(
        "reference",
        help="a results directory, or a CSV of published numbers with columns "
        "method, dataset, ipc, mean, sd, n (optional eval_arch), accuracy in %%",
    )
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--csv", help="also write the per-cell comparison to this CSV file")
    p.add_argument(
        "--fail-on-differ",
        action="store_true",
        help=f"exit {EXIT_DIFFERS} when a cell differs (for CI); the default exit is 0 either way",
    )
    p.set_defaults(func=cmd_compare)


def _add_new_method(sub: Subcommands) -> None:
    p = sub.add_parser("new-method", help="write a plugin package skeleton for a new method")
    p.add_argument("name")
    p.add_argument("--path", help="where to write it (default: ./dcbench-NAME)")
    p.set_defaults(func=cmd_new_method)


def _add_import(sub: Subcommands) -> None:
    p = sub.add_parser("import", help="turn a synthetic set released by another project into a dcbench set")
    p.add_argument("file")
    p.add_argument(
        "--format",
        required=True,
        choices=("dc-repo", "mtt", "datm"),
        help="dc-repo: res_*.pt of the DC/DSA/DM scripts; mtt, datm: images_best.pt (labels_best.pt, "
        "lr_best.pt beside it)",
    )
    p.add_argument("--dataset", required=True)
    p.add_argument("--method", help="method name to record (default: from the file name, or the format)")
    whitened = p.add_mutually_exclusive_group()
    whitened.add_argument("--zca", dest="zca", action="store_true", default=None, help="the images are ZCA-whitened")
    whitened.add_argument("--no-zca", dest="zca", action="store_false", help="the images are not whitened")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=cmd_import)


def _add_artifacts(sub: Subcommands) -> None:
    p = sub.add_parser("artifacts", help="list or remove stored artifacts (expert trajectories, teachers)")
    p.add_argument("action", choices=("list", "remove"))
    p.add_argument("keys", nargs="*", help="for remove: the artifact keys (`dcbench artifacts list` shows them)")
    p.set_defaults(func=cmd_artifacts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dcbench", description="Benchmark dataset condensation methods.")
    parser.add_argument("--version", action="version", version=f"dcbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="show methods, datasets and architectures").set_defaults(func=cmd_list)
    sub.add_parser("plugins", help="show loaded plugins and their hooks").set_defaults(func=cmd_plugins)
    _add_condense(sub)
    _add_evaluate(sub)
    _add_run(sub)
    _add_report(sub)
    _add_compare(sub)
    _add_new_method(sub)
    _add_import(sub)
    _add_artifacts(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "threads", None):
            set_threads(args.threads)
        status = args.func(args) or 0
    except DcbenchError as exc:
        print(f"dcbench: error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # a full disk or a path that went away mid-run: the path and the cause
        print(f"dcbench: error: {one_line(describe_os_error(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("dcbench: interrupted; finished cells are kept, run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - an internal bug still gets one line unless debugging
        if os.environ.get("DCBENCH_DEBUG"):
            raise
        first = first_line(exc)
        print(
            f"dcbench: internal error: {type(exc).__name__}: {first} (set DCBENCH_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
