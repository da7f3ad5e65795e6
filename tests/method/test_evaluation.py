from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from dcbench.data.builtin import load_fashion_mnist
from dcbench.data.real import RealDataset
from dcbench.evaluation import Protocol, evaluate_synthetic, lr_drop_epoch
from dcbench.host.errors import DcbenchError
from dcbench.method.contract import NativeEvaluation, class_major_labels, init_synthetic_images
from dcbench.method.seeding import make_generator
from dcbench.method.synthetic import SyntheticSet
from dcbench.nn.networks import BUILTIN_ARCHITECTURES, build_network
from dcbench.run.plan import plan_cells
from dcbench.run.shared import registry as shared_registry


@pytest.fixture(scope="module")
def real(fashion_root: Path):
    return load_fashion_mnist(fashion_root)


def random_set(real, ipc: int, seed: int = 0) -> SyntheticSet:
    return SyntheticSet(
        init_synthetic_images(real, ipc, "real", make_generator(seed, "init")),
        class_major_labels(real.num_classes, ipc),
    )


def test_presets_follow_the_reference_protocol() -> None:
    paper = Protocol.for_preset("paper", "cifar10", "none")
    assert (paper.models, paper.epochs, paper.lr, paper.momentum, paper.weight_decay, paper.batch_size) == (
        20,
        300,
        0.01,
        0.9,
        5e-4,
        256,
    )
    dsa = Protocol.for_preset("paper", "mnist", "dsa")
    assert dsa.epochs == 1000 and dsa.dsa_strategy == "color_crop_cutout_scale_rotate"
    assert Protocol.for_preset("quick", "fashion-mnist").name == "ConvNet-W32/150ep/none/v2"
    with pytest.raises(DcbenchError, match="augmentation"):
        Protocol(augmentation="autoaug")


def test_stacked_and_sequential_training_give_the_same_models(real) -> None:
    syn = random_set(real, 1)
    protocol = Protocol.for_preset("smoke", "fashion-mnist", models=3, epochs=6)
    stacked = evaluate_synthetic(syn, real, protocol, seed=0, stacked=True)
    sequential = evaluate_synthetic(syn, real, protocol, seed=0, stacked=False)
    assert len(stacked.test_accs) == 3
    assert stacked.test_accs == pytest.approx(sequential.test_accs, abs=0.03)
    assert stacked.train_accs == pytest.approx(sequential.train_accs, abs=0.1)


@pytest.mark.parametrize("augmentation", ["none", "dsa", "dc"])
def test_evaluation_is_deterministic_for_a_seed(real, augmentation: str) -> None:
    syn = random_set(real, 2)
    protocol = Protocol.for_preset("smoke", "fashion-mnist", augmentation)
    a = evaluate_synthetic(syn, real, protocol, seed=1)
    b = evaluate_synthetic(syn, real, protocol, seed=1)
    assert a.test_accs == b.test_accs and all(0 <= x <= 1 for x in a.test_accs)


def test_training_learns_the_synthetic_set(real) -> None:
    protocol = Protocol.for_preset("smoke", "fashion-mnist", models=2, epochs=30)
    result = evaluate_synthetic(random_set(real, 2), real, protocol, seed=0)
    assert min(result.train_accs) > 0.5  # 20 images are easy to fit in 31 epochs


