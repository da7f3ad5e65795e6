"""Tests of the CAFE plugin: loss terms, stopping rules, the loop and the two registered methods."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dcbench.data.real import RealDataset
from dcbench.host.errors import DcbenchError
from dcbench.method.contract import CondenseContext
from dcbench.method.seeding import make_generator
from dcbench.nn.networks import ConvNet
from dcbench.testing import conformance_cases
from dcbench_cafe import dcbench_register_methods
from dcbench_cafe.bilevel import cafe_loss, image_lr, query_accuracy
from dcbench_cafe.config import CafeConfig
from dcbench_cafe.losses import alignment_loss, class_means, default_map_weights, discrimination_loss, squared_error
from dcbench_cafe.method import CafeDsaMethod, CafeMethod
from dcbench_cafe.stopping import CAP, FROZEN, MOVED, STABLE, AccuracyWindow, InnerStop, OuterStop


def tiny_dataset(
    num_classes: int = 3, per_class: int = 10, channels: int = 1, size: int = 28, seed: int = 0
) -> RealDataset:
    g = torch.Generator().manual_seed(seed)
    n = num_classes * per_class
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    # a class-dependent offset, so the classes differ and accuracy checks are not constant
    images = torch.randn(n, channels, size, size, generator=g) + labels.view(-1, 1, 1, 1) * 0.5
    test = torch.randn(6, channels, size, size, generator=g)
    return RealDataset(
        "tiny",
        images,
        labels,
        test,
        torch.arange(6) % num_classes,
        (0.5,) * channels,
        (0.5,) * channels,
        tuple(f"c{i}" for i in range(num_classes)),
    )


def random_maps(k: int, seed: int = 0) -> list[Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(k, 4, s, s, generator=g) for s in (8, 4, 2, 1)]


# --- loss terms ----------------------------------------------------------------------------------


def test_class_means_keep_spatial_maps_and_handle_unequal_classes() -> None:
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float).view(6, 2, 2, 1)
    means = class_means(x, [3, 3])
    assert means.shape == (2, 2, 2, 1)
    assert torch.equal(means[1], x[3:].mean(0))
    uneven = class_means(x, [1, 5])
    assert torch.equal(uneven[0], x[0]) and torch.allclose(uneven[1], x[1:].mean(0))


def test_alignment_is_zero_when_class_means_agree_although_samples_differ() -> None:
    g = torch.Generator().manual_seed(1)
    real = torch.randn(3, 4, 5, 4, 4, generator=g)  # 3 classes x 4 images
    d = torch.randn(3, 1, 5, 4, 4, generator=g)
    syn = real.mean(1, keepdim=True) + torch.cat([d, -d], 1)  # 2 different images per class, same means
    real_means = [class_means(real.flatten(0, 1), [4] * 3)]
    syn_means = [class_means(syn.flatten(0, 1), [2] * 3)]
    assert torch.allclose(real_means[0], syn_means[0], atol=1e-6)
    assert float(alignment_loss(real_means, syn_means, [0.1], 1.0)) == pytest.approx(0.0, abs=1e-8)


@pytest.mark.parametrize("perturbed", [0, 1, 2, 3])
def test_each_map_weight_scales_only_its_own_block(perturbed: int) -> None:
    weights, embed_weight = (0.1, 0.1, 1.0, 1.0), 1.0
    real = random_maps(3, seed=2)
    syn = [m.clone() for m in real]
    delta = torch.randn(syn[perturbed].shape, generator=torch.Generator().manual_seed(3))
    syn[perturbed] = syn[perturbed] + delta
    sse = float((delta**2).sum())
    # the deepest map is also the embedding (f5 = f4 flattened): it carries both weights
    expected = weights[perturbed] * sse + (embed_weight * sse if perturbed == 3 else 0.0)
    assert float(alignment_loss(real, syn, weights, embed_weight)) == pytest.approx(expected, rel=1e-5)
    assert float(alignment_loss(real, syn, weights, 0.0)) == pytest.approx(weights[perturbed] * sse, rel=1e-5)


def test_alignment_is_a_sum_not_a_mean() -> None:
    a, b = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    assert float(squared_error(a, b)) == 2 * 3 * 4 * 4
    with pytest.raises(ValueError):
        alignment_loss([a], [b, b], [1.0], 1.0)


def test_discrimination_is_summed_cross_entropy_of_dot_products_with_synthetic_centres() -> None:
    g = torch.Generator().manual_seed(4)
    real, centres = torch.randn(12, 7, generator=g), torch.randn(4, 7, generator=g)
    labels = torch.arange(4).repeat_interleave(3)
    direct = F.cross_entropy(real @ centres.t(), labels, reduction="sum")
    assert torch.allclose(discrimination_loss(real, labels, centres), direct)
    by_hand = -sum(torch.log_softmax(real[i] @ centres.t(), 0)[labels[i]] for i in range(12))
    assert torch.allclose(discrimination_loss(real, labels, centres), by_hand, rtol=1e-5)


def test_default_map_weights_are_official_at_depth_3_and_defined_for_any_depth() -> None:
    assert default_map_weights(3) == (0.1, 0.1, 1.0, 1.0)
    assert default_map_weights(1) == (1.0, 1.0)
    assert default_map_weights(2) == (0.1, 1.0, 1.0)
    assert default_map_weights(4) == (0.1, 0.1, 0.1, 1.0, 1.0)


def test_batched_cafe_loss_equals_a_class_by_class_computation_and_skips_real_gradients() -> None:
    k, b, ipc = 3, 5, 2
    net = ConvNet(1, k, (28, 28), width=8, depth=3)
    g = torch.Generator().manual_seed(5)
    real_batches = [torch.randn(b, 1, 28, 28, generator=g).requires_grad_(True) for _ in range(k)]
    syn = torch.randn(k * ipc, 1, 28, 28, generator=g, requires_grad=True)
    weights, embed_weight, inner_weight = (0.1, 0.1, 1.0, 1.0), 1.0, 0.01
    loss = cafe_loss(net, real_batches, list(syn.split(ipc)), weights, embed_weight, inner_weight)
    # the official structure, one class at a time
    expected = torch.zeros(())
    real_embeddings, syn_centres = [], []
    for c in range(k):
        real_maps = net.features(real_batches[c].detach())
        syn_maps = net.features(syn[c * ipc : (c + 1) * ipc])
        for w, rm, sm in zip(weights, real_maps, syn_maps):
            expected = expected + w * ((rm.mean(0) - sm.mean(0)) ** 2).sum()
        real_embeddings.append(real_maps[-1].flatten(1))
        syn_centres.append(syn_maps[-1].flatten(1).mean(0))
        expected = expected + embed_weight * ((real_embeddings[-1].mean(0) - syn_centres[-1]) ** 2).sum()
    logits = torch.cat(real_embeddings) @ torch.stack(syn_centres).t()
    expected = expected + inner_weight * F.cross_entropy(logits, torch.arange(k).repeat_interleave(b), reduction="sum")
    assert torch.allclose(loss, expected, rtol=1e-4)
    loss.backward()
    assert syn.grad is not None and syn.grad.abs().sum() > 0
    assert all(r.grad is None for r in real_batches)  # real features are computed without autograd


# --- stopping rules ------------------------------------------------------------------------------


def run_rule(rule: OuterStop | InnerStop, sequence: list[list[float]]) -> tuple[str | None, int]:
    for accs in sequence:
        reason = rule.update(accs)
        if reason is not None:
            return reason, rule.checks
    return None, rule.checks


def test_running_sum_is_the_official_accumulator_generalised_to_k_classes() -> None:
    window = AccuracyWindow(num_classes=2, size=3, running_sum=True)
    assert window.push([0.5, 0.5]) == pytest.approx(0.5)  # (0 + 1.0) / 2
    assert window.push([0.5, 0.5]) == pytest.approx(0.75)  # (0.5 + 1.0) / 2
    assert window.push([1.0, 0.0]) == pytest.approx(0.875)
    fresh = AccuracyWindow(num_classes=2, size=3, running_sum=False)
    assert [fresh.push([0.5, 0.5]), fresh.push([1.0, 0.0]), fresh.push([0.2, 0.4])] == pytest.approx([0.5, 0.5, 0.3])
    assert fresh.full and fresh.spread == pytest.approx(0.2)
    with pytest.raises(ValueError):
        fresh.push([0.1, 0.2, 0.3])


def test_outer_rule_faithful_running_sum_needs_the_sum_to_settle() -> None:
    steady = [[0.5, 0.5]] * 20
    # running sums 0.5, 0.75, 0.875, 0.9375, 0.96875, 0.984, 0.992: the spread of 3 drops below 0.04 at check 7
    assert run_rule(OuterStop(2, 3, True, cap=100, lambda_1=0.04), steady) == (STABLE, 7)
    # the fresh mean is constant: stable as soon as the window is full
    assert run_rule(OuterStop(2, 3, False, cap=100, lambda_1=0.04), steady) == (STABLE, 3)


def test_outer_rule_cap_and_precedence() -> None:
    noisy = [[0.2, 0.2], [0.6, 0.6]] * 10  # the fresh mean jumps by 0.4: never stable
    assert run_rule(OuterStop(2, 3, False, cap=5, lambda_1=0.04), noisy) == (CAP, 5)
    assert run_rule(OuterStop(2, 3, False, cap=1, lambda_1=0.04), [[0.5, 0.5]]) == (CAP, 1)  # cap < window
    # the rule and the cap meet at check 3: the rule is reported
    assert run_rule(OuterStop(2, 3, False, cap=3, lambda_1=0.04), [[0.5, 0.5]] * 3) == (STABLE, 3)


def test_inner_rule_stops_when_accuracy_moved() -> None:
    rising = [[0.1, 0.1], [0.12, 0.12], [0.2, 0.2], [0.3, 0.3]]
    assert run_rule(InnerStop(2, 3, False, cap=100, lambda_2=0.03), rising) == (MOVED, 3)
    # running sums 0.1, 0.17, 0.285: spread 0.185 also moved
    assert run_rule(InnerStop(2, 3, True, cap=100, lambda_2=0.03), rising) == (MOVED, 3)
    slow = [[0.5 + 0.005 * i] * 2 for i in range(20)]  # fresh window spans 0.01 per 3 checks
    assert run_rule(InnerStop(2, 3, False, cap=8, lambda_2=0.03), slow) == (CAP, 8)


def test_frozen_accuracy_ends_only_the_corrected_inner_loop() -> None:
    frozen = [[1.0] + [0.0] * 9] * 50  # every query image in class 0: the accuracy is 0.1 for ever
    assert run_rule(InnerStop(10, 3, False, cap=40, lambda_2=0.03, plateau=0.01), frozen) == (FROZEN, 3)
    # the official rule (running sum 0.1, 0.11, 0.111, ..., no plateau exit) runs into the cap
    assert run_rule(InnerStop(10, 3, True, cap=40, lambda_2=0.03, plateau=0.0), frozen) == (CAP, 40)


def test_running_sum_warm_up_alone_ends_a_faithful_inner_loop_at_high_accuracy() -> None:
    # the sum restarts from 0 in every loop: a steady 0.5 gives 0.5, 0.55, ..., 0.5555 over a window
    # of 10, a spread of about 0.056 > lambda_2, although the network's accuracy never moved
    steady = [[0.5] * 10] * 30
    assert run_rule(InnerStop(10, 10, True, cap=100, lambda_2=0.03), steady) == (MOVED, 10)
    assert run_rule(InnerStop(10, 10, False, cap=100, lambda_2=0.03, plateau=0.01), steady) == (FROZEN, 10)


def test_image_lr_halves_at_the_scaled_official_milestones() -> None:
    paper = CafeConfig()
    assert [image_lr(paper, it) for it in (0, 1199, 1200, 1599, 1600, 1800, 1999)] == pytest.approx(
        [0.1, 0.1, 0.05, 0.05, 0.025, 0.0125, 0.0125]
    )
    short = CafeConfig(iterations=10)
    assert [image_lr(short, it) for it in (5, 6, 8, 9)] == pytest.approx([0.1, 0.05, 0.025, 0.0125])


class _FixedHead(nn.Module):
    """Predicts class 0 for every image."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> Tensor:
        logits = torch.zeros(x.shape[0], self.num_classes)
        logits[:, 0] = 1.0
        return logits


