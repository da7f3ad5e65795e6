"""torch.compile of the evaluation: when each mode compiles, the protocol identity it makes, and a
compiled evaluation that matches the eager one within float rounding."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from dcbench.evaluation import Protocol, evaluate_synthetic
from dcbench.evaluation.training import _SingleModel
from dcbench.host.errors import DcbenchError
from dcbench.method.contract import class_major_labels, init_synthetic_images
from dcbench.method.seeding import make_generator
from dcbench.method.synthetic import SyntheticSet
from dcbench.nn import compiling
from dcbench.nn.compiling import AUTO_MIN_CPU_MODEL_EPOCHS, compile_unavailable, resolve_compile
from dcbench.nn.networks import BUILTIN_ARCHITECTURES, build_network
from dcbench.results.identity import protocol_hash
from dcbench.run.plan import plan_cells
from dcbench.run.shared import registry as shared_registry
from dcbench.run.spec import Spec
from dcbench.testing import tiny_dataset

CONVNET = {a.name: a for a in BUILTIN_ARCHITECTURES}["ConvNet"]


@pytest.fixture
def can_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiling, "compile_unavailable", lambda device_type: None)


def test_auto_compiles_a_cpu_evaluation_only_at_the_paper_budget(can_compile: None) -> None:
    quick = Protocol.for_preset("quick", "fashion-mnist")
    paper = Protocol.for_preset("paper", "fashion-mnist")
    assert not resolve_compile("auto", "cpu", quick.models * (quick.epochs + 1))  # 151 model-epochs
    assert resolve_compile("auto", "cpu", paper.models * (paper.epochs + 1))  # 6020
    assert resolve_compile("auto", "cpu", AUTO_MIN_CPU_MODEL_EPOCHS)
    assert not resolve_compile("auto", "cpu", AUTO_MIN_CPU_MODEL_EPOCHS - 1)
    assert not resolve_compile("auto", "cuda", 10**6)  # not measured on a GPU yet
    assert resolve_compile("on", "cpu", 1) and not resolve_compile("off", "cpu", 10**6)


def test_a_machine_that_cannot_compile_refuses_on_and_runs_auto_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiling.shutil, "which", lambda name: None)
    monkeypatch.delenv("CXX", raising=False)
    reason = compile_unavailable("cpu")
    assert reason is not None and "C++ compiler" in reason
    assert not resolve_compile("auto", "cpu", 10**6)
    with pytest.raises(DcbenchError, match="--compile on cannot run here: no C\\+\\+ compiler.*use --compile off"):
        resolve_compile("on", "cpu", 1)
    with pytest.raises(DcbenchError, match="unknown compile mode 'fast'; choose one of auto, off, on"):
        resolve_compile("fast", "cpu", 1)
    assert compile_unavailable("mps") is not None


def test_a_compiled_evaluation_is_its_own_protocol_and_eager_keeps_its_hash() -> None:
    eager = Protocol.for_preset("quick", "fashion-mnist")
    fast = Protocol.for_preset("quick", "fashion-mnist", compiled=True)
    assert "compiled" not in eager.to_dict()  # protocols recorded before the option keep their hash
    assert eager.name == "ConvNet-W32/150ep/none/v2" and fast.name == "ConvNet-W32/150ep/none/compiled/v2"
    assert protocol_hash([eager.to_dict()]) != protocol_hash([fast.to_dict()])
    assert Protocol.from_dict(fast.to_dict()) == fast


def test_a_spec_chooses_the_compile_mode_and_the_plan_records_it(can_compile: None) -> None:
    def names(**values: object) -> set[str]:
        spec = Spec(name="c", preset="quick", methods=["random"], ipcs=[1], seeds=[0], **values)  # type: ignore[arg-type]
        spec.validate()
        return {c.protocols[0]["name"] for c in plan_cells(spec, shared_registry(), None, "cpu")}

    assert names() == {"ConvNet-W32/150ep/none/v2"}  # auto at the quick budget: eager, the reference's
    assert names(compile="on") == {"ConvNet-W32/150ep/none/compiled/v2"}
    assert names(compile="off", eval_models=20, eval_epochs=300) == {"ConvNet-W32/300ep/none/v2"}
    assert names(eval_models=20, eval_epochs=300) == {"ConvNet-W32/300ep/none/compiled/v2"}
    with pytest.raises(DcbenchError, match="compile"):
        Spec(compile="fast").validate()


@pytest.mark.slow
def test_compiled_training_and_testing_match_eager_within_float_rounding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if compile_unavailable("cpu"):
        pytest.skip(f"torch.compile cannot run here: {compile_unavailable('cpu')}")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    torch.manual_seed(0)  # dynamo's tracing draws nothing, but a stray draw would show up below
    real = tiny_dataset(num_classes=3, size=16, per_class=8, test_per_class=4)
    net = build_network(CONVNET, 1, 3, (16, 16), make_generator(0, "net"), width=8, depth=2)
    x = real.train_images[:6].unsqueeze(0)
    y = real.train_labels[:6]
    grads = []
    for compile in (False, True):
        model = _SingleModel(copy.deepcopy(net), compile)
        loss = F.cross_entropy(model.logits(x)[0], y)
        loss.backward()
        grads.append([p.grad for p in model.parameters()])
        test = model.logits_shared(real.test_images)
        eager_test = net.eval()(real.test_images)
        torch.testing.assert_close(test[0], eager_test, rtol=1e-4, atol=1e-5)
    for eager_grad, compiled_grad in zip(*grads):
        torch.testing.assert_close(compiled_grad, eager_grad, rtol=1e-4, atol=1e-6)

    synthetic = SyntheticSet(
        init_synthetic_images(real, 2, "real", make_generator(0, "init")), class_major_labels(real.num_classes, 2)
    )
    options = {"epochs": 3, "models": 2, "arch_options": {"width": 8, "depth": 2}}
    accs = {}
    for compile in (False, True):
        for stacked in (False, True):
            protocol = Protocol(compiled=compile, **options)  # type: ignore[arg-type]
            result = evaluate_synthetic(synthetic, real, protocol, 0, stacked=stacked)
            accs[compile, stacked] = result.test_accs
            assert result.protocol["name"].endswith("/compiled/v2") == compile
    # a few steps of SGD from the same start: the same predictions on every test image
    assert accs[True, False] == accs[False, False] and accs[True, True] == accs[False, True]
