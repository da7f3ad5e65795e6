"""Tests of the DM baseline plugin: the loss, its batched evaluation and the condensation loop."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from dcbench.data.real import RealDataset
from dcbench.host.errors import DcbenchError
from dcbench.method.contract import CondenseContext, NonFiniteLossError, init_synthetic_images, make_config
from dcbench.method.seeding import make_generator
from dcbench.nn.networks import Architecture, ConvNet, init_parameters
from dcbench_dm.loss import class_means, distribution_matching_loss, embed_class_means
from dcbench_dm.method import DMConfig, DMMethod, sample_real_batches


def tiny_dataset(class_sizes: list[int], channels: int = 1, side: int = 28, name: str = "tiny") -> RealDataset:
    g = make_generator(0, "tiny-data", *class_sizes, channels)
    labels = torch.cat([torch.full((n,), c, dtype=torch.long) for c, n in enumerate(class_sizes)])
    # class-dependent offsets so the classes really differ
    images = torch.randn(len(labels), channels, side, side, generator=g) + labels.view(-1, 1, 1, 1).float()
    return RealDataset(
        name,
        images,
        labels,
        images[:4],
        labels[:4],
        (0.5,) * channels,
        (0.25,) * channels,
        tuple(f"c{c}" for c in range(len(class_sizes))),
    )


def convnet(channels: int = 1, num_classes: int = 3, side: int = 28, seed: int = 0) -> ConvNet:
    net = ConvNet(channels, num_classes, (side, side), width=8)
    return init_parameters(net, make_generator(seed, "test-net")).requires_grad_(False)


def randn(*shape: int, seed: int = 0) -> Tensor:
    return torch.randn(*shape, generator=make_generator(seed, "test", *shape))


def loop_loss(embed, real_batches: list[Tensor], syn_batches: list[Tensor]) -> Tensor:
    """The reference's class-by-class loop, written out."""
    loss = torch.zeros(())
    for real_c, syn_c in zip(real_batches, syn_batches):
        loss = loss + ((embed(real_c).detach().mean(0) - embed(syn_c).mean(0)) ** 2).sum()
    return loss


# --- the loss -----------------------------------------------------------------------------------


def test_loss_is_zero_when_class_means_coincide() -> None:
    real = [randn(6, 1, 4, 4, seed=c) for c in range(3)]
    # with a linear embedding, the mean image has exactly the mean embedding
    syn = [r.mean(0, keepdim=True) for r in real]
    flat = lambda x: x.flatten(1)  # noqa: E731
    assert float(distribution_matching_loss(flat, real, syn)) == pytest.approx(0.0, abs=1e-10)
    # two synthetic images symmetric about the mean have the same mean
    shift = randn(1, 1, 4, 4, seed=9)
    syn2 = [torch.cat([m + shift, m - shift]) for m in syn]
    assert float(distribution_matching_loss(flat, real, syn2)) == pytest.approx(0.0, abs=1e-9)


def test_loss_matches_a_direct_per_class_computation() -> None:
    weight = randn(5, 16, seed=1)
    embed = lambda x: x.flatten(1) @ weight.T  # noqa: E731
    real = [randn(7, 1, 4, 4, seed=c) for c in range(4)]
    syn = [randn(2, 1, 4, 4, seed=10 + c) for c in range(4)]
    expected = 0.0
    for r, s in zip(real, syn):
        diff = (r.flatten(1) @ weight.T).mean(0) - (s.flatten(1) @ weight.T).mean(0)
        expected += float(diff.pow(2).sum())  # a sum over classes, not a mean
    assert float(distribution_matching_loss(embed, real, syn)) == pytest.approx(expected, rel=1e-5)
    assert expected > 1.0