def test_query_accuracy_is_per_class_on_training_images() -> None:
    real = tiny_dataset(num_classes=3)
    accs = query_accuracy(_FixedHead(3), real, 4, make_generator(0, "query"), torch.device("cpu"))
    assert accs == [1.0, 0.0, 0.0]


# --- the methods ---------------------------------------------------------------------------------


def condense(
    method: CafeMethod | CafeDsaMethod, real: RealDataset, ipc: int, seed: int, **overrides: object
) -> tuple[Tensor, Tensor, dict]:
    ctx = CondenseContext()
    synthetic = method.condense(real, ipc, method.make_config("smoke", overrides), seed, ctx)
    return synthetic.images, synthetic.labels, ctx.metrics


@pytest.mark.parametrize("suite, check", conformance_cases([CafeMethod(), CafeDsaMethod()]))
def test_conformance(suite, check) -> None:
    suite.run(check)


def test_registration_offers_cafe_and_cafe_dsa() -> None:
    registered: list = []
    dcbench_register_methods(registered.append)
    assert sorted(m.name for m in registered) == ["cafe", "cafe_dsa"]
    assert {m.name: m.native_eval_augmentation for m in registered} == {"cafe": "none", "cafe_dsa": "dsa"}


@pytest.mark.parametrize("method", [CafeMethod(), CafeDsaMethod()], ids=lambda m: m.name)
@pytest.mark.parametrize("num_classes,channels,size", [(3, 1, 28), (12, 3, 32)])
def test_smoke_shapes_labels_and_metrics(method: CafeMethod, num_classes: int, channels: int, size: int) -> None:
    real = tiny_dataset(num_classes, per_class=8, channels=channels, size=size)
    images, labels, metrics = condense(method, real, 2, seed=0)
    assert images.shape == (num_classes * 2, channels, size, size)
    assert torch.equal(labels, torch.arange(num_classes).repeat_interleave(2))
    assert torch.isfinite(images).all()
    config = method.make_config("smoke")
    assert metrics["iterations"] == config.iterations
    assert len(metrics["image_steps_per_iteration"]) == config.iterations
    assert all(1 <= s <= config.max_image_steps for s in metrics["image_steps_per_iteration"])
    assert metrics["image_steps_total"] == sum(metrics["image_steps_per_iteration"])
    assert metrics["inner_loops_total"] == metrics["image_steps_total"] - config.iterations
    assert metrics["inner_epochs_total"] <= metrics["inner_loops_total"] * config.max_inner_epochs
    assert 0 <= metrics["outer_cap_hits"] <= config.iterations
    expected_strategy = "none" if method.name == "cafe" else "color_crop_cutout_flip_scale_rotate"
    assert metrics["dsa_strategy"] == expected_strategy


