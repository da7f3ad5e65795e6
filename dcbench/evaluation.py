"""The evaluation protocol: train K fresh networks on a synthetic set, test each on the full test set.

As the reference ``evaluate_synset``: SGD (lr 0.01, momentum 0.9, weight decay 5e-4), batch 256,
cross-entropy on hard labels, ``epochs + 1`` epochs with the lr multiplied by 0.1 (and the
optimiser re-created) *after* training epoch ``epochs // 2 + 1`` (the reference checks
``ep in [Epoch//2+1]`` after that epoch's training: 152 of 301 epochs at 0.01 for 300), and the
accuracy of the final model on every test image (no epoch is ever chosen on test accuracy; only the
``smoke`` preset, for tests, scores the first 500 test images).

The K models can train together: their parameters are stacked (``torch.func.stack_module_state``)
and one ``vmap``-ed ``functional_call`` runs all of them per step. Since the summed loss separates
by model and SGD is element-wise, one optimiser over the stacked tensors is exactly K independent
optimisers. Each model k has its own streams (init, data order, augmentation) derived from
``(seed, k)``, so the stacked run and a model-by-model run give the same networks (up to float
rounding). Stacking pays where per-step overhead dominates: always on a GPU, and on a CPU for small
minibatches (IPC-1-sized sets). A CPU is compute-bound on larger minibatches and on the test pass,
where model by model is faster (measured: see the README), so ``stacked=None`` picks per device.
BatchNorm networks (running statistics are in-place buffers) always train model by model.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn import functional as F

from dcbench.data.real import RealDataset
from dcbench.host.errors import DcbenchError
from dcbench.host.runtime import autocast, check_precision
from dcbench.method.contract import AUGMENTATIONS, REFERENCE_EPOCHS, NativeEvaluation
from dcbench.method.seeding import check_seed, derive_seed, make_generator
from dcbench.method.synthetic import SyntheticSet
from dcbench.nn.augment import augment, dc_augment, dsa_strategy_for, parse_strategy
from dcbench.nn.networks import BUILTIN_ARCHITECTURES, Architecture, build_network, set_inplace_activations

# 2: lr step one epoch later (as the reference), dc augmentation as the reference (zero fill on
#    scaling down, cubic-spline rotation), paper preset's native epochs per method.
PROTOCOL_VERSION = "2"
LABEL_SOURCES = ("hard", "set")
LABEL_LOSSES = ("soft_ce", "kl")


def lr_drop_epoch(epochs: int) -> int:
    """The first epoch trained at the reduced lr: the reference multiplies it by 0.1 after training
    epoch ``epochs // 2 + 1``, so epochs ``0 .. epochs // 2 + 1`` use the initial lr."""
    return epochs // 2 + 2


