"""The conformance kit: every installed method passes it, and it catches each broken promise."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from dcbench.data.builtin import load_fashion_mnist
from dcbench.data.real import RealDataset
from dcbench.host.errors import DcbenchError
from dcbench.method.contract import CondenseContext, Method, class_major_labels, init_synthetic_images
from dcbench.method.seeding import make_generator
from dcbench.method.synthetic import SyntheticSet
from dcbench.plugins import load_plugins
from dcbench.testing import CHECKS, ConformanceSuite, check_method, conformance_cases, tiny_dataset

INSTALLED = [method for _, method in sorted(load_plugins().methods.items()) if not method.reference_only]


@pytest.mark.parametrize("suite, check", conformance_cases(INSTALLED))
def test_installed_method_conforms(suite: ConformanceSuite, check: str) -> None:
    suite.run(check)


# --- the kit catches what it promises to catch ----------------------------------------------------


@dataclass
class ToyConfig:
    scale: float = 1.0
    PRESETS: ClassVar[dict[str, dict]] = {"smoke": {"scale": 0.5}}


@dataclass
class ToyConfigWithTypo:
    scale: float = 1.0
    PRESETS: ClassVar[dict[str, dict]] = {"smoke": {}, "quik": {"scale": 0.5}}


@dataclass
class ToyConfigWithInvalidQuickPreset:
    scale: float = 1.0
    PRESETS: ClassVar[dict[str, dict]] = {"quick": {"scale": -1.0}}

    def validate(self) -> None:
        if self.scale <= 0:
            raise DcbenchError(f"toy setting 'scale' must be > 0, got {self.scale}")


CONFIG_DEFECTS = {"preset typo": ToyConfigWithTypo, "invalid quick preset": ToyConfigWithInvalidQuickPreset}


class ToyMethod(Method):
    """Scaled random real images plus seeded noise; ``defect`` breaks one promise on purpose."""

    name = "toy"
    version = "1.0.0"
    description = "scaled random real images plus noise"
    config_class = ToyConfig

    def __init__(self, defect: str | None = None) -> None:
        self.defect = defect
        self.config_class = CONFIG_DEFECTS.get(defect, ToyConfig)

    def condense(self, real: RealDataset, ipc: int, config: ToyConfig, seed: int, ctx: CondenseContext) -> SyntheticSet:
        g = make_generator(0 if self.defect == "ignores seed" else seed, "toy")
        images = init_synthetic_images(real, ipc, "real", g) * config.scale
        images = images + 0.1 * torch.randn(images.shape, generator=g)
        labels = class_major_labels(real.num_classes, ipc)
        if self.defect == "global rng":
            images = images + torch.randn(images.shape)
        if self.defect == "forked global rng":  # restores the state, still depends on it
            with torch.random.fork_rng(devices=[]):
                images = images + torch.randn(images.shape)
        if self.defect == "interleaved labels":
            labels = torch.arange(real.num_classes).repeat(ipc)
        if self.defect == "diverges":
            images = images * 1e6
        if self.defect == "edits real data":
            real.train_images.mul_(2)
        if self.defect == "slow":
            time.sleep(0.6)
        if self.defect == "runs off the device":  # moves its network elsewhere (meta stands for a GPU)
            net = ctx.build_network("ConvNet", real, make_generator(seed, "net")).to("meta")
            net(torch.zeros(1, *images.shape[1:], device="meta"))
        if self.defect != "no iterations metric":
            ctx.metrics["iterations"] = 0
        return SyntheticSet(images, labels)


def failing_checks(suite: ConformanceSuite) -> set[str]:
    failed = set()
    for check in CHECKS:
        try:
            suite.run(check)
        except AssertionError:
            failed.add(check)
    return failed


@pytest.mark.parametrize(
    "defect, expected",
    [
        (None, set()),
        ("global rng", {"global_rng", "determinism"}),
        ("forked global rng", {"global_rng"}),
        ("ignores seed", {"seed_sensitivity"}),
        ("interleaved labels", {"labels"}),
        ("diverges", {"shapes"}),
        ("edits real data", {"real_data_untouched"}),
        ("no iterations metric", {"metrics"}),
        ("preset typo", {"metadata"}),
        ("invalid quick preset", {"metadata", "config_roundtrip"}),
        ("slow", {"smoke_time"}),
        ("runs off the device", {"device"}),
    ],
)
def test_each_defect_fails_exactly_its_check(defect: str | None, expected: set[str]) -> None:
    assert failing_checks(ConformanceSuite(ToyMethod(defect), smoke_seconds=0.3)) == expected


def test_check_method_lists_every_failure_in_one_error() -> None:
    check_method(ToyMethod())
    with pytest.raises(AssertionError) as info:
        check_method(ToyMethod("global rng"))
    lines = str(info.value).splitlines()
    assert [line.split("'")[3] for line in lines] == ["determinism", "global_rng"]
    assert all(line.startswith("method 'toy' fails conformance check") for line in lines)
    assert "torch" in lines[1] and "make_generator" in lines[1]


def test_a_declared_seed_independent_method_skips_seed_sensitivity() -> None:
    check_method(ToyMethod("ignores seed"), seed_independent=True)
    cases = conformance_cases([ToyMethod("ignores seed")], seed_independent=True)
    skipped = [case.id for case in cases if case.marks]
    assert skipped == ["toy-seed_sensitivity", "toy-resume"]  # the toy is not resumable either


class IterativeToy(Method):
    """A resumable toy: a few noisy SGD-with-momentum steps on real images; ``defect`` breaks resuming."""

    name = "itoy"
    version = "1.0.0"
    description = "noisy momentum steps from real images"
    config_class = ToyConfig
    resumable = True

    def __init__(self, defect: str | None = None) -> None:
        self.defect = defect

    def condense(self, real: RealDataset, ipc: int, config: ToyConfig, seed: int, ctx: CondenseContext) -> SyntheticSet:
        images = init_synthetic_images(real, ipc, "real", make_generator(seed, "init")).requires_grad_(True)
        optimizer = torch.optim.SGD([images], lr=0.1, momentum=0.9)
        whole_run_stream = make_generator(seed, "noise")  # the "one stream for the run" defect
        start, total = 0, 3
        saved = ctx.resume() if self.defect != "never resumes" else None
        if saved is not None:
            with torch.no_grad():
                images.copy_(saved.state["images"])
            if self.defect != "forgets momentum":
                optimizer.load_state_dict(saved.state["optimizer"])
            start = saved.iteration
        for it in range(start, total):
            per_iteration = make_generator(seed, "noise", it)
            stream = whole_run_stream if self.defect == "stream across iterations" else per_iteration
            images.grad = torch.randn(images.shape, generator=stream)
            optimizer.step()
            ctx.progress(it + 1, total, loss=float(images.detach().abs().mean()))
            if self.defect != "never checkpoints":
                ctx.checkpoint(it + 1, total, lambda: {"images": images.detach(), "optimizer": optimizer.state_dict()})
        ctx.metrics["iterations"] = total
        return SyntheticSet(images.detach(), class_major_labels(real.num_classes, ipc))


@pytest.mark.parametrize(
    "defect, message",
    [
        (None, None),
        ("stream across iterations", "gave different images than an uninterrupted run"),
        ("forgets momentum", "restore every tensor, optimiser state and counter"),
        ("never resumes", "did not call ctx.resume()"),
        ("never checkpoints", "never called ctx.checkpoint"),
    ],
)
def test_the_resume_check_catches_a_broken_resume(defect: str | None, message: str | None) -> None:
    suite = ConformanceSuite(IterativeToy(defect))
    if message is None:
        suite.run("resume")
        assert failing_checks(suite) == set()
    else:
        with pytest.raises(AssertionError, match=re.escape(message)):
            suite.run("resume")


def test_a_crashing_method_is_reported_with_its_case() -> None:
    class Crashing(ToyMethod):
        def condense(self, real, ipc, config, seed, ctx):  # type: ignore[override]
            raise RuntimeError("shapes do not line up")

    with pytest.raises(
        AssertionError,
        match=r"'shapes': condensing 3 classes of 1x28x28, IPC 2, seed 0, cpu "
        r"raised RuntimeError: shapes do not line up",
    ):
        ConformanceSuite(Crashing()).run("shapes")


# --- the kit's tiny data --------------------------------------------------------------------------


def test_tiny_dataset_is_seeded_balanced_and_shuffled() -> None:
    real = tiny_dataset(num_classes=12, channels=3, size=32, per_class=5, seed=3)
    assert real.train_images.shape == (60, 3, 32, 32) and real.num_classes == 12
    assert torch.bincount(real.train_labels).tolist() == [5] * 12
    assert not torch.equal(real.train_labels, real.train_labels.sort().values)
    assert torch.equal(real.train_images, tiny_dataset(12, 3, 32, 5, seed=3).train_images)
    assert not torch.equal(real.train_images, tiny_dataset(12, 3, 32, 5, seed=4).train_images)


def test_fashion_mnist_idx_files_load_with_the_real_loader(fashion_root: Path) -> None:
    """conftest.py's ``fashion_root`` is written by write_fashion_mnist_idx(per_class=12, test_per_class=4)."""
    real = load_fashion_mnist(fashion_root)
    assert real.train_images.shape == (120, 1, 28, 28) and real.test_images.shape == (40, 1, 28, 28)
    assert torch.bincount(real.train_labels).tolist() == [12] * 10
    assert torch.bincount(real.test_labels).tolist() == [4] * 10
    assert not torch.equal(real.train_labels, real.train_labels.sort().values)  # shuffled, as the real files
