"""Logit distillation (TrainHparams.kd): the loss, a student learning a teacher model's scores in
`fit`, a teacher bundle in another normalization, and `kws train --ensemble N --distill`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kws.bundle import load_bundle, save_bundle
from kws.cli import main as kws_main
from kws.errors import KwsError
from kws.models import build_model
from kws.train.losses import logit_distill_loss
from kws.train.trainer import Arrays, TrainHparams, fit


def test_logit_distill_loss_is_zero_only_where_the_scores_agree():
    t = torch.tensor([-3.0, -0.5, 0.0, 2.0, 6.0])
    for temp in (1.0, 2.0, 4.0):
        assert float(logit_distill_loss(t.clone(), t, temp)) == pytest.approx(0.0, abs=1e-6)
    s = torch.zeros(5, requires_grad=True)
    teacher = t.clone().requires_grad_(True)
    loss = logit_distill_loss(s, teacher, 2.0)
    assert float(loss.detach()) > 0.05
    loss.backward()
    # descending the gradient moves every student logit towards the teacher's; the teacher gets none
    assert torch.all(torch.sign(-s.grad[t != 0]) == torch.sign(t[t != 0]))
    assert teacher.grad is None
    # near p = 1/2 the T^2 factor makes a small disagreement cost the same at any temperature
    near = torch.tensor([-0.1, 0.0, 0.1])
    small = [float(logit_distill_loss(near + 0.05, near, temp)) for temp in (1.0, 4.0)]
    assert small[1] == pytest.approx(small[0], rel=0.05)


def _toy(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 12, 4)).astype(np.float32)


def _teacher(tmp_path: Path) -> torch.nn.Module:
    """A model trained on another rule than the labels' (feature 1, not 0): what a student learns
    from it shows."""
    x = _toy(256, 7)
    y = (x[:, :, 1].mean(1) > 0).astype(np.int64)
    torch.manual_seed(5)
    r = fit(build_model("gru", 4, hidden=6), Arrays(x=x, y=y), Arrays(x=x[:64], y=y[:64]), "bce",
            TrainHparams(epochs=10, batch_size=64, lr=1e-2, patience=0), tmp_path / "teacher", seed=5)
    return r.model.eval()


def _agreement(model: torch.nn.Module, teacher: torch.nn.Module, x: np.ndarray) -> float:
    with torch.no_grad():
        a, b = model(torch.from_numpy(x)).numpy(), teacher(torch.from_numpy(x)).numpy()
    return float(np.corrcoef(a, b)[0, 1])


def test_fit_with_a_teacher_learns_its_scores(tmp_path):
    x = _toy(256, 0)
    y = (x[:, :, 0].mean(1) > 0).astype(np.int64)
    xv = _toy(128, 1)
    val = Arrays(x=xv, y=(xv[:, :, 0].mean(1) > 0).astype(np.int64))
    words = Arrays(x=_toy(64, 2), y=np.zeros(64, dtype=np.int64))  # unlabeled other speech: the teacher labels it
    teacher = _teacher(tmp_path)
    held_out = _toy(200, 3)
    agree = {}
    for kd in (0.0, 3.0):
        torch.manual_seed(0)
        student = build_model("gru", 4, hidden=6)
        hp = TrainHparams(epochs=8, batch_size=64, lr=1e-2, kd=kd, patience=0)
        r = fit(student, Arrays(x=x, y=y), val, "bce", hp, tmp_path / f"kd{kd}", seed=0, words=words,
                teacher=teacher if kd else None)
        agree[kd] = _agreement(r.model, teacher, held_out)
        if kd:
            assert r.history[-1]["kd"] < r.history[0]["kd"]
        else:
            assert "kd" not in r.history[0]
    assert agree[3.0] > agree[0.0] + 0.2, agree
    with pytest.raises(KwsError, match="needs a teacher to distil"):
        fit(build_model("gru", 4, hidden=6), Arrays(x=x, y=y), val, "bce", {"epochs": 1, "kd": 1.0}, tmp_path / "none")
    with pytest.raises(ValueError, match="kd"):
        TrainHparams(kd=-1.0)
    with pytest.raises(ValueError, match="kd_temperature"):
        TrainHparams(kd_temperature=0.0)


def test_a_teacher_bundle_in_another_normalization_scores_as_itself(trained_bundle, tmp_path):
    from kws.data.dataset import load_split
    from kws.train.api import load_teacher

    a = load_bundle(trained_bundle[0])
    rng = np.random.default_rng(4)
    other = load_bundle(save_bundle(tmp_path / "other.kws", a.model_kind, a.hparams, a.weights, a.feature_config,
                                    a.mean + rng.normal(0, 0.5, a.mean.shape), a.std * rng.uniform(0.7, 1.4, a.std.shape),
                                    a.keyword, a.thresholds, provenance=a.provenance))
    x = np.asarray(load_split(Path(trained_bundle[0]).parent / "data", "test").x[:16])
    teacher = load_teacher(other.path, "Marvin", a.feature_config, a.mean, a.std)
    assert not any(p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        own = other.torch_model()(torch.from_numpy(other.normalize(x))).numpy()
        seen = teacher(torch.from_numpy(a.normalize(x))).numpy()
    np.testing.assert_allclose(seen, own, atol=1e-4)
    with pytest.raises(KwsError, match="detects 'marvin', not 'sheila'"):
        load_teacher(other.path, "sheila", a.feature_config, a.mean, a.std)


def test_train_ensemble_distill_ships_one_member_sized_student(trained_bundle, tmp_path, capsys):
    """`--ensemble 2 --distill`: two members, their ensemble kept as the teacher, one student of a
    member's size (seed 2) learning its scores; rerunning resumes every stage."""
    from kws.train.api import TrainOptions, train_keyword

    data = Path(trained_bundle[0]).parent / "data"
    opts = TrainOptions(keyword="marvin", data=data, method="bce", hidden=8, epochs=3, ensemble=2,
                        distill_ensemble=True, out=tmp_path / "student.kws", run_dir=tmp_path / "run")
    r = train_keyword(opts)
    teacher = load_bundle(tmp_path / "run" / "ensemble.kws")
    student = load_bundle(r.bundle)
    assert teacher.hparams["hidden"] == 16 and student.hparams["hidden"] == 8
    assert student.provenance["teacher"] == str((tmp_path / "run" / "ensemble.kws").resolve())
    assert student.provenance["seed"] == 2 and student.provenance["train_hparams"]["kd"] == 1.0
    assert all(h["kd"] > 0 for h in student.metrics["training"]["history"])
    assert len(r.members) == 2 and "taught by" in r.table()
    assert r.train_seconds > sum(m.train_seconds for m in r.members)
    again = train_keyword(opts)
    assert again.resumed_from == 3 and [m.resumed_from for m in again.members] == [3, 3]
    np.testing.assert_array_equal(load_bundle(again.bundle).weights["U"], student.weights["U"])
    # the CLI: a teacher bundle for another keyword, a missing one, --distill without --ensemble
    other = tmp_path / "sheila.kws"
    from kws.bundle import random_bundle

    random_bundle(other, hidden=8, keyword="sheila")
    base = ["train", "--keyword", "marvin", "--data", str(data), "--method", "bce", "--hidden", "8", "--epochs", "1",
            "--run-dir", str(tmp_path / "cli"), "--out", str(tmp_path / "cli.kws")]
    for extra, message in ((["--teacher", str(other)], "detects 'sheila'"),
                           (["--teacher", str(tmp_path / "missing.kws")], "no such file"),
                           (["--distill"], "--ensemble N with N >= 2")):
        assert kws_main(base + extra) != 0
        assert message in capsys.readouterr().err
