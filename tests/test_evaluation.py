from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dcbench.datasets import load_fashion_mnist
from dcbench.errors import DcbenchError
from dcbench.evaluation import Protocol, evaluate_synthetic
from dcbench.methods import class_major_labels, init_synthetic_images
from dcbench.seeding import make_generator
from dcbench.synthetic import SyntheticSet


@pytest.fixture(scope="module")
def real(fashion_root: Path):
    return load_fashion_mnist(fashion_root)


def random_set(real, ipc: int, seed: int = 0) -> SyntheticSet:
    return SyntheticSet(init_synthetic_images(real, ipc, "real", make_generator(seed, "init")),
                        class_major_labels(real.num_classes, ipc))


def test_presets_follow_the_reference_protocol() -> None:
    paper = Protocol.for_preset("paper", "cifar10", "none")
    assert (paper.models, paper.epochs, paper.lr, paper.momentum, paper.weight_decay, paper.batch_size) == \
        (20, 300, 0.01, 0.9, 5e-4, 256)
    dsa = Protocol.for_preset("paper", "mnist", "dsa")
    assert dsa.epochs == 1000 and dsa.dsa_strategy == "color_crop_cutout_scale_rotate"
    assert Protocol.for_preset("quick", "fashion-mnist").name == "ConvNet-W32/150ep/none/v1"
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


def test_batchnorm_architecture_trains_model_by_model(real) -> None:
    protocol = Protocol.for_preset("smoke", "fashion-mnist", arch="ConvNetBN")
    from dcbench.networks import BUILTIN_ARCHITECTURES
    arch = {a.name: a for a in BUILTIN_ARCHITECTURES}["ConvNetBN"]
    result = evaluate_synthetic(random_set(real, 1), real, protocol, seed=0, architecture=arch)
    assert len(result.test_accs) == protocol.models


def test_wrong_shape_is_refused(real) -> None:
    bad = SyntheticSet(torch.zeros(10, 3, 32, 32), class_major_labels(10, 1))
    with pytest.raises(DcbenchError, match="3 channels, the dataset has 1"):
        evaluate_synthetic(bad, real, Protocol.for_preset("smoke"), seed=0)