@pytest.mark.parametrize("chunk", [None, 1, 2])
def test_batched_loss_and_gradient_equal_the_class_loop(chunk: int | None) -> None:
    net = convnet(num_classes=5)
    real = [randn(9, 1, 28, 28, seed=c) + c for c in range(5)]
    syn_all = randn(5 * 3, 1, 28, 28, seed=99).requires_grad_(True)
    batched = distribution_matching_loss(net.embed, real, list(syn_all.split(3)), chunk)
    (grad_batched,) = torch.autograd.grad(batched, syn_all)
    looped = loop_loss(net.embed, real, list(syn_all.split(3)))
    (grad_looped,) = torch.autograd.grad(looped, syn_all)
    assert float(batched.detach()) == pytest.approx(float(looped.detach()), rel=1e-4)
    torch.testing.assert_close(grad_batched, grad_looped, rtol=1e-4, atol=1e-7)
    assert grad_batched.abs().sum() > 0


def test_class_means_of_unequal_classes() -> None:
    emb = randn(9, 4)
    means = class_means(emb, [2, 3, 4])
    torch.testing.assert_close(means, torch.stack([emb[:2].mean(0), emb[2:5].mean(0), emb[5:].mean(0)]))
    torch.testing.assert_close(class_means(emb[:6], [3, 3]), emb[:6].view(2, 3, 4).mean(1))


def test_real_pass_builds_no_graph() -> None:
    net = convnet()
    real = [randn(4, 1, 28, 28, seed=c).requires_grad_(True) for c in range(3)]
    syn = randn(3, 1, 28, 28, seed=7).requires_grad_(True)
    distribution_matching_loss(net.embed, real, list(syn.split(1))).backward()
    assert all(r.grad is None for r in real)
    assert syn.grad is not None
    with torch.no_grad():
        assert embed_class_means(net.embed, real).shape == (3, net.embed_dim)


def test_real_batches_are_the_images_sample_class_draws() -> None:
    real = tiny_dataset([6, 12, 20])
    batches = sample_real_batches(real, 10, make_generator(0, "real", 3))
    gen = make_generator(0, "real", 3)
    expected = [real.sample_class(c, 10, gen) for c in range(3)]
    assert [len(b) for b in batches] == [6, 10, 10]
    assert all(torch.equal(b, e) for b, e in zip(batches, expected))


# --- the method ---------------------------------------------------------------------------------


def smoke(**overrides: object) -> DMConfig:
    return make_config(DMConfig, "smoke", overrides)


def test_shapes_labels_metrics_and_progress() -> None:
    real = tiny_dataset([12, 12, 12])
    steps: list[int] = []
    ctx = CondenseContext(on_progress=lambda step, total, metrics: steps.append(step))
    result = DMMethod().condense(real, 2, smoke(), seed=0, ctx=ctx)
    assert result.images.shape == (6, 1, 28, 28)
    assert result.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.isfinite(result.images).all()
    assert steps == [1, 2]
    assert ctx.metrics["iterations"] == 2
    assert ctx.metrics["dsa_strategy"] == "color_crop_cutout_flip_scale_rotate"


def test_same_seed_same_set_other_seed_other_set() -> None:
    real = tiny_dataset([10, 10, 10, 10])
    method, config = DMMethod(), smoke()
    a = method.condense(real, 1, config, 3, CondenseContext())
    b = method.condense(real, 1, config, 3, CondenseContext())
    c = method.condense(real, 1, config, 4, CondenseContext())
    assert torch.equal(a.images, b.images)
    assert not torch.allclose(a.images, c.images)


def test_condensing_changes_the_real_initialisation() -> None:
    real = tiny_dataset([10, 10, 10])
    start = init_synthetic_images(real, 2, "real", make_generator(5, "init"))
    result = DMMethod().condense(real, 2, smoke(), 5, CondenseContext())
    moved = (result.images - start).flatten(1).norm(dim=1)
    assert (moved > 1e-3).all()  # every synthetic image was updated


