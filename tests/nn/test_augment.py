from __future__ import annotations

import numpy as np
import pytest
import torch

from dcbench.host.errors import DcbenchError
from dcbench.method.seeding import make_generator
from dcbench.nn.augment import (
    DEFAULT_DSA,
    FAMILIES,
    _apply,
    _dc_crop,
    _dc_rotate,
    _dc_scale,
    _draw,
    augment,
    dc_augment,
    dc_strategy_for,
    dsa_strategy_for,
    parse_strategy,
    siamese_augment,
)


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
    assert dc_strategy_for("mnist") == "crop_scale_rotate" and dc_strategy_for("fashion-mnist") == "none"
    x = images(16, c=1, size=28)
    out = dc_augment(x, make_generator(0))
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert torch.equal(out, dc_augment(x, make_generator(0)))
    assert not torch.equal(out, dc_augment(x, make_generator(1)))
    assert dc_augment(x, make_generator(0), strategy="none") is x
    with pytest.raises(DcbenchError):
        dc_augment(x, make_generator(0), strategy="crop_blur")


def test_dc_scale_down_fills_the_border_with_zeros_not_the_mean() -> None:
    image = torch.full((1, 28, 28), 5.0)
    small = _dc_scale(image, 20, 24)  # 20 rows, 24 columns, centred: 4 / 2 zero px on each side
    assert torch.equal(small[:, 4:24, 2:26], torch.full((1, 20, 24), 5.0))
    assert small.sum() == 5.0 * 20 * 24  # everything else is 0
    large = _dc_scale(image, 34, 30)  # scaling up crops: no fill at all
    assert torch.equal(large, image)
    # through dc_augment: a batch of constant images (batch mean 5) scaled by factors in [0.8, 1.2)
    batch = torch.full((24, 1, 28, 28), 5.0)
    out = dc_augment(batch, make_generator(0), strategy="scale")
    assert set(out.unique().tolist()) == {0.0, 5.0}
    assert (out == 0).flatten(1).any(1).sum() >= 5 and (out == 5).flatten(1).all(1).sum() >= 5


def test_dc_crop_pads_with_the_channel_mean() -> None:
    image = torch.arange(2 * 4 * 4, dtype=torch.float).view(2, 4, 4)
    mean = torch.tensor([-1.0, -2.0])
    shifted = _dc_crop(image, mean, 2, 0, 3)  # 2 rows of padding above, 1 column cut on the left
    assert torch.equal(shifted[:, 2:, :3], image[:, :2, 1:])
    assert (shifted[0, :2] == -1).all() and (shifted[1, :, 3] == -2).all()


def test_dc_rotate_is_a_cubic_spline_rotation() -> None:
    image = torch.randn(2, 9, 9, generator=make_generator(0)).numpy()
    # at multiples of 90 degrees a spline rotation is exact: torch.rot90 is an independent reference
    np.testing.assert_allclose(
        _dc_rotate(image, 90, 0.0), torch.rot90(torch.from_numpy(image), 1, (-2, -1)).numpy(), atol=1e-5
    )
    np.testing.assert_allclose(_dc_rotate(image, 0, 0.0), image, atol=1e-6)
    corners = _dc_rotate(np.zeros((1, 28, 28), np.float32), 45, 3.0)[0, [0, 0, -1, -1], [0, -1, 0, -1]]
    np.testing.assert_allclose(corners, 3.0, atol=1e-5)  # the grown canvas is filled with the fill value
