"""The plugin host: loading, isolation of broken plugins, registration hooks and observer hooks."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest
from plugin_sources import GOOD_PLUGIN

from dcbench import hookimpl
from dcbench.host.errors import DcbenchError
from dcbench.method.contract import Method
from dcbench.plugins import ENTRY_POINT_GROUP, hookspecs, load_plugins
from dcbench.run.cell import execute_cell
from dcbench.run.plan import plan_cells
from dcbench.run.shared import registry as shared_registry
from dcbench.run.shared import reset_caches


def test_builtin_plugins_come_through_the_entry_point_group() -> None:
    names = {ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    assert {"coresets", "dc", "dm", "cafe"} <= names
    registry = load_plugins()
    assert {"random", "herding", "whole"} <= set(registry.methods)
    assert registry.owners[("method", "random")] == "coresets"
    assert {"fashion-mnist", "mnist", "cifar10", "cifar100", "svhn"} <= set(registry.datasets)
    assert {"ConvNet", "MLP", "LeNet", "AlexNet", "VGG11", "ResNet18"} <= set(registry.architectures)


def test_third_party_plugin_is_loaded(extra_plugins) -> None:
    extra_plugins("zero", GOOD_PLUGIN.replace("{name}", "zero"))
    registry = load_plugins()
    assert registry.methods["zero"].version == "9.9" and registry.owners[("method", "zero")] == "zero"


@pytest.mark.parametrize(
    "source,reason",
    [
        ("raise ImportError('missing dependency foo')", "ImportError: missing dependency foo"),
        ("from dcbench import hookimpl\n@hookimpl\ndef dcbench_regsiter_methods(register): pass\n", "unknown hook"),
        ("from dcbench import hookimpl\n@hookimpl\ndef dcbench_register_methods(register, extra): pass\n", "extra"),
        (
            "from dcbench import hookimpl\n@hookimpl\ndef dcbench_register_methods(register):\n    register(42)\n",
            "expects a Method",
        ),
        (
            "from dcbench import hookimpl\n@hookimpl\ndef dcbench_register_methods(register):\n    1 / 0\n",
            "ZeroDivisionError",
        ),
    ],
)
def test_broken_plugin_is_reported_in_one_line_and_skipped(extra_plugins, capsys, source: str, reason: str) -> None:
    extra_plugins("broken", source)
    extra_plugins("zero", GOOD_PLUGIN.replace("{name}", "zero"))
    registry = load_plugins()
    assert "zero" in registry.methods and "random" in registry.methods
    assert [p for p, _ in registry.broken] == ["broken"]
    assert re.search(reason, registry.broken[0][1])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dcbench: skipping broken plugin 'broken'")


def test_strict_mode_raises(extra_plugins, monkeypatch: pytest.MonkeyPatch) -> None:
    extra_plugins("broken", "raise ImportError('nope')")
    monkeypatch.setenv("DCBENCH_STRICT_PLUGINS", "1")
    with pytest.raises(DcbenchError, match="plugin 'broken' is broken"):
        load_plugins()


def test_two_methods_with_one_name_are_refused(extra_plugins) -> None:
    extra_plugins("impostor", GOOD_PLUGIN.replace("{name}", "random"))
    with pytest.raises(DcbenchError, match="'random' is registered by both 'coresets' and 'impostor'"):
        load_plugins()


def test_allow_list_and_block_list(extra_plugins, monkeypatch: pytest.MonkeyPatch) -> None:
    extra_plugins("zero", GOOD_PLUGIN.replace("{name}", "zero"))
    monkeypatch.setenv("DCBENCH_LOAD_PLUGINS", "zero")
    assert set(load_plugins().methods) == {"zero"}
    monkeypatch.setenv("DCBENCH_LOAD_PLUGINS", "")
    assert load_plugins().methods == {}
    monkeypatch.delenv("DCBENCH_LOAD_PLUGINS")
    monkeypatch.setenv("DCBENCH_DISABLE_PLUGINS", "zero,coresets")
    methods = load_plugins().methods
    assert "zero" not in methods and "random" not in methods


def test_trace_prints_hook_calls(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("DCBENCH_TRACE_PLUGINS", "1")
    registry = load_plugins()
    registry.manager.hook.dcbench_cell_started(cell={"id": "x"})
    assert "[dcbench trace] dcbench_cell_started" in capsys.readouterr().err


# --- one test per hook (datasette's rule: every hook has a test_hook_<name>) ---------------------

HOOK_NAMES = sorted(name for name in dir(hookspecs) if name.startswith("dcbench_"))


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_every_hook_has_a_test_and_a_docstring(hook: str) -> None:
    assert f"test_hook_{hook}" in globals(), f"write test_hook_{hook}"
    assert getattr(hookspecs, hook).__doc__.strip()


def test_every_hook_is_documented_in_the_plugin_guide() -> None:
    guide = (Path(__file__).parents[2] / "docs" / "writing-a-plugin.md").read_text()
    for hook in HOOK_NAMES:
        assert hook in guide, f"docs/writing-a-plugin.md does not mention {hook}"


class Recorder:
    __name__ = "Recorder"

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    @hookimpl
    def dcbench_cell_started(self, cell):
        self.calls.append(("started", dict(cell)))

    @hookimpl
    def dcbench_condense_progress(self, cell, step, total, metrics):
        self.calls.append(("progress", {"step": step, "total": total}))

    @hookimpl
    def dcbench_cell_finished(self, cell, result):
        self.calls.append(("finished", {"status": result["status"]}))


def test_hook_dcbench_register_methods(extra_plugins) -> None:
    extra_plugins("zero", GOOD_PLUGIN.replace("{name}", "zero"))
    assert isinstance(load_plugins().method("zero"), Method)


def test_hook_dcbench_register_datasets(extra_plugins) -> None:
    extra_plugins(
        "toy",
        """
        from dcbench import hookimpl
        from dcbench.data.real import DatasetSpec
        @hookimpl
        def dcbench_register_datasets(register):
            register(DatasetSpec("toy", lambda root: None, "a toy"))
    """,
    )
    assert load_plugins().dataset("toy").description == "a toy"


def test_hook_dcbench_register_architectures(extra_plugins) -> None:
    extra_plugins(
        "tiny",
        """
        import torch
        from dcbench import hookimpl
        from dcbench.nn.networks import Architecture
        @hookimpl
        def dcbench_register_architectures(register):
            register(Architecture("Tiny", lambda c, k, size: torch.nn.Linear(c * size[0] * size[1], k)))
    """,
    )
    assert load_plugins().architecture("Tiny").name == "Tiny"


def _run_one_cell(tmp_path: Path, fashion_root: Path, recorder: Recorder, method: str = "herding") -> dict:
    from dcbench.run.spec import Spec

    reset_caches()
    registry = shared_registry()
    registry.manager.register(recorder, name="recorder")
    try:
        spec = Spec(name="t", preset="smoke", methods=[method], ipcs=[1], seeds=[0])
        [cell] = plan_cells(spec, registry, str(fashion_root), "cpu")
        return execute_cell(cell, str(tmp_path))
    finally:
        registry.manager.unregister(name="recorder")
        reset_caches()


def test_hook_dcbench_tracking_setting(extra_plugins, tmp_path: Path) -> None:
    extra_plugins(
        "notes",
        """
        from dcbench import hookimpl
        @hookimpl
        def dcbench_tracking_setting(name, value, results_dir):
            return f"{results_dir}/notes.txt" if name == "notes" else None
    """,
    )
    hook = load_plugins().manager.hook.dcbench_tracking_setting
    assert hook(name="notes", value=True, results_dir=tmp_path) == f"{tmp_path}/notes.txt"
    assert hook(name="tensorboard", value=True, results_dir=tmp_path) == str((tmp_path / "tensorboard").resolve())
    assert hook(name="tensorboard", value="tb", results_dir=tmp_path) == str(Path("tb").resolve())
    assert hook(name="wandb", value=True, results_dir=tmp_path) is None  # nobody's: the runner refuses it


def test_hook_dcbench_cell_started(tmp_path: Path, fashion_root: Path) -> None:
    recorder = Recorder()
    _run_one_cell(tmp_path, fashion_root, recorder)
    assert recorder.calls[0] == (
        "started",
        {
            "id": "herding-fashion-mnist-ipc1-s0",
            "method": "herding",
            "dataset": "fashion-mnist",
            "ipc": 1,
            "seed": 0,
            "preset": "smoke",
            "directory": str((tmp_path / "runs" / "herding-fashion-mnist-ipc1-s0").resolve()),
            "tracking": {},
        },
    )


def test_hook_dcbench_condense_progress(tmp_path: Path, fashion_root: Path) -> None:
    recorder = Recorder()
    _run_one_cell(tmp_path, fashion_root, recorder)
    progress = [c for kind, c in recorder.calls if kind == "progress"]
    assert progress and progress[-1] == {"step": 10, "total": 10}  # herding reports once per class


def test_hook_dcbench_cell_finished(tmp_path: Path, fashion_root: Path) -> None:
    recorder = Recorder()
    _run_one_cell(tmp_path, fashion_root, recorder)
    assert recorder.calls[-1] == ("finished", {"status": "done"})
