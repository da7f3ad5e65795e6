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


# --- the reference's get_network architectures (VICO-UoE/DatasetCondensation networks.py), written
# out as plain layer lists: same layers in the same order, so the parameters line up one to one ---


def _reference_inorm(c: int) -> torch.nn.Module:
    return torch.nn.GroupNorm(c, c, affine=True)  # the reference's "instancenorm"


class _RefSequential(torch.nn.Module):
    """conv/pool ``features`` -> flatten -> ``fcs`` with ReLU between them (the reference's forward)."""

    def __init__(self, features: list[torch.nn.Module], fcs: list[torch.nn.Linear]) -> None:
        super().__init__()
        self.features, self.fcs = torch.nn.Sequential(*features), torch.nn.ModuleList(fcs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).flatten(1)
        for i, fc in enumerate(self.fcs):
            x = fc(x) if i == len(self.fcs) - 1 else torch.relu(fc(x))
        return x


def _ref_mlp(channel: int, k: int) -> torch.nn.Module:
    return _RefSequential(
        [],
        [
            torch.nn.Linear(28 * 28 * 1 if channel == 1 else 32 * 32 * 3, 128),
            torch.nn.Linear(128, 128),
            torch.nn.Linear(128, k),
        ],
    )


def _ref_lenet(channel: int, k: int) -> torch.nn.Module:
    nn = torch.nn
    features = [
        nn.Conv2d(channel, 6, 5, padding=2 if channel == 1 else 0),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
    ]
    return _RefSequential(
        features, [torch.nn.Linear(16 * 5 * 5, 120), torch.nn.Linear(120, 84), torch.nn.Linear(84, k)]
    )


def _ref_alexnet(channel: int, k: int) -> torch.nn.Module:
    nn = torch.nn
    features = [
        nn.Conv2d(channel, 128, 5, padding=4 if channel == 1 else 2),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(128, 192, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(192, 256, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(256, 192, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(192, 192, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
    ]
    return _RefSequential(features, [torch.nn.Linear(192 * 4 * 4, k)])


def _ref_vgg11(channel: int, k: int) -> torch.nn.Module:
    nn, features, in_ch = torch.nn, [], channel
    for i, v in enumerate([64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]):
        if v == "M":
            features.append(nn.MaxPool2d(2, 2))
        else:
            features += [
                nn.Conv2d(in_ch, v, 3, padding=3 if channel == 1 and i == 0 else 1),
                _reference_inorm(v),
                nn.ReLU(),
            ]
            in_ch = v
    return _RefSequential(features, [torch.nn.Linear(512, k)])


class _RefBasicBlock(torch.nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        nn = torch.nn
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = _reference_inorm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = _reference_inorm(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), _reference_inorm(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + self.shortcut(x))


class _RefResNet18(torch.nn.Module):
    def __init__(self, channel: int, k: int) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(channel, 64, 3, padding=1, bias=False)
        self.bn1 = _reference_inorm(64)
        blocks, cin = [], 64
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [_RefBasicBlock(cin, planes, stride), _RefBasicBlock(planes, planes, 1)]
            cin = planes
        self.layers = torch.nn.Sequential(*blocks)
        self.classifier = torch.nn.Linear(512, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(torch.relu(self.bn1(self.conv1(x))))
        return self.classifier(torch.nn.functional.avg_pool2d(out, 4).flatten(1))


REFERENCE_NETWORKS = {
    "MLP": _ref_mlp,
    "LeNet": _ref_lenet,
    "AlexNet": _ref_alexnet,
    "VGG11": _ref_vgg11,
    "ResNet18": _RefResNet18,
}


@pytest.mark.parametrize("arch", sorted(REFERENCE_NETWORKS))
@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
def test_architecture_is_the_reference_layer_for_layer(arch: str, channels: int, size: int) -> None:
    net = build_network(ARCHS[arch], channels, 10, (size, size), make_generator(0, "net"))
    reference = REFERENCE_NETWORKS[arch](channels, 10)
    ours = [tuple(p.shape) for p in net.parameters()]
    assert ours == [tuple(p.shape) for p in reference.parameters()]  # every layer, in order, and its size
    with torch.no_grad():  # the same weights give the same function: activations, pooling, padding, skips
        for mine, theirs in zip(net.parameters(), reference.parameters()):
            theirs.copy_(mine)
    x = torch.randn(2, channels, size, size, generator=make_generator(0, "x"))
    torch.testing.assert_close(net(x), reference(x), atol=1e-5, rtol=1e-4)


def test_reference_parameter_counts_by_hand() -> None:
    # MLP on 28x28x1: (784 + 1) * 128 + (128 + 1) * 128 + (128 + 1) * 10
    mlp = build_network(ARCHS["MLP"], 1, 10, (28, 28), make_generator(0))
    assert sum(p.numel() for p in mlp.parameters()) == 785 * 128 + 129 * 128 + 129 * 10
    # LeNet on 32x32x3: conv 3->6 (5x5), conv 6->16 (5x5), fc 400->120->84->10
    lenet = build_network(ARCHS["LeNet"], 3, 10, (32, 32), make_generator(0))
    assert sum(p.numel() for p in lenet.parameters()) == (75 + 1) * 6 + (150 + 1) * 16 + 401 * 120 + 121 * 84 + 85 * 10
