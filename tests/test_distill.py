"""Feature distillation: the loss, the teacher/student alignment, training with a teacher, and the
openWakeWord teacher's cached targets (skipped without the optional openwakeword wheel)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from kws.errors import KwsError
from kws.models import build_model
from kws.train.losses import distill_loss
from kws.train.teacher import EMB_END0, HOP_SAMPLES, aligned_frames
from kws.train.trainer import Arrays, TrainHparams, fit


def test_distill_loss_is_the_unexplained_share_of_the_teacher():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(400, 8, generator=g)
    explained = s @ torch.randn(8, 5, generator=g) + 3.0  # a linear function of the student (+ offset)
    assert float(distill_loss(s, explained)) < 1e-3
    independent = torch.randn(400, 5, generator=g)
    assert 0.9 < float(distill_loss(s, independent)) <= 1.0  # 8 random regressors explain ~2% of 400 rows
    half = explained + torch.randn(400, 5, generator=g) * explained.std(0)
    assert 0.3 < float(distill_loss(s, half)) < 0.7
    # scaling the student's states cannot lower it; gradients reach the student
    assert abs(float(distill_loss(10 * s, half)) - float(distill_loss(s, half))) < 1e-4
    sg = s.clone().requires_grad_(True)
    distill_loss(sg, half).backward()
    assert sg.grad is not None and float(sg.grad.abs().sum()) > 0


def test_teacher_moments_align_causally_with_student_frames():
    n, fl, hop, nf, lead = 16000, 400, 160, 98, 8000
    k, frames = aligned_frames(n, fl, hop, nf, lead)
    assert len(k) == len(frames) >= 8
    end = k * HOP_SAMPLES + EMB_END0 - lead  # clip samples each embedding has heard
    student_end = frames * hop + fl
    assert (student_end <= end).all() and (end - student_end < hop).all()  # the last frame not after it
    assert (frames >= 0).all() and (frames < nf).all() and (end <= n).all()
    assert (np.diff(frames) == HOP_SAMPLES // hop).all()  # one embedding per 80 ms = 8 frames
    # without padding the first embedding has heard 0.8 s: fewer moments
    assert len(aligned_frames(n, fl, hop, nf, 0)[0]) < len(k)


def _toy(n: int, seed: int, t: int = 20, f: int = 6, d: int = 4) -> Arrays:
    """Keyword clips have a bump in feature 0; the 'teacher' sees a fixed projection of the input
    history (a cumulative sum), which a recurrent student can learn to track."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, t, f)).astype(np.float32)
    y = (np.arange(n) % 2).astype(np.int64)
    x[y == 1, 8:12, 0] += 2.0
    frames = np.array([5, 10, 15, 19])
    proj = np.random.default_rng(99).standard_normal((f, d)).astype(np.float32)  # the same teacher for every split
    teacher = np.tanh(np.cumsum(x, axis=1)[:, frames] @ proj / 3.0)
    return Arrays(x=x, y=y, teacher=teacher, teacher_frames=frames)


def test_training_with_a_teacher_lowers_the_distillation_term(tmp_path):
    train, val = _toy(256, 0), _toy(128, 1)
    hp = dict(epochs=20, batch_size=64, lr=1e-2, patience=0, distill=1.0)
    torch.manual_seed(0)
    res = fit(build_model("fastgrnn", 6, hidden=8), train, val, "bce", TrainHparams(**hp), tmp_path / "kd")
    d = [h["distill"] for h in res.history]
    assert d[-1] < 0.5 * d[0] and all(0 <= v <= 1 for v in d)
    assert res.best["val_auc"] > 0.9  # the keyword is still learned
    # distill=0 trains as before: no distillation term in the history
    torch.manual_seed(0)
    plain = fit(build_model("fastgrnn", 6, hidden=8), train, val, "bce", TrainHparams(**{**hp, "distill": 0.0}),
                tmp_path / "plain")
    assert all(h["distill"] == 0 for h in plain.history)


