"""Evaluation tracks: a teacher's labels, ZCA whitening, the seeded augmentations and mixing, and
tracks side by side in a spec and the report."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests

from dcbench.artifacts import ArtifactStore
from dcbench.data.zca import ZCA_EPS, zca_transform, zca_whitened
from dcbench.evaluation import (
    Protocol,
    TeacherRecipe,
    evaluate_synthetic,
    load_teacher,
    soft_target_loss,
    teacher_recipe,
)
from dcbench.host.errors import DcbenchError
from dcbench.method.seeding import make_generator
from dcbench.method.synthetic import SyntheticSet
from dcbench.nn.mixing import mix_batch
from dcbench.nn.networks import BUILTIN_ARCHITECTURES
from dcbench.nn.policies import policy_augmenter
from dcbench.report.tracks import baseline_track, fold_tracks, track_differences
from dcbench.run.plan import _protocols
from dcbench.run.spec import Spec
from dcbench.testing import tiny_dataset
from dcbench_coresets.method import RandomMethod

CONVNET = {a.name: a for a in BUILTIN_ARCHITECTURES}["ConvNet"]
SMALL = {"models": 1, "epochs": 3, "arch_options": {"width": 8}}


def test_soft_target_loss_is_the_kl_and_the_cross_entropy_by_hand_even_with_zero_targets() -> None:
    logits = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
    target = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.0, 1.0]])  # zeros: 0 log 0 = 0
    t = 2.0
    z = logits.numpy() / t
    log_q = z - np.log(np.exp(z).sum(1, keepdims=True))
    p = target.numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0.0)
    kl = t**2 * (plogp - p * log_q).sum(1)
    assert np.allclose(soft_target_loss(logits, target, "kl", t).numpy(), kl, atol=1e-6)
    assert np.allclose(soft_target_loss(logits, target, "soft_ce", t).numpy(), -(p * log_q).sum(1), atol=1e-6)


def test_zca_is_the_numpy_svd_whitening_of_the_training_images() -> None:
    real = tiny_dataset(num_classes=2, size=4, per_class=12)
    x = real.train_images.reshape(len(real.train_images), -1).double().numpy()
    mean = x.mean(0, keepdims=True)
    cov = (x - mean).T @ (x - mean) / (len(x) - 1)
    u, s, _ = np.linalg.svd(cov)
    transform = u @ np.diag(1 / np.sqrt(s + ZCA_EPS)) @ u.T
    got_mean, got_transform = zca_transform(real.train_images)
    assert np.allclose(got_mean.numpy(), mean) and np.allclose(got_transform.numpy(), transform, atol=1e-10)
    white = zca_whitened(real)
    test = real.test_images.reshape(len(real.test_images), -1).double().numpy()
    assert np.allclose(white.test_images.reshape(len(test), -1).numpy(), (test - mean) @ transform, atol=1e-5)
    assert white.zca == "zca-eps0.1" and white.content_hash() != real.content_hash()
    # whitened training pixels have (about) the regularised identity covariance
    w = white.train_images.reshape(len(x), -1).double().numpy()
    assert np.allclose(np.cov(w.T), u @ np.diag(s / (s + ZCA_EPS)) @ u.T, atol=1e-5)


def test_a_zca_mismatch_is_refused_in_one_line() -> None:
    real = tiny_dataset()
    white = zca_whitened(real)
    images, labels = real.sample_per_class(1, make_generator(0, "init"))
    plain = SyntheticSet(images, labels, {"preprocessing": {"zca": False}})
    whitened = SyntheticSet(images, labels, {"preprocessing": {"zca": True}})
    for synthetic, data, zca in ((plain, white, True), (whitened, real, False), (whitened, white, False)):
        with pytest.raises(DcbenchError, match=r"condensed from .* data, .*--zca$") as caught:
            evaluate_synthetic(synthetic, data, Protocol(**SMALL, zca=zca), 0)
        assert "\n" not in str(caught.value)
    assert evaluate_synthetic(whitened, white, Protocol(**SMALL, zca=True), 0).test_accs
    with pytest.raises(DcbenchError, match="works on pixels"):
        Protocol(augmentation="autoaugment", zca=True)


@pytest.mark.parametrize("policy", ["autoaugment", "randaugment"])
def test_policies_are_seeded_per_image_and_leave_the_global_rng_alone(policy: str) -> None:
    real = tiny_dataset(channels=3, size=16)
    images = real.train_images[:8]
    state = torch.get_rng_state()
    runs = [policy_augmenter(policy, real.mean, real.std, make_generator(seed, "aug"))(images) for seed in (0, 0, 1)]
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    assert runs[0].shape == images.shape and torch.isfinite(runs[0]).all()
    # each image draws its own sub-policy: not one transform for the whole batch
    changed = [(a - b).abs().max() > 1e-3 for a, b in zip(runs[0], runs[2])]
    assert any(changed)


def test_mixup_and_cutmix_mix_images_and_targets_by_the_same_ratio() -> None:
    x = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 8, 8).contiguous()
    targets = torch.eye(4)
    mixed, mixed_targets = mix_batch(x, targets, "mixup", 1.0, make_generator(0, "mix"))
    lam = float(mixed_targets[0, 0])
    assert torch.allclose(mixed_targets.sum(1), torch.ones(4))
    assert torch.allclose(mixed, lam * x + (1 - lam) * x.roll(1, 0))  # each image with the one before
    cut, cut_targets = mix_batch(x, targets, "cutmix", 1.0, make_generator(3, "mix"))
    from_rolled = (cut != x).float().mean(dim=(1, 2, 3))  # the pasted area of each image
    assert torch.allclose(cut_targets.diagonal(), 1 - from_rolled)
    again = mix_batch(x, targets, "cutmix", 1.0, make_generator(3, "mix"))
    assert torch.equal(again[0], cut) and torch.equal(again[1], cut_targets)


def test_the_teacher_is_built_once_recorded_and_relabels_every_batch(tmp_path: Path) -> None:
    real = tiny_dataset(per_class=20)
    store = ArtifactStore(tmp_path)
    protocol = Protocol(**SMALL, labels="teacher", label_loss="kl", temperature=4.0, teacher_epochs=2)
    recipe = teacher_recipe(protocol)
    assert recipe == TeacherRecipe(arch="ConvNet", arch_options=(("width", 8),), epochs=2)
    first = load_teacher(real, recipe, CONVNET, store=store)
    second = load_teacher(real, recipe, CONVNET, store=store)
    assert first.record["built_here"] and not second.record["built_here"]
    assert first.record["key"] == second.record["key"] and 0 <= first.record["test_acc"] <= 1
    for a, b in zip(first.net.parameters(), second.net.parameters()):
        assert torch.equal(a, b)
    images, labels = real.sample_per_class(2, make_generator(0, "init"))
    synthetic = SyntheticSet(images, labels)
    result = evaluate_synthetic(synthetic, real, protocol, 0, teacher=second)
    assert result.labels_used == "teacher" and result.teacher["key"] == first.record["key"]
    assert "teacher(2ep)-kl-T4" in protocol.name and protocol.to_dict()["teacher_epochs"] == 2
    hard = evaluate_synthetic(synthetic, real, Protocol(**SMALL), 0)
    assert hard.train_accs != result.train_accs or hard.test_accs != result.test_accs
    with pytest.raises(DcbenchError, match="needs its teacher"):
        evaluate_synthetic(synthetic, real, protocol, 0)
    # another recipe is another teacher
    other = load_teacher(real, dataclasses.replace(recipe, epochs=1), CONVNET, store=store)
    assert other.record["key"] != first.record["key"]


def test_a_spec_names_tracks_and_every_set_is_evaluated_under_each() -> None:
    spec = Spec(
        preset="smoke",
        eval_lr=0.02,
        tracks={
            "hard": {},
            "teacher": {"eval_labels": "teacher", "eval_temperature": 4.0},
            "mix": {"eval_mixing": "mixup"},
        },
    )
    spec.validate()
    protocols = _protocols(spec, RandomMethod(), "fashion-mnist", "cpu")
    assert [p["track"] for p in protocols] == ["hard", "teacher", "mix"]
    assert all(p["lr"] == 0.02 for p in protocols)  # the top-level key is every track's default
    assert protocols[1]["labels"] == "teacher" and protocols[1]["temperature"] == 4.0
    assert protocols[2]["mixing"] == "mixup" and "mixing" not in protocols[0]
    assert "[tracks.teacher]" in spec.to_toml() and 'eval_labels = "teacher"' in spec.to_toml()
    # without tracks, one unnamed track whose protocol is the one recorded before tracks existed
    (plain,) = _protocols(Spec(preset="smoke"), RandomMethod(), "fashion-mnist", "cpu")
    assert "track" not in plain and plain == Protocol.for_preset("smoke", "fashion-mnist").to_dict()
    for bad, message in (
        ({"Bad Name": {}}, "track name"),
        ({"t": {"eval_labls": "teacher"}}, "has no key 'eval_labls'"),
        ({"t": {"eval_labels": "teachers"}}, "eval_labels must be one of"),
    ):
        with pytest.raises(DcbenchError, match=message):
            Spec(tracks=bad).validate()


def test_track_differences_are_paired_t_with_holm_as_scipy_and_statsmodels_compute_them() -> None:
    rng = np.random.default_rng(3)
    rows = []
    for method, lift in (("random", 4.0), ("dm", 1.0)):
        for seed in range(5):
            base = 60 + rng.normal(0, 2)
            for track, value in (("hard", base), ("teacher", base + lift + rng.normal(0, 1))):
                rows.append(
                    {"method": method, "dataset": "d", "ipc": 1, "eval_arch": "ConvNet", "track": track,
                     "synth_seed": seed, "acc_pct": value, "eval_labels": "teacher" if track == "teacher" else "hard"}
                )  # fmt: skip
    runs = pd.DataFrame(rows)
    assert baseline_track(runs) == "hard"
    table = track_differences(runs).set_index("method")
    raw = []
    for method in ("dm", "random"):
        wide = runs[runs["method"] == method].pivot(index="synth_seed", columns="track", values="acc_pct")
        test = scipy_stats.ttest_rel(wide["teacher"], wide["hard"])
        raw.append(test.pvalue)
        diffs = wide["teacher"] - wide["hard"]
        low, high = scipy_stats.t.interval(0.95, 4, loc=diffs.mean(), scale=scipy_stats.sem(diffs))
        assert table.loc[method, "diff"] == pytest.approx(diffs.mean())
        assert (table.loc[method, "ci_low"], table.loc[method, "ci_high"]) == pytest.approx((low, high))
        assert table.loc[method, "p_raw"] == pytest.approx(test.pvalue)
    adjusted = multipletests(raw, method="holm")[1]
    assert list(table.loc[["dm", "random"], "p_adj"]) == pytest.approx(list(adjusted))
    folded = fold_tracks(runs)
    assert set(folded["eval_arch"]) == {"ConvNet [hard]", "ConvNet [teacher]"}
    assert track_differences(runs[runs["track"] == "hard"]).empty  # one track: nothing to compare


def test_a_soft_label_track_needs_random_under_the_same_recipe() -> None:
    from dcbench.plugins import load_plugins
    from dcbench.run.plan import plan_cells

    spec = Spec(preset="smoke", methods=["dm"], ipcs=[1], seeds=[0], tracks={"t": {"eval_labels": "teacher"}})
    with pytest.raises(DcbenchError, match='needs `random` under the same recipe.*add "random"'):
        plan_cells(spec, load_plugins(), None, "cpu")
