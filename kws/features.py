"""The featurizer (DESIGN.md section 2): log-mel or MFCC frames of 16 kHz mono audio.

One spec, three implementations that are tested against each other (and against librosa):
  - `featurize` (numpy, inference and the dataset cache),
  - `featurize_torch` (torch, batched, for training; torch is imported only inside it),
  - `StreamingFeaturizer` (numpy, chunks of any size, emits exactly the frames of `featurize`).

Spec (defaults = the paper's): frame t is samples [hop*t, hop*t + frame_length) with no centring or
padding, so n_frames(n) = 0 if n < frame_length else 1 + (n - frame_length) // hop (98 for 1 s);
periodic Hann window of frame_length, zero-padded to an n_fft-point real FFT, power |X|^2, HTK-mel
triangular filterbank (no area normalization) from fmin to fmax, log(mel + log_floor); for MFCC the
orthonormal DCT-II of the log-mels, first n_mfcc coefficients. Optional (`mean_norm_seconds` > 0):
each output coefficient minus its running mean m_n = m_{n-1} + r_n (x_n - m_{n-1}) over the
sounding frames n = 0, 1, ... with r_n = max(1 / (n + 1), k), k = 1 - exp(-hop / (mean_norm_seconds *
sample_rate)) (the plain average at first, then an exponential one), in float64, carried across
chunks: a log-domain automatic gain control that removes a stationary level and channel response
(a quiet or far microphone, another microphone's EQ) the way PCEN does, causally, so the streaming
featurizer and the C library run it frame by frame. A frame holding 5 ms of exact zeros (digital
silence) holds the mean, and is 0 before the first sounding frame. Optional (`agc_seconds` > 0): an
input gain control between the filterbank and the floor, log(g_t mel + log_floor), g_t a scalar per
frame from a causal estimate of the speech level (`_GainControl`): speech of any level reaches
agc_target_dbfs, so the floor sits the same distance below it however quiet the microphone, and
before anyone speaks g_t is agc_start_gain_db (-20 dB). Output is float32; the numpy
implementations compute the FFT and mel in float64 (see _FrameEngine), the torch one in the input's
dtype (float32 for training; pass float64 for reference accuracy).
Normalization (per-coefficient mean/std) is NOT done here; it lives in the model bundle.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft

# Frames featurized per block: bounds the temporary memory for long inputs (hours of audio) and
# keeps one block's buffers (~0.8 MB) in cache; 128 measured fastest (64..1024 tried), and a 1 s
# clip (98 frames) is one block.
_BLOCK_FRAMES = 128


# the gain control's fixed parts (FeatureConfig.agc_seconds; see the module doc)
AGC_NOISE_RISE_DB_PER_S = 3.0  # how fast the noise-floor estimate may climb (it falls at once)
AGC_SPEECH_DB = (10.0, 20.0)  # a frame this far above the noise floor counts 0 .. 1 as speech
AGC_PRIOR_WEIGHT = 0.01  # frames' worth of weight the target level starts with
AGC_GAIN_DB = (-20.0, 50.0)  # the gain's range
_DB = np.log(10.0) / 10.0  # dB of power in natural-log units


@dataclass(frozen=True)
class FeatureConfig:
    """The featurizer's parameters; part of every dataset and model bundle (as `to_dict()`)."""

    sample_rate: int = 16000
    frame_length: int = 400
    hop_length: int = 160
    n_fft: int = 512
    n_mels: int = 32
    fmin: float = 20.0
    fmax: float = 8000.0
    mel_scale: str = "htk"
    log_floor: float = 1e-6
    kind: str = "logmel"
    n_mfcc: int = 32
    window_seconds: float = 1.0
    # time constant of the running per-coefficient mean subtracted from every frame (0 = off; see
    # the module doc). Left out of to_dict() when off, so bundles and datasets of before keep theirs
    mean_norm_seconds: float = 0.0
    # weight kept of each frame's level, the mean of its log-mels (1 = all of it, 0 = none): the
    # frame minus (1 - level_weight) times that mean, so a gain (a quiet or loud speaker, a far
    # microphone) moves the features level_weight times as much while the spectral shape and the
    # contour of loudness stay. Linear per frame: it is folded into the projection (_projection),
    # so the numpy, torch, streaming and C featurizers all apply it. Left out of to_dict() at 1.
    level_weight: float = 1.0
    # time constant of the input gain control (see the module doc; 0 = off): every frame's mel
    # energies are scaled so the running speech level sits at agc_target_dbfs, before log_floor is
    # added, so the floor follows the input level. Both left out of to_dict() when off
    agc_seconds: float = 0.0
    agc_target_dbfs: float = -30.0
    # the gain before anyone has spoken: a stream's (a clip's) noise before the first speech sits
    # this much lower, as it will once speech louder than the target has set the gain. With 0 dB
    # instead, the real athena clips recorded louder than -30 dBFS lost 12 points against the same
    # clips brought to -30 dBFS offline (80 vs 92% at 3% FPR, seed 0; BENCHMARKS.md text_only_agc)
    agc_start_gain_db: float = -20.0

    def __post_init__(self) -> None:
        def positive_int(name: str) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise ValueError(f"FeatureConfig.{name} must be a positive integer, got {v!r}")
            object.__setattr__(self, name, int(v))

        def number(name: str, ok, what: str) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                    or not np.isfinite(v) or not ok(v):
                raise ValueError(f"FeatureConfig.{name} must be {what}, got {v!r}")
            object.__setattr__(self, name, float(v))

        for name in ("sample_rate", "frame_length", "hop_length", "n_fft", "n_mels", "n_mfcc"):
            positive_int(name)
        for name in ("fmax", "log_floor", "window_seconds"):
            number(name, lambda v: v > 0, "a positive number")
        number("fmin", lambda v: v >= 0, "a number >= 0")
        if self.frame_length > self.n_fft:
            raise ValueError(f"FeatureConfig.frame_length ({self.frame_length}) must be <= n_fft ({self.n_fft})")
        if not self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(f"FeatureConfig needs fmin < fmax <= sample_rate/2, got fmin={self.fmin}, "
                             f"fmax={self.fmax}, sample_rate={self.sample_rate}")
        if self.mel_scale != "htk":
            raise ValueError(f"FeatureConfig.mel_scale must be 'htk', got {self.mel_scale!r}")
        if self.kind not in ("logmel", "mfcc"):
            raise ValueError(f"FeatureConfig.kind must be 'logmel' or 'mfcc', got {self.kind!r}")
        if self.kind == "mfcc" and self.n_mfcc > self.n_mels:
            raise ValueError(f"FeatureConfig.n_mfcc ({self.n_mfcc}) must be <= n_mels ({self.n_mels})")
        number("mean_norm_seconds", lambda v: v >= 0, "a number >= 0 (0 = off)")
        number("level_weight", lambda v: 0 <= v <= 1, "a number in [0, 1] (1 = off)")
        number("agc_seconds", lambda v: v >= 0, "a number >= 0 (0 = off)")
        number("agc_target_dbfs", lambda v: -90 <= v <= 0, "a number in [-90, 0] dBFS")
        number("agc_start_gain_db", lambda v: AGC_GAIN_DB[0] <= v <= AGC_GAIN_DB[1],
               f"a number in {list(AGC_GAIN_DB)} dB")
        if self.window_samples < self.frame_length:
            raise ValueError(f"FeatureConfig.window_seconds={self.window_seconds} is shorter than one frame")

    @property
    def n_features(self) -> int:
        return self.n_mfcc if self.kind == "mfcc" else self.n_mels

    @property
    def window_samples(self) -> int:
        """Samples in the model window (16000 for 1 s at 16 kHz)."""
        return int(round(self.window_seconds * self.sample_rate))

    @property
    def window_frames(self) -> int:
        """Frames in the model window (98 for the defaults)."""
        return self.n_frames(self.window_samples)

    def n_frames(self, n_samples: int) -> int:
        n = int(n_samples)
        return 0 if n < self.frame_length else 1 + (n - self.frame_length) // self.hop_length

    def _rate(self, seconds: float) -> float:
        """Per-frame rate k = 1 - exp(-hop / (seconds * sample_rate)) of a running average with that
        time constant (0 when seconds is 0: off)."""
        if seconds == 0:
            return 0.0
        return float(-np.expm1(-self.hop_length / (seconds * self.sample_rate)))

    @property
    def mean_norm_rate(self) -> float:
        """k of the running mean's update (0 when mean normalization is off)."""
        return self._rate(self.mean_norm_seconds)

    @property
    def mean_norm_warmup(self) -> int:
        """Sounding frames averaged plainly (rate 1/(n+1)) before the constant rate takes over."""
        k = self.mean_norm_rate
        return int(np.ceil(1.0 / k)) - 1 if k > 0 else 0

    @property
    def agc_rate(self) -> float:
        """k of the gain control's speech-level update (0 when the gain control is off)."""
        return self._rate(self.agc_seconds)

    @property
    def uses_history(self) -> bool:
        """Whether features carry state across frames (mean normalization, gain control), so a
        training window needs the history `featurize_window` gives it."""
        return bool(self.mean_norm_seconds or self.agc_seconds)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if not d["agc_seconds"]:
            del d["agc_seconds"], d["agc_target_dbfs"], d["agc_start_gain_db"]
        if not d["mean_norm_seconds"]:
            del d["mean_norm_seconds"]
        if d["level_weight"] == 1.0:
            del d["level_weight"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeatureConfig":
        """Rebuild from `to_dict()` output (e.g. a bundle's config.json). Unknown keys and bad
        values raise ValueError; missing keys take the defaults."""
        if not isinstance(d, dict):
            raise ValueError(f"feature config must be a JSON object, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown feature config keys {unknown}; known keys: {sorted(known)}")
        try:
            return cls(**d)
        except TypeError as e:  # e.g. a comparison with a string value
            raise ValueError(f"bad feature config {d}: {e}") from None


# --- the spec's fixed parts: window, filterbank, DCT ----------------------------------------------

def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=16)
def _filterbank_cached(config: FeatureConfig) -> np.ndarray:
    n_bins = config.n_fft // 2 + 1
    fft_freqs = np.linspace(0.0, config.sample_rate / 2, n_bins)
    edges = mel_to_hz(np.linspace(hz_to_mel(config.fmin), hz_to_mel(config.fmax), config.n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]  # [n_mels + 2, n_bins]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    fb = np.maximum(0.0, np.minimum(lower, upper))  # [n_mels, n_bins], peak 1, no area norm
    out = np.ascontiguousarray(fb.T, dtype=np.float64)
    out.flags.writeable = False
    return out


def mel_filterbank(config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """HTK triangular mel filterbank [n_fft//2 + 1, n_mels] float32 (the same construction as
    librosa.filters.mel(htk=True, norm=None))."""
    return _filterbank_cached(config).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _dct_cached(n_mels: int, n_mfcc: int) -> np.ndarray:
    n = np.arange(n_mels)
    k = np.arange(n_mfcc)
    d = np.cos(np.pi * (2 * n[:, None] + 1) * k[None, :] / (2 * n_mels)) * np.sqrt(2.0 / n_mels)
    d[:, 0] = np.sqrt(1.0 / n_mels)
    out = np.ascontiguousarray(d, dtype=np.float64)
    out.flags.writeable = False
    return out


def dct_matrix(n_mels: int, n_mfcc: int) -> np.ndarray:
    """Orthonormal DCT-II as a [n_mels, n_mfcc] matrix: `logmel @ dct_matrix(...)` equals
    scipy.fft.dct(logmel, type=2, norm="ortho")[..., :n_mfcc]."""
    if not 0 < n_mfcc <= n_mels:
        raise ValueError(f"need 0 < n_mfcc <= n_mels, got n_mfcc={n_mfcc}, n_mels={n_mels}")
    return _dct_cached(int(n_mels), int(n_mfcc)).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _window_cached(frame_length: int) -> np.ndarray:
    # periodic Hann (scipy.signal.get_window("hann", N, fftbins=True)), computed in float64
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(frame_length) / frame_length)
    w.flags.writeable = False
    return w


def hann_window(frame_length: int) -> np.ndarray:
    """Periodic Hann window, float32."""
    return _window_cached(int(frame_length)).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _projection(config: FeatureConfig) -> np.ndarray | None:
    """The linear map applied to each frame's log-mels [n_mels, n_features] (float64), or None for
    the identity: the DCT for MFCC, times the level compression when level_weight < 1."""
    n = config.n_mels
    level = None
    if config.level_weight != 1.0:
        level = np.eye(n) - (1.0 - config.level_weight) / n  # x - (1 - w) mean(x)
    if config.kind == "mfcc":
        dct = _dct_cached(n, config.n_mfcc)
        out = dct if level is None else level @ dct  # = the DCT with c0 scaled by level_weight
    elif level is None:
        return None
    else:
        out = level
    out = np.ascontiguousarray(out, dtype=np.float64)
    out.flags.writeable = False
    return out


def feature_projection(config: FeatureConfig) -> np.ndarray | None:
    """`_projection` as float32 for exporters: log-mel frame [n_mels] @ it = the feature frame."""
    p = _projection(config)
    return None if p is None else p.astype(np.float32)


# --- numpy ----------------------------------------------------------------------------------------

def _check_audio(audio: np.ndarray, what: str = "audio") -> np.ndarray:
    a = np.asarray(audio)
    if a.ndim != 1:
        raise ValueError(f"{what} must be 1-D mono samples, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{what} must be float samples in [-1, 1], got dtype {a.dtype}; "
                         "convert PCM with kws.audio.to_float32")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(a).all():
        raise ValueError(f"{what} contains NaN or infinite samples")
    return a


class _FrameEngine:
    """Frames [k, frame_length] float32 -> features [k, F] float32, shared by the batch and streaming
    featurizers so both run the very same arithmetic. Holds the window/filterbank/DCT and a reusable
    zero-padded FFT input buffer.

    The FFT runs in float64: in float32 its round-off is ~1e-7 of a frame's strongest bins, which
    for bands 60+ dB below them (common in real speech) is a 1e-4..1e-3 relative error; float64
    keeps every band exact to well under 1e-5 and still runs at thousands of times real time."""

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self.window = _window_cached(config.frame_length)
        self.fb = _filterbank_cached(config)
        self.proj = _projection(config)
        self.floor = config.log_floor
        self._pad = np.zeros((0, config.n_fft), dtype=np.float64)

    def _buffer(self, k: int) -> np.ndarray:
        if self._pad.shape[0] < k:
            self._pad = np.zeros((k, self.config.n_fft), dtype=np.float64)
        return self._pad[:k]

    def __call__(self, frames: np.ndarray, out: np.ndarray, silent: np.ndarray | None = None,
                 gain: "_GainControl | None" = None) -> None:
        """Features of `frames` into `out`; `silent` (if given) gets `holds_digital_silence(frames)`;
        `gain` (the stream's gain control, if on) scales the mel energies before the floor."""
        k = frames.shape[0]
        if k == 0:
            return
        if silent is not None:
            silent[...] = holds_digital_silence(frames, self.config)
        elif gain is not None:
            silent = holds_digital_silence(frames, self.config)
        fl = self.config.frame_length
        buf = self._buffer(k)
        # window into the zero-padded buffer (columns fl: stay zero), then the real FFT
        np.multiply(frames, self.window, out=buf[:, :fl])
        spec = scipy.fft.rfft(buf, axis=-1)
        power = np.square(spec.real)
        power += np.square(spec.imag)
        mel = power @ self.fb
        if gain is not None:
            gain(mel, silent)
        mel += self.floor
        np.log(mel, out=mel)
        if self.proj is None:
            out[...] = mel
        else:
            np.matmul(mel, self.proj, out=out, casting="same_kind")


def _frame_view(x: np.ndarray, start_frame: int, k: int, config: FeatureConfig) -> np.ndarray:
    """[k, frame_length] strided view (no copy) of the contiguous float32 array x, for frames
    start_frame .. start_frame + k - 1. (np.ndarray over the buffer: a few times cheaper than
    as_strided, which matters for the one-frame streaming pushes.)"""
    assert x.flags.c_contiguous and x.dtype == np.float32
    need = (start_frame + k - 1) * config.hop_length + config.frame_length
    if need > x.shape[0]:
        raise IndexError(f"frame view needs {need} samples, have {x.shape[0]}")
    return np.ndarray((k, config.frame_length), dtype=np.float32, buffer=x,
                      offset=start_frame * config.hop_length * 4, strides=(config.hop_length * 4, 4))


_local = threading.local()


def _engine(config: FeatureConfig) -> _FrameEngine:
    # one engine per thread and config: the engine's scratch buffer must not be shared by threads
    engines = _local.__dict__.setdefault("engines", {})
    e = engines.get(config)
    if e is None:
        if len(engines) >= 8:
            engines.clear()
        e = engines[config] = _FrameEngine(config)
    return e


def featurize(audio: np.ndarray, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Log-mel (or MFCC) features [T, F] float32 of 1-D float audio; T = config.n_frames(len(audio)).
    Audio shorter than one frame gives a [0, F] array."""
    x = _check_audio(audio)
    t = config.n_frames(x.shape[0])
    out = np.empty((t, config.n_features), dtype=np.float32)
    engine = _engine(config)
    silent = np.empty(t, dtype=bool) if config.uses_history else None
    gain = _GainControl(config) if config.agc_seconds else None
    for start in range(0, t, _BLOCK_FRAMES):
        k = min(_BLOCK_FRAMES, t - start)
        engine(_frame_view(x, start, k, config), out[start:start + k],
               None if silent is None else silent[start:start + k], gain)
    if config.mean_norm_seconds:
        _MeanNorm(config)(out, silent)
    return out


# a training window featurized with mean normalization is preceded by this much history (see
# featurize_window), built from its quietest stretch of this length
HISTORY_SECONDS = 0.5
QUIET_STRETCH_SECONDS = 0.1


def featurize_window(audio: np.ndarray, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Features [T, F] of a model window (a dataset clip) the way a stream shows it. The same as
    `featurize` unless mean normalization is on: a stream's running mean then carries the audio
    before the window (the room's noise floor, mostly), while a clip featurized alone would start
    the mean on its own first frame. Measured on real Mycroft clips, a 1 s crop featurized alone
    differs from the same samples inside the stream by 1.56 (amelia) and 0.27 (athena) per log-mel
    on average; preceded by HISTORY_SECONDS of the crop's quietest QUIET_STRETCH_SECONDS (played
    forwards and backwards, so there is no click), by 0.36 and 0.25. The history's frames are dropped."""
    x = _check_audio(audio)
    if not config.uses_history:
        return featurize(x, config)
    hop, seg = config.hop_length, int(round(QUIET_STRETCH_SECONDS * config.sample_rate))
    n_hist = int(round(HISTORY_SECONDS * config.sample_rate / hop)) * hop  # whole hops: frames line up
    if x.shape[0] < seg or n_hist == 0:
        return featurize(x, config)
    energy = np.convolve(np.square(x, dtype=np.float64), np.ones(seg), mode="valid")[::hop]
    start = int(np.argmin(energy)) * hop
    quiet = x[start:start + seg]
    back_and_forth = np.concatenate([quiet, quiet[::-1]])
    history = np.resize(back_and_forth, n_hist)
    return featurize(np.concatenate([history, x]), config)[n_hist // hop:]


def silence_run(config: FeatureConfig) -> int:
    """Exact zeros in a row that mark digital silence: 5 ms (80 samples at 16 kHz). Quiet real noise
    quantized to 16 bits has single zero samples, never 5 ms of them."""
    return max(1, int(round(0.005 * config.sample_rate)))


def holds_digital_silence(frames: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """[k] bool: whether each frame [k, frame_length] holds a run of `silence_run` exact zeros
    (zero padding, a dropout, a muted input; also a frame that straddles the edge of one)."""
    run = silence_run(config)
    c = np.zeros((frames.shape[0], frames.shape[1] + 1), dtype=np.int32)
    np.cumsum(frames == 0, axis=1, out=c[:, 1:])
    return (c[:, run:] - c[:, :-run] == run).any(axis=1)


def agc_constants(config: FeatureConfig) -> dict[str, float]:
    """The gain control's constants in natural-log units of power, as the C library gets them.
    `calibration`: log of the mel sum that white noise of unit variance gives, so a frame's level
    log(sum(mel)) - calibration is its power in dBFS (times _DB) whatever the filterbank."""
    window = _window_cached(config.frame_length)
    return {
        "calibration": float(np.log(np.sum(window ** 2) * np.sum(_filterbank_cached(config)))),
        "noise_rise": AGC_NOISE_RISE_DB_PER_S * _DB * config.hop_length / config.sample_rate,
        "speech_start": AGC_SPEECH_DB[0] * _DB,
        "speech_span": (AGC_SPEECH_DB[1] - AGC_SPEECH_DB[0]) * _DB,
        "prior_weight": AGC_PRIOR_WEIGHT,
        "rate": config.agc_rate,
        "target": config.agc_target_dbfs * _DB,
        "start_level": (config.agc_target_dbfs - config.agc_start_gain_db) * _DB,
        "gain_min": AGC_GAIN_DB[0] * _DB,
        "gain_max": AGC_GAIN_DB[1] * _DB,
    }


class _GainControl:
    """The input gain control of the module doc, on [k, n_mels] float64 mel energies in place,
    frame by frame (a scalar recursion), holding its state between calls so chunked input gives
    bit-identical output.

    Per sounding frame with level l (log of its mel sum, calibrated to dBFS): the noise floor
    n = min(l, n + noise_rise) (the first frame sets it); the frame's speech weight w rises from 0 at
    speech_start over the floor to 1 at speech_start + speech_span; the speech level s, which starts
    at start_level (gain agc_start_gain_db) with prior_weight, moves towards l by
    w * max(1 / c, rate), c the weight so far (a weighted plain average at first, then an
    exponential one). The gain is target - s within [gain_min, gain_max]. Silent frames (digital
    silence) hold everything. Every step is continuous in l, so the C library's float32 arithmetic
    stays close. Before any speech the gain is agc_start_gain_db, so a quiet room is not amplified;
    once someone speaks, their level sets it, and the floor after it sits the same distance below
    the speech however quiet the microphone."""

    def __init__(self, config: FeatureConfig) -> None:
        c = agc_constants(config)
        self.calibration, self.rise = c["calibration"], c["noise_rise"]
        self.start, self.span = c["speech_start"], c["speech_span"]
        self.prior, self.rate, self.target = c["prior_weight"], c["rate"], c["target"]
        self.start_level = c["start_level"]
        self.gain_min, self.gain_max = c["gain_min"], c["gain_max"]
        self.reset()

    def reset(self) -> None:
        self.noise: float | None = None
        self.speech = self.start_level
        self.weight = self.prior

    def __call__(self, mel: np.ndarray, silent: np.ndarray) -> None:
        levels = (np.log(np.maximum(mel.sum(axis=1), 1e-30)) - self.calibration).tolist()
        gains = np.empty(len(levels))
        noise, speech, weight = self.noise, self.speech, self.weight
        for t, level in enumerate(levels):
            if not silent[t]:
                noise = level if noise is None else min(level, noise + self.rise)
                w = min(max((level - noise - self.start) / self.span, 0.0), 1.0)
                if w > 0.0:
                    weight += w
                    speech += w * max(1.0 / weight, self.rate) * (level - speech)
            gains[t] = min(max(self.target - speech, self.gain_min), self.gain_max)
        self.noise, self.speech, self.weight = noise, speech, weight
        mel *= np.exp(gains)[:, None]


class _MeanNorm:
    """The running-mean subtraction of the module doc, in place on [k, F] float32 frames; holds the
    running mean between calls so chunked input gives bit-identical output (lfilter's recursion runs
    frame by frame, and its state is handed on exactly).

    The mean starts as the plain average of the sounding frames so far (rate 1/(n+1) for the n-th,
    until that falls to the constant rate): one frame's log-mel is a noisy estimate of a band's
    level, and a window whose mean started on its first frame alone would carry that frame's error
    through the window, where a stream's long-run mean does not.

    Frames holding digital silence (`holds_digital_silence`: zero padding, a muted or just-opened
    input) say nothing about the microphone, so they leave the mean as it is: they come out as the
    floor minus the mean, and as zeros before the first sound. Without this, the zero padding of a
    clip, or the frame that straddles its edge, starts the mean near log(log_floor), far below any
    real noise floor, and the speech after it comes out several units too high."""

    def __init__(self, config: FeatureConfig) -> None:
        self.k = config.mean_norm_rate
        self.b = np.array([self.k])
        self.a = np.array([1.0, self.k - 1.0])
        self.warmup = config.mean_norm_warmup
        self.mean: np.ndarray | None = None  # [F] float64
        self.n = 0  # sounding frames seen

    def reset(self) -> None:
        self.mean, self.n = None, 0

    def __call__(self, feats: np.ndarray, silent: np.ndarray) -> None:
        if feats.shape[0] == 0:
            return
        import scipy.signal

        x = feats.astype(np.float64)
        mean = np.empty_like(x)
        edges = np.flatnonzero(np.diff(silent.astype(np.int8))) + 1
        for a, b in zip(np.r_[0, edges], np.r_[edges, len(silent)]):
            if silent[a]:  # hold the mean; before the first sound, zeros
                mean[a:b] = x[a:b] if self.mean is None else self.mean
                continue
            while a < b and self.n < self.warmup:  # the warm-up: the average so far
                self.mean = x[a].copy() if self.mean is None else self.mean + (x[a] - self.mean) / (self.n + 1)
                mean[a] = self.mean
                self.n, a = self.n + 1, a + 1
            if a < b:
                m, _ = scipy.signal.lfilter(self.b, self.a, x[a:b], axis=0, zi=(1.0 - self.k) * self.mean[None])
                mean[a:b], self.mean = m, m[-1].copy()
                self.n += b - a
        np.subtract(x, mean, out=x)
        feats[...] = x


class StreamingFeaturizer:
    """Feed audio in chunks of any size (0, 1 sample, seconds); `push` returns the frames that the
    new samples complete, so concatenating the outputs equals `featurize` of the concatenated audio.

    Holds a preallocated sample buffer: valid samples are `_buf[_start:_end]` (always fewer than
    frame_length after a push) and new chunks are appended at `_end`; the tail is moved back to the
    front only when a chunk does not fit. A 10 ms push (160 samples) thus copies 160 samples and
    computes one frame with the precomputed window/filterbank; chunks longer than the buffer are
    featurized from one joined copy."""

    def __init__(self, config: FeatureConfig = FeatureConfig(), capacity: int = 8192) -> None:
        self.config = config
        self._engine = _FrameEngine(config)  # own instance: its scratch buffer is not shared
        self._buf = np.zeros(max(int(capacity), 2 * config.frame_length + config.hop_length), dtype=np.float32)
        self._start = 0
        self._end = 0
        self.frames_emitted = 0
        self._empty = np.zeros((0, config.n_features), dtype=np.float32)
        self._empty.flags.writeable = False
        self._mean_norm = _MeanNorm(config) if config.mean_norm_seconds else None
        self._gain = _GainControl(config) if config.agc_seconds else None

    def reset(self) -> None:
        self._start = self._end = 0
        self.frames_emitted = 0
        if self._mean_norm is not None:
            self._mean_norm.reset()
        if self._gain is not None:
            self._gain.reset()

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Append samples (1-D float); return the newly completed frames [k, F] (k may be 0)."""
        out, silent = self._push(chunk)
        if self._mean_norm is not None and silent is not None:
            self._mean_norm(out, silent)
        return out

    def _push(self, chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The new frames, and (with mean normalization) which of them are digital silence."""
        if type(chunk) is np.ndarray and chunk.dtype == np.float32 and chunk.ndim == 1:
            c = chunk  # the common case (audio callbacks): skip the conversions
            if not np.isfinite(c).all():
                raise ValueError("chunk contains NaN or infinite samples")
        else:
            c = _check_audio(chunk, "chunk")
        cfg = self.config
        n_new = c.shape[0]
        if n_new == 0:
            return self._empty, None
        buf = self._buf
        start, end = self._start, self._end
        if end + n_new > buf.shape[0]:
            if end - start + n_new > buf.shape[0]:
                # bigger than the buffer: join once and featurize from the copy
                x = np.concatenate((buf[start:end], c))
                k = cfg.n_frames(x.shape[0])  # >= 1: the buffer holds more than a frame
                out, silent = self._outputs(k)
                for s in range(0, k, _BLOCK_FRAMES):
                    kk = min(_BLOCK_FRAMES, k - s)
                    self._engine(_frame_view(x, s, kk, cfg), out[s:s + kk], None if silent is None else silent[s:s + kk], self._gain)
                rest = x[k * cfg.hop_length:]
                buf[:rest.shape[0]] = rest
                self._start, self._end = 0, rest.shape[0]
                self.frames_emitted += k
                return out, silent
            buf[:end - start] = buf[start:end]  # compact: move the kept tail to the front
            start, end = 0, end - start
        buf[end:end + n_new] = c
        end += n_new
        k = cfg.n_frames(end - start)
        if k == 0:
            self._start, self._end = start, end
            return self._empty, None
        out, silent = self._outputs(k)
        first = start // cfg.hop_length  # start only ever moves by whole hops, so this is exact
        for s in range(0, k, _BLOCK_FRAMES):
            kk = min(_BLOCK_FRAMES, k - s)
            self._engine(_frame_view(buf, first + s, kk, cfg), out[s:s + kk], None if silent is None else silent[s:s + kk], self._gain)
        self._start = start + k * cfg.hop_length
        self._end = end
        self.frames_emitted += k
        return out, silent

    def _outputs(self, k: int) -> tuple[np.ndarray, np.ndarray | None]:
        out = np.empty((k, self.config.n_features), dtype=np.float32)
        return out, (np.empty(k, dtype=bool) if self._mean_norm is not None else None)


# --- torch ----------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=16)
def _torch_constants(config: FeatureConfig, device, dtype):
    """Window (zero-padded to n_fft), filterbank and DCT as tensors on `device` (cached: no re-upload per training batch)."""
    import torch

    def t(a: np.ndarray | None):
        return None if a is None else torch.tensor(np.array(a), device=device, dtype=dtype)

    padded_window = np.zeros(config.n_fft, dtype=np.float64)
    padded_window[:config.frame_length] = _window_cached(config.frame_length)
    return t(padded_window), t(_filterbank_cached(config)), t(_projection(config))


def featurize_torch(audio, config: FeatureConfig = FeatureConfig()):
    """The same spec in torch (differentiable, any device): [B, N] -> [B, T, F]; a 1-D [N] input
    gives [T, F] like `featurize`. Accepts a torch.Tensor or numpy array.

    Computes in the input's dtype: float32 (the training default, several thousand times real time
    on one core) matches `featurize` to ~1e-5 in the log domain on typical audio, but float32
    round-off limits bands 60+ dB below a frame's strongest ones to ~3e-4 (measured on real speech);
    float64 input matches `featurize` to ~1e-6 everywhere (about 3x slower)."""
    import torch

    x = torch.as_tensor(audio)
    if not torch.is_floating_point(x):
        raise ValueError(f"audio must be float samples in [-1, 1], got dtype {x.dtype}; "
                         "convert PCM with kws.audio.to_float32")
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    squeeze = x.dim() == 1
    if squeeze:
        x = x.unsqueeze(0)
    if x.dim() != 2:
        raise ValueError(f"audio must be [N] or [B, N], got shape {tuple(x.shape)}")
    b, n = x.shape
    t = config.n_frames(n)
    dev, dt = x.device, x.dtype
    if t == 0:
        out = x.new_zeros((b, 0, config.n_features))
        return out[0] if squeeze else out
    window, fb, proj = _torch_constants(config, dev, dt)
    # Frames of n_fft samples [hop t, hop t + n_fft) times the window zero-padded to n_fft: the same
    # product as framing frame_length samples and zero-padding, without a separate padding copy
    # (the input gets n_fft - frame_length zeros at the end so the frame count is unchanged).
    frames = torch.nn.functional.pad(x, (0, config.n_fft - config.frame_length)).unfold(
        -1, config.n_fft, config.hop_length)  # [B, T, n_fft], a view
    spec = torch.fft.rfft(frames * window, dim=-1)
    power = spec.real.square() + spec.imag.square()
    mel = power @ fb
    silent = None
    if config.uses_history:
        zero = (x.unfold(-1, config.frame_length, config.hop_length) == 0).to(torch.int32)  # [B, T, L]
        run = silence_run(config)
        c = torch.nn.functional.pad(zero.cumsum(-1), (1, 0))
        silent = ((c[..., run:] - c[..., :-run]) == run).any(-1)  # holds_digital_silence, [B, T]
    if config.agc_seconds:
        mel = mel * torch.exp(_torch_gains(mel, silent, agc_constants(config)))[..., None]
    feats = torch.log(mel + config.log_floor)
    if proj is not None:  # the DCT and/or the level compression
        feats = feats @ proj
    if config.mean_norm_seconds:
        feats = _torch_mean_norm(feats, silent, config.mean_norm_rate, config.mean_norm_warmup)
    return feats[0] if squeeze else feats


def _torch_gains(mel, silent, c: dict[str, float]):
    """`_GainControl`'s gains (natural-log units) for [B, T, n_mels] mel energies, a loop over frames."""
    import torch

    levels = torch.log(torch.clamp(mel.sum(-1), min=1e-30)) - c["calibration"]  # [B, T]
    b = levels.shape[0]
    noise = levels.new_zeros(b)
    started = torch.zeros(b, dtype=torch.bool, device=levels.device)
    speech = levels.new_full((b,), c["start_level"])
    weight = levels.new_full((b,), c["prior_weight"])
    gains = torch.empty_like(levels)
    for t in range(levels.shape[1]):
        level, sounding = levels[:, t], ~silent[:, t]
        noise_t = torch.where(started, torch.minimum(level, noise + c["noise_rise"]), level)
        w = torch.clamp((level - noise_t - c["speech_start"]) / c["speech_span"], 0.0, 1.0)
        weight_t = weight + w
        speech_t = speech + w * torch.clamp(1.0 / weight_t, min=c["rate"]) * (level - speech)
        noise = torch.where(sounding, noise_t, noise)
        speech = torch.where(sounding, speech_t, speech)
        weight = torch.where(sounding, weight_t, weight)
        started = started | sounding
        gains[:, t] = torch.clamp(c["target"] - speech, c["gain_min"], c["gain_max"])
    return gains


def _torch_mean_norm(feats, silent, k: float, warmup: int):
    """`_MeanNorm` in torch over [B, T, F] (a loop over frames: T is about 100 for a training clip)."""
    import torch

    m = torch.zeros_like(feats[:, 0])
    n = torch.zeros_like(feats[:, 0, :1])  # sounding frames seen, [B, 1]
    out = torch.empty_like(feats)
    for t in range(feats.shape[1]):
        xt, quiet = feats[:, t], silent[:, t, None]
        rate = torch.where(n < warmup, 1.0 / (n + 1), torch.full_like(n, k))
        held = torch.where(quiet, m, torch.where(n == 0, xt, m + rate * (xt - m)))
        out[:, t] = xt - torch.where(quiet & (n == 0), xt, held)
        m, n = held, n + (~quiet).to(n.dtype)
    return out
