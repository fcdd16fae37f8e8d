"""Streaming keyword detection on audio chunks, files and composed test streams (DESIGN.md section 8).

The detector featurizes incoming audio with `kws.features.StreamingFeaturizer`, normalizes with the
bundle's mean/std and, every hop (0.1 s), scores the last 1 s window (98 frames) by running the
recurrent model over it from the zero state, the way it was trained. Scores are smoothed with a
moving average over a few hops; a detection fires on the rising edge of the smoothed score across
the threshold, then a refractory period (1.5 s) holds further detections.

Staggered windows (numpy backend): a new window starts every hop and ten are in flight at once, so
instead of re-running 98 frames per hop the detector keeps the ten states and advances all of them
by one batched step per incoming frame (10x fewer steps); a window's score is read when its last
frame is in. Same arithmetic per window, so the scores are bit-identical to scoring each window
from scratch (tested).

Identical output for any chunking: the caller's chunks are re-cut into canonical blocks (the first
window, then one hop at a time) before they reach the featurizer, and the numpy scorer computes each
window with per-row arithmetic that does not depend on how many windows share a batch. So feeding
1 sample at a time or an hour at once gives bit-identical scores and detections.

Backends (`score_windows(x[B, 98, F]) -> scores[B]`): numpy (default, no torch), onnxruntime (an
exported ONNX model) and torch (fallback). This module imports no torch.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from kws.errors import AudioError, BundleError, KwsError

DEFAULT_HOP_SECONDS = 0.1
DEFAULT_SMOOTHING = 3  # hops in the moving average (0.3 s)
DEFAULT_REFRACTORY_SECONDS = 1.5
FILE_TAIL_SECONDS = 0.5  # silence appended to a file so a keyword at its very end is still scored
FILE_BLOCK_SECONDS = 30.0  # files are streamed in blocks of this length
ACCEPT_AFTER_END = 0.5  # DESIGN.md section 6: a detection this long after the keyword ends still finds it


@dataclass(frozen=True)
class Detection:
    """A detection: `time_s` is the end of the scored window (seconds since the stream start)."""

    time_s: float
    score: float
    keyword: str = ""

    @property
    def time(self) -> float:  # the name ARCHITECTURE.md uses
        return self.time_s

    def to_dict(self) -> dict[str, Any]:
        return {"time_s": round(self.time_s, 3), "score": round(self.score, 4)}


@dataclass
class HopScores:
    """What one `Detector.step` call produced: a score per completed hop, and the detections."""

    times: np.ndarray  # window end times, seconds
    raw: np.ndarray  # model score of each window
    smoothed: np.ndarray  # moving average over `smoothing` hops
    detections: list[Detection] = field(default_factory=list)


# ---------------------------------------------------------------------------------- backends
class WindowScorer:
    """A scoring backend. `project` maps normalized frames [k, F] to what windows are built from
    (identity by default; the numpy scorer caches its input projection here, once per frame);
    `score_windows` maps [B, T, P] windows of projected frames to scores in [0, 1].
    `batch_invariant` says a window's score does not depend on the other windows in the batch; when
    False the detector scores one window per call so output stays identical for any chunking."""

    name = "base"
    batch_invariant = False
    stepwise = False
    normalized_input = True  # False: the backend takes raw log-mel (normalization folded in)

    def project(self, frames: np.ndarray) -> np.ndarray:
        return frames

    def score_windows(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def _expit(x: np.ndarray) -> np.ndarray:
    from scipy.special import expit

    return expit(x)


class NumpyScorer(WindowScorer):
    """FastGRNN / LSTM / GRU in float32 numpy, same equations as `kws.models.reference` (tested
    against it). Matrix products with the recurrent state are written as stacked [1, H] x [H, N]
    products so each window's arithmetic is the same whatever the batch size."""

    name = "numpy"
    batch_invariant = True
    stepwise = True  # init_state / step / finish: the detector can keep windows in flight

    def __init__(self, kind: str, hparams: dict[str, Any], weights: dict[str, np.ndarray]) -> None:
        from kws.models import normalize_hparams

        self.kind = kind
        self.hp = normalize_hparams(kind, hparams)
        w = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
        self.hidden = h = self.hp["hidden"]
        self.head_w = np.ascontiguousarray(w["head.weight"].reshape(h, 1))  # [H, 1]
        self.head_b = np.float32(w["head.bias"].reshape(-1)[0])
        if kind == "fastgrnn":
            W = w["W"] if "W" in w else w["W1"] @ w["W2"]
            # projection [F, 2H]: W x + b_z and W x + b_h side by side, cached per frame
            self.in_w = np.ascontiguousarray(np.concatenate([W.T, W.T], axis=1))
            self.in_b = np.concatenate([w["b_z"], w["b_h"]]).astype(np.float32)
            self.u_t = [np.ascontiguousarray(w["U"].T)] if "U" in w else \
                [np.ascontiguousarray(w["U2"].T), np.ascontiguousarray(w["U1"].T)]
            self.zeta = _expit(w["zeta"].reshape(-1).astype(np.float64)).astype(np.float32)  # [1] or [H]
            self.nu = _expit(w["nu"].reshape(-1).astype(np.float64)).astype(np.float32)
            self.pwl = self.hp["nonlinearity"] == "pwl"
        else:
            self.in_w = np.ascontiguousarray(w[f"{kind}.weight_ih_l0"].T)
            self.in_b = w[f"{kind}.bias_ih_l0"]
            self.hh_t = np.ascontiguousarray(w[f"{kind}.weight_hh_l0"].T)
            self.hh_b = w[f"{kind}.bias_hh_l0"]
        self._one = np.float32(1.0)

    def project(self, frames: np.ndarray) -> np.ndarray:
        # [k, 1, F] @ [F, P]: a stack of row products, so the result per frame is independent of k
        f = np.ascontiguousarray(frames, dtype=np.float32)
        return (f[:, None, :] @ self.in_w)[:, 0] + self.in_b

    @staticmethod
    def _rows(h: np.ndarray, m: np.ndarray) -> np.ndarray:
        return (h[:, None, :] @ m)[:, 0]

    # one frame at a time: what `score_windows` runs per frame, and what the detector's staggered
    # windows (`Detector._advance`) advance every window in flight with
    def init_state(self, batch: int) -> tuple[np.ndarray, ...]:
        h = np.zeros((batch, self.hidden), dtype=np.float32)
        return (h, np.zeros_like(h)) if self.kind == "lstm" else (h,)

    def step(self, state: tuple[np.ndarray, ...], xt: np.ndarray) -> tuple[np.ndarray, ...]:
        """Advance states [B, H] by one projected frame xt ([B, P] or [1, P] for all rows)."""
        hd = self.hidden
        h = state[0]
        if self.kind == "fastgrnn":
            uh = h
            for m in self.u_t:
                uh = self._rows(uh, m)
            pz = xt[:, :hd] + uh
            ph = xt[:, hd:] + uh
            if self.pwl:
                z = np.clip((pz + 1.0) * 0.5, 0.0, 1.0)
                c = np.clip(ph, -1.0, 1.0)
            else:
                z = _expit(pz)
                c = np.tanh(ph)
            return ((self.zeta * (self._one - z) + self.nu) * c + z * h,)
        if self.kind == "lstm":
            g = xt + self._rows(h, self.hh_t) + self.hh_b
            ig, fg, gg, og = (g[:, k * hd:(k + 1) * hd] for k in range(4))
            cst = _expit(fg) * state[1] + _expit(ig) * np.tanh(gg)
            return _expit(og) * np.tanh(cst), cst
        gh = self._rows(h, self.hh_t) + self.hh_b  # gru
        r = _expit(xt[:, :hd] + gh[:, :hd])
        z = _expit(xt[:, hd:2 * hd] + gh[:, hd:2 * hd])
        n = np.tanh(xt[:, 2 * hd:] + r * gh[:, 2 * hd:])
        return ((self._one - z) * n + z * h,)

    def finish(self, state: tuple[np.ndarray, ...]) -> np.ndarray:
        """Scores in [0, 1] of windows whose last frame has been stepped."""
        logit = self._rows(state[0], self.head_w)[:, 0] + self.head_b
        return _expit(logit.astype(np.float64))

    def score_windows(self, x: np.ndarray) -> np.ndarray:
        state = self.init_state(x.shape[0])
        for i in range(x.shape[1]):
            state = self.step(state, x[:, i])
        return self.finish(state)


