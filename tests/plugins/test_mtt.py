"""Trajectory matching (mtt, datm) and the K-Center coreset, checked against hand transcriptions."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from dcbench.artifacts import ArtifactStore
from dcbench.host.errors import DcbenchError
from dcbench.method.condense import condense
from dcbench.method.contract import CondenseContext, make_config
from dcbench.method.seeding import make_generator
from dcbench.nn.networks import ConvNet, init_parameters
from dcbench.testing import tiny_dataset
from dcbench_mtt.experts import ExpertRecipe, expert_file, train_experts
from dcbench_mtt.matching import FlatStudent, soft_cross_entropy, trajectory_matching_loss, unroll_student
from dcbench_mtt.method import DATMConfig, DATMMethod, MTTConfig, MTTMethod


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=make_generator(seed, "mtt-test", *shape))


# --- the matching loss and the unrolled student ----------------------------------------------------


def test_matching_loss_is_the_reference_formula_on_a_worked_case() -> None:
    # distill.py 373-386 by hand: start (0, 0), target (3, 4), student (3, 0):
    # param_loss = 16 / 2, param_dist = 25 / 2, loss = 16 / 25
    start, target, student = torch.tensor([0.0, 0.0]), torch.tensor([3.0, 4.0]), torch.tensor([3.0, 0.0])
    assert float(trajectory_matching_loss(student, start, target)) == pytest.approx(16 / 25)
    # the reference's own lines, transcribed
    n = student.numel()
    param_loss = F.mse_loss(student, target, reduction="sum") / n
    param_dist = F.mse_loss(start, target, reduction="sum") / n
    assert float(trajectory_matching_loss(student, start, target)) == pytest.approx(float(param_loss / param_dist))
    # landing on the target is a loss of 0, staying at the start a loss of 1
    assert float(trajectory_matching_loss(target, start, target)) == 0.0
    assert float(trajectory_matching_loss(start, start, target)) == 1.0


def test_soft_cross_entropy_is_datm_s_formula() -> None:
    logits, targets = randn(5, 4), randn(5, 4, seed=1)
    by_hand = torch.sum(-F.log_softmax(logits, dim=1) * F.softmax(targets, dim=1)) / 5
    assert torch.allclose(soft_cross_entropy(logits, targets), by_hand)
    hard = torch.tensor([0, 1, 2, 3, 0])  # one-hot logits of large magnitude approach plain CE
    assert torch.allclose(soft_cross_entropy(logits, 1e4 * F.one_hot(hard, 4).float()), F.cross_entropy(logits, hard))


class Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def test_the_unrolled_student_is_plain_sgd_and_differentiable_in_images_and_lr() -> None:
    net = Linear()
    student = FlatStudent(net)
    start = randn(student.count)
    images = randn(4, 1, 2, 3, seed=2).requires_grad_(True)
    labels = torch.tensor([0, 1, 2, 0])
    lr = torch.tensor(0.1, requires_grad=True)
    identity = lambda x, g: x  # noqa: E731
    end = unroll_student(student, start, images, labels, lr, 3, 4, identity, make_generator(0, "u"))
    # by hand: three full-batch SGD steps of a linear layer
    w, b = start[:18].view(3, 6).clone(), start[18:].clone()
    for _ in range(3):
        w.requires_grad_(True)
        b.requires_grad_(True)
        loss = F.cross_entropy(images.detach().flatten(1) @ w.T + b, labels)
        gw, gb = torch.autograd.grad(loss, (w, b))
        w, b = (w - 0.1 * gw).detach(), (b - 0.1 * gb).detach()
    assert torch.allclose(end.detach(), torch.cat([w.reshape(-1), b]), atol=1e-6)
    trajectory_matching_loss(end, start, start + 1).backward()
    assert images.grad is not None and images.grad.abs().sum() > 0 and lr.grad is not None


def test_minibatches_are_a_fresh_permutation_popped_from_the_end() -> None:
    seen: list[list[int]] = []

    class Recorder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x[:, 0].long().tolist())
            return x[:, :3] * self.w

    images = torch.arange(6).float().view(6, 1).repeat(1, 3)
    unroll_student(
        FlatStudent(Recorder()),
        torch.zeros(1),
        images,
        torch.zeros(6, dtype=torch.long),
        torch.tensor(0.1),
        3,
        2,
        lambda x, g: x,
        make_generator(5, "perm"),
    )
    order = torch.randperm(6, generator=make_generator(5, "perm")).split(2)
    assert seen == [order[2].tolist(), order[1].tolist(), order[0].tolist()]


def test_a_network_with_batchnorm_statistics_is_refused() -> None:
    with pytest.raises(ValueError, match="BatchNorm"):
        FlatStudent(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)))


# --- experts -----------------------------------------------------------------------------------


def test_experts_of_two_by_two_epochs_on_1k_images_in_seconds(tmp_path: Path) -> None:
    real = tiny_dataset(num_classes=10, per_class=100)
    recipe = ExpertRecipe(experts=2, epochs=2, width=8, batch=128)
    build_net = lambda g: init_parameters(ConvNet(1, 10, (28, 28), width=8), g)  # noqa: E731
    start = time.perf_counter()
    train_experts(real, recipe, tmp_path, lambda: None, build_net)
    assert time.perf_counter() - start < 30
    first = torch.load(tmp_path / expert_file(0), weights_only=True)
    net = build_net(make_generator(0, "experts", 0, "init"))
    assert first.shape == (3, sum(p.numel() for p in net.parameters()))
    assert torch.equal(first[0], torch.cat([p.detach().reshape(-1) for p in net.parameters()]))  # epoch 0 = init
    assert not torch.equal(first[1], first[0]) and not torch.equal(first[2], first[1])
    second = torch.load(tmp_path / expert_file(1), weights_only=True)
    assert not torch.equal(first[0], second[0])  # each expert its own initialisation
    # an interrupted expert continues from its last epoch, to the same numbers
    (tmp_path / expert_file(1)).unlink()
    again = tmp_path / "again"
    again.mkdir()
    calls = []

    def stop_after_one_epoch() -> None:
        calls.append(1)
        if len(calls) == 1:  # expert 0 is there already: stop after expert 1's first epoch
            raise KeyboardInterrupt

    (again / expert_file(0)).write_bytes((tmp_path / expert_file(0)).read_bytes())
    with pytest.raises(KeyboardInterrupt):
        train_experts(real, recipe, again, stop_after_one_epoch, build_net)
    assert (again / ".expert_1.partial.pt").exists()
    train_experts(real, recipe, again, lambda: None, build_net)
    assert torch.equal(torch.load(again / expert_file(1), weights_only=True), second)


def test_cells_share_one_expert_artifact_and_its_cost_is_not_theirs(tmp_path: Path) -> None:
    real = tiny_dataset()
    store = ArtifactStore(tmp_path)
    first = condense(MTTMethod(), real, 2, 0, "smoke", None, CondenseContext(artifact_store=store))
    second = condense(DATMMethod(), real, 2, 1, "smoke", None, CondenseContext(artifact_store=store))
    (a,), (b,) = first.artifacts, second.artifacts
    assert a["key"] == b["key"] and a["built_here"] and not b["built_here"]
    assert first.seconds < a["build_s"] + 5 and first.synthetic.manifest["artifacts"] == [a]
    assert len(store.entries()) == 1
    # another expert recipe is another artifact
    condense(MTTMethod(), real, 2, 0, "smoke", {"expert_seed": 1}, CondenseContext(artifact_store=store))
    assert len(store.entries()) == 2


def test_mtt_config_refuses_a_window_past_the_experts() -> None:
    with pytest.raises(DcbenchError, match="exceeds the experts' 2 epochs"):
        make_config(MTTConfig, "smoke", {"max_start_epoch": 2})
    assert make_config(MTTConfig, "paper").iterations == 5000


# --- DATM --------------------------------------------------------------------------------------


def test_datm_window_grows_from_current_to_max_start_epoch() -> None:
    config = make_config(DATMConfig, "paper")  # 10 -> 20 over 1000 iterations (IPC10.yaml)
    bound = DATMMethod().start_epoch_bound
    assert [bound(config, it) for it in (0, 100, 500, 999, 1000, 5000)] == [10, 11, 15, 19, 20, 20]
    flat = make_config(DATMConfig, "paper", {"sequential_generation": False})
    assert bound(flat, 0) == 20
    draws = {DATMMethod().start_epoch(config, 0, make_generator(s, "w")) for s in range(200)}
    assert draws == set(range(0, 10))  # randint(min_start_epoch, upper bound)


def test_datm_skips_the_update_above_the_threshold() -> None:
    config = make_config(DATMConfig, "paper")
    assert DATMMethod().take_step(1.0, config) and not DATMMethod().take_step(1.01, config)


def test_datm_starts_from_images_an_expert_classifies_correctly(tmp_path: Path) -> None:
    real = tiny_dataset(num_classes=3, per_class=20)
    store = ArtifactStore(tmp_path)
    overrides = {"experts": 2, "expert_train_epochs": 3, "expert_per_class": 0, "iterations": 1, "lr_img": 1e-9}
    out = condense(DATMMethod(), real, 2, 0, "smoke", overrides, CondenseContext(artifact_store=store))
    artifact = store.entries()[0][2]
    trajectories = [torch.load(artifact.path / expert_file(i), weights_only=True) for i in range(2)]
    student = FlatStudent(init_parameters(ConvNet(1, 3, (28, 28), width=8), make_generator(0, "s")))
    predictions = torch.stack([student(t[-1], out.synthetic.images).argmax(1) for t in trajectories])
    # every image was picked because some expert (the first that found enough) gets it right
    assert out.metrics["init_not_classified_correctly"] == 0
    assert bool((predictions == out.synthetic.labels).any(0).all())
    train = {tuple(x.flatten()[:8].tolist()) for x in real.train_images}
    assert all(tuple(x.flatten()[:8].tolist()) in train for x in out.synthetic.images)  # lr_img ~ 0: still real
