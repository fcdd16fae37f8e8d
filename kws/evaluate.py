"""Evaluate a bundle on a dataset split: recall at 3% / 5% FPR (DESIGN.md section 6), AUC,
per-kind false-positive rates, at the split's own thresholds and at the bundle's calibrated ones.

`split_metrics` is shared with training (kws.train.api), so `kws train` and `kws eval` report the
same numbers for the same model and split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kws.errors import DataError, KwsError

FPRS = (0.03, 0.05)


def fpr_key(fpr: float) -> str:
    return f"{float(fpr):g}"


def split_metrics(scores: np.ndarray, y: np.ndarray, kinds: np.ndarray | None,
                  thresholds: dict[str, float] | None = None, fprs: tuple[float, ...] = FPRS) -> dict[str, Any]:
    """Metrics of one split.

    "own": for each FPR p, the threshold chosen on THIS split's negatives (generic and close
    together) per the metric definition, the recall there, and the per-kind rates at it
    ("close_negative" is the close-negative FPR). "calibrated": the same rates at the given
    thresholds (the bundle's, calibrated on validation), plus the overall FPR they give here.
    """
    from kws.metrics import auc, fpr_at_threshold, per_kind_fpr, recall_at_fpr

    scores = np.asarray(scores, dtype=np.float64)
    y = np.asarray(y)
    pos, neg = scores[y == 1], scores[y == 0]
    if pos.size == 0 or neg.size == 0:
        raise DataError("the split needs both keyword clips and non-keyword clips to measure recall at an FPR")
    kinds = np.asarray(kinds) if kinds is not None else np.where(y == 1, "positive", "negative")
    out: dict[str, Any] = {"n_positive": int(pos.size), "n_negative": int(neg.size),
                           "n_by_kind": {str(k): int((kinds == k).sum()) for k in sorted(set(kinds.tolist()))},
                           "auc": auc(pos, neg), "own": {}, "calibrated": {}}
    for p in fprs:
        recall, t = recall_at_fpr(pos, neg, p)
        out["own"][fpr_key(p)] = {"recall": recall, "threshold": t, "fpr": fpr_at_threshold(neg, t),
                                  "per_kind": per_kind_fpr(scores, kinds, t)}
    for key, t in (thresholds or {}).items():
        t = float(t)
        out["calibrated"][fpr_key(float(key))] = {
            "recall": float(np.mean(pos >= t)), "threshold": t, "fpr": fpr_at_threshold(neg, t),
            "per_kind": per_kind_fpr(scores, kinds, t)}
    return out


def metrics_table(m: dict[str, Any], title: str) -> str:
    """A plain-text table of split_metrics output."""
    kinds = [k for k in m["n_by_kind"] if k != "positive"]
    lines = [title, f"  clips: " + ", ".join(f"{k} {n}" for k, n in m["n_by_kind"].items()),
             f"  AUC: {m['auc']:.4f}"]
    head = f"  {'operating point':<30}{'recall':>8}{'FPR':>8}" + "".join(f"{'FPR ' + k:>22}" for k in kinds)
    lines.append(head)
    for label, block in (("at this split's", m["own"]), ("at bundle's calibrated", m["calibrated"])):
        for key, r in block.items():
            name = f"{label} {100 * float(key):g}% thr"
            row = f"  {name:<30}{100 * r['recall']:>7.1f}%{100 * r['fpr']:>7.1f}%"
            row += "".join(f"{100 * r['per_kind'].get(k, float('nan')):>21.1f}%" for k in kinds)
            lines.append(row)
    return "\n".join(lines)


@dataclass
class EvalReport:
    bundle: Path
    data_dir: Path
    split: str
    int8: bool
    keyword: str
    metrics: dict[str, Any]
    plot: Path | None = None
    scores: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    y: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]

    def table(self) -> str:
        kind = "int8" if self.int8 else "float"
        text = metrics_table(self.metrics, f"{self.bundle} ({kind}) on {self.data_dir} [{self.split}], "
                                           f"keyword '{self.keyword}'")
        if self.plot:
            text += f"\n  ROC/DET plot: {self.plot}"
        return text

    def to_json(self) -> str:
        return json.dumps({"bundle": str(self.bundle), "data": str(self.data_dir), "split": self.split,
                           "int8": self.int8, "keyword": self.keyword, "metrics": self.metrics}, indent=1)


def dataset_keyword(data_dir: Path) -> str | None:
    """The keyword recorded in DIR/dataset.json (None when the file has none)."""
    try:
        info = json.loads((Path(data_dir) / "dataset.json").read_text())
    except (OSError, ValueError):
        return None
    kw = info.get("keyword") if isinstance(info, dict) else None
    return str(kw) if kw is not None else None


def require_dataset_keyword(data_dir: Path, keyword: str, fix: str) -> None:
    """DataError when DIR/dataset.json names another keyword than `keyword` (`fix` says what to do)."""
    kw = dataset_keyword(data_dir)
    if kw is not None and kw.strip().lower() != keyword.strip().lower():
        raise DataError(f"{data_dir} is a dataset for '{kw}', not '{keyword}'; {fix}")


def bundle_scores(bundle: Any, x_raw: np.ndarray, int8: bool = False, batch_size: int = 512,
                  data_dir: str | Path | None = None) -> np.ndarray:
    """Scores (sigmoid of the last logit) of raw log-mel windows x_raw [N, T, F] under a loaded bundle."""
    if int8:
        try:
            from kws.quantize import quantized_scores
        except ImportError:
            raise KwsError("--int8 evaluation needs kws.quantize.quantized_scores, which this version "
                           "of kws does not have yet; evaluate the float model (drop --int8)") from None
        # data_dir lets the quantizer calibrate its activation scales on the training features
        return np.asarray(quantized_scores(bundle, np.asarray(x_raw, dtype=np.float32),
                                           data_dir=str(data_dir) if data_dir else None), dtype=np.float64)
    from kws.train.trainer import predict_scores

    model = bundle.torch_model()
    out = []
    for start in range(0, len(x_raw), batch_size):
        out.append(predict_scores(model, bundle.normalize(x_raw[start:start + batch_size]), batch_size))
    return np.concatenate(out) if out else np.zeros(0)


def evaluate_bundle(bundle_path: str | Path, data_dir: str | Path, split: str = "test", int8: bool = False,
                    plot: str | Path | None = None) -> EvalReport:
    """Score every clip of `split` in the dataset folder with the bundle and measure it."""
    from kws.bundle import load_bundle
    from kws.data.dataset import load_split

    bundle_path, data_dir = Path(bundle_path), Path(data_dir)
    bundle = load_bundle(bundle_path)
    data = load_split(data_dir, split)
    if data.feature_config != bundle.feature_config:
        raise DataError(f"{data_dir} was featurized with {data.feature_config} but {bundle_path} expects "
                        f"{bundle.feature_config}; rebuild the dataset with the bundle's feature settings")
    require_dataset_keyword(data_dir, bundle.keyword,
                            f"{bundle_path} detects '{bundle.keyword}': evaluate on a dataset built for it")
    if len(data.y) == 0:
        raise DataError(f"{data_dir}: split {split!r} is empty")
    scores = bundle_scores(bundle, data.x, int8=int8, data_dir=data_dir)
    metrics = split_metrics(scores, data.y, data.kinds, bundle.thresholds)
    plot_path = None
    if plot is not None:
        from kws.metrics import plot_roc_det

        y = np.asarray(data.y)
        plot_path = plot_roc_det(scores[y == 1], scores[y == 0], Path(plot),
                                 title=f"'{bundle.keyword}' {'int8' if int8 else 'float'} on {split}")
    return EvalReport(bundle=bundle_path, data_dir=data_dir, split=split, int8=int8, keyword=bundle.keyword,
                      metrics=metrics, plot=plot_path, scores=scores, y=np.asarray(data.y))
