"""kws.evaluate: split metrics (own vs calibrated thresholds, per-kind rates), validation-only
threshold calibration, and evaluate_bundle on a dataset folder."""

from __future__ import annotations

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
