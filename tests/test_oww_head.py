"""Score teachers: fixed per-clip teacher logits in `fit` (alone and averaged with a teacher model),
and the openWakeWord head teacher of a dataset (kws.train.oww_head; skipped without the optional
openwakeword wheel) through `kws train --teacher openwakeword-head`."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from kws.errors import KwsError
from kws.models import build_model
from kws.train.trainer import Arrays, TrainHparams, fit, teacher_logits


def _toy(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 12, 4)).astype(np.float32)


def _rule(x: np.ndarray) -> np.ndarray:
    """The teacher's rule: feature 1, while the labels follow feature 0 (so what it teaches shows)."""
    return 4.0 * x[:, :, 1].mean(1) / x[:, :, 1].mean(1).std()


def _agreement(model: torch.nn.Module, x: np.ndarray) -> float:
    with torch.no_grad():
        return float(np.corrcoef(model(torch.from_numpy(x)).numpy(), _rule(x))[0, 1])


def test_fit_learns_fixed_teacher_logits_of_training_and_word_clips(tmp_path):
    x, xw, xv = _toy(256, 0), _toy(64, 2), _toy(128, 1)
    y = (x[:, :, 0].mean(1) > 0).astype(np.int64)
    val = Arrays(x=xv, y=(xv[:, :, 0].mean(1) > 0).astype(np.int64))
    held_out = _toy(200, 3)
    agree = {}
    for kd in (0.0, 3.0):
        torch.manual_seed(0)
        r = fit(build_model("gru", 4, hidden=6), Arrays(x=x, y=y, teacher_logit=_rule(x)), val, "bce",
                TrainHparams(epochs=8, batch_size=64, lr=1e-2, kd=kd, patience=0), tmp_path / f"kd{kd}", seed=0,
                words=Arrays(x=xw, y=np.zeros(64, dtype=np.int64), teacher_logit=_rule(xw)))
        agree[kd] = _agreement(r.model, held_out)
        assert ("kd" in r.history[0]) == bool(kd)
        if kd:
            assert r.history[-1]["kd"] < r.history[0]["kd"]
    assert agree[3.0] > agree[0.0] + 0.2, agree
    # word clips without logits while the training clips have them: refused, not silently half-taught
    with pytest.raises(KwsError, match="word-task clips do not"):
        fit(build_model("gru", 4, hidden=6), Arrays(x=x, y=y, teacher_logit=_rule(x)), val, "bce",
            {"epochs": 1, "kd": 1.0}, tmp_path / "bad", words=Arrays(x=xw, y=np.zeros(64, dtype=np.int64)))
    with pytest.raises(ValueError, match="teacher_logit must be"):
        Arrays(x=x, y=y, teacher_logit=_rule(x)[:10])
    with pytest.raises(ValueError, match="teacher_logit must be"):
        Arrays(x=x, y=y, teacher_logit=np.full(len(y), np.nan))


def test_a_teacher_model_and_fixed_logits_teach_their_mean_logit():
    torch.manual_seed(1)
    model = build_model("gru", 4, hidden=5).eval()
    x = torch.from_numpy(_toy(10, 4))
    fixed = np.arange(20, dtype=np.float32)
    idx = torch.tensor([3, 0, 7, 7, 19, 2, 5, 11, 1, 4])
    with torch.no_grad():
        own = model(x)
    torch.testing.assert_close(teacher_logits(model, fixed, x, idx), (own + torch.from_numpy(fixed[idx.numpy()])) / 2)
    torch.testing.assert_close(teacher_logits(None, fixed, x, idx), torch.from_numpy(fixed[idx.numpy()]))
    torch.testing.assert_close(teacher_logits(model, None, x, idx), own)


def test_cross_fitting_folds_deal_each_kind_evenly_and_leave_word_clips_out():
    from kws.train.oww_head import _fold_of_clips

    kinds = np.array(["positive"] * 10 + ["negative"] * 7 + ["word"] * 5 + ["close_negative"] * 3)
    fold = _fold_of_clips(kinds, 3, seed=0)
    assert (fold[kinds == "word"] == -1).all() and (fold[kinds != "word"] >= 0).all()
    for kind in ("positive", "negative", "close_negative"):
        counts = np.bincount(fold[kinds == kind], minlength=3)
        assert counts.max() - counts.min() <= 1
    np.testing.assert_array_equal(_fold_of_clips(kinds, 3, seed=0), fold)
    assert not np.array_equal(_fold_of_clips(kinds, 3, seed=1), fold)


@pytest.mark.skipif(importlib.util.find_spec("openwakeword") is None,
                    reason="openwakeword not installed (optional: `make peers`)")
