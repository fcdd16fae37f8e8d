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


# ---------------------------------------------------------------- clips scored the way a stream sees them
# A clip's score under the streaming detector (kws.stream.Detector): the clip is preceded by
# `lead_seconds` and followed by `tail_seconds` of padding (digital silence by default, as
# `Detector.flush` appends; or seeded white noise at `pad_db` dBFS RMS, a quiet room), the
# detector scores a 1 s window every hop, and the clip's score is the highest window score. Every
# clip, keyword or not, is scored alike, so recall at an FPR over clip scores is what a stream
# with one clip per utterance would give at that threshold (before smoothing and refractory).
CLIP_LEAD_SECONDS = 0.5  # audio the stream had before the clip: a word at the clip start can be centred
CLIP_TAIL_SECONDS = 0.5  # kws.stream.FILE_TAIL_SECONDS


def clip_stream_audio(audio: np.ndarray, config: Any = None, lead_seconds: float = CLIP_LEAD_SECONDS,
                      tail_seconds: float = CLIP_TAIL_SECONDS, pad_db: float | None = None,
                      seed: int = 0) -> np.ndarray:
    """The clip with its stream padding: lead, clip, tail, and more tail when that is still
    shorter than one window (a short clip is scored once, as `Detector.flush` does)."""
    from kws.features import FeatureConfig

    cfg = config or FeatureConfig()
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    n_lead = int(round(lead_seconds * cfg.sample_rate))
    n_tail = int(round(tail_seconds * cfg.sample_rate))
    first_window = cfg.frame_length + (cfg.window_frames - 1) * cfg.hop_length
    n_tail = max(n_tail, first_window - n_lead - x.size)
    if pad_db is None:
        pad = np.zeros(n_lead + n_tail, dtype=np.float32)
    else:
        rng = np.random.default_rng(seed)
        pad = (10.0 ** (pad_db / 20.0) * rng.standard_normal(n_lead + n_tail)).astype(np.float32)
    return np.concatenate([pad[:n_lead], x, pad[n_lead:]])


def clip_stream_features(audio: np.ndarray, config: Any = None, lead_seconds: float = CLIP_LEAD_SECONDS,
                         tail_seconds: float = CLIP_TAIL_SECONDS, pad_db: float | None = None,
                         seed: int = 0) -> np.ndarray:
    """Raw log-mel frames [T, F] of `clip_stream_audio` (T >= one window)."""
    from kws.features import FeatureConfig, featurize

    cfg = config or FeatureConfig()
    return featurize(clip_stream_audio(audio, cfg, lead_seconds, tail_seconds, pad_db, seed), cfg)


def stream_window_starts(n_frames: int, config: Any = None, hop_seconds: float = 0.1) -> np.ndarray:
    """First frame of every window the streaming detector scores over `n_frames` frames: frame 0,
    then one window per hop (`Detector`: windows end at frames 98, 108, ...)."""
    from kws.features import FeatureConfig

    cfg = config or FeatureConfig()
    hop = max(1, int(round(hop_seconds * cfg.sample_rate / cfg.hop_length)))
    if n_frames < cfg.window_frames:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, n_frames - cfg.window_frames + 1, hop, dtype=np.int64)


def stream_window_scores(clip_features: list[np.ndarray], score_windows: Any, config: Any = None,
                         hop_seconds: float = 0.1, batch_windows: int = 4096) -> list[np.ndarray]:
    """Per clip, the scores of its stream windows in time order. `clip_features`: raw log-mel
    [T, F] per clip (`clip_stream_features`); `score_windows(x_raw [B, 98, F]) -> scores [B]`, e.g.
    `lambda x: bundle_scores(bundle, x)` or an int8 model's `.scores`. Windows of many clips are
    scored in batches of about `batch_windows`."""
    from kws.features import FeatureConfig

    cfg = config or FeatureConfig()
    w = cfg.window_frames
    out: list[np.ndarray] = [np.zeros(0)] * len(clip_features)
    pending: list[tuple[int, np.ndarray]] = []  # (clip index, windows [k, T, F])
    n_pending = 0

    def flush() -> None:
        nonlocal pending, n_pending
        if not pending:
            return
        scores = np.asarray(score_windows(np.concatenate([win for _, win in pending])), dtype=np.float64)
        k = 0
        for i, win in pending:
            out[i] = scores[k:k + len(win)]
            k += len(win)
        pending, n_pending = [], 0

    for i, feats in enumerate(clip_features):
        starts = stream_window_starts(len(feats), cfg, hop_seconds)
        if starts.size == 0:
            raise DataError(f"clip {i} has {len(feats)} frames, fewer than one {w}-frame window; "
                            "pad it with clip_stream_features")
        view = np.lib.stride_tricks.sliding_window_view(feats, w, axis=0)  # [N, F, T]
        pending.append((i, np.ascontiguousarray(view[starts].transpose(0, 2, 1), dtype=np.float32)))
        n_pending += starts.size
        if n_pending >= batch_windows:
            flush()
    flush()
    return out


def peak_scores(window_scores: list[np.ndarray], smoothing: int = 1) -> np.ndarray:
    """Per clip, the highest of its window scores (`stream_window_scores`); with `smoothing` > 1
    the highest moving average of that many consecutive windows, which is what
    `kws.stream.Detector` compares with its threshold (its first windows average over the ones
    seen so far, as the detector's do)."""
    n = int(smoothing)
    if n < 1:
        raise ValueError(f"smoothing must be >= 1 window, got {smoothing}")
    if n == 1:
        return np.array([float(np.max(x)) for x in window_scores])
    out = np.empty(len(window_scores))
    for i, x in enumerate(window_scores):
        c = np.concatenate([[0.0], np.cumsum(x)])
        end = np.arange(1, x.size + 1)
        start = np.maximum(0, end - n)
        out[i] = float(((c[end] - c[start]) / (end - start)).max())
    return out


def max_window_scores(clip_features: list[np.ndarray], score_windows: Any, config: Any = None,
                      hop_seconds: float = 0.1, batch_windows: int = 4096, smoothing: int = 1) -> np.ndarray:
    """Per clip, the highest score over its stream windows (`stream_window_scores`, then
    `peak_scores` with `smoothing`)."""
    return peak_scores(stream_window_scores(clip_features, score_windows, config, hop_seconds, batch_windows),
                       smoothing)
