"""Tests of the DC / DSA plugin: matching distance, loop schedule, per-class gradients, methods."""

from __future__ import annotations

import math

import pytest
import torch

from dcbench.data.real import RealDataset
from dcbench.host.errors import DcbenchError
from dcbench.method.contract import CondenseContext, class_major_labels, init_synthetic_images
from dcbench.method.seeding import make_generator
from dcbench.nn.networks import BUILTIN_ARCHITECTURES, build_network
from dcbench_dc import dcbench_register_methods
from dcbench_dc.gradients import class_gradients
from dcbench_dc.loops import get_loops
from dcbench_dc.matching import EPS, match_loss
from dcbench_dc.method import DCMethod, DSAMethod

ARCHS = {a.name: a for a in BUILTIN_ARCHITECTURES}


def tiny_dataset(
    classes: int = 4, per_class: int = 10, channels: int = 1, size: int = 28, name: str = "tiny"
) -> RealDataset:
    g = make_generator(0, "tiny-data", classes, channels, size)
    x = torch.randn(classes * per_class, channels, size, size, generator=g)
    y = torch.arange(classes).repeat(per_class)
    return RealDataset(
        name,
        x,
        y,
        x[:classes],
        y[:classes],
        (0.5,) * channels,
        (0.5,) * channels,
        tuple(str(c) for c in range(classes)),
    )


def stacked(*rows: list) -> torch.Tensor:
    """One matching problem (K = 1) holding a parameter gradient given as nested lists."""
    return torch.tensor(rows, dtype=torch.float64).unsqueeze(0)


# ---- matching distance -------------------------------------------------------------------------


def test_ours_sums_one_minus_row_cosines_of_a_linear_weight() -> None:
    real = stacked([1.0, 0.0], [0.0, 1.0])
    syn = stacked([2.0, 0.0], [1.0, 1.0])
    expected = (1 - 2 / (1 * 2 + EPS)) + (1 - 1 / (1 * math.sqrt(2) + EPS))
    assert match_loss([syn], [real], "ours").item() == pytest.approx(expected, rel=1e-12)


def test_ours_reshapes_conv_weights_to_output_rows() -> None:
    # conv gradient [out=2, in=1, h=1, w=2]: row 0 orthogonal (distance 1), row 1 parallel (~0)
    real = torch.tensor([[[[1.0, 0.0]]], [[[1.0, 1.0]]]], dtype=torch.float64).unsqueeze(0)
    syn = torch.tensor([[[[0.0, 3.0]]], [[[2.0, 2.0]]]], dtype=torch.float64).unsqueeze(0)
    expected = 1.0 + (1 - 4 / (math.sqrt(2) * math.sqrt(8) + EPS))
    assert match_loss([syn], [real], "ours").item() == pytest.approx(expected, rel=1e-12)


def test_ours_skips_one_dimensional_parameters_and_sums_over_problems() -> None:
    weight_real = stacked([1.0, 0.0])
    weight_syn = stacked([0.0, 1.0])  # orthogonal: distance 1
    bias_real, bias_syn = stacked(5.0, -5.0), stacked(-1.0, 7.0)
    with_bias = match_loss([weight_syn, bias_syn], [weight_real, bias_real], "ours")
    assert with_bias.item() == pytest.approx(1.0)
    two_problems = match_loss([torch.cat([weight_syn, weight_real])], [torch.cat([weight_real, weight_real])], "ours")
    assert two_problems.item() == pytest.approx(1.0 + (1 - 1 / (1 + EPS)))


def test_ours_of_zero_gradients_is_one_per_row_not_nan() -> None:
    zero = stacked([0.0, 0.0], [0.0, 0.0], [0.0, 0.0])
    assert match_loss([zero], [zero], "ours").item() == pytest.approx(3.0)


def test_mse_uses_every_parameter_including_biases() -> None:
    weight_real, weight_syn = stacked([1.0, 2.0]), stacked([0.0, 4.0])
    bias_real, bias_syn = stacked(1.0), stacked(4.0)
    loss = match_loss([weight_syn, bias_syn], [weight_real, bias_real], "mse")
    assert loss.item() == pytest.approx(1.0 + 4.0 + 9.0)


def test_cos_is_one_minus_cosine_of_the_concatenated_gradients() -> None:
    weight_real, weight_syn = stacked([1.0, 0.0]), stacked([1.0, 1.0])
    bias_real, bias_syn = stacked(0.0), stacked(1.0)
    # real (1, 0, 0), synthetic (1, 1, 1): cosine 1 / sqrt(3)
    loss = match_loss([weight_syn, bias_syn], [weight_real, bias_real], "cos")
    assert loss.item() == pytest.approx(1 - 1 / (math.sqrt(3) + EPS), rel=1e-12)


