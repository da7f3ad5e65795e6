"""Evaluation: train K fresh networks on a synthetic set, test each on the full test set.

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

The protocol's tracks change what a network learns from and what it sees: the targets (hard
labels, the set's soft labels, or a teacher's relabelling of every batch, :mod:`.teacher`), the
image augmentation (DSA, DC's, AutoAugment, RandAugment) and mixup / CutMix of each batch; every
draw comes from the model's own streams.

A compiled protocol (``Protocol.compiled``, :mod:`dcbench.nn.compiling`) runs each network's
forward and backward through inductor: model-by-model training and every test pass on a CPU,
the stacked models too elsewhere. The augmentation, the loss and the optimiser stay eager.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn import functional as F

from dcbench.data.real import RealDataset
from dcbench.evaluation.labels import one_hot, soft_target_loss
from dcbench.evaluation.protocol import Protocol, lr_drop_epoch
from dcbench.evaluation.teacher import Teacher
from dcbench.host.errors import DcbenchError
from dcbench.host.runtime import autocast, check_precision
from dcbench.method.seeding import check_seed, derive_seed, make_generator
from dcbench.method.synthetic import SyntheticSet
from dcbench.nn.augment import augment, dc_augment
from dcbench.nn.compiling import compiled, require_compile
from dcbench.nn.mixing import mix_batch
from dcbench.nn.networks import BUILTIN_ARCHITECTURES, Architecture, build_network, set_inplace_activations
from dcbench.nn.policies import POLICIES, policy_augmenter


@dataclass
class EvaluationResult:
    test_accs: list[float]  # fraction correct on the whole test set, one per model
    train_accs: list[float]  # fraction correct on the synthetic set in the final epoch
    eval_seeds: list[int]
    seconds: float
    protocol: dict[str, Any]
    train_seconds: float = 0.0  # of ``seconds``: training the K models
    test_seconds: float = 0.0  # of ``seconds``: the test passes
    labels_used: str = "hard"  # "soft": the set's own labels; "teacher": the teacher's
    teacher: dict[str, Any] | None = None  # the teacher's record (Teacher.record) when one relabelled

    @property
    def mean(self) -> float:
        return sum(self.test_accs) / len(self.test_accs)


def _augmenter(
    protocol: Protocol, generator: torch.Generator, pixels: tuple[tuple[float, ...], tuple[float, ...]]
) -> Callable[[Tensor], Tensor]:
    if protocol.augmentation in POLICIES:
        return policy_augmenter(protocol.augmentation, *pixels, generator)
    if protocol.augmentation == "dsa":
        return lambda x: augment(x, protocol.dsa_strategy, generator)
    if protocol.augmentation == "dc":
        return lambda x: dc_augment(x, generator)
    return lambda x: x


class _StackedModels:
    """K networks of one architecture evaluated as one vmapped functional model."""

    def __init__(self, nets: list[nn.Module], compile: bool = False) -> None:
        self.params, self.buffers = stack_module_state(nets)
        template = set_inplace_activations(copy.deepcopy(nets[0]).to("meta"), False)

        def run(params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(template, (params, buffers), (x,))

        self.forward_each = vmap(run)  # x: (K, n, ...) one batch per model
        self.forward_shared = vmap(run, in_dims=(0, 0, None))  # x: (n, ...) the same batch for all
        # Compiled only off a CPU: on a 2-core Xeon inductor's vmapped ConvNet-128 training step ran
        # 1.37x slower than eager (benchmarks/RESULTS.md); on a GPU the GPU check measures it.
        if compile and next(iter(self.params.values())).device.type != "cpu":
            self.forward_each, self.forward_shared = compiled(self.forward_each), compiled(self.forward_shared)

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

    def __init__(self, net: nn.Module, compile: bool = False) -> None:
        self.net = net
        # the compiled module shares the network's parameters; a new network of the same
        # architecture and batch shape reuses the graph compiled for the first
        self.forward = compiled(net) if compile else net

    def parameters(self) -> list[Tensor]:
        return list(self.net.parameters())

    def logits(self, x: Tensor) -> Tensor:
        self.net.train()
        return self.forward(x[0]).unsqueeze(0)

    def logits_shared(self, x: Tensor) -> Tensor:
        self.net.eval()
        return self.forward(x).unsqueeze(0)


@dataclass
class _Targets:
    """What a group of models learns from: the set's hard labels, and the soft targets of the
    protocol's track (the set's logits, or a teacher), softened at the protocol's temperature."""

    labels: Tensor  # (n,) the set's class labels (train accuracy is measured against them)
    num_classes: int
    set_logits: Tensor | None = None  # (n, classes) labels = "set", the set has them
    teacher: Teacher | None = None  # labels = "teacher"

    def distributions(self, idx: Tensor, images: Tensor, temperature: float) -> Tensor | None:
        """(k, b, classes) targets of the batch ``images`` (k, b, ...) drawn at ``idx`` (k, b);
        None for hard labels."""
        if self.teacher is not None:
            return F.softmax(self.teacher.logits(images) / temperature, dim=-1)
        if self.set_logits is not None:
            return F.softmax(self.set_logits[idx] / temperature, dim=-1)
        return None