@dataclass(frozen=True)
class Protocol:
    """How a synthetic set is judged. Named and versioned; written into every result row."""

    arch: str = "ConvNet"
    arch_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 300
    models: int = 20
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    augmentation: str = "none"
    dsa_strategy: str = ""  # "" = the reference string for the dataset
    test_batch_size: int = 1000
    precision: str = "fp32"  # fp32 | bf16 (torch.autocast for the forward passes)
    version: str = PROTOCOL_VERSION
    #: test on the first this many test images (0: all of them; only ``smoke`` tests on fewer)
    test_images: int = 0
    #: what the networks learn from: "hard" (the set's class labels) or "set" (its soft labels,
    #: softmax at ``temperature``, where it has them; a set without them trains on its hard labels)
    labels: str = "hard"
    label_loss: str = "soft_ce"  # with labels = "set": "soft_ce" (DATM's) or "kl" (KL at T, times T^2)
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.augmentation not in AUGMENTATIONS:
            raise DcbenchError(
                f"unknown evaluation augmentation {self.augmentation!r}; choose one of {', '.join(AUGMENTATIONS)}"
            )
        if self.labels not in LABEL_SOURCES or self.label_loss not in LABEL_LOSSES:
            raise DcbenchError(
                f"evaluation labels {self.labels!r} with loss {self.label_loss!r}: choose labels from "
                f"{', '.join(LABEL_SOURCES)} and a loss from {', '.join(LABEL_LOSSES)}"
            )
        if not self.temperature > 0:
            raise DcbenchError(f"protocol temperature must be > 0, got {self.temperature}")
        if self.test_images < 0:
            raise DcbenchError(f"protocol test_images must be >= 0 (0: every test image), got {self.test_images}")
        for name in ("epochs", "models", "batch_size", "test_batch_size"):
            if getattr(self, name) < (0 if name == "epochs" else 1):
                raise DcbenchError(f"protocol {name} must be positive, got {getattr(self, name)}")
        if not self.lr > 0:
            raise DcbenchError(f"protocol lr must be > 0, got {self.lr}")
        parse_strategy(self.dsa_strategy)
        check_precision(self.precision)  # the name; the hardware when the device is known

    @property
    def name(self) -> str:
        width = self.arch_options.get("width")
        arch = f"{self.arch}-W{width}" if width else self.arch
        precision = "" if self.precision == "fp32" else f"/{self.precision}"
        subset = f"/test{self.test_images}" if self.test_images else ""
        labels = f"/{self.labels}-{self.label_loss}-T{self.temperature:g}" if self.labels != "hard" else ""
        return f"{arch}/{self.epochs}ep/{self.augmentation}{precision}{subset}{labels}/v{self.version}"

    @classmethod
    def for_preset(
        cls,
        preset: str,
        dataset: str = "",
        augmentation: str = "none",
        arch: str = "ConvNet",
        native: NativeEvaluation | None = None,
        **overrides: Any,
    ) -> Protocol:
        """The protocol of a preset. ``paper``: 20 models, 300 epochs without augmentation and 1000
        with (DC/DSA/DM scripts), full-width networks. ``quick``: the CPU budget of ``dcbench run``.
        ``smoke``: a few epochs of two tiny networks, for tests. ``native`` (a method's own
        evaluation on ``dataset``) replaces ``augmentation`` and gives its DSA strategy and, under
        ``paper``, its epochs (e.g. CAFE's 600); ``quick`` and ``smoke`` keep their epoch budget."""
        if native is not None:
            augmentation = native.augmentation
            overrides = {"dsa_strategy": native.dsa_strategy, **overrides}
        if preset == "paper":
            epochs = native.paper_epochs if native is not None else REFERENCE_EPOCHS[augmentation != "none"]
            values: dict[str, Any] = {"models": 20, "epochs": epochs}
        elif preset == "quick":
            # one network per seed, six seeds (the default spec): seeds buy more precision per
            # CPU-second than networks do (the report's Precision section on the 3 x 2 grid)
            values = {"models": 1, "epochs": 150, "arch_options": {"width": 32}}
        elif preset == "smoke":
            # seconds on every architecture: the test pass over all 10,000 images dominated (a
            # smoke ResNet18 took 586 s on two CPU cores), so smoke tests on the first 500
            values = {"models": 2, "epochs": 2, "arch_options": {"width": 16}, "test_images": 500}
        else:
            raise DcbenchError(f"unknown preset {preset!r}; choose one of smoke, quick, paper")
        if not arch.startswith("ConvNet"):
            values.pop("arch_options", None)  # widths are a ConvNet option
        values.update(overrides)
        strategy = values.pop("dsa_strategy", "") or (dsa_strategy_for(dataset) if augmentation == "dsa" else "")
        return cls(arch=arch, augmentation=augmentation, dsa_strategy=strategy, **values)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        # fields at their defaults are left out, so that protocols recorded before them keep their hash
        if not self.test_images:
            values.pop("test_images")
        if self.labels == "hard":
            for name in ("labels", "label_loss", "temperature"):
                values.pop(name)
        return {**values, "name": self.name}


@dataclass
class EvaluationResult:
    test_accs: list[float]  # fraction correct on the whole test set, one per model
    train_accs: list[float]  # fraction correct on the synthetic set in the final epoch
    eval_seeds: list[int]
    seconds: float
    protocol: dict[str, Any]
    train_seconds: float = 0.0  # of ``seconds``: training the K models
    test_seconds: float = 0.0  # of ``seconds``: the test passes
    labels_used: str = "hard"  # "soft" when the protocol asked for the set's labels and it had them

    @property
    def mean(self) -> float:
        return sum(self.test_accs) / len(self.test_accs)