def hand_written_evaluation(syn: SyntheticSet, real, protocol: Protocol, seed: int, test_mode: str) -> list[float]:
    """The reference's evaluate_synset model by model, written out: SGD on the set in train mode,
    the lr times 0.1 (a new optimiser) after training epoch epochs // 2 + 1, then the test pass in
    ``test_mode`` ("eval": BatchNorm's running statistics; "train": the test batch's own)."""
    arch = {a.name: a for a in BUILTIN_ARCHITECTURES}[protocol.arch]
    accs = []
    for i in range(protocol.models):
        net = build_network(arch, 1, 10, (28, 28), make_generator(seed, "eval-net", i), "cpu", **protocol.arch_options)
        order = make_generator(seed, "eval-order", i)
        lr = protocol.lr
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=protocol.momentum, weight_decay=protocol.weight_decay)
        for epoch in range(protocol.epochs + 1):
            net.train()
            perm = torch.randperm(len(syn.images), generator=order)
            for start in range(0, len(perm), protocol.batch_size):
                batch = perm[start : start + protocol.batch_size]
                loss = F.cross_entropy(net(syn.images[batch]), syn.labels[batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
            if epoch == protocol.epochs // 2 + 1:
                lr *= 0.1
                opt = torch.optim.SGD(
                    net.parameters(), lr=lr, momentum=protocol.momentum, weight_decay=protocol.weight_decay
                )
        net.train(test_mode == "train")
        with torch.no_grad():
            n = min(protocol.test_images or len(real.test_labels), len(real.test_labels))
            hits = (net(real.test_images[:n]).argmax(-1) == real.test_labels[:n]).sum()
        accs.append(float(hits) / n)
    return accs


def test_batchnorm_nets_train_model_by_model_and_test_on_their_running_statistics(real) -> None:
    protocol = Protocol.for_preset("smoke", "fashion-mnist", arch="ConvNetBN", models=3, epochs=4)
    arch = {a.name: a for a in BUILTIN_ARCHITECTURES}["ConvNetBN"]
    syn = random_set(real, 2)
    expected = hand_written_evaluation(syn, real, protocol, 3, "eval")
    assert expected != hand_written_evaluation(syn, real, protocol, 3, "train")  # the test mode shows
    for stacked in (True, False):  # BatchNorm nets are never stacked: both are the model-by-model loop
        result = evaluate_synthetic(syn, real, protocol, seed=3, architecture=arch, stacked=stacked)
        assert result.test_accs == pytest.approx(expected, abs=1e-6)  # float32 counts / n; one image is 0.025


def test_wrong_shape_is_refused(real) -> None:
    bad = SyntheticSet(torch.zeros(10, 3, 32, 32), class_major_labels(10, 1))
    with pytest.raises(DcbenchError, match="3 channels, the dataset has 1"):
        evaluate_synthetic(bad, real, Protocol.for_preset("smoke"), seed=0)


def test_lr_drops_after_training_epoch_half_plus_one(real, monkeypatch: pytest.MonkeyPatch) -> None:
    # reference: for ep in range(Epoch+1): train(ep); if ep == Epoch//2+1: lr *= 0.1
    reference_lrs = []
    lr = 0.01
    for ep in range(300 + 1):
        reference_lrs.append(lr)
        if ep in [300 // 2 + 1]:
            lr *= 0.1
    assert reference_lrs.count(0.01) == 152 and lr_drop_epoch(300) == 152
    steps: list[float] = []
    step = torch.optim.SGD.step

    def recording_step(self, *args, **kwargs):
        steps.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", recording_step)
    protocol = Protocol.for_preset("smoke", "fashion-mnist", models=1, epochs=300)
    evaluate_synthetic(random_set(real, 1), real, protocol, seed=0)  # 10 images: one step per epoch
    assert steps == pytest.approx(reference_lrs)


@pytest.mark.parametrize(
    "method,dataset,augmentation,epochs,strategy",
    [
        ("cafe", "fashion-mnist", "none", 600, ""),
        ("cafe", "mnist", "dc", 1000, ""),
        ("cafe_dsa", "fashion-mnist", "dsa", 1000, "color_crop_cutout_flip_scale_rotate"),
        ("dc", "fashion-mnist", "none", 300, ""),
        ("dc", "mnist", "dc", 1000, ""),
        ("dsa", "mnist", "dsa", 1000, "color_crop_cutout_scale_rotate"),
        ("dm", "mnist", "dsa", 1000, "color_crop_cutout_flip_scale_rotate"),
        ("random", "mnist", "none", 300, ""),
    ],
)
def test_native_epochs_per_method(method: str, dataset: str, augmentation: str, epochs: int, strategy: str) -> None:
    from dcbench.plugins import load_plugins

    native = load_plugins().method(method).native_evaluation(dataset)
    paper = Protocol.for_preset("paper", dataset, native=native)
    assert (paper.augmentation, paper.epochs, paper.dsa_strategy) == (augmentation, epochs, strategy)
    quick = Protocol.for_preset("quick", dataset, native=native)  # quick keeps its CPU budget
    assert (quick.augmentation, quick.epochs) == (augmentation, 150)
    assert Protocol.for_preset("paper", dataset, native=native, epochs=7).epochs == 7  # an explicit override wins


def test_native_evaluation_is_validated() -> None:
    with pytest.raises(DcbenchError, match="augmentation"):
        NativeEvaluation("autoaug")
    with pytest.raises(DcbenchError, match="DSA family"):
        NativeEvaluation("dsa", 1000, "crop_blur")


def test_a_native_grid_gives_each_method_its_papers_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    from dcbench.run import plan
    from dcbench.run.spec import Spec

    # planning hashes each dataset's content; MNIST is not installed here and not needed for this
    monkeypatch.setattr(plan, "dataset_fingerprint", lambda *args: "not-loaded")
    spec = Spec(
        name="native",
        preset="paper",
        methods=["cafe", "dc"],
        datasets=["mnist", "fashion-mnist"],
        ipcs=[1],
        seeds=[0],
        eval_augmentation="native",
        compile="off",  # auto compiles a paper budget on a CPU (tests/nn/test_compiling.py)
    )
    cells = plan_cells(spec, shared_registry(), None, "cpu")
    protocols = {(c.method, c.dataset): c.protocols[0]["name"] for c in cells}
    assert protocols == {
        ("cafe", "mnist"): "ConvNet/1000ep/dc/v2",
        ("cafe", "fashion-mnist"): "ConvNet/600ep/none/v2",
        ("dc", "mnist"): "ConvNet/1000ep/dc/v2",
        ("dc", "fashion-mnist"): "ConvNet/300ep/none/v2",
    }


@pytest.mark.parametrize("arch", ["ConvNet", "MLP", "LeNet", "AlexNet", "VGG11", "ResNet18"])
def test_smoke_scores_the_first_500_test_images_on_every_architecture(arch: str) -> None:
    """The smoke preset's seconds come from its test subset on any architecture (a full-width
    ResNet18 over 10,000 test images took 586 s); every other preset scores the whole test set."""
    protocol = Protocol.for_preset("smoke", "fashion-mnist", arch=arch)
    assert protocol.test_images == 500 and protocol.name.endswith("/test500/v2")
    assert Protocol.for_preset("quick", arch=arch).test_images == 0
    assert "test_images" not in Protocol.for_preset("quick", arch=arch).to_dict()  # old protocol hashes kept
    g = torch.Generator().manual_seed(0)
    test_labels = torch.cat([torch.zeros(500, dtype=torch.long), torch.ones(1500, dtype=torch.long)])
    real = RealDataset(
        "t",
        torch.randn(20, 1, 28, 28, generator=g),
        torch.arange(20) % 2,
        torch.randn(2000, 1, 28, 28, generator=g),
        test_labels,
        (0.5,),
        (0.25,),
        ("a", "b"),
    )
    synthetic = SyntheticSet(real.train_images[:4], real.train_labels[:4])
    result = evaluate_synthetic(synthetic, real, protocol, seed=0)
    first = dataclasses.replace(real, test_images=real.test_images[:500], test_labels=test_labels[:500])
    assert result.test_accs == evaluate_synthetic(synthetic, first, protocol, seed=0).test_accs
