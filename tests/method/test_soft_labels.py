"""Sets with learned soft labels, and the evaluation track that trains on them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from dcbench.evaluation import Protocol, evaluate_synthetic, soft_label_loss
from dcbench.host.errors import DcbenchError
from dcbench.method.condense import condense
from dcbench.method.contract import CondenseContext
from dcbench.method.seeding import make_generator
from dcbench.method.synthetic import SyntheticSet, content_hash, load_synthetic
from dcbench.run.plan import _protocols
from dcbench.run.spec import Spec
from dcbench.testing import tiny_dataset
from dcbench_mtt.method import DATMMethod


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=make_generator(seed, "soft-test", *shape))


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_the_kd_loss_is_the_kl_divergence_at_t_times_t_squared(temperature: float) -> None:
    student, teacher = randn(6, 5), randn(6, 5, seed=1)
    # the independent reference: torch's own kl_div, and numpy by hand
    reference = temperature**2 * F.kl_div(
        F.log_softmax(student / temperature, 1), F.softmax(teacher / temperature, 1), reduction="none"
    ).sum(1)
    assert torch.allclose(soft_label_loss(student, teacher, "kl", temperature), reference, atol=1e-6)
    s, t = student.numpy() / temperature, teacher.numpy() / temperature
    p = np.exp(t - t.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    log_q = s - s.max(1, keepdims=True) - np.log(np.exp(s - s.max(1, keepdims=True)).sum(1, keepdims=True))
    by_hand = temperature**2 * (p * (np.log(p) - log_q)).sum(1)
    assert np.allclose(soft_label_loss(student, teacher, "kl", temperature).numpy(), by_hand, atol=1e-5)
    soft_ce = -(p * log_q).sum(1)
    assert np.allclose(soft_label_loss(student, teacher, "soft_ce", temperature).numpy(), soft_ce, atol=1e-5)


def test_a_set_keeps_its_soft_labels_through_save_and_load(tmp_path: Path) -> None:
    images, labels = randn(6, 1, 4, 4), torch.tensor([0, 0, 1, 1, 2, 2])
    soft = randn(6, 3, seed=2)
    SyntheticSet(images, labels, {}, soft).save(tmp_path / "s")
    loaded = load_synthetic(tmp_path / "s")
    assert torch.equal(loaded.soft_labels, soft) and loaded.manifest["labels"] == "soft"
    assert content_hash(images, labels) != content_hash(images, labels, soft)
    SyntheticSet(images, labels).save(tmp_path / "h")  # a set without them hashes as before they existed
    assert load_synthetic(tmp_path / "h").manifest["content_hash"] == content_hash(images, labels)
    for bad in (randn(5, 3), torch.full((6, 3), float("nan"))):
        with pytest.raises(DcbenchError, match="soft labels must be finite logits"):
            SyntheticSet(images, labels, {}, bad).validate(num_classes=3)
    with pytest.raises(DcbenchError, match="float tensor"):
        SyntheticSet(images, labels, {}, torch.zeros(6, 3, dtype=torch.long))


def test_the_label_track_is_in_the_protocol_name_and_hash_only_when_asked_for() -> None:
    hard = Protocol.for_preset("quick")
    assert not {"labels", "label_loss", "temperature"} & set(hard.to_dict())  # old protocol hashes kept
    soft = Protocol.for_preset("quick", labels="set", label_loss="kl", temperature=4.0)
    assert soft.name == "ConvNet-W32/150ep/none/set-kl-T4/v2" and soft.to_dict()["labels"] == "set"
    with pytest.raises(DcbenchError, match="choose labels from hard, set, teacher"):
        Protocol(labels="distilled")
    with pytest.raises(DcbenchError, match="temperature must be > 0"):
        Protocol(labels="set", temperature=0.0)
    spec = Spec(eval_labels="set", eval_label_loss="kl", eval_temperature=2.0)
    (fields,) = _protocols(spec, DATMMethod(), "fashion-mnist", "cpu")
    assert (fields["labels"], fields["label_loss"], fields["temperature"]) == ("set", "kl", 2.0)
    assert "eval_labels" not in Spec().to_toml() and 'eval_labels = "set"' in spec.to_toml()


def test_the_set_track_trains_on_the_soft_labels_and_says_so() -> None:
    real = tiny_dataset(per_class=10)
    images, labels = real.sample_per_class(2, make_generator(0, "init"))
    # soft labels that name the *next* class: trained on them, a network gets the hard labels wrong
    wrong = 50.0 * F.one_hot((labels + 1) % 3, 3).float()
    synthetic = SyntheticSet(images, labels, {}, wrong)
    base = {"models": 1, "epochs": 60, "arch_options": {"width": 8}}
    hard = evaluate_synthetic(synthetic, real, Protocol(**base), 0)
    soft = evaluate_synthetic(synthetic, real, Protocol(**base, labels="set"), 0)
    assert hard.labels_used == "hard" and soft.labels_used == "soft"
    assert hard.train_accs[0] == 1.0 and soft.train_accs[0] == 0.0
    # a set without soft labels under the set track trains on its hard labels, and says so
    plain = evaluate_synthetic(SyntheticSet(images, labels), real, Protocol(**base, labels="set"), 0)
    assert plain.labels_used == "hard" and plain.test_accs == hard.test_accs


def test_datm_hands_its_learned_labels_to_the_set(tmp_path: Path) -> None:
    from dcbench.artifacts import ArtifactStore

    real = tiny_dataset()
    out = condense(DATMMethod(), real, 2, 0, "smoke", None, CondenseContext(artifact_store=ArtifactStore(tmp_path)))
    assert out.synthetic.soft_labels is not None and out.synthetic.soft_labels.shape == (6, 3)
    assert out.synthetic.manifest["labels"] == "soft"
