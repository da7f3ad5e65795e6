"""MTT (Cazenavette et al., CVPR 2022) and DATM (Guo et al., ICLR 2024) as dcbench methods.

Both match training trajectories: the synthetic images are optimised so that a student trained on
them for ``syn_steps`` steps from an expert's snapshot at epoch t lands near the expert's snapshot
at t + ``expert_epochs``. The experts are a shared artifact (``experts.py``). DATM adds
difficulty alignment (the window of start epochs grows over the iterations), an initialisation
from real images an expert classifies correctly, learned soft labels initialised from an expert's
logits, and a loss threshold above which a step is skipped.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from dcbench.api import (
    CondenseContext,
    DcbenchError,
    Method,
    NativeEvaluation,
    RealDataset,
    SyntheticSet,
    augment,
    class_major_labels,
    init_synthetic_images,
    make_generator,
    parse_strategy,
    real_init_stream,
)

from .experts import MTT_DSA_STRATEGY, ExpertRecipe, check_trajectories, expert_file, train_experts
from .matching import FlatStudent, trajectory_matching_loss, unroll_student

INITS = ("real", "noise")


def _state(
    images: Tensor,
    syn_lr: Tensor,
    optimizers: list[torch.optim.Optimizer],
    labels: Tensor | None,
    loss: float,
    skipped: int,
) -> dict[str, Any]:
    """A checkpoint of the distillation: every random stream is per iteration, so this is all."""
    return {
        "images": images.detach(),
        "syn_lr": syn_lr.detach(),
        "optimizers": [o.state_dict() for o in optimizers],
        "labels": None if labels is None else labels.detach(),
        "loss": loss,
        "skipped": skipped,
    }


@dataclass
class MTTConfig:
    """MTT settings; the defaults are mtt-distillation's ``distill.py`` and ``buffer.py`` defaults
    (the ``paper`` preset; see the plugin README for each line)."""

    iterations: int = 5000  # image updates (distill.py L431 --Iteration)
    syn_steps: int = 20  # student steps on the synthetic set per iteration (distill.py L456)
    expert_epochs: int = 3  # M: the target is the expert's snapshot M epochs after the start (L455)
    max_start_epoch: int = 25  # start epochs are drawn from [0, max_start_epoch) (L457, L324)
    lr_img: float = 1000.0  # SGD learning rate of the images, momentum 0.5 (L433, L138)
    lr_lr: float = 1e-5  # SGD learning rate of the learnable student lr, momentum 0.5 (L434, L139)
    lr_teacher: float = 0.01  # initial student lr (L435, L118) and the experts' SGD lr (buffer.py L117)
    batch_syn: int = 0  # synthetic images per student step; 0 = all of them (L440, L74-75)
    init: str = "real"  # "real" (random real images of the class) or "noise" (L443 --pix_init)
    dsa_strategy: str = ""  # "" = color_crop_cutout_flip_scale_rotate (L449, buffer.py L122); "none" = --no_aug
    arch: str = "ConvNet"  # the experts' and the student's network (--model)
    net_width: int = 128  # ConvNet channels (utils.py get_network's ConvNet)
    net_depth: int = 3  # ConvNet blocks
    experts: int = 100  # expert trajectories (buffer.py L116 --num_experts)
    expert_train_epochs: int = 50  # epochs per expert, a snapshot after each (buffer.py L126, L92)
    expert_batch: int = 256  # experts' batch size (buffer.py L118)
    expert_per_class: int = 0  # experts train on this many images per class; 0 = all (buffer.py)
    expert_seed: int = 0  # the experts' seed: one set of experts for every cell seed

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            "iterations": 2,
            "syn_steps": 2,
            "expert_epochs": 1,
            "max_start_epoch": 1,
            "net_width": 8,
            "experts": 1,
            "expert_train_epochs": 2,
            "expert_per_class": 8,
            "lr_img": 100.0,
        },
        # the experts are a one-off cost shared by every cell (5 x 6 epochs on 500 images per
        # class); 10 images per student step keep an iteration's cost the same at every IPC, and
        # the iterations fit the benchmark's equal budget of about 6 s on two threads
        "quick": {
            "iterations": 20,
            "syn_steps": 10,
            "batch_syn": 10,
            "expert_epochs": 2,
            "max_start_epoch": 4,
            "net_width": 32,
            "experts": 5,
            "expert_train_epochs": 6,
            "expert_per_class": 500,
            "lr_img": 1000.0,
        },
        "paper": {},
    }

    def validate(self) -> None:
        if self.init not in INITS:
            raise DcbenchError(
                f"{self.method_name()} setting 'init' must be one of {', '.join(INITS)}, got {self.init!r}"
            )
        self.validate_except_init()

    def validate_except_init(self) -> None:
        for name in (
            "iterations",
            "syn_steps",
            "expert_epochs",
            "max_start_epoch",
            "net_width",
            "net_depth",
            "experts",
            "expert_train_epochs",
            "expert_batch",
        ):
            if getattr(self, name) < 1:
                raise DcbenchError(
                    f"{self.method_name()} setting {name!r} must be at least 1, got {getattr(self, name)}"
                )
        if self.max_start_epoch + self.expert_epochs > self.expert_train_epochs:
            raise DcbenchError(
                f"{self.method_name()}: max_start_epoch + expert_epochs ({self.max_start_epoch} + "
                f"{self.expert_epochs}) exceeds the experts' {self.expert_train_epochs} epochs"
            )
        for name in ("lr_img", "lr_lr", "lr_teacher"):
            if not getattr(self, name) > 0:
                raise DcbenchError(f"{self.method_name()} setting {name!r} must be > 0, got {getattr(self, name)}")
        if self.batch_syn < 0 or self.expert_per_class < 0 or self.expert_seed < 0:
            raise DcbenchError(f"{self.method_name()}: batch_syn, expert_per_class and expert_seed must be >= 0")
        parse_strategy(self.dsa_strategy)

    @classmethod
    def method_name(cls) -> str:
        return "mtt"

    def recipe(self) -> ExpertRecipe:
        return ExpertRecipe(
            experts=self.experts,
            epochs=self.expert_train_epochs,
            lr=self.lr_teacher,
            batch=self.expert_batch,
            arch=self.arch,
            width=self.net_width,
            depth=self.net_depth,
            per_class=self.expert_per_class,
            seed=self.expert_seed,
        )


class MTTMethod(Method):
    name = "mtt"
    label = "MTT"
    version = "1.0.0"
    description = "Matching training trajectories on shared expert trajectories (Cazenavette et al., CVPR 2022)"
    config_class: ClassVar[type] = MTTConfig
    native_eval_augmentation = "dsa"
    resumable = True
    # its experts (a one-off, 105 s at quick on one CPU thread) do not fit the default grid: a spec names it
    opt_in = True

    def initial_stream(self, config: Any) -> str:
        return real_init_stream(config.init)

    def native_evaluation(self, dataset: str) -> NativeEvaluation:
        """``distill.py``: 1000 epochs (--epoch_eval_train) under DSA, the distillation's strategy."""
        return NativeEvaluation("dsa", 1000, MTT_DSA_STRATEGY)

    # -- the experts --------------------------------------------------------------------------
    def experts(self, real: RealDataset, config: MTTConfig, ctx: CondenseContext) -> list[Tensor]:
        """The experts' trajectories from the artifact store (built there on first use)."""
        recipe = config.recipe()
        recipe.validate()

        def build(directory: Any, step_done: Any) -> None:
            # trained on the cell's device, once: every cell of every seed shares them
            train_experts(
                real,
                recipe,
                directory,
                step_done,
                lambda g: ctx.build_network(recipe.arch, real, g, **recipe.network_options()),
            )

        artifact = ctx.artifact("expert_trajectories", recipe.identity(ctx.data_identity(real), ctx.precision), build)
        # Artifact.load: weights_only, and a damaged file is one line naming the fix
        return check_trajectories([artifact.load(expert_file(i)) for i in range(recipe.experts)], recipe)

    # -- the distillation ---------------------------------------------------------------------
    def initial_images(
        self,
        real: RealDataset,
        ipc: int,
        config: Any,
        seed: int,
        trajectories: list[Tensor],
        student: FlatStudent,
        ctx: CondenseContext,
    ) -> Tensor:
        return init_synthetic_images(real, ipc, config.init, make_generator(seed, "init"))

    def initial_labels(
        self,
        real: RealDataset,
        ipc: int,
        config: Any,
        images: Tensor,
        trajectories: list[Tensor],
        student: FlatStudent,
    ) -> Tensor | None:
        """Learned labels (DATM); None for MTT's fixed hard labels."""
        return None

    def start_epoch(self, config: Any, it: int, generator: torch.Generator) -> int:
        """``np.random.randint(0, max_start_epoch)`` (distill.py line 324), from the iteration's stream."""
        return int(torch.randint(0, config.max_start_epoch, (1,), generator=generator))

    def take_step(self, loss_value: float, config: Any) -> bool:
        return True

    def condense(self, real: RealDataset, ipc: int, config: MTTConfig, seed: int, ctx: CondenseContext) -> SyntheticSet:
        trajectories = self.experts(real, config, ctx)
        student = FlatStudent(
            ctx.build_network(
                config.arch, real, make_generator(seed, "student"), **config.recipe().network_options()
            ).train()
        )
        if trajectories[0].shape[1] != student.count:
            raise DcbenchError(
                f"{self.name}: the experts have {trajectories[0].shape[1]} parameters, the student "
                f"{student.count}; remove the artifact (`dcbench artifacts list`)"
            )
        strategy = config.dsa_strategy or MTT_DSA_STRATEGY
        hard = class_major_labels(real.num_classes, ipc, ctx.device)
        images = self.initial_images(real, ipc, config, seed, trajectories, student, ctx)
        images = images.to(ctx.device).requires_grad_(True)
        learned = self.initial_labels(real, ipc, config, images.detach(), trajectories, student)
        syn_lr = torch.tensor(config.lr_teacher, device=ctx.device).requires_grad_(True)
        optimizers: list[torch.optim.Optimizer] = [
            torch.optim.SGD([images], lr=config.lr_img, momentum=0.5),
            torch.optim.SGD([syn_lr], lr=config.lr_lr, momentum=0.5),
        ]
        if learned is not None:
            learned = learned.to(ctx.device).requires_grad_(True)
            optimizers.append(self.label_optimizer(learned, config))
        start_it, loss_value, skipped = 0, float("nan"), 0
        saved = ctx.resume()
        if saved is not None:
            with torch.no_grad():
                images.copy_(saved.state["images"])
                syn_lr.copy_(saved.state["syn_lr"])
                if learned is not None:
                    learned.copy_(saved.state["labels"])
            for optimizer, state in zip(optimizers, saved.state["optimizers"]):
                optimizer.load_state_dict(state)
            start_it, loss_value, skipped = saved.iteration, float(saved.state["loss"]), int(saved.state["skipped"])
        batch = config.batch_syn or len(images)
        trajectory_order: dict[int, Tensor] = {}
        for it in range(start_it, config.iterations):
            n = len(trajectories)
            lap = it // n
            if lap not in trajectory_order:  # the reference cycles through its shuffled buffer
                trajectory_order = {lap: torch.randperm(n, generator=make_generator(seed, "experts", lap))}
            trajectory = trajectories[int(trajectory_order[lap][it % n])]
            gen = make_generator(seed, "match", it)
            start_epoch = self.start_epoch(config, it, gen)
            begin = trajectory[start_epoch].to(ctx.device)
            target = trajectory[start_epoch + config.expert_epochs].to(ctx.device)
            end = unroll_student(
                student,
                begin,
                images,
                hard if learned is None else learned,
                syn_lr,
                config.syn_steps,
                batch,
                lambda x, g: augment(x, strategy, g),
                gen,
                soft_labels=learned is not None,
            )
            loss = trajectory_matching_loss(end, begin, target)
            loss_value = float(loss.detach())
            ctx.check_finite(loss_value, it)
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.take_step(loss_value, config):
                for optimizer in optimizers:
                    optimizer.step()
            else:
                skipped += 1
            ctx.progress(it + 1, config.iterations, loss=loss_value, syn_lr=float(syn_lr.detach()))
            state = functools.partial(_state, images, syn_lr, optimizers, learned, loss_value, skipped)
            ctx.checkpoint(it + 1, config.iterations, state)
        ctx.metrics.update(
            iterations=config.iterations,
            final_loss=loss_value,
            dsa_strategy=strategy,
            learned_lr=float(syn_lr.detach()),
            skipped_steps=skipped,
            experts=len(trajectories),
        )
        if learned is None:
            return SyntheticSet(images.detach(), hard)
        # the learned logits go with the set: an evaluation with labels = "set" trains on them
        return SyntheticSet(images.detach(), hard, soft_labels=learned.detach())

    def label_optimizer(self, labels: Tensor, config: Any) -> torch.optim.Optimizer:
        raise DcbenchError(f"{self.name} learns no labels")  # initial_labels() returned None: never called


