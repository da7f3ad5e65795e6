from __future__ import annotations

import pytest
import torch

from dcbench.host.errors import DcbenchError
from dcbench.method.seeding import make_generator
from dcbench.nn.networks import BUILTIN_ARCHITECTURES, AvgPool2x2, ConvNet, build_network

ARCHS = {a.name: a for a in BUILTIN_ARCHITECTURES}


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
def test_every_architecture_classifies_and_embeds(arch: str, channels: int, size: int) -> None:
    net = build_network(ARCHS[arch], channels, 7, (size, size), make_generator(0, "net"))
    x = torch.randn(3, channels, size, size, generator=make_generator(0, "x"))
    assert net(x).shape == (3, 7)
    assert net.embed(x).shape[0] == 3


def test_convnet_features_match_the_reference_shapes_for_28_and_32_pixels() -> None:
    for channels, size in ((1, 28), (3, 32)):
        net = build_network(ARCHS["ConvNet"], channels, 10, (size, size), make_generator(0))
        feats = net.features(torch.zeros(2, channels, size, size))
        # 28x28 one-channel images are padded to 32x32 in the first conv, as the reference does
        assert [tuple(f.shape[1:]) for f in feats] == [(128, 32, 32), (128, 16, 16), (128, 8, 8), (128, 4, 4)]
        assert net.embed(torch.zeros(2, channels, size, size)).shape == (2, 2048)


def test_convnet_options_change_structure() -> None:
    net = build_network(
        ARCHS["ConvNet"],
        3,
        10,
        (32, 32),
        make_generator(0),
        width=16,
        depth=4,
        norm="batchnorm",
        activation="leakyrelu",
        pooling="maxpooling",
    )
    assert len(net.features(torch.zeros(2, 3, 32, 32))) == 5
    assert net.embed(torch.zeros(2, 3, 32, 32)).shape == (2, 16 * 2 * 2)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    with pytest.raises(DcbenchError, match="norm"):
        ConvNet(1, 10, (28, 28), norm="weird")


def test_building_is_seeded_and_leaves_the_global_rng_alone() -> None:
    state = torch.get_rng_state()
    a = build_network(ARCHS["ConvNet"], 1, 10, (28, 28), make_generator(5, "net"))
    b = build_network(ARCHS["ConvNet"], 1, 10, (28, 28), make_generator(5, "net"))
    c = build_network(ARCHS["ConvNet"], 1, 10, (28, 28), make_generator(6, "net"))
    assert torch.equal(torch.get_rng_state(), state)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_default_init_has_pytorch_scale() -> None:
    net = build_network(ARCHS["ConvNet"], 3, 10, (32, 32), make_generator(0))
    conv = net.blocks[1][0]
    bound = 1 / (conv.weight[0].numel() ** 0.5)  # kaiming_uniform(a=sqrt(5)) bound equals 1/sqrt(fan_in)
    assert conv.weight.abs().max() <= bound + 1e-6
    assert conv.weight.abs().max() > 0.9 * bound


@pytest.mark.parametrize("shape", [(3, 5, 8, 8), (2, 4, 7, 9), (1, 1, 2, 2)])
def test_avgpool2x2_matches_avg_pool2d_forward_backward_and_double_backward(shape: tuple[int, ...]) -> None:
    # Odd sizes are floored, as nn.AvgPool2d(2, 2) does. Double backward is what gradient matching needs.
    x = torch.randn(*shape, generator=make_generator(0, "x"), dtype=torch.float64, requires_grad=True)
    outputs = []
    for pool in (torch.nn.AvgPool2d(2, 2), AvgPool2x2()):
        y = pool(x)
        (g,) = torch.autograd.grad((y**3).sum(), x, create_graph=True)
        (gg,) = torch.autograd.grad((g**2).sum(), x)
        outputs.append((y, g, gg))
    for ref, got in zip(*outputs):
        assert got.shape == ref.shape
        torch.testing.assert_close(got, ref)
    assert torch.autograd.gradcheck(AvgPool2x2(), (x,))


def test_avgpool2x2_under_vmap_and_autocast() -> None:
    pool, ref = AvgPool2x2(), torch.nn.AvgPool2d(2, 2)
    x = torch.randn(3, 2, 4, 6, 6, generator=make_generator(1, "x"))
    torch.testing.assert_close(torch.vmap(pool)(x), torch.stack([ref(xi) for xi in x]))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = pool(x[0])
    assert y.dtype == torch.float32  # pools in the input's dtype, as avg_pool2d does under autocast
    torch.testing.assert_close(y, ref(x[0]))


@pytest.mark.parametrize("shape", [(4, 32, 16, 16), (2, 3, 7, 9)])
def test_avgpool2x2_of_bf16_input_equals_avg_pool2d_in_bf16(shape: tuple[int, ...]) -> None:
    """bf16 pools through fp32 (oneDNN's bf16 depthwise backward is slow): the same bits, forward and
    backward, as PyTorch's own bf16 average pooling, and the dtype stays bf16."""
    x = torch.randn(*shape, generator=make_generator(2, "x")).bfloat16().requires_grad_(True)
    out_shape = (shape[0], shape[1], shape[2] // 2, shape[3] // 2)
    grad_out = torch.randn(*out_shape, generator=make_generator(2, "g")).bfloat16()
    results = []
    for pool in (torch.nn.AvgPool2d(2, 2), AvgPool2x2()):
        y = pool(x)
        (g,) = torch.autograd.grad(y, x, grad_out)
        results.append((y, g))
    (y_ref, g_ref), (y, g) = results
    assert y.dtype == g.dtype == torch.bfloat16
    assert torch.equal(y, y_ref) and torch.equal(g, g_ref)


def test_convnet_average_pooling_is_the_depthwise_pool() -> None:
    net = build_network(ARCHS["ConvNet"], 1, 10, (28, 28), make_generator(0))
    assert all(isinstance(p, AvgPool2x2) for p in net.pools)
    assert not any(k.startswith("pools.") for k in net.state_dict())  # checkpoints keep their keys
