"""Networks of the reference code (VICO-UoE/DatasetCondensation ``networks.py``), seeded explicitly.

The ConvNet is the workhorse of dataset condensation: ``depth`` blocks of
conv(3x3) -> norm -> activation -> 2x2 pooling, then a linear head. Feature-matching methods
read its per-block features (:meth:`ConvNet.features`) and its embedding (:meth:`ConvNet.embed`).
MLP, LeNet, AlexNet, VGG11 and ResNet18 are the cross-architecture evaluation networks.

Every network is built on the ``meta`` device and initialised with PyTorch's default scheme from
an explicit :class:`torch.Generator`, so building one never touches the global RNG.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dcbench.host.errors import DcbenchError

NORMS = ("instancenorm", "batchnorm", "layernorm", "groupnorm", "none")
ACTIVATIONS = ("relu", "sigmoid", "leakyrelu")
POOLINGS = ("avgpooling", "maxpooling", "none")


def _norm(kind: str, channels: int, shape: tuple[int, int]) -> nn.Module:
    if kind == "instancenorm":  # the reference's "instancenorm": per-sample, per-channel, affine
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "batchnorm":
        return nn.BatchNorm2d(channels, affine=True)
    if kind == "layernorm":
        return nn.LayerNorm([channels, *shape], elementwise_affine=True)
    if kind == "groupnorm":
        return nn.GroupNorm(4, channels, affine=True)
    return nn.Identity()


def _activation(kind: str) -> nn.Module:
    # In place, as the reference: the activation overwrites the norm's output, which no backward
    # needs (norms save their input), so a step allocates one activation-sized tensor less.
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "sigmoid":
        return nn.Sigmoid()
    return nn.LeakyReLU(0.01, inplace=True)


class AvgPool2x2(nn.AvgPool2d):
    """2x2 average pooling, stride 2 (``nn.AvgPool2d(2, 2)``), computed on a CPU as a depthwise
    convolution with weights 1/4.

    PyTorch's CPU ``avg_pool2d`` on NCHW tensors is a scalar loop over windows; oneDNN's depthwise
    convolution gives the same numbers 1.6-3.7x faster forward and backward (benchmarks/RESULTS.md),
    and a quarter of a small ConvNet's step was pooling. It stays differentiable twice (gradient
    matching) and under ``vmap``. Elsewhere (CUDA, MPS) the native kernel is already fast, and
    under ``torch.compile`` inductor generates the pooling itself, fused with the norm and ReLU
    before it (a convolution would stay an opaque library call)."""

    def __init__(self) -> None:
        super().__init__(kernel_size=2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu" or x.dim() != 4 or torch.compiler.is_compiling():
            return super().forward(x)
        if x.dtype in (torch.bfloat16, torch.float16) and x.requires_grad and torch.is_grad_enabled():
            # oneDNN's bf16 depthwise *backward* is a generic strided kernel on CPUs without AMX (17 ms
            # against 2.7 ms in fp32 for 100 x 32 x 32^2 on a Zen 4; its forward is the faster one,
            # benchmarks/RESULTS.md). Through fp32 the numbers are the same, forward and backward: a
            # sum of four, times 1/4, rounded to bf16 once.
            return self._pool(x.float()).to(x.dtype)
        return self._pool(x)

    @staticmethod
    def _pool(x: Tensor) -> Tensor:
        channels = x.shape[1]
        weight = torch.full((channels, 1, 2, 2), 0.25, dtype=x.dtype, device=x.device)
        if torch.is_autocast_enabled("cpu"):  # pool in the input's dtype, as avg_pool2d does under autocast
            with torch.autocast("cpu", enabled=False):
                return F.conv2d(x, weight, stride=2, groups=channels)
        return F.conv2d(x, weight, stride=2, groups=channels)


def set_inplace_activations(net: nn.Module, enabled: bool) -> nn.Module:
    """Switch every in-place-capable activation of ``net`` (ReLU, LeakyReLU) on or off.

    Off where a ``torch.func`` transform runs the network (vmapped evaluation, per-class
    gradients): functional transforms of in-place ops are not worth the risk there."""
    for module in net.modules():
        if isinstance(module, (nn.ReLU, nn.LeakyReLU)):
            module.inplace = enabled
    return net


class ConvNet(nn.Module):
    """The reference ConvNet (default: width 128, depth 3, instance norm, ReLU, average pooling).

    One-channel inputs get padding 3 in the first convolution, as in the reference, so 28x28
    images are processed as 32x32 ones and the embedding of every 28/32-pixel dataset is
    ``width * 4 * 4`` at depth 3.
    """

    def __init__(
        self,
        channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        width: int = 128,
        depth: int = 3,
        norm: str = "instancenorm",
        activation: str = "relu",
        pooling: str = "avgpooling",
    ) -> None:
        super().__init__()
        for value, allowed, what in (
            (norm, NORMS, "norm"),
            (activation, ACTIVATIONS, "activation"),
            (pooling, POOLINGS, "pooling"),
        ):
            if value not in allowed:
                raise DcbenchError(f"unknown ConvNet {what} {value!r}; choose one of {', '.join(allowed)}")
        if depth < 1 or width < 1:
            raise DcbenchError(f"ConvNet needs depth >= 1 and width >= 1, got depth={depth}, width={width}")
        pad_first = 3 if channels == 1 else 1
        h, w = image_size[0] + 2 * (pad_first - 1), image_size[1] + 2 * (pad_first - 1)
        self.blocks = nn.ModuleList()
        self.pools = nn.ModuleList()
        in_ch = channels
        for d in range(depth):
            conv = nn.Conv2d(in_ch, width, kernel_size=3, padding=pad_first if d == 0 else 1)
            self.blocks.append(nn.Sequential(conv, _norm(norm, width, (h, w)), _activation(activation)))
            if pooling == "none":
                self.pools.append(nn.Identity())
            else:
                self.pools.append(AvgPool2x2() if pooling == "avgpooling" else nn.MaxPool2d(kernel_size=2, stride=2))
                h, w = h // 2, w // 2
            in_ch = width
        self.embed_dim = width * h * w
        self.classifier = nn.Linear(self.embed_dim, num_classes)

    def features(self, x: Tensor) -> list[Tensor]:
        """Per-block feature maps, shallow to deep: each block's activation (before its pooling),
        then the final pooled map. For depth 3 these are CAFE's f1, f2, f3 and f4."""
        maps = []
        for block, pool in zip(self.blocks, self.pools):
            x = block(x)
            maps.append(x)
            x = pool(x)
        maps.append(x)
        return maps

    def embed(self, x: Tensor) -> Tensor:
        """The penultimate representation (flattened final map) that DM and CAFE match."""
        for block, pool in zip(self.blocks, self.pools):
            x = pool(block(x))
        return x.flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.embed(x))