def test_distillation_needs_targets_of_the_right_shape(tmp_path):
    t = _toy(32, 0)
    with pytest.raises(KwsError, match="teacher targets"):
        fit(build_model("fastgrnn", 6, hidden=4), Arrays(x=t.x, y=t.y), t, "bce",
            TrainHparams(epochs=1, distill=1.0), tmp_path / "a")
    with pytest.raises(ValueError, match="teacher must be"):
        Arrays(x=t.x, y=t.y, teacher=t.teacher[:, :3], teacher_frames=t.teacher_frames)
    with pytest.raises(ValueError, match="teacher must be"):
        Arrays(x=t.x, y=t.y, teacher=t.teacher, teacher_frames=np.array([5, 10, 15, 20]))  # frame 20 of 20
    with pytest.raises(ValueError, match="distill"):
        TrainHparams(distill=-1.0)


def test_train_keyword_refuses_distill_without_a_teacher(tmp_path):
    from kws.train.api import TrainOptions, train_keyword

    data = tmp_path / "data"
    data.mkdir()
    (data / "dataset.json").write_text('{"keyword": "marvin"}')
    with pytest.raises(KwsError, match="needs a teacher"):
        train_keyword(TrainOptions(keyword="marvin", data=data, train_hparams={"distill": 1.0}))
    with pytest.raises(KwsError, match="unknown teacher"):
        train_keyword(TrainOptions(keyword="marvin", data=data, teacher="whisper"))


def test_hidden_states_end_in_the_state_the_logit_reads():
    x = torch.randn(3, 12, 5)
    for kind in ("fastgrnn", "lstm", "gru"):
        m = build_model(kind, 5, hidden=7).eval()
        with torch.no_grad():
            hs = m.hidden_states(x)
            assert hs.shape == (3, 12, 7)
            torch.testing.assert_close(m._head(hs[:, -1]), m(x))
            torch.testing.assert_close(m._head(hs), m.forward_all(x))


@pytest.mark.skipif(importlib.util.find_spec("openwakeword") is None,
                    reason="openwakeword not installed (optional: `make peers`)")
def test_openwakeword_targets_are_cached_per_dataset_and_resume(tmp_path, monkeypatch):
    from kws.data.builder import BuildOptions, build_dataset
    from kws.train import teacher as T

    data = tmp_path / "data"
    build_dataset(BuildOptions(keyword="marvin", out=data, preset="small", seed=0, augment_recipe="standard",
                               carrier_share=0.0))
    monkeypatch.setattr(T, "PART_CLIPS", 100)
    t = T.teacher_targets(data, "val")
    n_val = len(np.load(data / "features" / "val.npy", mmap_mode="r"))
    assert t.emb.shape == (n_val, len(t.frames), T.EMB_DIM) and np.isfinite(t.emb).all()
    assert t.emb.std() > 0.01  # real embeddings, not zeros
    # an interrupted run: one part lost -> only that part is recomputed, to the same values
    parts = sorted((data / "teacher").glob("openwakeword-val-*/part-*.npy"))
    assert len(parts) == -(-n_val // 100)
    parts[-1].unlink()
    calls = []
    real_clip = T.clip_embeddings
    monkeypatch.setattr(T, "clip_embeddings", lambda *a: calls.append(1) or real_clip(*a))
    again = T.teacher_targets(data, "val")
    assert len(calls) == n_val - 100 * (len(parts) - 1)
    np.testing.assert_array_equal(again.emb, t.emb)

    # `kws train --teacher openwakeword`: the train split's targets, a distillation term, a normal bundle
    from kws.bundle import load_bundle
    from kws.cli import main as kws_main

    out = tmp_path / "marvin.kws"
    assert kws_main(["train", "--keyword", "marvin", "--data", str(data), "--method", "bce", "--epochs", "2",
                     "--teacher", "openwakeword", "--out", str(out), "--run-dir", str(tmp_path / "run")]) == 0
    b = load_bundle(out)
    assert b.provenance["teacher"] == "openwakeword" and b.provenance["train_hparams"]["distill"] == 1.0
    assert all(0 < h["distill"] < 1 for h in b.metrics["training"]["history"])
    assert set(b.weights) == {"W", "U", "b_z", "b_h", "zeta", "nu", "head.weight", "head.bias"}  # nothing extra