def test_openwakeword_head_teacher_is_cached_and_teaches_kws_train(tmp_path, monkeypatch, capsys):
    from kws.bundle import load_bundle
    from kws.cli import main as kws_main
    from kws.data.builder import BuildOptions, build_dataset
    from kws.data.dataset import load_split
    from kws.train import oww_head

    data = tmp_path / "data"
    build_dataset(BuildOptions(keyword="marvin", out=data, preset="small", seed=0, augment_recipe="standard",
                               carrier_share=0.0))
    logits = oww_head.head_teacher_logits(data, epochs=8, folds=1)
    sp = load_split(data, "train")
    assert logits.shape == (len(sp.y),) and np.isfinite(logits).all()
    # a genuinely trained head: it ranks the training keyword clips above the others
    from kws.metrics import auc

    assert auc(logits[sp.y == 1], logits[sp.y == 0]) > 0.9
    head_files = list((data / "teacher").glob("oww-head-seed0-ep8-*/head.safetensors"))
    assert len(head_files) == 1 and (head_files[0].parent / "history.json").is_file()
    # cross-fitted: every clip scored by the head of the folds it is not in, still well above chance
    held_out = oww_head.head_teacher_logits(data, epochs=8, folds=3)
    assert held_out.shape == logits.shape and not np.array_equal(held_out, logits)
    assert auc(held_out[sp.y == 1], held_out[sp.y == 0]) > 0.7
    assert len(list((data / "teacher").glob("oww-head-seed0-ep8-fold*of3-*/head.safetensors"))) == 3
    fold = oww_head._fold_of_clips(sp.kinds, 3, seed=0)
    x, y, clip = oww_head.split_windows(data, "train")
    # a seeded subset of clips (the peer benchmark's quick runs): the same windows as the full split's
    xs, ys, cs = oww_head.split_windows(data, "train", limit=5, seed=1)
    rows = np.sort(np.random.default_rng(1).choice(len(sp.y), 5, replace=False))
    assert cs.max() == 4 and np.array_equal(ys, np.repeat(sp.y[rows], len(xs) // 5))
    np.testing.assert_allclose(xs, x[np.isin(clip, rows)], rtol=1e-5, atol=1e-6)
    for k in range(3):
        head = oww_head.trained_head(data, 0, 8, k, 3)  # cached
        own = oww_head.clip_max(head.window_logits(x), clip)
        np.testing.assert_allclose(held_out[fold == k], own[fold == k], rtol=1e-5, atol=1e-5)
    # the teacher as a detector: the in-sample head (folds = 1), or one more head on every labelled clip
    np.testing.assert_allclose(oww_head.clip_max(oww_head.full_head(data, 1, epochs=8).window_logits(x), clip), logits,
                               rtol=1e-5, atol=1e-5)
    oww_head.full_head(data, 3, epochs=8)
    assert len(list((data / "teacher").glob("oww-head-seed0-ep8-fold3of3-*/head.safetensors"))) == 1
    # cached: a second call reads the logits, computing no embedding
    monkeypatch.setattr(oww_head, "padded_embeddings", lambda *a: pytest.fail("recomputed"))
    np.testing.assert_array_equal(oww_head.head_teacher_logits(data, epochs=8, folds=1), logits)
    np.testing.assert_array_equal(oww_head.head_teacher_logits(data, epochs=8, folds=3), held_out)
    monkeypatch.undo()

    base = ["train", "--keyword", "marvin", "--data", str(data), "--method", "bce", "--hidden", "8", "--epochs", "2",
            "--run-dir", str(tmp_path / "run"), "--out", str(tmp_path / "m.kws")]
    assert kws_main(base + ["--teacher", "openwakeword-head"]) == 0
    assert "taught by openwakeword-head" in capsys.readouterr().out
    b = load_bundle(tmp_path / "m.kws")
    assert b.provenance["teacher"] == "openwakeword-head" and b.provenance["train_hparams"]["kd"] == 1.0
    assert all(h["kd"] > 0 for h in b.metrics["training"]["history"])
    # --ensemble 2 --distill with the head: the members learn alone, the student both teachers' mean
    ens = ["train", "--keyword", "marvin", "--data", str(data), "--method", "bce", "--hidden", "8", "--epochs", "1",
           "--run-dir", str(tmp_path / "ens"), "--out", str(tmp_path / "s.kws"), "--ensemble", "2", "--distill",
           "--teacher", "openwakeword-head"]
    assert kws_main(ens) == 0
    capsys.readouterr()
    assert load_bundle(tmp_path / "ens" / "member0" / "model.kws").provenance["teacher"] is None
    assert load_bundle(tmp_path / "s.kws").provenance["teacher"] == [
        str((tmp_path / "ens" / "ensemble.kws").resolve()), "openwakeword-head"]
    # the embedding teacher does not combine with a score teacher
    assert kws_main(base + ["--teacher", "openwakeword", "--teacher", "openwakeword-head"]) != 0
    assert "does not combine" in capsys.readouterr().err
