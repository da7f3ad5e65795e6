from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch.nn import functional as F

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


# --- the reference's DiffAugment (VICO-UoE/DatasetCondensation utils.py), written out per family ---
# Each takes the reference's uniform/integer draws explicitly (it draws them from the global RNG);
# the tests below draw them from the same generator stream dcbench's augment() uses, in its order.
P = DEFAULT_DSA


def ref_color(x, rb, rs, rc):  # rand_brightness, rand_saturation, rand_contrast, in that order
    x = x + (rb.view(-1, 1, 1, 1) - 0.5) * P.brightness
    x_mean = x.mean(dim=1, keepdim=True)
    x = (x - x_mean) * (rs.view(-1, 1, 1, 1) * P.saturation) + x_mean
    x_mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - x_mean) * (rc.view(-1, 1, 1, 1) + P.contrast) + x_mean


def ref_crop(x, translation_x, translation_y):
    grid_batch, grid_x, grid_y = torch.meshgrid(
        torch.arange(x.size(0)), torch.arange(x.size(2)), torch.arange(x.size(3)), indexing="ij"
    )
    grid_x = torch.clamp(grid_x + translation_x.view(-1, 1, 1) + 1, 0, x.size(2) + 1)
    grid_y = torch.clamp(grid_y + translation_y.view(-1, 1, 1) + 1, 0, x.size(3) + 1)
    x_pad = F.pad(x, [1, 1, 1, 1, 0, 0, 0, 0])
    return x_pad.permute(0, 2, 3, 1).contiguous()[grid_batch, grid_x, grid_y].permute(0, 3, 1, 2)