class OnnxScorer(WindowScorer):
    """An exported window model (`kws export --format onnx`: model_window.onnx or its _int8 twin) in
    onnxruntime. Its input "logmel" [B, 98, F] is the RAW log-mel (normalization is folded into the
    graph); its output "score" [B] is already a probability (an output named like a logit is passed
    through a sigmoid)."""

    name = "onnx"
    batch_invariant = False  # kernels may change with the batch size: score one window per call
    normalized_input = False

    def __init__(self, path: str | os.PathLike) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:  # pragma: no cover - onnxruntime is a dependency
            raise BundleError(f"{path}: onnxruntime is not installed ({e}); `pip install onnxruntime`") from None
        p = Path(path)
        if p.is_dir():
            p = p / "model_window.onnx"
        self.path = p
        if not p.is_file():
            raise BundleError(f"{p}: no such ONNX model; export one with `kws export BUNDLE --format onnx --out DIR`")
        opts = ort.SessionOptions()
        # one thread: the detector is meant to use a sliver of one core; threads cost more than they save here
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(p), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise BundleError(f"{p}: onnxruntime cannot load this model ({str(e)[:200]}); re-export it") from None
        inp = self.session.get_inputs()
        if len(inp) != 1 or len(inp[0].shape) != 3:
            raise BundleError(f"{p}: not a window model (expected one input [B, T, F], got "
                              f"{[(i.name, i.shape) for i in inp]}); pass model_window.onnx, not model_step.onnx")
        self.input_name = inp[0].name
        out = self.session.get_outputs()[0]
        self.output_name = out.name
        self.is_logit = "logit" in out.name.lower()
        self.name = "onnx-int8" if "int8" in p.name else "onnx"

    def score_windows(self, x: np.ndarray) -> np.ndarray:
        y = self.session.run([self.output_name], {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]
        y = np.asarray(y, dtype=np.float64).reshape(x.shape[0], -1)[:, -1]
        return _expit(y) if self.is_logit else y


class TorchScorer(WindowScorer):
    """The bundle's torch model (fallback when numpy cannot run the model kind)."""

    name = "torch"
    batch_invariant = False

    def __init__(self, bundle: Any) -> None:
        import torch

        self._torch = torch
        self.model = bundle.torch_model()

    def score_windows(self, x: np.ndarray) -> np.ndarray:
        with self._torch.no_grad():
            logit = self.model(self._torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        return _expit(logit.double().numpy().reshape(-1))


def onnx_beside(bundle: Any) -> Path | None:
    """The float window model of an ONNX export of THIS bundle next to it: a folder `onnx`,
    `STEM_onnx` or `STEM-onnx` beside the bundle whose export.json names the bundle and has its
    normalization and thresholds, so a stale export of another model is never picked up."""
    p = Path(bundle.path)
    for d in (p.parent / "onnx", p.parent / f"{p.stem}_onnx", p.parent / f"{p.stem}-onnx"):
        info_path, model = d / "export.json", d / "model_window.onnx"
        if not (info_path.is_file() and model.is_file()):
            continue
        try:
            info = json.loads(info_path.read_text())
            # the export must name this bundle file AND match its normalization and thresholds
            # (a bundle retrained in place after the export has new ones)
            same = info.get("bundle") == str(p.resolve()) and (
                np.allclose(info["normalization"]["mean"], bundle.mean, atol=1e-6)
                and np.allclose(info["normalization"]["std"], bundle.std, atol=1e-6)
                and {k: float(v) for k, v in info["thresholds"].items()}
                == {k: float(v) for k, v in bundle.thresholds.items()})
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if same and info.get("keyword") == bundle.keyword:
            return model
    return None


def make_scorer(bundle: Any, backend: str = "auto", onnx_model: str | os.PathLike | None = None) -> WindowScorer:
    """Pick the backend. auto: the given ONNX model, else an export of this bundle beside it
    (see `onnx_beside`), else numpy; torch only when asked or as a last resort."""
    if backend not in ("auto", "numpy", "onnx", "torch"):
        raise ValueError(f"backend must be auto, numpy, onnx or torch, got {backend!r}")
    if backend == "auto" and onnx_model is None:
        onnx_model = onnx_beside(bundle)
    if backend == "onnx" or (backend == "auto" and onnx_model is not None):
        path = onnx_model if onnx_model is not None else onnx_beside(bundle)
        if path is None:
            raise BundleError(f"{bundle.path}: no ONNX model given or found beside the bundle; "
                              "export one with `kws export BUNDLE --format onnx --out DIR`")
        return OnnxScorer(path)
    if backend == "torch":
        return TorchScorer(bundle)
    try:
        return NumpyScorer(bundle.model_kind, bundle.hparams, bundle.weights)
    except (KeyError, ValueError) as e:
        if backend == "numpy":
            raise BundleError(f"{bundle.path}: the numpy backend cannot run this model ({e})") from None
        return TorchScorer(bundle)


# ---------------------------------------------------------------------------------- resampling
class StreamingResampler:
    """Polyphase FIR resampling in chunks, the same filter and alignment as
    `scipy.signal.resample_poly` (Kaiser window, beta 5, 10 zero crossings per side), so the
    streamed output equals the batch one (to float rounding) except for the last few samples, which
    `flush()` completes. Any chunking gives the same output."""

    def __init__(self, sr_in: int, sr_out: int) -> None:
        from scipy.signal import firwin

        if isinstance(sr_in, bool) or int(sr_in) != sr_in or int(sr_out) != sr_out or sr_in <= 0 or sr_out <= 0:
            raise AudioError(f"cannot resample {sr_in} Hz -> {sr_out} Hz: sample rates must be positive integers")
        g = math.gcd(int(sr_in), int(sr_out))
        self.up, self.down = int(sr_out) // g, int(sr_in) // g
        if max(self.up, self.down) > 2000:
            raise AudioError(f"cannot stream-resample {sr_in} Hz -> {sr_out} Hz (ratio {self.up}/{self.down} "
                             f"is too fine-grained); convert the audio first, e.g. `sox in.wav -r {sr_out} out.wav`")
        max_rate = max(self.up, self.down)
        half = 10 * max_rate
        h = firwin(2 * half + 1, 1.0 / max_rate, window=("kaiser", 5.0)) * self.up
        self.half = half
        # phase p taps: h[p], h[p+up], ...; output n uses upsampled index m = n*down + half
        self.n_taps = -(-len(h) // self.up)
        hp = np.zeros((self.up, self.n_taps), dtype=np.float64)
        for p in range(self.up):
            taps = h[p::self.up]
            hp[p, :len(taps)] = taps
        self.phases = hp
        self.reset()

    def reset(self) -> None:
        self._buf = np.zeros(0, dtype=np.float64)
        self._buf_start = 0  # input index of _buf[0]
        self._n_in = 0
        self._n_out = 0

    def _emit(self, n_available: int, final: bool) -> np.ndarray:
        # output n needs inputs i = base - j for taps j, with m = n*down + half, base = m // up, phase m % up
        if final:
            n_end = -(-self._n_in * self.up // self.down)  # resample_poly's output length
        else:  # every input output n reaches (up to floor(m / up)) must have arrived
            n_end = ((n_available - 1) * self.up - self.half) // self.down + 1 if n_available else 0
        outs = []
        # bounded pieces keep the [n, taps] gather small even for long blocks at 44.1/48 kHz
        for a in range(self._n_out, n_end, 8192):
            n = np.arange(a, min(a + 8192, n_end))
            m = n * self.down + self.half
            idx = (m // self.up)[:, None] - np.arange(self.n_taps)[None, :]
            valid = (idx >= 0) & (idx < self._n_in)
            vals = np.where(valid, self._buf[np.clip(idx - self._buf_start, 0, len(self._buf) - 1)], 0.0)
            outs.append(np.einsum("nt,nt->n", vals, self.phases[m % self.up]).astype(np.float32))
        self._n_out = max(self._n_out, n_end)
        # keep only the inputs that future outputs can still reach
        keep_from = max((self._n_out * self.down + self.half) // self.up - self.n_taps + 1, self._buf_start)
        if keep_from > self._buf_start:
            self._buf = self._buf[keep_from - self._buf_start:]
            self._buf_start = keep_from
        return np.concatenate(outs) if outs else np.zeros(0, dtype=np.float32)

    def push(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        self._buf = np.concatenate([self._buf, x])
        self._n_in += x.size
        return self._emit(self._n_in, final=False)

    def flush(self) -> np.ndarray:
        return self._emit(self._n_in, final=True)


# ---------------------------------------------------------------------------------- thresholds
def resolve_threshold(bundle: Any, threshold: float | None = None, fpr: float | None = None,
                      sensitivity: float | None = None) -> float:
    """The score threshold: explicit `threshold` wins; else `sensitivity` in [0, 1] maps between the
    bundle's calibrated thresholds in logit space (0.5 = the 3%-FPR threshold, 1.0 = the 5%-FPR one,
    0.0 = as far above the 3% one as the 5% one is below it); else the threshold for `fpr`
    (default 0.03)."""
    if threshold is not None:
        t = float(threshold)
        if not 0.0 <= t <= 1.0 or math.isnan(t):
            raise KwsError(f"threshold must be in [0, 1], got {threshold}")
        return t
    if sensitivity is not None:
        s = float(sensitivity)
        if not 0.0 <= s <= 1.0 or math.isnan(s):
            raise KwsError(f"sensitivity must be in [0, 1], got {sensitivity}")

        def logit(p: float) -> float:
            p = min(max(p, 1e-6), 1 - 1e-6)
            return math.log(p / (1 - p))

        l3, l5 = logit(bundle.threshold(0.03)), logit(bundle.threshold(0.05))
        d = max(l3 - l5, 0.5)  # at least half a logit per half-range so the knob always does something
        lt = l3 - (s - 0.5) * 2.0 * d
        return 1.0 / (1.0 + math.exp(-lt))
    return float(bundle.threshold(0.03 if fpr is None else fpr))


def rising_edges(times: np.ndarray, scores: np.ndarray, threshold: float,
                 refractory_seconds: float = DEFAULT_REFRACTORY_SECONDS, prev_score: float = -math.inf,
                 last_fire: float = -math.inf) -> list[int]:
    """Indices where a detection fires: the score crosses `threshold` upward (from below it at the
    previous hop) and at least `refractory_seconds` passed since the last detection. The detector
    and the benchmark's threshold sweep share this rule."""
    s = np.asarray(scores, dtype=np.float64)
    above = s >= threshold
    prev = np.concatenate([[prev_score >= threshold], above[:-1]]) if s.size else above
    cand = np.flatnonzero(above & ~prev)
    out = []
    for i in cand:
        if times[i] - last_fire >= refractory_seconds:
            out.append(int(i))
            last_fire = float(times[i])
    return out


# ---------------------------------------------------------------------------------- detector
class Detector:
    """Streaming detector for one bundle. Feed chunks of any size (int16 or float32 samples at the
    bundle's sample rate, or at `input_rate`, which is resampled in a streaming-safe way)."""

    def __init__(self, bundle: Any, threshold: float | None = None, fpr: float | None = None,
                 sensitivity: float | None = None, hop_seconds: float = DEFAULT_HOP_SECONDS,
                 smoothing: int = DEFAULT_SMOOTHING, refractory_seconds: float = DEFAULT_REFRACTORY_SECONDS,
                 backend: str = "auto", onnx_model: str | os.PathLike | None = None,
                 input_rate: int | None = None) -> None:
        from kws.bundle import Bundle, load_bundle
        from kws.features import StreamingFeaturizer

        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(Path(bundle))
        b = self.bundle
        self.keyword = b.keyword
        self.config = cfg = b.feature_config
        self.sample_rate = cfg.sample_rate
        self.threshold = resolve_threshold(b, threshold, fpr, sensitivity)
        self.window_frames = cfg.window_frames
        self.hop_frames = int(round(hop_seconds * cfg.sample_rate / cfg.hop_length))
        if self.hop_frames < 1:
            raise KwsError(f"hop_seconds={hop_seconds} is shorter than one feature frame "
                           f"({cfg.hop_length / cfg.sample_rate:g} s)")
        if int(smoothing) < 1:
            raise KwsError(f"smoothing must be >= 1 hop, got {smoothing}")
        self.smoothing = int(smoothing)
        self.refractory_seconds = float(refractory_seconds)
        self.scorer = make_scorer(b, backend, onnx_model)
        self._featurizer = StreamingFeaturizer(cfg)
        self._mean = np.asarray(b.mean, dtype=np.float32)
        self._inv_std = (1.0 / np.asarray(b.std, dtype=np.float64)).astype(np.float32)
        self.input_rate = int(input_rate) if input_rate else cfg.sample_rate
        self._resampler = (StreamingResampler(self.input_rate, cfg.sample_rate)
                           if self.input_rate != cfg.sample_rate else None)
        # samples fed to the featurizer per canonical block: the first window, then one hop
        self._first_block = cfg.frame_length + (self.window_frames - 1) * cfg.hop_length
        self._hop_block = self.hop_frames * cfg.hop_length
        self.reset()

    # -- state
    def reset(self) -> None:
        """Forget all audio: the next chunk starts a new stream at time 0."""
        self._featurizer.reset()
        if self._resampler is not None:
            self._resampler.reset()
        self._pending = np.zeros(0, dtype=np.float32)
        self._frames = np.zeros((0, 0), dtype=np.float32)  # projected frames, last window's worth
        # staggered windows: window k starts at frame k * hop_frames and lives in slot k % n_slots
        self._n_slots = -(-self.window_frames // self.hop_frames)
        self._slots = self.scorer.init_state(self._n_slots) if self.scorer.stepwise else None
        self._n_frames = 0
        self._recent: deque[float] = deque(maxlen=self.smoothing)
        self._prev_smoothed = -math.inf
        self._last_fire = -math.inf
        self.last_score = 0.0
        self.samples_seen = 0
        self.windows_scored = 0

    @property
    def hop_seconds(self) -> float:
        return self._hop_block / self.sample_rate

    def window_end_time(self, n_frames: int) -> float:
        """Stream time (s) at the end of the window whose last frame is frame n_frames - 1."""
        c = self.config
        return ((n_frames - 1) * c.hop_length + c.frame_length) / c.sample_rate

    # -- processing
    def _to_model_rate(self, chunk: np.ndarray) -> np.ndarray:
        from kws.audio import to_float32

        x = to_float32(np.asarray(chunk))
        if not np.isfinite(x).all():
            raise AudioError("audio chunk contains NaN or infinite samples")
        if self._resampler is not None:
            x = self._resampler.push(x)
        return np.ascontiguousarray(x, dtype=np.float32)

    def step(self, chunk: np.ndarray) -> HopScores:
        """Feed a chunk; return the scores of every hop it completed and the detections."""
        x = self._to_model_rate(chunk)
        return self._advance(x)

    def flush(self, tail_seconds: float = FILE_TAIL_SECONDS) -> HopScores:
        """End of a finite stream: complete the resampler and append `tail_seconds` of silence so
        a keyword at the very end is still scored in full windows."""
        parts = []
        if self._resampler is not None:
            parts.append(self._resampler.flush())
        n_tail = int(round(tail_seconds * self.sample_rate))
        have = self._pending.size + sum(p.size for p in parts)
        if self._n_frames == 0:  # a clip shorter than the window is still scored once
            n_tail = max(n_tail, self._first_block - have)
        parts.append(np.zeros(n_tail, dtype=np.float32))
        return self._advance(np.concatenate(parts))

    def _advance(self, x: np.ndarray) -> HopScores:
        self.samples_seen += x.size
        buf = np.concatenate([self._pending, x]) if self._pending.size else x
        blocks = []
        pos = 0
        while True:
            need = self._first_block if (self._n_frames == 0 and not blocks) else self._hop_block
            if buf.size - pos < need:
                break
            feats = self._featurizer.push(buf[pos:pos + need])
            pos += need
            blocks.append(feats)
        self._pending = np.array(buf[pos:], dtype=np.float32)
        if not blocks:
            return HopScores(np.zeros(0), np.zeros(0), np.zeros(0), [])
        feats = np.concatenate(blocks)
        if self.scorer.normalized_input:
            feats = (feats - self._mean) * self._inv_std
        proj = self.scorer.project(feats)
        first_new = self._n_frames  # global index of proj[0]
        self._n_frames += proj.shape[0]
        # windows end after each canonical block: frame counts window_frames, +hop, +hop, ...
        ends = []
        n = first_new
        for blk in blocks:
            n += blk.shape[0]
            ends.append(n)
        raw = self._score_staggered(proj, first_new) if self._slots is not None else self._score_windows(proj, ends)
        self.windows_scored += len(ends)
        times = np.array([self.window_end_time(e) for e in ends])
        smoothed = np.empty(len(raw))
        for i, r in enumerate(raw):
            self._recent.append(float(r))
            smoothed[i] = sum(self._recent) / len(self._recent)
        fired = rising_edges(times, smoothed, self.threshold, self.refractory_seconds,
                             prev_score=self._prev_smoothed, last_fire=self._last_fire)
        dets = [Detection(float(times[i]), float(smoothed[i]), self.keyword) for i in fired]
        if dets:
            self._last_fire = dets[-1].time_s
        self._prev_smoothed = float(smoothed[-1])
        self.last_score = float(smoothed[-1])
        return HopScores(times, raw, smoothed, dets)

    def _score_staggered(self, proj: np.ndarray, first_new: int) -> np.ndarray:
        """Advance the windows in flight by each new frame; return the scores of those completed."""
        hop, wf, slots = self.hop_frames, self.window_frames, self._n_slots
        out = []
        for i in range(proj.shape[0]):
            f = first_new + i
            if f % hop == 0:  # window f // hop starts here, from the zero state
                for s in self._slots:
                    s[(f // hop) % slots] = 0.0
            self._slots = self.scorer.step(self._slots, proj[i:i + 1])
            done = f + 1 - wf
            if done >= 0 and done % hop == 0:
                k = (done // hop) % slots
                out.append(float(self.scorer.finish(tuple(s[k:k + 1] for s in self._slots))[0]))
        return np.asarray(out, dtype=np.float64)

    def _score_windows(self, proj: np.ndarray, ends: list[int]) -> np.ndarray:
        """Score each completed window from scratch over the frames kept from the last window."""
        frames = proj if self._frames.size == 0 else np.concatenate([self._frames, proj])
        start_global = self._n_frames - frames.shape[0]  # global index of frames[0]
        starts = [e - self.window_frames - start_global for e in ends]
        win_view = np.lib.stride_tricks.sliding_window_view(frames, self.window_frames, axis=0)
        # sliding_window_view puts the window axis last: [N, P, T] -> [B, T, P]
        windows = np.ascontiguousarray(win_view[starts].transpose(0, 2, 1))
        if self.scorer.batch_invariant:
            raw = np.asarray(self.scorer.score_windows(windows), dtype=np.float64)
        else:
            raw = np.array([float(self.scorer.score_windows(windows[i:i + 1])[0]) for i in range(len(starts))])
        self._frames = np.ascontiguousarray(frames[-self.window_frames:])
        return raw

    def process(self, chunk: np.ndarray) -> list[Detection]:
        """Feed a chunk; return the detections it completed."""
        return self.step(chunk).detections

    def predict(self, chunk: np.ndarray) -> dict[str, float]:
        """openWakeWord-style: feed a chunk, return {keyword: latest smoothed score}."""
        self.step(chunk)
        return {self.keyword: self.last_score}


# ---------------------------------------------------------------------------------- files
def _open_audio(path: Path):
    """soundfile handle for a readable, non-empty audio file; AudioError naming the file otherwise."""
    import soundfile as sf

    if not path.exists():
        raise AudioError(f"{path}: no such audio file; check the path.")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file; pass the WAV/FLAC/OGG files inside it.")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: the file is empty (0 bytes); re-record or re-export it.")
    try:
        f = sf.SoundFile(str(path))
    except Exception as e:
        msg = str(e).strip().splitlines()[-1][:200] if str(e).strip() else type(e).__name__
        raise AudioError(f"{path}: not a readable audio file ({msg}); convert it to WAV, e.g. "
                         f"`ffmpeg -i {path} -ac 1 -ar 16000 out.wav`.") from None
    if f.frames <= 0:
        f.close()
        raise AudioError(f"{path}: holds no audio samples; re-record or re-export it.")
    return f


def detect_file(detector: Detector, path: str | os.PathLike, block_seconds: float = FILE_BLOCK_SECONDS,
                trace: bool = False) -> dict[str, Any]:
    """Run the detector over one file (streamed in blocks, any length); returns a JSON-able result.
    With `trace`, the result also holds the score arrays (times, raw, smoothed) for benchmarks."""
    path = Path(path)
    f = _open_audio(path)
    with f:
        sr, duration = f.samplerate, f.frames / f.samplerate
        det = detector
        if sr != det.input_rate:
            det = Detector(det.bundle, threshold=det.threshold, hop_seconds=det.hop_seconds,
                           smoothing=det.smoothing, refractory_seconds=det.refractory_seconds,
                           backend="auto", input_rate=sr)
            det.scorer = detector.scorer
        det.reset()
        dets: list[Detection] = []
        parts: list[HopScores] = []
        block = max(1, int(block_seconds * sr))
        read = 0
        try:
            while read < f.frames:
                data = f.read(min(block, f.frames - read), dtype="float32", always_2d=True)
                if data.shape[0] == 0:
                    break
                read += data.shape[0]
                x = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
                if not np.isfinite(x).all():
                    raise AudioError(f"{path}: contains NaN or infinite samples (a broken float file); re-export it.")
                hs = det.step(np.clip(x, -1.0, 1.0))
                dets += hs.detections
                if trace:
                    parts.append(hs)
        except AudioError:
            raise
        except Exception as e:
            raise AudioError(f"{path}: the audio data is corrupt or truncated after {read / sr:.1f} s "
                             f"({str(e)[:200]}); re-export it.") from None
        hs = det.flush()
        dets += hs.detections
        if trace:
            parts.append(hs)
    out: dict[str, Any] = {
        "file": str(path), "keyword": det.keyword, "duration_s": round(duration, 3),
        "threshold": round(det.threshold, 6),
        "detections": [{"time_s": round(min(d.time_s, duration), 3), "score": round(d.score, 4)} for d in dets],
    }
    if trace:
        out["trace"] = {k: np.concatenate([getattr(p, k) for p in parts]) for k in ("times", "raw", "smoothed")}
    return out


def format_detections(res: dict[str, Any]) -> str:
    """`detect_file`'s result as `kws detect` prints it: a summary line, then one line per detection."""
    n = len(res["detections"])
    lines = [f"{res['file']}: {n} detection{'s' if n != 1 else ''} of '{res['keyword']}' in "
             f"{res['duration_s']:.1f} s (threshold {res['threshold']:.3f})"]
    lines += [f"  {d['time_s']:9.2f} s  score {d['score']:.3f}" for d in res["detections"]]
    return "\n".join(lines)


def detect_files(bundle_path: str | os.PathLike, files: Sequence[str | os.PathLike], threshold: float | None = None,
                 fpr: float | None = 0.03, as_json: bool = False, sensitivity: float | None = None,
                 backend: str = "auto", onnx_model: str | os.PathLike | None = None) -> int:
    """`kws detect`: print the detections of each file (text, or one JSON object per file).
    A bad file gets an error line naming it; the others still run; the exit code is then 2."""
    detector = Detector(Path(bundle_path), threshold=threshold, fpr=fpr, sensitivity=sensitivity,
                        backend=backend, onnx_model=onnx_model)
    failed = 0
    for name in files:
        try:
            res = detect_file(detector, name)
        except KwsError as e:
            failed += 1
            print(f"kws: error: {e}", file=sys.stderr, flush=True)
            if as_json:
                print(json.dumps({"file": str(name), "error": str(e)}), flush=True)
            continue
        print(json.dumps(res) if as_json else format_detections(res), flush=True)
    if failed:
        print(f"kws: {failed} of {len(files)} file(s) could not be processed", file=sys.stderr)
        return 2
    return 0


# ---------------------------------------------------------------------------------- composed streams
@dataclass
class ComposedStream:
    audio: np.ndarray  # float32 16 kHz
    keywords: list[tuple[float, float]]  # (start, end) seconds of each inserted keyword
    sample_rate: int = 16000


def compose_stream(background: Iterable[np.ndarray], keywords: Sequence[np.ndarray], seconds: float,
                   rng: np.random.Generator, sample_rate: int = 16000, pause: tuple[float, float] = (0.1, 1.5),
                   min_keyword_gap: float = 4.0, keyword_gain_db: tuple[float, float] = (-6.0, 0.0)
                   ) -> ComposedStream:
    """Lay background clips (speech without the keyword, noise) end to end with random pauses
    until `seconds`, and insert the keyword clips at random spacing of at least `min_keyword_gap`
    seconds (more than the refractory period), each in a pause of its own (never over speech)."""
    n_total = int(seconds * sample_rate)
    out = np.zeros(n_total, dtype=np.float32)
    kw_list = list(keywords)
    # keyword slots first: evenly spread with jitter, at least min_keyword_gap apart
    slots: list[tuple[int, int]] = []
    if kw_list:
        span = n_total / len(kw_list)
        if span < (min_keyword_gap + 1.5) * sample_rate:
            raise ValueError(f"{len(kw_list)} keywords do not fit {seconds:.0f} s with {min_keyword_gap} s gaps")
        for i, k in enumerate(kw_list):
            lo = int(i * span + min_keyword_gap * sample_rate / 2)
            hi = int((i + 1) * span - min_keyword_gap * sample_rate / 2 - len(k))
            s = int(rng.integers(lo, max(lo + 1, hi)))
            slots.append((s, s + len(k)))
    # background fills the gaps between keyword slots (with a margin so keywords stand alone)
    margin = int(0.3 * sample_rate)
    free = []
    cur = 0
    for s, e in slots:
        free.append((cur, s - margin))
        cur = e + margin
    free.append((cur, n_total))
    bg = iter(background)
    for a, b in free:
        pos = a + int(rng.uniform(*pause) * sample_rate)
        while pos < b:
            try:
                clip = next(bg)
            except StopIteration:
                break
            clip = clip[: b - pos]
            out[pos:pos + len(clip)] += clip
            pos += len(clip) + int(rng.uniform(*pause) * sample_rate)
    spans = []
    for (s, e), k in zip(slots, kw_list):
        gain = 10 ** (rng.uniform(*keyword_gain_db) / 20)
        out[s:e] += gain * k
        spans.append((s / sample_rate, e / sample_rate))
    np.clip(out, -1.0, 1.0, out=out)
    return ComposedStream(out, spans, sample_rate)


def match_detections(times: Sequence[float], spans: Sequence[tuple[float, float]],
                     after_end: float = ACCEPT_AFTER_END) -> tuple[np.ndarray, np.ndarray]:
    """Score detections against the keywords' (start, end) seconds, spans sorted by start
    (DESIGN.md section 6): a detection finds the last keyword starting at or before it when it comes
    no later than that keyword's end + `after_end`; any other detection is a false alarm.
    Returns (found: one bool per span, hit: one bool per detection)."""
    d = np.asarray(times, dtype=np.float64).reshape(-1)
    starts = np.array([a for a, _ in spans], dtype=np.float64)
    ends = np.array([b for _, b in spans], dtype=np.float64) + after_end
    if not len(starts):
        return np.zeros(0, bool), np.zeros(len(d), bool)
    k = np.searchsorted(starts, d, side="right") - 1
    hit = (k >= 0) & (d <= ends[np.maximum(k, 0)])
    found = np.zeros(len(starts), bool)
    found[k[hit]] = True
    return found, hit


def demo_stream(bundle_path: str | os.PathLike, data_dir: str | os.PathLike, out_wav: str | os.PathLike,
                n_keywords: int = 6, seed: int = 0) -> tuple[Path, list[tuple[float, float]]]:
    """A demo recording from a dataset's TEST split (held-out voices): keyword clips between other
    words and close negatives; returns the WAV path and the keywords' (start, end) seconds."""
    from kws.audio import load_audio, save_wav
    from kws.data.manifest import read_manifest

    data_dir = Path(data_dir)
    recs = [r for r in read_manifest(data_dir / "manifest.jsonl") if r.split == "test"]
    rng = np.random.default_rng(seed)
    pos = [r for r in recs if r.kind == "positive"]
    neg = [r for r in recs if r.kind in ("negative", "close_negative")]
    if not pos:
        raise KwsError(f"{data_dir}: the test split has no keyword clips to build a demo recording from")
    pick_p = rng.choice(len(pos), size=min(n_keywords, len(pos)), replace=False)
    pick_n = rng.choice(len(neg), size=min(4 * n_keywords, len(neg)), replace=False) if neg else []

    def trimmed(rec) -> np.ndarray:
        x = load_audio(data_dir / rec.path)
        nz = np.flatnonzero(np.abs(x) > 1e-3)
        return x[nz[0]:nz[-1] + 1] if nz.size else x

    kws_audio = [trimmed(pos[i]) for i in pick_p]
    bg = [trimmed(neg[i]) for i in pick_n]
    seconds = max(6.0 * len(kws_audio), sum(len(b) for b in bg) / 16000 * 1.6 + 6.0)
    st = compose_stream(bg, kws_audio, seconds, rng)
    save_wav(out_wav, st.audio)
    return Path(out_wav), [(float(a), float(b)) for a, b in st.keywords]