@dataclass
class DATMConfig(MTTConfig):
    """DATM settings; the defaults are DATM's ``configs/CIFAR-10/ConvIN/IPC10.yaml`` over its
    ``utils/cfg.py`` (the ``paper`` preset), on MTT's experts."""

    iterations: int = 10000  # image updates (IPC10.yaml Iteration)
    syn_steps: int = 80  # student steps per iteration (IPC10.yaml)
    expert_epochs: int = 2  # M: epochs from the start snapshot to the target (IPC10.yaml)
    max_start_epoch: int = 20  # IPC10.yaml: the window's final upper bound
    min_start_epoch: int = 0  # the window's lower bound (IPC10.yaml)
    current_max_start_epoch: int = 10  # IPC10.yaml: the window's first upper bound
    expansion_end_epoch: int = 1000  # IPC10.yaml: the iteration at which the window reaches max_start_epoch
    sequential_generation: bool = True  # cfg.py Sequential_Generation (IPC1.yaml turns it off)
    lr_img: float = 100.0  # SGD learning rate of the images, momentum 0.5 (IPC10.yaml)
    lr_y: float = 2.0  # IPC10.yaml: SGD learning rate of the soft labels
    momentum_y: float = 0.9  # IPC10.yaml Momentum_y
    threshold: float = 1.0  # IPC10.yaml: no update when the matching loss exceeds it
    init: str = (
        "correct"  # images an expert classifies correctly (pix_init samples_predicted_correctly); "real", "noise"
    )
    label_timestamp: int = -1  # cfg.py Label_Model_Timestamp: the expert snapshot that labels

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {**MTTConfig.PRESETS["smoke"], "current_max_start_epoch": 1, "expansion_end_epoch": 2},
        "quick": {**MTTConfig.PRESETS["quick"], "current_max_start_epoch": 2, "expansion_end_epoch": 20},
        "paper": {},
    }

    @classmethod
    def method_name(cls) -> str:
        return "datm"

    def validate(self) -> None:
        inits = (*INITS, "correct")
        if self.init not in inits:
            raise DcbenchError(f"datm setting 'init' must be one of {', '.join(inits)}, got {self.init!r}")
        super().validate_except_init()
        if not 0 <= self.min_start_epoch < self.current_max_start_epoch <= self.max_start_epoch:
            raise DcbenchError("datm: need 0 <= min_start_epoch < current_max_start_epoch <= max_start_epoch")
        if self.expansion_end_epoch < 1 or not self.lr_y > 0 or not 0 <= self.momentum_y < 1 or not self.threshold > 0:
            raise DcbenchError("datm: expansion_end_epoch >= 1, lr_y > 0, momentum_y in [0, 1), threshold > 0")