def _augmenter(protocol: Protocol, generator: torch.Generator) -> Callable[[Tensor], Tensor]:
    if protocol.augmentation == "dsa":
        return lambda x: augment(x, protocol.dsa_strategy, generator)
    if protocol.augmentation == "dc":
        return lambda x: dc_augment(x, generator)
    return lambda x: x


class _StackedModels:
    """K networks of one architecture evaluated as one vmapped functional model."""

    def __init__(self, nets: list[nn.Module]) -> None:
        self.params, self.buffers = stack_module_state(nets)
        template = set_inplace_activations(copy.deepcopy(nets[0]).to("meta"), False)

        def run(params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(template, (params, buffers), (x,))

        self.forward_each = vmap(run)  # x: (K, n, ...) one batch per model
        self.forward_shared = vmap(run, in_dims=(0, 0, None))  # x: (n, ...) the same batch for all

    def parameters(self) -> list[Tensor]:
        return list(self.params.values())

    @torch.no_grad()
    def unstack_into(self, nets: list[nn.Module]) -> None:
        """Copy the trained stacked parameters back into the K separate networks."""
        for i, net in enumerate(nets):
            for name, tensor in [*net.named_parameters(), *net.named_buffers()]:
                tensor.copy_((self.params[name] if name in self.params else self.buffers[name])[i])

    def logits(self, x: Tensor) -> Tensor:
        return self.forward_each(self.params, self.buffers, x)

    def logits_shared(self, x: Tensor) -> Tensor:
        return self.forward_shared(self.params, self.buffers, x)


class _SingleModel:
    """One network with the same interface (BatchNorm nets, and the model-by-model reference run)."""

    def __init__(self, net: nn.Module) -> None:
        self.net = net

    def parameters(self) -> list[Tensor]:
        return list(self.net.parameters())

    def logits(self, x: Tensor) -> Tensor:
        self.net.train()
        return self.net(x[0]).unsqueeze(0)

    def logits_shared(self, x: Tensor) -> Tensor:
        self.net.eval()
        return self.net(x).unsqueeze(0)


def soft_label_loss(logits: Tensor, target_logits: Tensor, loss: str, temperature: float) -> Tensor:
    """Per-sample loss against soft targets ``softmax(target_logits / T)``: soft cross-entropy
    (DATM's, at T = 1 its exact formula) or the distillation KL divergence times T² (Hinton et al.),
    on the student's ``log_softmax(logits / T)``."""
    log_p = F.log_softmax(logits / temperature, dim=-1)
    target = F.softmax(target_logits / temperature, dim=-1)
    if loss == "kl":
        return temperature**2 * (target * (F.log_softmax(target_logits / temperature, dim=-1) - log_p)).sum(-1)
    return -(target * log_p).sum(-1)


def _train_group(
    models: _StackedModels | _SingleModel,
    indices: list[int],
    images: Tensor,
    labels: Tensor,
    protocol: Protocol,
    seed: int,
    soft_labels: Tensor | None = None,
) -> list[float]:
    """Train a group of models (their global indices in ``indices``) and return final train
    accuracies (against the hard labels). ``soft_labels``: train on these targets instead."""
    k, n = len(indices), images.shape[0]
    order_gens = [make_generator(seed, "eval-order", i) for i in indices]
    aug_fns = [_augmenter(protocol, make_generator(seed, "eval-aug", i)) for i in indices]
    lr = protocol.lr

    def new_optimizer(lr: float) -> torch.optim.Optimizer:
        return torch.optim.SGD(
            models.parameters(), lr=lr, momentum=protocol.momentum, weight_decay=protocol.weight_decay
        )

    optimizer = new_optimizer(lr)
    correct = torch.zeros(k, device=images.device)
    for epoch in range(protocol.epochs + 1):
        if epoch == lr_drop_epoch(protocol.epochs):
            lr *= 0.1
            optimizer = new_optimizer(lr)  # re-created, as the reference: momentum is reset
        perms = torch.stack([torch.randperm(n, generator=g) for g in order_gens]).to(images.device)
        correct.zero_()
        for start in range(0, n, protocol.batch_size):
            idx = perms[:, start : start + protocol.batch_size]
            xb = torch.stack([aug(images[i]) for aug, i in zip(aug_fns, idx)])
            yb = labels[idx]
            with autocast(protocol.precision, images.device.type):
                logits = models.logits(xb)
            if soft_labels is None:
                per_sample = F.cross_entropy(logits.float().flatten(0, 1), yb.flatten(), reduction="none")
            else:
                targets = soft_labels[idx].flatten(0, 1)
                per_sample = soft_label_loss(
                    logits.float().flatten(0, 1), targets, protocol.label_loss, protocol.temperature
                )
            loss = per_sample.view(k, -1).mean(1).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            correct += (logits.detach().argmax(-1) == yb).sum(1)
    return (correct / n).tolist()


@torch.no_grad()
def _test_group(
    models: _StackedModels | _SingleModel,
    real: RealDataset,
    batch_size: int,
    precision: str = "fp32",
    limit: int = 0,
) -> list[float]:
    count = min(limit, real.test_images.shape[0]) if limit else real.test_images.shape[0]
    correct = None
    for start in range(0, count, batch_size):
        x = real.test_images[start : min(start + batch_size, count)]
        y = real.test_labels[start : min(start + batch_size, count)]
        with autocast(precision, x.device.type):
            logits = models.logits_shared(x)
        hits = (logits.argmax(-1) == y).sum(1)
        correct = hits if correct is None else correct + hits
    assert correct is not None, "the test set is empty"  # the loaders refuse a dataset without test images
    return (correct.float() / count).tolist()


#: On a CPU, stack the K models only while a minibatch holds at most this many images.
CPU_STACKING_MAX_BATCH = 32


def evaluate_synthetic(
    synthetic: SyntheticSet,
    real: RealDataset,
    protocol: Protocol,
    seed: int,
    device: torch.device | str | None = None,
    architecture: Architecture | None = None,
    stacked: bool | None = None,
) -> EvaluationResult:
    """Train ``protocol.models`` fresh networks on ``synthetic`` and test each on all of ``real``'s
    test images. ``stacked`` trains the K models as one vmapped model (True), one after another
    (False) or whichever is faster on the device (None); the results are the same."""
    device = torch.device(device) if device is not None else real.device
    arch = architecture or {a.name: a for a in BUILTIN_ARCHITECTURES}.get(protocol.arch)
    if arch is None:
        raise DcbenchError(f"unknown evaluation architecture {protocol.arch!r}; `dcbench list` shows them")
    check_seed(seed)
    check_precision(protocol.precision, device.type)
    synthetic.validate(real.channels, real.image_size, real.num_classes)
    real = real.to(device) if real.device != device else real
    images, labels = synthetic.images.to(device), synthetic.labels.to(device)
    soft = synthetic.soft_labels.to(device) if protocol.labels == "set" and synthetic.soft_labels is not None else None
    start = time.perf_counter()
    nets = [
        build_network(
            arch,
            real.channels,
            real.num_classes,
            real.image_size,
            make_generator(seed, "eval-net", i),
            device,
            **protocol.arch_options,
        )
        for i in range(protocol.models)
    ]
    if stacked is None:
        stacked = device.type != "cpu" or min(len(images), protocol.batch_size) <= CPU_STACKING_MAX_BATCH
    stack = bool(stacked) and not arch.has_batchnorm and protocol.models > 1
    if stack:
        models = _StackedModels(nets)
        train_accs = _train_group(models, list(range(protocol.models)), images, labels, protocol, seed, soft)
        models.unstack_into(nets)
    else:
        train_accs = [
            acc
            for i, net in enumerate(nets)
            for acc in _train_group(_SingleModel(net), [i], images, labels, protocol, seed, soft)
        ]
    trained = time.perf_counter()
    if stack and device.type != "cpu":
        test_accs = _test_group(models, real, protocol.test_batch_size, protocol.precision, protocol.test_images)
    else:  # a CPU is compute-bound here: model by model is faster than vmap
        test_accs = [
            acc
            for net in nets
            for acc in _test_group(
                _SingleModel(net), real, protocol.test_batch_size, protocol.precision, protocol.test_images
            )
        ]
    end = time.perf_counter()
    return EvaluationResult(
        test_accs,
        train_accs,
        [derive_seed(seed, "eval-net", i) for i in range(protocol.models)],
        end - start,
        protocol.to_dict(),
        train_seconds=trained - start,
        test_seconds=end - trained,
        labels_used="soft" if soft is not None else "hard",
    )
