"""The runtime settings: allocator, threads, precision, in-place activations."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dcbench.cli import main
from dcbench.data.builtin import load_fashion_mnist
from dcbench.evaluation import Protocol, evaluate_synthetic
from dcbench.host import runtime
from dcbench.host.errors import DcbenchError
from dcbench.method.condense import condense
from dcbench.method.seeding import make_generator
from dcbench.nn.networks import BUILTIN_ARCHITECTURES, build_network, set_inplace_activations
from dcbench.plugins import load_plugins
from dcbench.run.spec import load_spec

ARCHS = {a.name: a for a in BUILTIN_ARCHITECTURES}


@pytest.fixture(scope="module")
def real(fashion_root: Path):
    return load_fashion_mnist(fashion_root)


# --- in-place activations --------------------------------------------------------------------------


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_inplace_activations_give_the_same_first_and_second_order_gradients(arch: str) -> None:
    """DC differentiates through parameter gradients: both orders must be unchanged by in-place
    ReLU, for every architecture (the norms save their inputs, never the activation's)."""
    options = {"width": 8} if arch.startswith("ConvNet") else {}
    net = build_network(ARCHS[arch], 1, 10, (28, 28), make_generator(0, "net"), **options)
    if arch == "ConvNetBN":
        net.eval()  # DC matches with frozen BatchNorm statistics
    x0 = torch.randn(6, 1, 28, 28, generator=make_generator(0, "x"))
    y = torch.arange(6) % 10
    results = []
    for inplace in (False, True):
        set_inplace_activations(net, inplace)
        x = x0.clone().requires_grad_(True)
        grads = torch.autograd.grad(
            torch.nn.functional.cross_entropy(net(x), y), list(net.parameters()), create_graph=True
        )
        second = torch.autograd.grad(sum((g**2).sum() for g in grads), x)[0]
        results.append((grads, second))
    (g_off, s_off), (g_on, s_on) = results
    for a, b in zip(g_off, g_on):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(s_off, s_on, rtol=0, atol=0)


def test_networks_are_built_with_inplace_activations_and_can_switch_them_off() -> None:
    net = build_network(ARCHS["ConvNet"], 1, 10, (28, 28), make_generator(0), width=8)
    relus = [m for m in net.modules() if isinstance(m, torch.nn.ReLU)]
    assert relus and all(m.inplace for m in relus)
    set_inplace_activations(net, False)
    assert not any(m.inplace for m in relus)


# --- allocator ------------------------------------------------------------------------------------

FAULTS_OF_THREE_STEPS = """
import resource
import dcbench, torch
from dcbench.nn.networks import BUILTIN_ARCHITECTURES, build_network
from dcbench.method.seeding import make_generator
convnet = next(a for a in BUILTIN_ARCHITECTURES if a.name == "ConvNet")
net = build_network(convnet, 1, 10, (28, 28), make_generator(0), width=32)
x, y = torch.randn(128, 1, 28, 28, generator=make_generator(0, "x")), torch.arange(128) % 10
def step():
    net.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(net(x), y).backward()
step(); step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    step()
print(dcbench.host.runtime.allocator(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_allocator_keeps_freed_memory_so_a_training_loop_stops_faulting() -> None:
    """After the first step, a step reuses the pages of the last one: almost no minor page faults,
    where glibc's defaults map and fault every large activation in again, every step. Counted in
    fresh processes: in the test process, other tests' threads and arenas add faults of their own
    (counted there, it once exceeded its bound in a full run)."""

    def faults(env: dict[str, str]) -> tuple[str, int]:
        done = subprocess.run(
            [sys.executable, "-c", FAULTS_OF_THREE_STEPS],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, **env},
        )
        allocator, count = done.stdout.split()
        return allocator, int(count)

    allocator, kept = faults({"DCBENCH_MALLOC": ""})
    if allocator != "mallopt":
        pytest.skip(f"allocator tuning not active here ({allocator})")
    if kept >= 8000:  # the heap may still grow once by an activation or two: take the better of two
        kept = min(kept, faults({"DCBENCH_MALLOC": ""})[1])
    _, system = faults({"DCBENCH_MALLOC": "system"})
    # measured: 0-4,096 faults kept (mostly 0), 37,000-42,000 with glibc's defaults
    assert kept < 8000 and kept * 4 < system, (kept, system)


def test_allocator_can_be_switched_off_and_is_applied_in_every_process(tmp_path: Path) -> None:
    code = "import dcbench.host.runtime as r, dcbench; print(r.allocator())"
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    off = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"DCBENCH_MALLOC": "system", "PATH": "/usr/bin:/bin"},
    )
    assert on.stdout.strip() in ("mallopt", "unavailable")
    assert off.stdout.strip() == "system"


def test_openmp_spin_is_shortened_only_when_the_user_chose_nothing() -> None:
    code = "import os, dcbench, torch; print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))"
    default = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"}
    )
    chosen = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "OMP_WAIT_POLICY": "ACTIVE"},
    )
    assert default.stdout.split() == [runtime.DEFAULT_SPINCOUNT, "None"]
    assert chosen.stdout.split() == ["None", "ACTIVE"]


# --- threads --------------------------------------------------------------------------------------


def test_threads_option_sets_torch_threads_and_refuses_nonsense(capsys: pytest.CaptureFixture[str]) -> None:
    before = torch.get_num_threads()
    try:
        assert runtime.set_threads(1) == 1 and torch.get_num_threads() == 1
        with pytest.raises(DcbenchError, match="threads"):
            runtime.set_threads(0)
        with pytest.raises(DcbenchError, match="threads"):
            runtime.set_threads(True)  # type: ignore[arg-type]
    finally:
        torch.set_num_threads(before)
    with pytest.raises(SystemExit) as exc:
        main(
            ["condense", "--threads", "0", "--method", "random", "--dataset", "fashion-mnist", "--ipc", "1", "-o", "x"]
        )
    assert exc.value.code == 2
    assert "--threads" in capsys.readouterr().err


def test_spec_threads_and_precision_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('threads = 1\nprecision = "bf16"\n')
    spec = load_spec(path)
    assert (spec.threads, spec.precision) == (1, "bf16")
    for bad, match in (("threads = 0", "threads"), ("threads = true", "threads"), ('precision = "fp8"', "precision")):
        path.write_text(bad + "\n")
        with pytest.raises(DcbenchError, match=match):
            load_spec(path)


def test_run_applies_the_thread_count_to_every_cell(tmp_path: Path, fashion_root: Path) -> None:
    import json

    spec = tmp_path / "t.toml"
    spec.write_text('preset = "smoke"\nmethods = ["random"]\nipcs = [1]\nseeds = [0]\nthreads = 1\n')
    before = torch.get_num_threads()
    try:
        assert (
            main(
                [
                    "run",
                    str(spec),
                    "--out",
                    str(tmp_path / "out"),
                    "--data-root",
                    str(fashion_root),
                    "--device",
                    "cpu",
                    "--quiet",
                ]
            )
            == 0
        )
    finally:
        torch.set_num_threads(before)
    metrics = json.loads(next((tmp_path / "out" / "runs").glob("*/metrics.json")).read_text())
    assert metrics["threads"] == 1 and metrics["precision"] == "fp32"


# --- precision ------------------------------------------------------------------------------------

#: the tests that run bf16 on the CPU; elsewhere dcbench refuses it (next tests)
needs_native_bf16 = pytest.mark.skipif(
    not runtime.native_bf16("cpu"), reason="this CPU names no AVX-512 BF16, AMX or Arm BF16"
)


def test_precision_is_checked() -> None:
    with pytest.raises(DcbenchError, match="precision"):
        runtime.check_precision("fp16", "cpu")
    with pytest.raises(DcbenchError, match="precision"):
        Protocol(precision="half")


@needs_native_bf16
def test_native_bf16_is_accepted() -> None:
    assert runtime.check_precision("bf16", "cpu") == "bf16"


@needs_native_bf16
def test_autocast_runs_convolutions_in_bf16_and_fp32_leaves_them_alone() -> None:
    net = build_network(ARCHS["ConvNet"], 1, 10, (28, 28), make_generator(0), width=8)
    x = torch.randn(2, 1, 28, 28)
    with runtime.autocast("fp32", "cpu"):
        assert net(x).dtype == torch.float32
    with runtime.autocast("bf16", "cpu"):
        assert net.features(x)[0].dtype == torch.bfloat16


@needs_native_bf16
def test_bf16_is_recorded_in_the_manifest_hash_and_protocol(real) -> None:
    registry = load_plugins()
    fp32 = condense(registry.method("dm"), real, 1, 0, "smoke")
    bf16 = condense(registry.method("dm"), real, 1, 0, "smoke", precision="bf16")
    assert fp32.synthetic.manifest["precision"] == "fp32" and bf16.synthetic.manifest["precision"] == "bf16"
    assert fp32.synthetic.manifest["config_hash"] != bf16.synthetic.manifest["config_hash"]
    assert bf16.synthetic.images.dtype == torch.float32  # the images stay fp32; only the passes are bf16
    assert not torch.equal(fp32.synthetic.images, bf16.synthetic.images)
    protocol = Protocol.for_preset("smoke", real.name, precision="bf16")
    assert "/bf16/" in protocol.name
    result = evaluate_synthetic(bf16.synthetic, real, protocol, 0)
    assert all(0 <= a <= 1 for a in result.test_accs) and result.protocol["precision"] == "bf16"
    assert result.train_seconds > 0 and result.test_seconds > 0


@needs_native_bf16
def test_cli_precision_reaches_condense_and_evaluate(
    tmp_path: Path, fashion_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    out = tmp_path / "set"
    assert (
        main(
            [
                "condense",
                "--method",
                "dm",
                "--dataset",
                "fashion-mnist",
                "--ipc",
                "1",
                "--preset",
                "smoke",
                "--precision",
                "bf16",
                "-o",
                str(out),
                "--data-root",
                str(fashion_root),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert json.loads((out / "manifest.json").read_text())["precision"] == "bf16"
    assert (
        main(
            [
                "evaluate",
                str(out),
                "--preset",
                "smoke",
                "--precision",
                "bf16",
                "--data-root",
                str(fashion_root),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert "/bf16/" in capsys.readouterr().out


def test_native_bf16_follows_what_onednn_can_run() -> None:
    """Held to AVX2 (a CPU without AVX-512 BF16 or AMX), oneDNN has no bf16 kernels: detected."""
    code = "import dcbench.host.runtime as r; print(r.native_bf16('cpu'))"
    capped = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"},
    )
    assert capped.stdout.strip() == "False"


def test_emulated_bf16_is_refused_before_any_work(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fashion_root: Path, real, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a CPU without native bf16 autocast would emulate it, 2-12x slower: one line, exit 2, and
    nothing written (a protocol without a device is still only checked by name)."""
    monkeypatch.setattr(runtime, "native_bf16", lambda device_type: False)
    assert Protocol(precision="bf16").precision == "bf16"
    with pytest.raises(DcbenchError, match="bf16 is not native here.*--precision fp32"):
        condense(load_plugins().method("random"), real, 1, 0, "smoke", precision="bf16")
    with pytest.raises(DcbenchError, match="bf16 is not native here"):
        evaluate_synthetic(
            condense(load_plugins().method("random"), real, 1, 0, "smoke").synthetic,
            real,
            Protocol.for_preset("smoke", real.name, precision="bf16"),
            0,
        )
    capsys.readouterr()
    spec = tmp_path / "spec.toml"
    spec.write_text('name = "b"\npreset = "smoke"\nmethods = ["random"]\nipcs = [1]\nseeds = [0]\n')
    out = tmp_path / "out"
    assert (
        main(
            [
                "run",
                str(spec),
                "--out",
                str(out),
                "--data-root",
                str(fashion_root),
                "--device",
                "cpu",
                "--precision",
                "bf16",
                "--quiet",
                "--reference",
                "none",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bf16 is not native here" in err[0] and "Traceback" not in err[0]
    assert not out.exists()


CPUINFO = Path(__file__).parent / "cpuinfo"


@pytest.mark.parametrize(
    "cpu, native",
    [
        ("zen4-epyc", True),  # recorded on the development VM: AVX-512 with BF16
        ("xeon-avx512-no-bf16", False),  # an Intel Xeon @ 2.60GHz with AVX-512 but no BF16 or AMX
        ("xeon-amx", True),  # a Sapphire Rapids Xeon: AMX and AVX-512 BF16
        ("xeon-amx-dev-2026-12-04", True),  # recorded on the development VM of 2026-12-04: AMX
        ("avx2-only", False),  # a Zen 2 EPYC
        ("graviton3-arm", True),  # Neoverse V1: Armv8.6 BF16
        ("graviton2-arm", False),  # Neoverse N1: no BF16
    ],
)
def test_native_bf16_is_read_from_the_cpu_flags(cpu: str, native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """oneDNN says yes on any AVX-512 CPU (it would emulate bf16 there); the flags decide."""
    monkeypatch.setattr(runtime, "_onednn_bf16", lambda: True)
    runtime.native_bf16.cache_clear()
    try:
        assert runtime.native_bf16("cpu", str(CPUINFO / f"{cpu}.txt")) is native
    finally:
        runtime.native_bf16.cache_clear()


def test_cpu_flags_parse_and_an_unreadable_cpuinfo_defers_to_onednn(monkeypatch: pytest.MonkeyPatch) -> None:
    assert runtime.cpuinfo_flags("processor : 0\nflags : fpu avx512_bf16\n") == {"fpu", "avx512_bf16"}
    assert runtime.cpuinfo_flags("processor : 0\n") is None
    monkeypatch.setattr(runtime, "_onednn_bf16", lambda: False)
    runtime.native_bf16.cache_clear()
    try:
        assert runtime.native_bf16("cpu", str(CPUINFO / "zen4-epyc.txt")) is False  # ONEDNN_MAX_CPU_ISA caps it
        monkeypatch.setattr(runtime, "_onednn_bf16", lambda: True)
        runtime.native_bf16.cache_clear()
        assert runtime.native_bf16("cpu", "/nonexistent/cpuinfo") is True
    finally:
        runtime.native_bf16.cache_clear()


# --- deterministic algorithms ---------------------------------------------------------------------

#: a method and an architecture that note torch's deterministic setting when they run
PROBE_PLUGIN = """
    from dataclasses import dataclass
    from typing import ClassVar
    import torch
    from dcbench import hookimpl
    from dcbench.api import Method, SyntheticSet, class_major_labels
    from dcbench.nn.networks import Architecture, MLP

    seen = {"evaluation": []}

    @dataclass
    class ProbeConfig:
        PRESETS: ClassVar[dict] = {}

    class Probe(Method):
        name = "probe"
        description = "zero images; notes torch's deterministic setting"
        config_class = ProbeConfig

        def condense(self, real, ipc, config, seed, ctx):
            ctx.metrics.update(iterations=0, deterministic_seen=torch.are_deterministic_algorithms_enabled())
            return SyntheticSet(torch.zeros(real.num_classes * ipc, real.channels, *real.image_size),
                                class_major_labels(real.num_classes, ipc))

    def probe_net(*args, **kwargs):
        seen["evaluation"].append(torch.are_deterministic_algorithms_enabled())
        return MLP(*args, **kwargs)

    @hookimpl
    def dcbench_register_methods(register):
        register(Probe())

    @hookimpl
    def dcbench_register_architectures(register):
        register(Architecture("ProbeNet", probe_net))
"""


def test_deterministic_restores_the_previous_setting_and_sets_cublas_only_for_cuda(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    assert not torch.are_deterministic_algorithms_enabled()
    with runtime.deterministic_algorithms(True, "cuda"):
        assert (
            torch.are_deterministic_algorithms_enabled() and not torch.is_deterministic_algorithms_warn_only_enabled()
        )
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert not torch.are_deterministic_algorithms_enabled() and "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    with runtime.deterministic_algorithms(True, "cpu"):
        assert torch.are_deterministic_algorithms_enabled() and "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # the user's own choice is kept
    torch.use_deterministic_algorithms(True, warn_only=True)  # a caller's setting, warn-only included
    try:
        with runtime.deterministic_algorithms(True, "cuda"):
            assert not torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
        with runtime.deterministic_algorithms(False, "cuda"):  # off: leaves it alone
            assert torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize("flag", [False, True])
def test_deterministic_is_on_while_a_cell_works_and_recorded_with_it(
    extra_plugins, tmp_path: Path, fashion_root: Path, flag: bool
) -> None:
    import json

    import pandas as pd

    extra_plugins("probe", PROBE_PLUGIN)
    spec = tmp_path / "t.toml"
    spec.write_text('preset = "smoke"\nmethods = ["probe"]\nipcs = [1]\nseeds = [0]\neval_archs = ["ProbeNet"]\n')
    common = ["--data-root", str(fashion_root), "--device", "cpu", "--quiet", "--reference", "none"]
    assert main(["run", str(spec), "--out", str(tmp_path / "out"), *common] + ["--deterministic"] * flag) == 0
    assert not torch.are_deterministic_algorithms_enabled()  # restored after the cell
    metrics = json.loads(next((tmp_path / "out" / "runs").glob("*/metrics.json")).read_text())
    assert metrics["deterministic"] is flag and metrics["method_metrics"]["deterministic_seen"] is flag
    assert set(sys.modules["dcbench_test_probe"].seen["evaluation"]) == {flag}  # the evaluation's networks too
    assert set(pd.read_csv(tmp_path / "out" / "runs.csv")["deterministic"]) == {flag}
    assert ("deterministic = true" in (tmp_path / "out" / "spec.toml").read_text()) is flag


def test_evaluate_deterministic_is_on_while_it_trains(extra_plugins, tmp_path: Path, fashion_root: Path) -> None:
    extra_plugins("probe", PROBE_PLUGIN)
    common = ["--data-root", str(fashion_root), "--device", "cpu", "--preset", "smoke"]
    assert (
        main(
            [
                "condense",
                "--method",
                "probe",
                "--dataset",
                "fashion-mnist",
                "--ipc",
                "1",
                "-o",
                str(tmp_path / "s"),
                *common,
            ]
        )
        == 0
    )
    assert (
        main(["evaluate", str(tmp_path / "s"), "--arch", "ProbeNet", "--models", "1", "--deterministic", *common]) == 0
    )
    assert main(["evaluate", str(tmp_path / "s"), "--arch", "ProbeNet", "--models", "1", *common]) == 0
    seen = sys.modules["dcbench_test_probe"].seen["evaluation"]
    assert seen[0] is True and seen[-1] is False and len(seen) == 2
    assert not torch.are_deterministic_algorithms_enabled()


def test_spec_deterministic_is_a_flag(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text("deterministic = true\n")
    assert load_spec(path).deterministic
    path.write_text('deterministic = "yes"\n')
    with pytest.raises(DcbenchError, match="deterministic"):
        load_spec(path)