class DATMMethod(MTTMethod):
    name = "datm"
    label = "DATM"
    version = "1.0.0"
    description = "Difficulty-aligned trajectory matching with learned soft labels (Guo et al., ICLR 2024)"
    config_class: ClassVar[type] = DATMConfig

    def initial_stream(self, config: Any) -> str:
        return "" if config.init == "correct" else real_init_stream(config.init)

    def start_epoch_bound(self, config: DATMConfig, it: int) -> int:
        """The window's upper bound at iteration ``it`` (``distill/DATM.py`` lines 485-491)."""
        if not config.sequential_generation:
            return config.max_start_epoch
        grown = config.current_max_start_epoch + int(
            (config.max_start_epoch - config.current_max_start_epoch) * it / config.expansion_end_epoch
        )
        return min(grown, config.max_start_epoch)

    def start_epoch(self, config: DATMConfig, it: int, generator: torch.Generator) -> int:
        return int(torch.randint(config.min_start_epoch, self.start_epoch_bound(config, it), (1,), generator=generator))

    def take_step(self, loss_value: float, config: DATMConfig) -> bool:
        return loss_value <= config.threshold  # DATM.py lines 556-560

    def initial_images(
        self,
        real: RealDataset,
        ipc: int,
        config: DATMConfig,
        seed: int,
        trajectories: list[Tensor],
        student: FlatStudent,
        ctx: CondenseContext,
    ) -> Tensor:
        if config.init != "correct":
            return super().initial_images(real, ipc, config, seed, trajectories, student, ctx)
        images, filled = correctly_classified(
            real, ipc, trajectories, config.label_timestamp, student, make_generator(seed, "init", "correct")
        )
        ctx.metrics["init_not_classified_correctly"] = filled  # images taken although no expert got them right
        return images

    def initial_labels(
        self,
        real: RealDataset,
        ipc: int,
        config: DATMConfig,
        images: Tensor,
        trajectories: list[Tensor],
        student: FlatStudent,
    ) -> Tensor | None:
        """Each image's logits averaged over the experts that classify it correctly (DATM.py
        lines 270-307), or the first expert's logits where none does (as "real" init, 309-319)."""
        labels = class_major_labels(real.num_classes, ipc, images.device)
        with torch.no_grad():
            logits = torch.stack([student(t[config.label_timestamp].to(images.device), images) for t in trajectories])
        correct = (logits.argmax(2) == labels).unsqueeze(2).float()
        counts = correct.sum(0)
        averaged = (logits * correct).sum(0) / counts.clamp(min=1)
        return torch.where(counts > 0, averaged, logits[0])

    def label_optimizer(self, labels: Tensor, config: Any) -> torch.optim.Optimizer:
        return torch.optim.SGD([labels], lr=config.lr_y, momentum=config.momentum_y)


