from __future__ import annotations

import pytest
import torch

from dcbench.augment import DEFAULT_DSA, FAMILIES, _apply, _draw, augment, dc_augment, dsa_strategy_for, \
    parse_strategy, siamese_augment
from dcbench.errors import DcbenchError
from dcbench.seeding import make_generator


def images(n: int, c: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, c, size, size, generator=make_generator(seed, "x"))


def test_strategy_strings() -> None:
    assert dsa_strategy_for("mnist") == "color_crop_cutout_scale_rotate"
    assert dsa_strategy_for("svhn") == "color_crop_cutout_scale_rotate"
    assert dsa_strategy_for("fashion-mnist") == "color_crop_cutout_flip_scale_rotate"
    assert parse_strategy("none") == () and parse_strategy("") == ()
    with pytest.raises(DcbenchError, match="unknown DSA family 'blur'"):
        parse_strategy("crop_blur")


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_keeps_shape_and_is_differentiable(family: str) -> None:
    x = images(4).requires_grad_(True)
    out = augment(x, family, make_generator(0))
    assert out.shape == x.shape
    out.sum().backward()
    assert x.grad is not None


def test_siamese_shares_one_transform_across_batches_and_images() -> None:
    real, syn = images(6, seed=1), images(2, seed=2)
    for seed in range(12):  # every family gets drawn over these seeds
        a, b = siamese_augment([real, syn], "color_crop_cutout_flip_scale_rotate", make_generator(seed))
        # the same transform applied to the same image gives the same output in both batches
        same, _ = siamese_augment([real[:1], real[:1]], "color_crop_cutout_flip_scale_rotate", make_generator(seed))
        assert torch.allclose(a[:1], same, atol=1e-6)
        c, _ = siamese_augment([syn, syn], "color_crop_cutout_flip_scale_rotate", make_generator(seed))
        assert torch.allclose(c, b, atol=1e-6)


def test_augment_is_deterministic_for_a_generator_and_leaves_global_rng() -> None:
    state = torch.get_rng_state()
    x = images(8)
    a = augment(x, "color_crop_cutout_flip_scale_rotate", make_generator(3))
    b = augment(x, "color_crop_cutout_flip_scale_rotate", make_generator(3))
    assert torch.equal(a, b)
    assert torch.equal(torch.get_rng_state(), state)


def test_crop_translates_with_zero_fill() -> None:
    x = torch.ones(1, 1, 8, 8)
    out = _apply("crop", x, {"tx": torch.tensor([1]), "ty": torch.tensor([0])}, DEFAULT_DSA)
    assert out[0, 0, -1].sum() == 0 and out[0, 0, :-1].min() == 1  # shifted up by one row


def test_cutout_zeroes_a_square_of_half_the_side() -> None:
    x = torch.ones(1, 1, 32, 32)
    out = _apply("cutout", x, {"ox": torch.tensor([16]), "oy": torch.tensor([16])}, DEFAULT_DSA)
    assert (out == 0).sum() == 16 * 16


def test_flip_and_rotate_parameters() -> None:
    x = images(2)
    flipped = _apply("flip", x, {"flip": torch.tensor([True, False])}, DEFAULT_DSA)
    assert torch.equal(flipped[0], x[0].flip(2)) and torch.equal(flipped[1], x[1])
    r = _draw("rotate", 2, x, make_generator(0), DEFAULT_DSA)
    assert r["angle"].shape == (2,)
    unrotated = _apply("rotate", x, {"angle": torch.tensor([0.5, 0.5])}, DEFAULT_DSA)  # 0 degrees
    assert torch.allclose(unrotated, x, atol=1e-5)


def test_dc_augment_mnist_strategy() -> None:
    x = images(16, c=1, size=28)
    out = dc_augment(x, make_generator(0))
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert torch.equal(out, dc_augment(x, make_generator(0)))
    with pytest.raises(DcbenchError):
        dc_augment(x, make_generator(0), strategy="crop_blur")