@pytest.mark.parametrize("method", [CafeMethod(), CafeDsaMethod()], ids=lambda m: m.name)
def test_same_seed_same_set_other_seed_other_set(method: CafeMethod) -> None:
    real = tiny_dataset(3)
    first, _, _ = condense(method, real, 1, seed=7)
    again, _, _ = condense(method, real, 1, seed=7)
    other, _, _ = condense(method, real, 1, seed=8)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("depth", [2, 4])
def test_other_depths_use_their_own_weights(depth: int) -> None:
    real = tiny_dataset(3)
    images, _, metrics = condense(CafeMethod(), real, 1, seed=0, net_depth=depth)
    assert images.shape == (3, 1, 28, 28)
    assert metrics["map_weights"] == list(default_map_weights(depth))
    _, _, custom = condense(CafeMethod(), real, 1, seed=0, net_depth=depth, layer_weights=[1.0] * (depth + 1))
    assert custom["map_weights"] == [1.0] * (depth + 1)


def test_faithful_mode_and_real_init_run() -> None:
    real = tiny_dataset(3)
    images, _, metrics = condense(CafeMethod(), real, 2, seed=0, faithful=True, init="real")
    assert torch.isfinite(images).all() and metrics["inner_frozen_stops"] == 0


def test_images_move_away_from_their_initialisation() -> None:
    real = tiny_dataset(3)
    start, _, _ = condense(CafeMethod(), real, 1, seed=0, lr_img=1e-12)
    moved, _, _ = condense(CafeMethod(), real, 1, seed=0)
    assert (moved - start).abs().max() > 1e-3