# The reference's match_loss / distance_wb for one class, re-written (its eps is 0.000001)
def reference_distance_wb(gwr: torch.Tensor, gws: torch.Tensor) -> torch.Tensor:
    shape = gwr.shape
    if len(shape) == 1:  # biases, norm scales: not matched
        return torch.tensor(0.0, dtype=gwr.dtype)
    if len(shape) in (3, 4):  # layer-norm [C, h, w] and conv [out, in, h, w]: one row per output
        gwr, gws = gwr.reshape(shape[0], -1), gws.reshape(shape[0], -1)
    cosine = torch.sum(gwr * gws, dim=-1) / (torch.norm(gwr, dim=-1) * torch.norm(gws, dim=-1) + 0.000001)
    return torch.sum(1 - cosine)


def reference_match_loss(gw_syn: list[torch.Tensor], gw_real: list[torch.Tensor], metric: str) -> torch.Tensor:
    if metric == "ours":
        return sum((reference_distance_wb(r, s) for r, s in zip(gw_real, gw_syn)), torch.tensor(0.0))
    real_vec = torch.cat([g.reshape(-1) for g in gw_real])
    syn_vec = torch.cat([g.reshape(-1) for g in gw_syn])
    if metric == "mse":
        return torch.sum((syn_vec - real_vec) ** 2)
    return 1 - torch.sum(real_vec * syn_vec) / (torch.norm(real_vec) * torch.norm(syn_vec) + 0.000001)


@pytest.mark.parametrize("metric", ["ours", "mse", "cos"])
def test_each_distance_is_the_reference_summed_over_classes(metric: str) -> None:
    # hand-made gradients of every parameter kind (conv weight and bias, layer-norm weight, linear
    # weight and bias) for K = 3 classes, some rows zero, some negative, of different scales
    g = make_generator(0, "grads")
    shapes = [(4, 2, 3, 3), (4,), (4, 2, 2), (5, 16), (5,)]
    real = [torch.randn(3, *shape, generator=g, dtype=torch.float64) for shape in shapes]
    syn = [torch.randn(3, *shape, generator=g, dtype=torch.float64) * 3 for shape in shapes]
    syn[0][1, 2] = 0.0  # a zero row: distance 1 for that row in "ours"
    syn[3][2] = -real[3][2]  # opposite gradients: cosine -1
    expected = sum(reference_match_loss([s[k] for s in syn], [r[k] for r in real], metric) for k in range(3))
    assert match_loss(syn, real, metric).item() == pytest.approx(float(expected), rel=1e-12)
    assert EPS == 0.000001


def test_unknown_metric_is_a_user_error() -> None:
    with pytest.raises(DcbenchError, match="dis_metric|distance"):
        match_loss([stacked([1.0])], [stacked([1.0])], "l1")


# ---- loop schedule -----------------------------------------------------------------------------


def test_reference_loop_table() -> None:
    assert {ipc: get_loops(ipc) for ipc in (1, 10, 20, 30, 40, 50)} == {
        1: (1, 1),
        10: (10, 50),
        20: (20, 25),
        30: (30, 20),
        40: (40, 15),
        50: (50, 10),
    }


@pytest.mark.parametrize(
    "ipc, loops",
    [
        (2, (2, 50)),
        (5, (5, 50)),
        (9, (9, 50)),
        (15, (15, 38)),
        (25, (25, 23)),
        (45, (45, 13)),
        (51, (50, 10)),
        (100, (50, 10)),
    ],
)
def test_loop_rule_for_other_ipcs(ipc: int, loops: tuple[int, int]) -> None:
    assert get_loops(ipc) == loops


def test_loops_reject_non_positive_ipc() -> None:
    with pytest.raises(DcbenchError):
        get_loops(0)


# ---- per-class gradients -----------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["ConvNet", "ConvNetBN"])
def test_batched_class_gradients_equal_the_class_loop(arch: str) -> None:
    k, n, ipc = 3, 5, 2
    net = build_network(ARCHS[arch], 1, k, (28, 28), make_generator(0, "net"), width=8)
    net.eval()  # BatchNorm frozen, as during matching
    g = make_generator(0, "images")
    real = torch.randn(k, n, 1, 28, 28, generator=g)
    syn = torch.randn(k, ipc, 1, 28, 28, generator=g, requires_grad=True)
    labels_real = class_major_labels(k, n).view(k, n)
    labels_syn = class_major_labels(k, ipc).view(k, ipc)
    results = []
    for batched in (True, False):
        grads_real = class_gradients(net, real, labels_real, create_graph=False, batched=batched)
        grads_syn = class_gradients(net, syn, labels_syn, create_graph=True, batched=batched)
        image_grad = torch.autograd.grad(match_loss(grads_syn, grads_real), syn)[0]
        results.append((grads_real, grads_syn, image_grad))
    (real_b, syn_b, img_b), (real_l, syn_l, img_l) = results
    assert [g.shape for g in real_b] == [(k, *p.shape) for p in net.parameters()]
    for a, b in zip(real_b + syn_b, real_l + syn_l):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(img_b, img_l, rtol=1e-4, atol=1e-7)
    assert img_b.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())