def _train_group(
    models: _StackedModels | _SingleModel,
    indices: list[int],
    images: Tensor,
    targets: _Targets,
    protocol: Protocol,
    seed: int,
    pixels: tuple[tuple[float, ...], tuple[float, ...]] = ((0.0,), (1.0,)),
) -> list[float]:
    """Train a group of models (their global indices in ``indices``) and return final train
    accuracies (against the hard labels). ``pixels``: the data's normalisation (mean, std), for
    the augmentations that work on pixels."""
    k, n = len(indices), images.shape[0]
    labels = targets.labels
    order_gens = [make_generator(seed, "eval-order", i) for i in indices]
    aug_fns = [_augmenter(protocol, make_generator(seed, "eval-aug", i), pixels) for i in indices]
    mix_gens = [make_generator(seed, "eval-mix", i) for i in indices]
    mixing = protocol.mixing != "none"
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
            if mixing:  # the set's targets are mixed with the images; a teacher relabels the mixed images
                hard = one_hot(yb, targets.num_classes)
                soft = targets.distributions(idx, xb, protocol.temperature) if targets.teacher is None else None
                mixed = [
                    mix_batch(xb[j], (soft if soft is not None else hard)[j], protocol.mixing, protocol.mix_alpha, g)
                    for j, g in enumerate(mix_gens)
                ]
                xb = torch.stack([x for x, _ in mixed])
                target: Tensor | None = torch.stack([t for _, t in mixed])
                if targets.teacher is not None:
                    target = targets.distributions(idx, xb, protocol.temperature)
            else:
                target = targets.distributions(idx, xb, protocol.temperature)
            with autocast(protocol.precision, images.device.type):
                logits = models.logits(xb)
            if target is None:
                per_sample = F.cross_entropy(logits.float().flatten(0, 1), yb.flatten(), reduction="none")
            else:
                # hard labels mixed are one-hot mixtures: soft cross-entropy at T = 1 (torchvision's recipe)
                soft_labels = targets.teacher is not None or targets.set_logits is not None
                per_sample = soft_target_loss(
                    logits.float().flatten(0, 1),
                    target.flatten(0, 1),
                    protocol.label_loss if soft_labels else "soft_ce",
                    protocol.temperature if soft_labels else 1.0,
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
    teacher: Teacher | None = None,
) -> EvaluationResult:
    """Train ``protocol.models`` fresh networks on ``synthetic`` and test each on all of ``real``'s
    test images. ``stacked`` trains the K models as one vmapped model (True), one after another
    (False) or whichever is faster on the device (None); the results are the same. ``teacher``
    (:func:`dcbench.evaluation.teacher.load_teacher`): the network of ``labels = "teacher"``."""
    device = torch.device(device) if device is not None else real.device
    arch = architecture or {a.name: a for a in BUILTIN_ARCHITECTURES}.get(protocol.arch)
    if arch is None:
        raise DcbenchError(f"unknown evaluation architecture {protocol.arch!r}; `dcbench list` shows them")
    check_seed(seed)
    check_precision(protocol.precision, device.type)
    synthetic.validate(real.channels, real.image_size, real.num_classes)
    check_whitening(synthetic, real, protocol)
    if protocol.compiled:
        require_compile(device.type)
    if (protocol.labels == "teacher") != (teacher is not None):
        raise DcbenchError(
            "a teacher track needs its teacher (dcbench.evaluation.load_teacher), and only a teacher track takes one"
        )
    real = real.to(device) if real.device != device else real
    images, labels = synthetic.images.to(device), synthetic.labels.to(device)
    soft = synthetic.soft_labels.to(device) if protocol.labels == "set" and synthetic.soft_labels is not None else None
    if teacher is not None:
        teacher.net.to(device)
    targets = _Targets(labels, real.num_classes, soft, teacher)
    pixels = (tuple(real.mean), tuple(real.std))
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
    # each network's own model, for its training when not stacked and its test pass on a CPU
    singles = [_SingleModel(net, protocol.compiled) for net in nets]
    if stack:
        models = _StackedModels(nets, protocol.compiled)
        train_accs = _train_group(models, list(range(protocol.models)), images, targets, protocol, seed, pixels)
        models.unstack_into(nets)
    else:
        train_accs = [
            acc
            for i, single in enumerate(singles)
            for acc in _train_group(single, [i], images, targets, protocol, seed, pixels)
        ]
    trained = time.perf_counter()
    if stack and device.type != "cpu":
        test_accs = _test_group(models, real, protocol.test_batch_size, protocol.precision, protocol.test_images)
    else:  # a CPU is compute-bound here: model by model is faster than vmap
        batch, precision, limit = protocol.test_batch_size, protocol.precision, protocol.test_images
        test_accs = [acc for single in singles for acc in _test_group(single, real, batch, precision, limit)]
    end = time.perf_counter()
    return EvaluationResult(
        test_accs,
        train_accs,
        [derive_seed(seed, "eval-net", i) for i in range(protocol.models)],
        end - start,
        protocol.to_dict(),
        train_seconds=trained - start,
        test_seconds=end - trained,
        labels_used="teacher" if teacher is not None else "soft" if soft is not None else "hard",
        teacher=dict(teacher.record) if teacher is not None else None,
    )


def check_whitening(synthetic: SyntheticSet, real: RealDataset, protocol: Protocol) -> None:
    """A set condensed from whitened data is judged only on whitened data, and the reverse: the
    set's manifest, the data and the protocol must agree (one line, naming the fix)."""
    preprocessing = synthetic.manifest.get("preprocessing")
    recorded = preprocessing.get("zca", False) if isinstance(preprocessing, dict) else False
    condensed = bool(recorded)
    if condensed != protocol.zca or bool(real.zca) != protocol.zca:
        where = "ZCA-whitened" if condensed else "unwhitened"
        raise DcbenchError(
            f"the set was condensed from {where} data, but the evaluation's data is "
            f"{'ZCA-whitened' if real.zca else 'unwhitened'} and its protocol says zca={protocol.zca}; "
            f"evaluate it {'with' if condensed else 'without'} --zca"
        )