def test_other_class_counts_colour_images_and_noise_init() -> None:
    real = tiny_dataset([8, 9, 10, 11, 12, 13], channels=3, side=32, name="cifar10")
    result = DMMethod().condense(real, 3, smoke(init="noise", dsa_strategy="none"), 1, CondenseContext())
    assert result.images.shape == (18, 3, 32, 32)
    assert result.labels.tolist() == [c for c in range(6) for _ in range(3)]


def test_classes_smaller_than_the_real_batch_and_batchnorm() -> None:
    real = tiny_dataset([6, 12, 20])  # batch_real 16: the first two classes give all their images
    for arch in ("ConvNet", "ConvNetBN"):
        result = DMMethod().condense(real, 1, smoke(batch_real=16, arch=arch, real_chunk=16), 0, CondenseContext())
        assert torch.isfinite(result.images).all()


def test_divergence_stops_the_cell() -> None:
    real = tiny_dataset([8, 8])
    with pytest.raises(NonFiniteLossError):
        DMMethod().condense(real, 1, smoke(iterations=3, lr_img=1e38, dsa_strategy="none"), 0, CondenseContext())


# --- configuration and registration -------------------------------------------------------------


def test_paper_defaults_are_the_reference_settings() -> None:
    paper = make_config(DMConfig, "paper")
    reference = (20000, 1.0, 0.5, 256, "real")
    assert (paper.iterations, paper.lr_img, paper.momentum, paper.batch_real, paper.init) == reference
    assert (paper.arch, paper.net_width, paper.net_depth) == ("ConvNet", 128, 3)
    quick = make_config(DMConfig, "quick")
    assert quick.net_width == 32 and quick.iterations < paper.iterations
    assert DMMethod.native_eval_augmentation == "dsa"


@pytest.mark.parametrize(
    "bad",
    [
        {"iterations": 0},
        {"lr_img": 0.0},
        {"momentum": 1.0},
        {"batch_real": 0},
        {"init": "zeros"},
        {"dsa_strategy": "colour"},
        {"real_chunk": 0},
    ],
)
def test_bad_settings_are_one_line_errors(bad: dict[str, object]) -> None:
    with pytest.raises(DcbenchError):
        make_config(DMConfig, "quick", bad)


def test_an_architecture_without_embed_is_refused() -> None:
    def plain(channels: int, num_classes: int, size: tuple[int, int]) -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(channels * size[0] * size[1], num_classes))

    real = tiny_dataset([8, 8])
    ctx = CondenseContext(architectures={"Plain": Architecture("Plain", plain)})
    with pytest.raises(DcbenchError, match="embed"):
        DMMethod().condense(real, 1, smoke(arch="Plain"), 0, ctx)


def test_the_plugin_registers_dm() -> None:
    from dcbench.plugins import load_plugins

    assert isinstance(load_plugins().method("dm"), DMMethod)


def test_smoke_on_fashion_mnist() -> None:
    from dcbench.data.builtin import load_fashion_mnist

    try:
        real = load_fashion_mnist(None)
    except DcbenchError as exc:
        pytest.skip(str(exc))
    ctx = CondenseContext()
    result = DMMethod().condense(real, 1, smoke(), 0, ctx)
    assert result.images.shape == (10, 1, 28, 28)
    assert ctx.metrics["dsa_strategy"] == "color_crop_cutout_flip_scale_rotate"


def test_dm_keeps_flip_on_digit_datasets_as_main_dm() -> None:
    from dcbench.evaluation import Protocol

    real = tiny_dataset([12, 12, 12], name="mnist")
    ctx = CondenseContext()
    DMMethod().condense(real, 1, smoke(), 0, ctx)
    assert ctx.metrics["dsa_strategy"] == "color_crop_cutout_flip_scale_rotate"
    native = DMMethod().native_evaluation("mnist")
    assert (native.augmentation, native.paper_epochs) == ("dsa", 1000)
    protocol = Protocol.for_preset("paper", "mnist", native=native)
    assert protocol.dsa_strategy == "color_crop_cutout_flip_scale_rotate" and protocol.epochs == 1000
