"""kws.evaluate: split metrics (own vs calibrated thresholds, per-kind rates), validation-only
threshold calibration, and evaluate_bundle on a dataset folder."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from kws.errors import DataError
from kws.evaluate import split_metrics
from kws.train.api import calibrate_thresholds, normalization_stats


def scored_split(rng, n_pos=200, n_neg=300, n_close=100):
    pos = rng.normal(2.0, 1.0, n_pos)
    neg = rng.normal(0.0, 1.0, n_neg)
    close = rng.normal(1.0, 1.0, n_close)
    scores = 1 / (1 + np.exp(-np.concatenate([pos, neg, close])))
    y = np.r_[np.ones(n_pos), np.zeros(n_neg + n_close)].astype(int)
    kinds = np.array(["positive"] * n_pos + ["negative"] * n_neg + ["close_negative"] * n_close)
    return scores, y, kinds


def test_split_metrics_follow_the_metric_definition(rng):
    scores, y, kinds = scored_split(rng)
    m = split_metrics(scores, y, kinds, thresholds={"0.03": 0.9, "0.05": 0.5})
    neg = scores[y == 0]
    for key, p in (("0.03", 0.03), ("0.05", 0.05)):
        t = m["own"][key]["threshold"]
        # smallest threshold whose FPR over ALL negatives (generic + close) is <= p
        assert np.mean(neg >= t) <= p
        lower = np.max(scores[scores < t])  # the next smaller observed score would exceed p
        assert np.mean(neg >= lower) > p
        assert m["own"][key]["recall"] == pytest.approx(np.mean(scores[y == 1] >= t))
        close_fpr = m["own"][key]["per_kind"]["close_negative"]
        assert close_fpr == pytest.approx(np.mean(scores[kinds == "close_negative"] >= t))
        assert close_fpr > m["own"][key]["per_kind"]["negative"]  # close negatives are harder here
    cal = m["calibrated"]["0.05"]
    assert cal["threshold"] == 0.5
    assert cal["recall"] == pytest.approx(np.mean(scores[y == 1] >= 0.5))
    assert cal["fpr"] == pytest.approx(np.mean(neg >= 0.5))
    assert m["n_by_kind"] == {"close_negative": 100, "negative": 300, "positive": 200}
    assert 0.5 < m["auc"] < 1.0


def test_split_metrics_need_both_classes():
    with pytest.raises(DataError):
        split_metrics(np.array([0.1, 0.9]), np.array([1, 1]), None)


def test_thresholds_come_from_validation_scores_only(rng):
    val_scores, val_y, _ = scored_split(rng)
    t = calibrate_thresholds(val_scores, val_y)
    assert set(t) == {"0.03", "0.05"} and t["0.03"] >= t["0.05"]
    assert np.mean(val_scores[val_y == 0] >= t["0.03"]) <= 0.03
    # the same validation scores give the same thresholds whatever else exists
    assert calibrate_thresholds(val_scores.copy(), val_y.copy()) == t


def test_normalization_stats_match_numpy_and_floor_constant_coefficients(rng):
    x = rng.normal(3.0, 2.0, size=(50, 7, 4)).astype(np.float32)
    x[..., 3] = -13.8  # a silent band: constant
    mean, std = normalization_stats(x, chunk=8)
    np.testing.assert_allclose(mean, x.reshape(-1, 4).mean(0), rtol=1e-5)
    np.testing.assert_allclose(std[:3], x.reshape(-1, 4).std(0)[:3], rtol=1e-4)
    assert std[3] == pytest.approx(1e-2)


# ---------------------------------------------------------------- dataset folders, end to end
def write_toy_dataset(root, keyword="marvin", seed=0, sizes=(60, 90, 30, 30, 30), test_noise=False):
    """A dataset folder in the `kws data build` format with hand-made log-mel-like features:
    keyword clips carry a bump in a few mel bands over the last 28 frames; close negatives
    carry half of it (near the window end, so a 2-epoch FastGRNN already learns it)."""
    import json

    from kws.data.manifest import ClipRecord, write_manifest
    from kws.features import FeatureConfig

    fc = FeatureConfig()
    t, f = fc.window_frames, fc.n_features
    rng = np.random.default_rng(seed)
    n_tp, n_tn, n_ep, n_en, n_ec = sizes
    records, feats = [], {}
    plan = {"train": [("positive", n_tp), ("negative", n_tn)],
            "val": [("positive", n_ep), ("negative", n_en), ("close_negative", n_ec)],
            "test": [("positive", n_ep), ("negative", n_en), ("close_negative", n_ec)]}
    for split, parts in plan.items():
        xs = []
        for kind, n in parts:
            x = rng.normal(-6.0, 1.5, size=(n, t, f))
            if kind == "positive":
                x[:, 70:, 4:12] += 3.0
            elif kind == "close_negative":
                x[:, 70:84, 4:12] += 3.0
            if split == "test" and test_noise:
                x = rng.normal(0.0, 5.0, size=(n, t, f))
            xs.append(x)
            for i in range(n):
                records.append(ClipRecord(id=f"{split}-{kind}-{i}", path=f"clips/{split}-{kind}-{i}.wav",
                                          label=int(kind == "positive"), kind=kind, text=keyword if kind == "positive" else "other",
                                          source="synthetic:test", speaker=f"{split}-spk{i % 5}", split=split))
        feats[split] = np.concatenate(xs).astype(np.float32)
    (root / "features").mkdir(parents=True, exist_ok=True)
    for split, x in feats.items():
        np.save(root / "features" / f"{split}.npy", x)
    write_manifest(root / "manifest.jsonl", records)
    (root / "dataset.json").write_text(json.dumps({"format": "kws-dataset", "format_version": 1, "keyword": keyword,
                                                   "features": fc.to_dict(), "seed": seed}))
    return root


def train_toy(data_dir, run_dir, out, method="drocc-lf", epochs=2):
    from kws.train.api import TrainOptions, train_keyword

    return train_keyword(TrainOptions(keyword="marvin", data=data_dir, method=method, model="fastgrnn", out=out,
                                      epochs=epochs, hidden=8, seed=0, run_dir=run_dir,
                                      train_hparams={"warmup_epochs": 1, "batch_size": 64, "lr": 1e-2}))


def test_train_keyword_end_to_end_and_thresholds_ignore_test_data(tmp_path):
    from kws.bundle import load_bundle

    a = write_toy_dataset(tmp_path / "a", sizes=(40, 60, 20, 20, 20))
    b = write_toy_dataset(tmp_path / "b", sizes=(40, 60, 20, 20, 20), test_noise=True)  # same train/val, different test split
    ra = train_toy(a, tmp_path / "run_a", tmp_path / "a.kws")
    rb = train_toy(b, tmp_path / "run_b", tmp_path / "b.kws")
    ba, bb = load_bundle(tmp_path / "a.kws"), load_bundle(tmp_path / "b.kws")
    assert ba.thresholds == bb.thresholds == ra.thresholds
    assert set(ba.thresholds) == {"0.03", "0.05"}
    assert ba.metrics["val"] == bb.metrics["val"]
    assert ba.metrics["test"] != bb.metrics["test"]  # the test split changed, and only the report did
    for k in ba.weights:
        np.testing.assert_array_equal(ba.weights[k], bb.weights[k])
    # the bundle carries the train-split normalization and the numbers behind the thresholds
    x_train = np.load(a / "features" / "train.npy")
    np.testing.assert_allclose(ba.mean, x_train.reshape(-1, x_train.shape[-1]).mean(0), rtol=1e-4, atol=1e-4)
    val = ba.metrics["val"]["own"]["0.03"]
    assert val["threshold"] == pytest.approx(ba.thresholds["0.03"]) and val["fpr"] <= 0.03
    assert ba.provenance["thresholds_from"] == "validation split" and ba.provenance["method"] == "drocc-lf"
    table = ra.table()
    assert "recall @ 3% FPR" in table and "close-negative FPR" in table and "int8" in table
    assert (tmp_path / "run_a" / "training_curve.png").exists()
    assert ra.val["auc"] > 0.8  # the toy keyword is easy: two epochs already separate it


def test_evaluate_bundle_reports_own_and_calibrated_operating_points(tmp_path):
    from kws.evaluate import evaluate_bundle

    a = write_toy_dataset(tmp_path / "a")
    r = train_toy(a, tmp_path / "run", tmp_path / "m.kws", method="bce")
    rep = evaluate_bundle(tmp_path / "m.kws", a, split="test", plot=tmp_path / "roc.png")
    # kws eval on the test split reproduces what kws train reported for it
    assert rep.metrics["own"]["0.03"]["recall"] == pytest.approx(r.test["own"]["0.03"]["recall"])
    assert rep.metrics["calibrated"]["0.05"]["threshold"] == pytest.approx(r.thresholds["0.05"])
    assert rep.metrics["auc"] == pytest.approx(r.test["auc"])
    assert rep.metrics["n_by_kind"] == {"close_negative": 30, "negative": 30, "positive": 30}
    assert (tmp_path / "roc.png").stat().st_size > 1000
    text = rep.table()
    assert "FPR close_negative" in text and "calibrated" in text
    val = evaluate_bundle(tmp_path / "m.kws", a, split="val")
    assert val.metrics["calibrated"]["0.03"]["fpr"] <= 0.03  # calibrated on exactly this split


def test_evaluate_bundle_refuses_mismatched_datasets(tmp_path):
    from kws.bundle import random_bundle
    from kws.errors import DataError as DE
    from kws.evaluate import evaluate_bundle

    a = write_toy_dataset(tmp_path / "a", keyword="seven", sizes=(4, 4, 3, 3, 3))
    bundle = random_bundle(tmp_path / "r.kws", keyword="marvin")
    with pytest.raises(DE, match="seven"):
        evaluate_bundle(bundle, a)
    with pytest.raises(DE):
        evaluate_bundle(bundle, tmp_path / "missing")


def test_kws_eval_cli_prints_the_table(tmp_path, capsys):
    from kws.cli import main

    a = write_toy_dataset(tmp_path / "a", sizes=(20, 30, 10, 10, 10))
    train_toy(a, tmp_path / "run", tmp_path / "m.kws", method="bce", epochs=1)
    assert main(["eval", str(tmp_path / "m.kws"), "--data", str(a), "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert "AUC" in out and "at this split's 3% thr" in out
    assert main(["eval", str(tmp_path / "nope.kws"), "--data", str(a)]) == 2  # a clear error, no traceback


def test_train_keyword_refuses_a_dataset_for_another_keyword(tmp_path):
    from kws.errors import DataError as DE
    from kws.train.api import TrainOptions, train_keyword

    d = write_toy_dataset(tmp_path / "d", keyword="seven", sizes=(4, 4, 3, 3, 3))
    with pytest.raises(DE, match="'seven', not 'marvin'.*--keyword"):
        train_keyword(TrainOptions(keyword="marvin", data=d, out=tmp_path / "m.kws", run_dir=tmp_path / "run"))


@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng not installed")
def test_train_names_the_pronunciations_its_dataset_adds(tmp_path, monkeypatch, caplog):
    """kws train builds its dataset itself: it says which other pronunciations it will accept."""
    import logging
    from types import SimpleNamespace

    from kws.data import builder
    from kws.train.api import TrainOptions, _prepare_dataset

    def build(o):
        write_toy_dataset(o.out, keyword=o.keyword, sizes=(4, 4, 3, 3, 3))
        return SimpleNamespace(keyword_variants=o.all_keyword_variants())

    monkeypatch.setattr(builder, "build_dataset", build)
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="kws.train"):
        _prepare_dataset(TrainOptions(keyword="amelia", out=tmp_path / "m.kws", run_dir=run), run)
    assert "amelia is also said as [[@m'i:lj@]]" in caplog.text and str(run / "data" / "summary.txt") in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="kws.train"):
        _prepare_dataset(TrainOptions(keyword="marvin", out=tmp_path / "m2.kws", run_dir=tmp_path / "r2"), tmp_path / "r2")
    assert "also said as" not in caplog.text  # marvin: espeak-ng says the dictionary's reading


# ---------------------------------------------------------------- clip scores as the streaming detector sees them
@pytest.mark.parametrize("seconds,lead", [(2.3, 0.5), (0.3, 0.0), (0.3, 0.5), (1.0, 0.5)])
def test_max_window_scores_equal_the_streaming_detector(tmp_path, rng, seconds, lead):
    from kws.bundle import load_bundle, random_bundle
    from kws.evaluate import bundle_scores, clip_stream_features, max_window_scores, stream_window_starts
    from kws.stream import Detector

    bundle = load_bundle(random_bundle(tmp_path / "b.kws", seed=7, hidden=16))
    n = int(seconds * 16000)
    clip = (0.3 * np.sin(np.arange(n) * 0.05) * np.hanning(n) + 0.01 * rng.standard_normal(n)).astype(np.float32)
    det = Detector(bundle, threshold=0.5, backend="numpy")
    hops = [det.step(np.concatenate([np.zeros(int(lead * 16000), np.float32), clip])), det.flush(tail_seconds=0.5)]
    raw = np.concatenate([h.raw for h in hops])
    smoothed = np.concatenate([h.smoothed for h in hops])
    feats = clip_stream_features(clip, bundle.feature_config, lead_seconds=lead, tail_seconds=0.5)
    assert len(stream_window_starts(len(feats), bundle.feature_config)) == len(raw)
    got = max_window_scores([feats, feats[: bundle.feature_config.window_frames]],
                            lambda x: bundle_scores(bundle, x), bundle.feature_config, batch_windows=3)
    assert got[0] == pytest.approx(raw.max(), abs=1e-5)
    # a clip of exactly one window has one window: the first one the detector scored
    assert got[1] == pytest.approx(raw[0], abs=1e-5)
    # with the detector's smoothing: the highest score it compares with its threshold
    got = max_window_scores([feats], lambda x: bundle_scores(bundle, x), bundle.feature_config,
                            smoothing=det.smoothing)
    assert det.smoothing == 3 and len(raw) >= 1
    assert got[0] == pytest.approx(smoothed.max(), abs=1e-5)
    if len(raw) >= 3:  # a real average, not the raw maximum
        assert smoothed.max() <= raw.max() + 1e-12
        assert got[0] == pytest.approx(max(raw[0], (raw[0] + raw[1]) / 2,
                                           np.convolve(raw, np.ones(3) / 3, "valid").max()), abs=1e-5)


def test_stream_padding_noise_is_seeded_and_too_short_features_are_refused(rng):
    from kws.evaluate import clip_stream_audio, max_window_scores

    clip = rng.standard_normal(4000).astype(np.float32)
    a = clip_stream_audio(clip, pad_db=-60, seed=3)
    assert len(a) >= 15920 and np.array_equal(a, clip_stream_audio(clip, pad_db=-60, seed=3))
    assert np.array_equal(a[8000:12000], clip)
    assert 0 < np.sqrt(np.mean(a[:8000] ** 2)) < 2e-3  # about -60 dBFS
    with pytest.raises(DataError, match="fewer than one"):
        max_window_scores([np.zeros((50, 32), np.float32)], lambda x: np.zeros(len(x)))