def correctly_classified(
    real: RealDataset,
    ipc: int,
    trajectories: list[Tensor],
    timestamp: int,
    student: FlatStudent,
    generator: torch.Generator,
    batch: int = 256,
) -> tuple[Tensor, int]:
    """Per class, the first ``ipc`` images of a random order that an expert classifies correctly,
    moving to the next expert when a pass over the class finds too few (DATM.py lines 185-236).
    Where no expert classifies enough of a class correctly the reference loops forever; here the
    class is filled up with the next images of its random order, and their number is returned."""
    chosen, filled = [], 0
    for c in range(real.num_classes):
        pool = real.sample_class(c, len(real.indices_by_class[c]), generator)
        picked: list[int] = []
        for trajectory in trajectories:
            params = trajectory[timestamp].to(pool.device)
            with torch.no_grad():
                for start in range(0, len(pool), batch):
                    hits = (student(params, pool[start : start + batch]).argmax(1) == c).nonzero().flatten()
                    picked.extend(i for i in (start + hits).tolist() if i not in picked)
                    if len(picked) >= ipc:
                        break
            if len(picked) >= ipc:
                break
        if len(picked) < ipc:
            rest = [i for i in range(len(pool)) if i not in picked][: ipc - len(picked)]
            filled += len(rest)
            picked.extend(rest)
        chosen.append(pool[torch.tensor(picked[:ipc], device=pool.device)])
    return torch.cat(chosen), filled