class MLP(nn.Module):
    """Three fully connected layers, 128-128-classes."""

    def __init__(self, channels: int, num_classes: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * image_size[0] * image_size[1], 128),
            nn.ReLU(inplace=True),
            nn.Linear(128, 128),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(128, num_classes)

    def embed(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.body(x))


class LeNet(nn.Module):
    def __init__(self, channels: int, num_classes: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        pad = 2 if channels == 1 else 0
        self.body = nn.Sequential(
            nn.Conv2d(channels, 6, 5, padding=pad),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        h = ((image_size[0] + 2 * pad - 4) // 2 - 4) // 2
        w = ((image_size[1] + 2 * pad - 4) // 2 - 4) // 2
        self.head = nn.Sequential(
            nn.Linear(16 * h * w, 120), nn.ReLU(inplace=True), nn.Linear(120, 84), nn.ReLU(inplace=True)
        )
        self.classifier = nn.Linear(84, num_classes)

    def embed(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.embed(x))


class AlexNet(nn.Module):
    """The reference's small AlexNet (no normalisation)."""

    def __init__(self, channels: int, num_classes: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 128, 5, padding=4 if channels == 1 else 2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(128, 192, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(192, 256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 192, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(192, 192, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        side = (image_size[0] + (8 if channels == 1 else 4) - 4) // 8
        self.classifier = nn.Linear(192 * side * side, num_classes)

    def embed(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.body(x))


class VGG11(nn.Module):
    """VGG11 with instance norm (GroupNorm(C, C)), as the reference's non-BN VGG11."""

    CFG: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")

    def __init__(
        self, channels: int, num_classes: int, image_size: tuple[int, int], norm: str = "instancenorm"
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch, side = channels, image_size[0] + (4 if channels == 1 else 0)
        for i, v in enumerate(self.CFG):
            if isinstance(v, str):  # "M", a max-pool
                layers.append(nn.MaxPool2d(2))
                side //= 2
            else:
                layers += [
                    nn.Conv2d(in_ch, v, 3, padding=3 if (channels == 1 and i == 0) else 1),
                    _norm(norm, v, (side, side)),
                    nn.ReLU(inplace=True),
                ]
                in_ch = v
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.classifier = nn.Linear(512 * side * side, num_classes)

    def embed(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.body(x))


class _BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.norm1 = _norm(norm, out_ch, (0, 0))
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.norm2 = _norm(norm, out_ch, (0, 0))
        self.shortcut = nn.Sequential()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), _norm(norm, out_ch, (0, 0))
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet18 with instance norm, 3x3 stem, stride-2 stages and a 4x4 average pool (reference)."""

    def __init__(
        self, channels: int, num_classes: int, image_size: tuple[int, int], norm: str = "instancenorm"
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(channels, 64, 3, stride=1, padding=1, bias=False), _norm(norm, 64, (0, 0)), nn.ReLU(inplace=True)
        )
        stages, in_ch = [], 64
        for out_ch, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages += [_BasicBlock(in_ch, out_ch, stride, norm), _BasicBlock(out_ch, out_ch, 1, norm)]
            in_ch = out_ch
        self.stages = nn.Sequential(*stages)
        self.classifier = nn.Linear(512, num_classes)

    def embed(self, x: Tensor) -> Tensor:
        x = self.stages(self.stem(x))
        return F.adaptive_avg_pool2d(x, 1).flatten(1) if x.shape[-1] < 4 else F.avg_pool2d(x, 4).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.embed(x))


@torch.no_grad()
def init_parameters(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """PyTorch's default initialisation, drawn from ``generator`` instead of the global RNG."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
            if m.bias is not None:
                fan_in = m.weight[0].numel()
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)
        elif isinstance(m, (nn.GroupNorm, nn.LayerNorm, nn.BatchNorm2d)):
            if getattr(m, "weight", None) is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
    return module


NetworkFactory = Callable[..., nn.Module]


@dataclass(frozen=True)
class Architecture:
    """A named network factory: ``factory(channels, num_classes, image_size, **options)``."""

    name: str
    factory: NetworkFactory
    description: str = ""
    has_batchnorm: bool = False


BUILTIN_ARCHITECTURES = (
    Architecture("ConvNet", ConvNet, "ConvNet-3, width 128, instance norm (the condensation default)"),
    Architecture(
        "ConvNetBN",
        lambda *a, **k: ConvNet(*a, **{**k, "norm": "batchnorm"}),
        "ConvNet with BatchNorm",
        has_batchnorm=True,
    ),
    Architecture("MLP", MLP, "3-layer MLP, 128-128-classes"),
    Architecture("LeNet", LeNet, "LeNet-5"),
    Architecture("AlexNet", AlexNet, "the reference's small AlexNet, no norm"),
    Architecture("VGG11", VGG11, "VGG11 with instance norm"),
    Architecture("ResNet18", ResNet18, "ResNet18 with instance norm"),
)


def build_network(
    arch: Architecture,
    channels: int,
    num_classes: int,
    image_size: tuple[int, int],
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    **options: object,
) -> nn.Module:
    """Build ``arch`` on ``device`` with parameters drawn from ``generator``."""
    try:
        with torch.device("meta"):
            net = arch.factory(channels, num_classes, tuple(image_size), **options)
    except TypeError as exc:
        raise DcbenchError(f"architecture {arch.name!r} does not take options {sorted(options)}: {exc}") from None
    # Parameters are drawn on the CPU (from a CPU generator) so a seed gives the same network on
    # every device.
    return init_parameters(net.to_empty(device="cpu"), generator).to(device)
