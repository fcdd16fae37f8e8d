"""Metrics: recall at FPR by the DESIGN.md section 6 definition, on hand-built arrays with ties."""

from __future__ import annotations

import numpy as np
import pytest

from kws.metrics import (allowed_false_positives, auc, fpr_at_threshold, per_kind_fpr, plot_roc_det,
                         recall_at_fpr, roc_curve)


def brute_force(pos, neg, fpr):
    """The definition, literally: scan every float-distinct candidate, take the smallest feasible t."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    scores = np.unique(np.concatenate([pos, neg]))
    cands = np.concatenate([scores, [np.nextafter(scores.max(), np.inf)]])
    feasible = [t for t in cands if np.mean(neg >= t) <= fpr]
    t = min(feasible)
    return float(np.mean(pos >= t)), float(np.mean(neg >= t))


def test_simple_case_by_hand():
    neg = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
    pos = [0.85, 0.92, 0.97, 0.5, 0.99]
    # 10% FPR allows 1 false positive: must reject 0.9 (2nd largest); smallest score above it is 0.92
    r, t = recall_at_fpr(pos, neg, 0.10)
    assert t == 0.92
    assert r == 3 / 5  # 0.92, 0.97, 0.99
    assert fpr_at_threshold(neg, t) == 0.1
    # 0% FPR: reject all negatives -> threshold just above 0.95 -> 0.97
    r, t = recall_at_fpr(pos, neg, 0.0)
    assert t == 0.97 and r == 2 / 5
    # 30% allows 3 (0.95, 0.9, 0.8): reject 0.7 -> smallest score above it is 0.8
    r, t = recall_at_fpr(pos, neg, 0.30)
    assert t == 0.8 and r == 4 / 5
    assert fpr_at_threshold(neg, t) == 0.3
    # 20% allows 2: reject 0.8 -> smallest score above it is the positive 0.85, which counts
    r, t = recall_at_fpr(pos, neg, 0.20)
    assert t == 0.85 and r == 4 / 5
    assert fpr_at_threshold(neg, t) == 0.2


def test_ties_at_the_cut():
    # three negatives tied at 0.7: allowing 1 FP cannot admit any of them (all or none)
    neg = [0.1, 0.2, 0.3, 0.7, 0.7, 0.7, 0.9, 0.2, 0.1, 0.0]
    pos = [0.7, 0.75, 0.9, 0.95]
    r, t = recall_at_fpr(pos, neg, 0.2)  # 2 allowed: 0.9 and one 0.7 -> the 0.7s must all go
    assert t == 0.75
    assert r == 3 / 4
    assert fpr_at_threshold(neg, t) == 0.1
    r, t = recall_at_fpr(pos, neg, 0.4)  # 4 allowed: 0.9 + all three 0.7s fit
    assert t == 0.7 and r == 1.0
    assert fpr_at_threshold(neg, t) == 0.4
    # a positive tied with a negative that must be rejected is lost too
    r, t = recall_at_fpr([0.5], [0.5, 0.1], 0.0)
    assert r == 0.0 and t > 0.5


def test_all_equal_scores():
    neg = [0.5] * 10
    pos = [0.5] * 4
    r, t = recall_at_fpr(pos, neg, 0.05)  # nothing can be accepted
    assert r == 0.0 and t > 0.5 and fpr_at_threshold(neg, t) == 0.0
    assert np.float32(t) > np.float32(0.5)  # survives a float32 cast
    r, t = recall_at_fpr(pos, neg, 1.0)  # everything may be accepted
    assert r == 1.0 and t == 0.5
    assert auc(pos, neg) == 0.5


def test_float_rounding_of_allowed_count():
    # 0.29 * 100 = 28.999999999999996 in floats; the definition compares 29/100 <= 0.29, which holds
    assert allowed_false_positives(100, 0.29) == 29
    assert allowed_false_positives(100, 0.03) == 3
    assert allowed_false_positives(7, 0.1) == 0
    assert allowed_false_positives(10, 1.0) == 10


def test_matches_brute_force_randomized(rng):
    for trial in range(200):
        n_neg = int(rng.integers(1, 40))
        n_pos = int(rng.integers(1, 20))
        # coarse grid -> many ties between and within classes
        neg = rng.integers(0, 8, n_neg) / 8
        pos = rng.integers(0, 8, n_pos) / 8
        fpr = float(rng.choice([0.0, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, rng.random()]))
        r, t = recall_at_fpr(pos, neg, fpr)
        br, bfpr = brute_force(pos, neg, fpr)
        assert r == br, (pos, neg, fpr)
        assert fpr_at_threshold(neg, t) == bfpr <= fpr


def test_auc_mann_whitney():
    assert auc([1, 2, 3], [0, 0.5]) == 1.0
    assert auc([0, 0.5], [1, 2, 3]) == 0.0
    # pairs: (1 vs 1) tie = 0.5, (1 vs 0) = 1, (2 vs 1) = 1, (2 vs 0) = 1 -> 3.5 / 4
    assert auc([1, 2], [1, 0]) == 3.5 / 4
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 5, 30), rng.integers(0, 5, 40)
    pairs = np.mean((pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None]))
    assert abs(auc(pos, neg) - pairs) < 1e-12


def test_roc_curve_points():
    fpr, tpr, thr = roc_curve([0.9, 0.4], [0.4, 0.1])
    assert thr[0] == np.inf and list(thr[1:]) == [0.9, 0.4, 0.1]
    assert list(fpr) == [0.0, 0.0, 0.5, 1.0]
    assert list(tpr) == [0.0, 0.5, 1.0, 1.0]
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)


def test_per_kind_fpr():
    scores = [0.9, 0.2, 0.6, 0.7, 0.1, 0.8]
    kinds = ["negative", "negative", "close_negative", "close_negative", "noise", "positive"]
    assert per_kind_fpr(scores, kinds, 0.65) == {"close_negative": 0.5, "negative": 0.5, "noise": 0.0,
                                                 "positive": 1.0}
    with pytest.raises(ValueError):
        per_kind_fpr([0.1], ["a", "b"], 0.5)


def test_bad_inputs():
    with pytest.raises(ValueError, match="no negative"):
        recall_at_fpr([0.5], [], 0.03)
    with pytest.raises(ValueError, match="NaN"):
        recall_at_fpr([np.nan], [0.1], 0.03)
    with pytest.raises(ValueError, match="fpr"):
        recall_at_fpr([0.5], [0.1], 1.5)


def test_plot_roc_det(tmp_path, rng):
    pos = rng.normal(1.5, 1, 300)
    neg = rng.normal(0, 1, 600)
    out = plot_roc_det(pos, neg, tmp_path / "roc.png", title="test")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert not list(tmp_path.glob("*.tmp-*"))
