"""Detection metrics (DESIGN.md section 6): recall at a false-positive rate, ROC/DET, AUC.

Scores: higher = more keyword-like. A clip is accepted when score >= threshold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def _scores(x: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError(f"no {what} scores")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} scores contain NaN or infinity")
    return a


def allowed_false_positives(n_negatives: int, fpr: float) -> int:
    """The largest count c with c / n <= fpr, evaluated exactly as the definition compares it
    (float division), so e.g. fpr=0.29 with n=100 allows 29 even though 0.29 * 100 < 29."""
    c = min(n_negatives, max(0, int(np.floor(fpr * n_negatives))))
    while c < n_negatives and (c + 1) / n_negatives <= fpr:
        c += 1
    while c > 0 and c / n_negatives > fpr:
        c -= 1
    return c


def recall_at_fpr(pos_scores: Sequence[float] | np.ndarray, neg_scores: Sequence[float] | np.ndarray,
                  fpr: float) -> tuple[float, float]:
    """(recall, threshold) for the smallest threshold t with mean(neg >= t) <= fpr.

    With the negatives sorted descending s_1 >= s_2 >= ... and k = allowed false positives,
    mean(neg >= t) <= fpr holds exactly when t > s_{k+1}. Every t in (s_{k+1}, u], u the smallest
    score (positive or negative) above s_{k+1}, accepts the same clips, so recall and FPR are those
    of the smallest threshold. We return t = u: an observed score, so it survives float32 casts in
    the detector, ONNX and C. When no score lies above s_{k+1}, t is the next float above it
    (nothing is accepted, recall 0). When k >= number of negatives every t qualifies and
    t = the smallest score of all (everything accepted, recall 1).
    """
    pos = _scores(pos_scores, "positive")
    neg = _scores(neg_scores, "negative")
    fpr = float(fpr)
    if not 0.0 <= fpr <= 1.0:
        raise ValueError(f"fpr must be in [0, 1], got {fpr}")
    k = allowed_false_positives(neg.size, fpr)
    if k >= neg.size:
        t = float(min(pos.min(), neg.min()))
    else:
        s = np.sort(neg)[::-1][k]  # s_{k+1}: must be rejected, and so must everything tied with it
        all_scores = np.concatenate([pos, neg])
        above = all_scores[all_scores > s]
        t = float(above.min()) if above.size else float(np.nextafter(np.float32(s), np.float32(np.inf)))
        if t <= s:  # s was not float32-representable; fall back to float64 spacing
            t = float(np.nextafter(s, np.inf))
    return float(np.mean(pos >= t)), t


def fpr_at_threshold(neg_scores: Sequence[float] | np.ndarray, threshold: float) -> float:
    """Fraction of negatives scoring >= threshold."""
    return float(np.mean(_scores(neg_scores, "negative") >= threshold))


def recall_at_threshold(pos_scores: Sequence[float] | np.ndarray, threshold: float) -> float:
    return float(np.mean(_scores(pos_scores, "positive") >= threshold))


def per_kind_fpr(scores: Sequence[float] | np.ndarray, kinds: Sequence[str] | np.ndarray,
                 threshold: float) -> dict[str, float]:
    """Fraction of clips of each kind scoring >= threshold (for 'positive' that is the recall;
    for 'close_negative' it is the close-negative false-positive rate)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    k = np.asarray(kinds).ravel()
    if s.shape != k.shape:
        raise ValueError(f"{s.size} scores but {k.size} kinds")
    return {str(kind): float(np.mean(s[k == kind] >= threshold)) for kind in sorted(set(k.tolist()))}


def auc(pos_scores: Sequence[float] | np.ndarray, neg_scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC = P(pos > neg) + 0.5 P(pos == neg) (Mann-Whitney U with midranks)."""
    from scipy.stats import rankdata

    pos = _scores(pos_scores, "positive")
    neg = _scores(neg_scores, "negative")
    ranks = rankdata(np.concatenate([pos, neg]))  # average ranks: ties count one half
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))


def roc_curve(pos_scores: Sequence[float] | np.ndarray, neg_scores: Sequence[float] | np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds): one point per distinct score, thresholds descending, starting at
    (0, 0) with threshold +inf; point i accepts scores >= thresholds[i]."""
    pos = _scores(pos_scores, "positive")
    neg = _scores(neg_scores, "negative")
    thr = np.unique(np.concatenate([pos, neg]))[::-1]
    pos_sorted = np.sort(pos)
    neg_sorted = np.sort(neg)
    # count of scores >= t = n - (number of scores < t)
    tp = pos.size - np.searchsorted(pos_sorted, thr, side="left")
    fp = neg.size - np.searchsorted(neg_sorted, thr, side="left")
    fpr = np.concatenate([[0.0], fp / neg.size])
    tpr = np.concatenate([[0.0], tp / pos.size])
    return fpr, tpr, np.concatenate([[np.inf], thr])


def plot_roc_det(pos_scores: Sequence[float] | np.ndarray, neg_scores: Sequence[float] | np.ndarray,
                 path: str | Path, title: str = "", marks: Sequence[float] = (0.03, 0.05)) -> Path:
    """Write a PNG with the ROC (left) and the DET curve on probit axes (right), marking the
    operating points at the given false-positive rates. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    from kws.util import atomic_path

    fpr, tpr, _ = roc_curve(pos_scores, neg_scores)
    area = auc(pos_scores, neg_scores)
    fig, (ax_roc, ax_det) = plt.subplots(1, 2, figsize=(11, 4.8))
    ax_roc.plot(fpr, tpr, lw=1.6, label=f"AUC = {area:.4f}")
    ax_roc.plot([0, 1], [0, 1], ls=":", color="grey", lw=0.8)
    ax_roc.set_xlabel("false-positive rate")
    ax_roc.set_ylabel("recall (true-positive rate)")
    ax_roc.set_xlim(0, 1)
    ax_roc.set_ylim(0, 1.01)
    ax_roc.grid(alpha=0.3)
    ax_roc.set_title("ROC")

    eps = 1e-4  # probit of 0 or 1 is infinite; clip for display only
    ticks = np.array([0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9])
    ax_det.plot(norm.ppf(np.clip(fpr, eps, 1 - eps)), norm.ppf(np.clip(1 - tpr, eps, 1 - eps)), lw=1.6)
    ax_det.set_xticks(norm.ppf(ticks))
    ax_det.set_xticklabels([f"{100 * t:g}" for t in ticks], fontsize=7)
    ax_det.set_yticks(norm.ppf(ticks))
    ax_det.set_yticklabels([f"{100 * t:g}" for t in ticks], fontsize=7)
    ax_det.set_xlim(norm.ppf(eps), norm.ppf(0.95))
    ax_det.set_ylim(norm.ppf(eps), norm.ppf(0.95))
    ax_det.set_xlabel("false-positive rate (%)")
    ax_det.set_ylabel("miss rate (%)")
    ax_det.grid(alpha=0.3)
    ax_det.set_title("DET")

    for p in marks:
        r, t = recall_at_fpr(pos_scores, neg_scores, p)
        actual = fpr_at_threshold(neg_scores, t)
        label = f"FPR {100 * p:g}%: recall {100 * r:.1f}% (t={t:.3g})"
        ax_roc.plot([actual], [r], "o", ms=5, label=label)
        ax_det.plot([norm.ppf(np.clip(actual, eps, 1 - eps))], [norm.ppf(np.clip(1 - r, eps, 1 - eps))],
                    "o", ms=5, label=label)
    ax_roc.legend(loc="lower right", fontsize=8)
    ax_det.legend(loc="upper right", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