def test_config_validation() -> None:
    method = CafeMethod()
    with pytest.raises(DcbenchError, match="layer_weights"):
        method.make_config("paper", {"layer_weights": [0.1, 1.0]})
    with pytest.raises(DcbenchError, match="init"):
        method.make_config("paper", {"init": "kmeans"})
    with pytest.raises(DcbenchError, match="window"):
        method.make_config("quick", {"window": 0})
    with pytest.raises(DcbenchError):
        CafeDsaMethod().make_config("paper", {"dsa_strategy": "blur"})
    paper = method.make_config("paper")
    assert (
        paper.iterations,
        paper.batch_real,
        paper.lambda_1,
        paper.lambda_2,
        paper.init,
        paper.net_width,
        paper.faithful,
    ) == (2000, 256, 0.04, 0.03, "noise", 128, True)
    assert CafeDsaMethod().make_config("quick").init == "real"


def test_ipc_must_be_positive() -> None:
    with pytest.raises(DcbenchError, match="ipc"):
        CafeMethod().condense(tiny_dataset(3), 0, CafeMethod().make_config("smoke"), 0, CondenseContext())


@pytest.mark.slow
def test_smoke_on_fashion_mnist() -> None:
    from dcbench.data.builtin import load_fashion_mnist

    try:
        real = load_fashion_mnist(None)
    except DcbenchError as exc:
        pytest.skip(str(exc))
    images, labels, metrics = condense(CafeMethod(), real, 1, seed=0)
    assert images.shape == (10, 1, 28, 28) and torch.equal(labels, torch.arange(10))
    assert torch.isfinite(images).all() and metrics["iterations"] == 2