def ref_cutout(x, offset_x, offset_y):
    cutout_size = int(x.size(2) * P.ratio_cutout + 0.5), int(x.size(3) * P.ratio_cutout + 0.5)
    grid_batch, grid_x, grid_y = torch.meshgrid(
        torch.arange(x.size(0)), torch.arange(cutout_size[0]), torch.arange(cutout_size[1]), indexing="ij"
    )
    grid_x = torch.clamp(grid_x + offset_x.view(-1, 1, 1) - cutout_size[0] // 2, min=0, max=x.size(2) - 1)
    grid_y = torch.clamp(grid_y + offset_y.view(-1, 1, 1) - cutout_size[1] // 2, min=0, max=x.size(3) - 1)
    mask = torch.ones(x.size(0), x.size(2), x.size(3), dtype=x.dtype)
    mask[grid_batch, grid_x, grid_y] = 0
    return x * mask.unsqueeze(1)


def ref_flip(x, randf):
    return torch.where(randf.view(-1, 1, 1, 1) < P.prob_flip, x.flip(3), x)


def ref_scale(x, rx, ry):
    ratio = P.ratio_scale
    sx, sy = rx * (ratio - 1.0 / ratio) + 1.0 / ratio, ry * (ratio - 1.0 / ratio) + 1.0 / ratio
    theta = torch.tensor([[[sx[i], 0, 0], [0, sy[i], 0]] for i in range(x.shape[0])], dtype=torch.float)
    return F.grid_sample(x, F.affine_grid(theta, x.shape, align_corners=True), align_corners=True)


def ref_rotate(x, r):
    theta = (r - 0.5) * 2 * P.ratio_rotate / 180 * float(np.pi)
    theta = [
        [[torch.cos(theta[i]), torch.sin(-theta[i]), 0], [torch.sin(theta[i]), torch.cos(theta[i]), 0]]
        for i in range(x.shape[0])
    ]
    theta = torch.tensor(theta, dtype=torch.float)
    return F.grid_sample(x, F.affine_grid(theta, x.shape, align_corners=True), align_corners=True)


def reference_augment(family: str, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The reference family on the draws augment() makes from ``g`` after picking the family."""
    n, _, h, w = x.shape
    uniform = lambda: torch.rand(n, generator=g)  # noqa: E731
    if family == "color":
        return ref_color(x, uniform(), uniform(), uniform())
    if family == "crop":
        sx, sy = int(h * P.ratio_crop_pad + 0.5), int(w * P.ratio_crop_pad + 0.5)
        tx = torch.randint(-sx, sx + 1, (n,), generator=g)
        return ref_crop(x, tx, torch.randint(-sy, sy + 1, (n,), generator=g))
    if family == "cutout":
        ch, cw = int(h * P.ratio_cutout + 0.5), int(w * P.ratio_cutout + 0.5)
        ox = torch.randint(0, h + (1 - ch % 2), (n,), generator=g)
        return ref_cutout(x, ox, torch.randint(0, w + (1 - cw % 2), (n,), generator=g))
    if family == "flip":
        return ref_flip(x, uniform())
    if family == "scale":
        return ref_scale(x, uniform(), uniform())
    # dcbench's matrix is the reference's at the negated angle: the angle is uniform on a range
    # symmetric about 0, so the transforms are the same in distribution, not draw for draw
    return ref_rotate(x, 1 - uniform())


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_is_the_reference_formula_on_the_same_draws(family: str) -> None:
    x = images(6, size=12)
    for seed in range(3):
        g = make_generator(seed, "dsa")
        torch.randint(1, (1,), generator=g)  # augment() picks the (only) family first
        expected = reference_augment(family, x, g)
        torch.testing.assert_close(augment(x, family, make_generator(seed, "dsa")), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_siamese_is_the_reference_formula_with_the_first_draw_for_every_image(family: str) -> None:
    real, syn = images(5, size=12, seed=1), images(3, size=12, seed=2)
    g = make_generator(4, "dsa")
    torch.randint(1, (1,), generator=g)
    one = reference_augment(family, real[:1], g)  # one image's draws ...
    a, b = siamese_augment([real, syn], family, make_generator(4, "dsa"))
    for batch, out in ((real, a), (syn, b)):  # ... applied to every image of both batches
        g = make_generator(4, "dsa")
        torch.randint(1, (1,), generator=g)
        expected = torch.cat([reference_augment(family, batch[i : i + 1], _replay(g)) for i in range(len(batch))])
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a[:1], one, atol=1e-5, rtol=1e-5)


def _replay(g: torch.Generator) -> torch.Generator:
    """A copy of ``g`` at its current state (every image replays the same first draw)."""
    copy = torch.Generator()
    copy.set_state(g.get_state())
    return copy


def test_color_by_hand_on_one_two_pixel_image() -> None:
    # one 3-channel image of 2 pixels; brightness draw 0.75 (+0.25), saturation 0.5 (x1), contrast 0.5 (x1)
    x = torch.tensor([[[[0.0, 1.0]], [[2.0, 3.0]], [[4.0, 5.0]]]])
    out = _apply(
        "color",
        x,
        {k: torch.tensor([v]) for k, v in (("brightness", 0.75), ("saturation", 0.5), ("contrast", 0.5))},
        DEFAULT_DSA,
    )
    torch.testing.assert_close(out, x + 0.25)
    # saturation draw 0 (x0): every pixel becomes its mean over the channels (2.25, 3.25)
    out = _apply(
        "color",
        x,
        {k: torch.tensor([v]) for k, v in (("brightness", 0.75), ("saturation", 0.0), ("contrast", 0.5))},
        DEFAULT_DSA,
    )
    torch.testing.assert_close(out, torch.tensor([2.25, 3.25]).view(1, 1, 1, 2).expand(1, 3, 1, 2))


def test_crop_and_cutout_by_hand_on_a_3x3_image() -> None:
    x = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    # translation (1, -1): row i shows row i+1, column j shows column j-1, zeros where off the image
    out = _apply("crop", x, {"tx": torch.tensor([1]), "ty": torch.tensor([-1])}, DEFAULT_DSA)
    assert out[0, 0].tolist() == [[0, 4, 5], [0, 7, 8], [0, 0, 0]]
    # cutout of side int(3 * 0.5 + 0.5) = 2 centred at (0, 2): rows -1..0, columns 1..2
    out = _apply("cutout", x, {"ox": torch.tensor([0]), "oy": torch.tensor([2])}, DEFAULT_DSA)
    assert out[0, 0].tolist() == [[1, 0, 0], [4, 5, 6], [7, 8, 9]]


def test_rotate_and_scale_by_hand() -> None:
    x = torch.arange(9.0).view(1, 1, 3, 3)
    # 0.5 + 90 / (2 * 15) would be 90 degrees; with a 90-degree ratio, draw 1.0 turns by +90 degrees:
    # output (row i, column j) samples input (row j, column 2 - i), i.e. torch.rot90 clockwise
    quarter = _apply("rotate", x, {"angle": torch.tensor([1.0])}, dataclasses.replace(DEFAULT_DSA, ratio_rotate=90.0))
    torch.testing.assert_close(quarter, torch.rot90(x, -1, (2, 3)), atol=1e-5, rtol=0)
    # scale draw 0.5 with ratio 1.2: factor f = (1.2 + 1/1.2) / 2 in both axes. With align_corners the
    # centre stays and corner (0, 0) samples the input at pixel (1 - f, 1 - f) = (-1/60, -1/60): bilinear
    # between pixel 0 (weight 59/60 per axis) and the zero padding
    x = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    scaled = _apply("scale", x, {"sx": torch.tensor([0.5]), "sy": torch.tensor([0.5])}, DEFAULT_DSA)
    assert float(scaled[0, 0, 1, 1]) == pytest.approx(5.0)
    assert float(scaled[0, 0, 0, 0]) == pytest.approx(1.0 * (59 / 60) ** 2, abs=1e-5)


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