def test_class_gradients_match_a_single_class_autograd() -> None:
    net = build_network(ARCHS["ConvNet"], 3, 2, (32, 32), make_generator(1, "net"), width=8)
    x = torch.randn(2, 4, 3, 32, 32, generator=make_generator(1, "x"))
    y = class_major_labels(2, 4).view(2, 4)
    grads = class_gradients(net, x, y, create_graph=False)
    loss_1 = torch.nn.functional.cross_entropy(net(x[1]), y[1])
    expected = torch.autograd.grad(loss_1, list(net.parameters()))
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got[1], want, rtol=1e-4, atol=1e-6)


# ---- methods -----------------------------------------------------------------------------------


def condense(method, real: RealDataset, ipc: int, seed: int, **overrides) -> tuple[torch.Tensor, torch.Tensor, dict]:
    ctx = CondenseContext()
    synthetic = method.condense(real, ipc, method.make_config("smoke", overrides), seed, ctx)
    return synthetic.images, synthetic.labels, ctx.metrics


@pytest.mark.parametrize(
    "method, real", [(DCMethod(), tiny_dataset()), (DSAMethod(), tiny_dataset(3, 8, channels=3, size=32))]
)
def test_method_changes_images_keeps_shapes_and_is_deterministic(method, real: RealDataset) -> None:
    ipc = 2
    images, labels, metrics = condense(method, real, ipc, seed=0)
    k = real.num_classes
    assert images.shape == (k * ipc, real.channels, *real.image_size)
    assert torch.equal(labels, class_major_labels(k, ipc))
    assert torch.isfinite(images).all()
    config = method.make_config("smoke")
    start = init_synthetic_images(real, ipc, config.init, make_generator(0, "init"))
    assert (images - start).abs().max() > 1e-4
    assert metrics["iterations"] == config.iterations
    assert (metrics["outer_loop"], metrics["inner_loop"]) == (2, 1)  # get_loops(2) outer, smoke inner
    again, _, _ = condense(method, real, ipc, seed=0)
    assert torch.equal(images, again)
    other, _, _ = condense(method, real, ipc, seed=1)
    assert not torch.allclose(images, other)


def test_dsa_uses_the_dataset_strategy_unless_configured() -> None:
    real = tiny_dataset(2, 6, name="mnist")
    _, _, metrics = condense(DSAMethod(), real, 1, seed=0, iterations=1)
    assert metrics["dsa_strategy"] == "color_crop_cutout_scale_rotate"  # no flip for digits
    _, _, metrics = condense(DSAMethod(), real, 1, seed=0, iterations=1, dsa_strategy="crop")
    assert metrics["dsa_strategy"] == "crop"


@pytest.mark.parametrize("method", [DCMethod(), DSAMethod()])
def test_class_batching_modes_give_the_same_set(method) -> None:
    real = tiny_dataset(3, 6)
    sets = [
        condense(method, real, 2, seed=3, iterations=1, class_batching=mode)[0] for mode in ("none", "synthetic", "all")
    ]
    for other in sets[1:]:
        torch.testing.assert_close(other, sets[0], rtol=1e-4, atol=1e-5)


def test_batchnorm_network_and_other_metrics_run() -> None:
    real = tiny_dataset(3, 6)
    for overrides in ({"model": "ConvNetBN"}, {"dis_metric": "mse"}, {"dis_metric": "cos", "init": "real"}):
        images, _, _ = condense(DCMethod(), real, 1, seed=0, iterations=1, **overrides)
        assert torch.isfinite(images).all()


def test_diverging_images_stop_the_cell() -> None:
    from dcbench.method.contract import NonFiniteLossError

    with pytest.raises(NonFiniteLossError):
        condense(DCMethod(), tiny_dataset(2, 6), 1, seed=0, iterations=2, lr_img=1e38, dis_metric="mse")


def test_config_presets_and_validation() -> None:
    dc = DCMethod()
    paper = dc.make_config("paper")
    assert (
        paper.iterations,
        paper.batch_real,
        paper.lr_img,
        paper.lr_net,
        paper.init,
        paper.dis_metric,
        paper.net_width,
        paper.net_depth,
        paper.net_norm,
    ) == (1000, 256, 0.1, 0.01, "noise", "ours", 128, 3, "instancenorm")
    assert dc.make_config("quick").net_width == 32
    assert DSAMethod().make_config("paper").init == "real"
    for bad in (
        {"dis_metric": "l2"},
        {"init": "zeros"},
        {"iterations": 0},
        {"inner_loop": 0},
        {"class_batching": "some"},
        {"lr_img": 0.0},
    ):
        with pytest.raises(DcbenchError):
            dc.make_config("smoke", bad)
    with pytest.raises(DcbenchError):
        DSAMethod().make_config("smoke", {"dsa_strategy": "jitter"})


def test_plugin_registers_dc_and_dsa() -> None:
    registered = []
    dcbench_register_methods(registered.append)
    assert [(m.name, m.native_eval_augmentation) for m in registered] == [("dc", "none"), ("dsa", "dsa")]
