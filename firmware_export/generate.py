"""The C library generator: a bundle in, a self-contained C99 keyword spotter out.

`generate(bundle_path, out_dir)` writes

    OUT/kws.h kws.c kws_features.c kws_model.c kws_internal.h   the library (templates, unchanged)
    OUT/kws_config.h                                            sizes, schedule, defaults (macros)
    OUT/kws_tables.c                                            featurizer + normalization tables
    OUT/kws_weights.c                                           int8 model (docs/QUANTIZATION.md)
    OUT/harness/                                                host/qemu test harness + golden vectors
    OUT/examples/main.c                                         a Cortex-M main loop
    OUT/Makefile  OUT/README.md  OUT/SUMMARY.txt

then (when the compilers are present) builds and runs the host harness against the golden vectors,
cross-compiles for Cortex-M4 and runs the Thumb harness under qemu-arm, and returns a summary with
the flash/RAM figures. Python computes every table from kws.features and kws.quantize, so the C side
uses the very constants the Python reference uses.
"""

from __future__ import annotations

import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from firmware_export import build
from firmware_export.ctext import c_array, c_float, c_int
from kws.errors import BundleError, ExportError
from kws.models.ensemble import u_block_size
from kws.util import atomic_write_text

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
LIBRARY_FILES = ("kws.h", "kws_internal.h", "kws.c", "kws_features.c", "kws_model.c")
HARNESS_FILES = ("harness.c", "golden.h", "host_main.c", "qemu_start.c")
FEATURE_TOLERANCE = 1e-3   # max |C log-mel - Python log-mel| accepted by the harness

MAX_SMOOTHING = 8          # the C state keeps at most this many window logits


@dataclass
class DetectorSpec:
    hop_frames: int
    smoothing: int
    refractory_hops: int
    threshold_q: int


def sanitize(name: str) -> str:
    """A C identifier fragment from a keyword ('hey nova!' -> 'hey_nova')."""
    s = re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()
    if not s or s[0].isdigit():
        s = "kw_" + s
    return s[:32]


def c_string_text(text: str) -> str:
    """Keyword text safe inside a C string literal and a comment (ASCII letters, digits, a few marks)."""
    return "".join(ch if (ch.isascii() and (ch.isalnum() or ch in " _-.,!?'")) else "?" for ch in text)[:64]


# ---------------------------------------------------------------------------- golden audio
def golden_audio(seconds: float = 4.0, seed: int = 7) -> np.ndarray:
    """Deterministic int16 test signal exercising the featurizer's range: digital silence, a
    speech-like AM chirp, white noise, a clipped full-scale square and quiet noise with a gap of
    digital silence."""
    sr = 16000
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    x = np.zeros(n)
    seg = n // 8
    # 1: silence (exact zeros) in [0, seg)
    # 2-4: chirp with syllable-rate AM plus a little noise
    a, b = seg, 4 * seg
    tt = t[a:b] - t[a]
    x[a:b] = 0.4 * np.sin(2 * np.pi * (150 + 1200 * tt) * tt) * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * tt))
    x[a:b] += 0.02 * rng.standard_normal(b - a)
    # 5: white noise
    x[4 * seg:5 * seg] = 0.25 * rng.standard_normal(seg)
    # 6: full-scale square (saturates int16)
    x[5 * seg:6 * seg] = 1.2 * np.sign(np.sin(2 * np.pi * 440 * t[5 * seg:6 * seg]))
    # 7-8: harmonic "vowel" then quiet noise
    tt = t[6 * seg:7 * seg]
    x[6 * seg:7 * seg] = sum(0.15 / k * np.sin(2 * np.pi * 180 * k * tt) for k in range(1, 12))
    x[7 * seg:] = 0.003 * rng.standard_normal(n - 7 * seg)
    x[7 * seg + seg // 4:7 * seg + seg // 2] = 0.0  # digital silence after sound (mean_norm holds)
    return np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)


# ---------------------------------------------------------------------------- quantization
def calibration_from_audio(pcm: np.ndarray, feature_config: Any, step: int = 5) -> np.ndarray:
    """Raw feature windows [N, T, F] of int16 audio (every `step` frames): calibration data for
    bundles without a readable training set (tests, random bundles)."""
    from kws.features import featurize

    feats = featurize(np.asarray(pcm, np.int16).astype(np.float32) / np.float32(32768.0), feature_config)
    wf = feature_config.window_frames
    if feats.shape[0] < wf:
        raise ExportError(f"calibration audio shorter than one {feature_config.window_seconds:g} s window")
    return np.stack([feats[s:s + wf] for s in range(0, feats.shape[0] - wf + 1, step)])


# ---------------------------------------------------------------------------- reference detector
def window_ends(n_frames: int, window_frames: int, hop_frames: int) -> np.ndarray:
    """Frame counts after which the C library scores a window (the ring is full and the hop is due)."""
    if n_frames < window_frames:
        return np.zeros(0, dtype=np.int64)
    return np.arange(window_frames, n_frames + 1, hop_frames, dtype=np.int64)


def reference_detect(logits: np.ndarray, smoothing: int, threshold_q: int, refractory_hops: int
                     ) -> tuple[list[int], np.ndarray]:
    """The C detector in Python, integers only: kws.stream's rule (rising edge of the moving average
    across the threshold, at least `refractory_hops` hops since the previous detection) with the
    average over integer logits: mean >= threshold as sum >= count * threshold_q.
    Returns (1-based hop numbers of the detections, the sums per hop)."""
    fires: list[int] = []
    sums = np.zeros(len(logits), dtype=np.int64)
    above_prev = False
    for i in range(len(logits)):
        lo = max(0, i - smoothing + 1)
        s = int(np.sum(logits[lo:i + 1], dtype=np.int64))
        sums[i] = s
        above = s >= (i + 1 - lo) * threshold_q
        if above and not above_prev and (not fires or (i + 1) - fires[-1] >= refractory_hops):
            fires.append(i + 1)
        above_prev = above
    return fires, sums


def detector_spec(bundle: Any, qm: Any, tau: float) -> DetectorSpec:
    """kws.stream.Detector's defaults in hops: 0.1 s hop, smoothing 3, 1.5 s refractory."""
    from kws.stream import DEFAULT_HOP_SECONDS, DEFAULT_REFRACTORY_SECONDS, DEFAULT_SMOOTHING

    fc = bundle.feature_config
    hop_frames = max(1, int(round(DEFAULT_HOP_SECONDS * fc.sample_rate / fc.hop_length)))
    hop_s = hop_frames * fc.hop_length / fc.sample_rate
    return DetectorSpec(hop_frames=hop_frames, smoothing=min(DEFAULT_SMOOTHING, MAX_SMOOTHING),
                        refractory_hops=int(math.ceil(DEFAULT_REFRACTORY_SECONDS / hop_s - 1e-9)),
                        threshold_q=qm.threshold_q(tau))


# ---------------------------------------------------------------------------- C text
def feature_tables(fc: Any) -> dict[str, np.ndarray]:
    from kws.features import feature_projection, hann_window, mel_filterbank

    if fc.n_fft & (fc.n_fft - 1) or fc.n_fft < 16:
        raise ExportError(f"the C featurizer needs a power-of-two n_fft >= 16, the bundle has {fc.n_fft}")
    if fc.hop_length > fc.frame_length:
        raise ExportError("the C featurizer needs hop_length <= frame_length")
    if fc.n_mels > 255:
        raise ExportError("the C featurizer supports at most 255 mel bands")
    win = hann_window(fc.frame_length)
    symmetric = all(win[n] == win[fc.frame_length - n] for n in range(1, fc.frame_length))
    window = win[:fc.frame_length // 2 + 1] if symmetric else win
    k = np.arange(fc.n_fft // 2)
    cos_table = np.cos(2.0 * np.pi * k / fc.n_fft).astype(np.float32)
    fb = mel_filterbank(fc)  # [bins, mels]
    starts, counts, weights = [], [], []
    for b in range(fb.shape[0]):
        nz = np.nonzero(fb[b])[0]
        if nz.size and (nz[-1] - nz[0] + 1) != nz.size:
            raise ExportError("mel filterbank row is not contiguous")  # cannot happen for triangles
        starts.append(int(nz[0]) if nz.size else 0)
        counts.append(int(nz.size))
        weights.extend(fb[b, nz].tolist())
    out = {"window": window.astype(np.float32), "cos": cos_table,
           "bin_band_start": np.array(starts, np.uint8), "bin_band_count": np.array(counts, np.uint8),
           "bin_weights": np.array(weights, np.float32), "symmetric": np.array([int(symmetric)])}
    projection = feature_projection(fc)  # the DCT (MFCC) and/or the level compression, or None
    if projection is not None:
        out["projection"] = projection  # [n_mels, n_features]
    return out


def config_header(bundle: Any, qm: Any, tables: dict[str, np.ndarray], det: DetectorSpec,
                  arrays: dict[str, np.ndarray], u_block: int) -> str:
    """kws_config.h; `arrays, u_block` are model_arrays(qm)."""
    from kws.features import agc_constants, silence_run

    fc = bundle.feature_config
    sc = qm.scalars()
    try:
        threshold_fpr5 = qm.threshold_q(bundle.threshold(0.05))
    except BundleError:
        threshold_fpr5 = det.threshold_q
    lines = [
        "/* kws_config.h - generated by firmware_export/generate.py; do not edit. */",
        "#ifndef KWS_CONFIG_H", "#define KWS_CONFIG_H", "",
        f'#define KWS_KEYWORD "{c_string_text(bundle.keyword)}"',
        f"#define KWS_KEYWORD_ID {sanitize(bundle.keyword)}",
        "/* featurizer (DESIGN.md section 2) */",
        f"#define KWS_SAMPLE_RATE {fc.sample_rate}",
        f"#define KWS_FRAME_LENGTH {fc.frame_length}",
        f"#define KWS_HOP_LENGTH {fc.hop_length}",
        f"#define KWS_NFFT {fc.n_fft}",
        f"#define KWS_N_MELS {fc.n_mels}",
        f"#define KWS_N_FEATURES {fc.n_features}",
        "/* log-mels times kws_projection (the DCT for MFCC, the level compression; 0 = log-mels as they are) */",
        f"#define KWS_PROJECT {int('projection' in tables)}",
        f"#define KWS_LOG_FLOOR {c_float(fc.log_floor)}",
        "/* running-mean normalization of each feature (FeatureConfig.mean_norm_seconds; 0 = off) */",
        f"#define KWS_MEAN_NORM {int(fc.mean_norm_seconds > 0)}",
        f"#define KWS_MEAN_NORM_RATE {c_float(fc.mean_norm_rate)}",
        f"#define KWS_MEAN_NORM_WARMUP {fc.mean_norm_warmup}u",
        "/* input gain control before the floor (FeatureConfig.agc_seconds; 0 = off), natural-log units of power */",
        f"#define KWS_AGC {int(fc.agc_seconds > 0)}",
        *[f"#define KWS_AGC_{name.upper()} ({c_float(value)})" for name, value in agc_constants(fc).items()],
        f"#define KWS_SILENCE_RUN {silence_run(fc)}u",
        f"#define KWS_WINDOW_SYMMETRIC {int(tables['symmetric'][0])}",
        f"#define KWS_WINDOW_TABLE_LEN {tables['window'].size}",
        f"#define KWS_N_BIN_WEIGHTS {tables['bin_weights'].size}",
        "/* model: int8 FastGRNN (docs/QUANTIZATION.md) */",
        f"#define KWS_HIDDEN {sc['hidden']}",
        "/* U is block-diagonal with blocks of this size (an ensemble: one per model; else KWS_HIDDEN) */",
        f"#define KWS_U_BLOCK {u_block}",
        f"#define KWS_NONLIN_LUT {sc['nonlinearity']}",
        "/* zeta and nu: one pair, or one per hidden unit (an ensemble's blocks, kws.models.ensemble) */",
        f"#define KWS_ZETA_PER_UNIT {sc['zeta_per_unit']}",
        *([] if sc["zeta_per_unit"] else [f"#define KWS_ZETA_Q15 {sc['zeta_q15']}", f"#define KWS_NU_Q15 {sc['nu_q15']}"]),
        f"#define KWS_H_MULT {sc['h_mult']}",
        f"#define KWS_H_SHIFT {sc['h_shift']}",
        f"#define KWS_HEAD_BIAS {c_int(int(arrays['head_bias'][0]), np.dtype(np.int64))}",
        f"/* real logit = integer logit * KWS_LOGIT_SCALE; score = sigmoid(real logit) */",
        f"#define KWS_LOGIT_SCALE {float(sc['logit_scale']):.9g}",
        "/* detector (DESIGN.md section 8) */",
        f"#define KWS_WINDOW_FRAMES {fc.window_frames}",
        f"#define KWS_HOP_FRAMES {det.hop_frames}",
        f"#define KWS_MAX_SMOOTHING {MAX_SMOOTHING}",
        f"#define KWS_DEFAULT_SMOOTHING {det.smoothing}",
        f"#define KWS_DEFAULT_REFRACTORY_HOPS {det.refractory_hops}",
        f"/* integer logit threshold for the bundle's score threshold at 3% FPR */",
        f"#define KWS_DEFAULT_THRESHOLD {c_int(det.threshold_q, np.dtype(np.int64))}",
        f"#define KWS_THRESHOLD_FPR5 {c_int(threshold_fpr5, np.dtype(np.int64))}",
        "", "#endif", "",
    ]
    return "\n".join(lines)


def tables_source(qm: Any, tables: dict[str, np.ndarray], fc: Any) -> str:
    parts = ['/* kws_tables.c - featurizer and input tables, generated from kws.features; do not edit. */',
             '#include "kws_internal.h"', "",
             "/* periodic Hann window (first half + middle when symmetric) */",
             c_array("kws_window_table", tables["window"], length="KWS_WINDOW_TABLE_LEN"),
             "/* cos(2 pi k / NFFT), k < NFFT/2: FFT twiddles (sines by a quarter-period shift) */",
             c_array("kws_cos_table", tables["cos"], length="KWS_NFFT / 2"),
             "/* sparse mel filterbank by FFT bin: first band, band count, weights in bin order */",
             c_array("kws_bin_band_start", tables["bin_band_start"], length="KWS_NFFT / 2 + 1"),
             c_array("kws_bin_band_count", tables["bin_band_count"], length="KWS_NFFT / 2 + 1"),
             c_array("kws_bin_weights", tables["bin_weights"], length="KWS_N_BIN_WEIGHTS")]
    if "projection" in tables:
        parts += ["/* per-frame projection of the log-mels [n_mels][n_features] (kws.features.feature_projection) */",
                  "#if KWS_PROJECT", c_array("kws_projection", tables["projection"], length="KWS_N_MELS * KWS_N_FEATURES"),
                  "#endif"]
    parts += ["/* input edge: x_q = clamp(round_half_away((x - mean) * inv_scale), +-127) */",
              c_array("kws_feat_mean", qm.x_mean.astype(np.float32), length="KWS_N_FEATURES"),
              c_array("kws_feat_mul", qm.x_inv_scale.astype(np.float32), length="KWS_N_FEATURES")]
    return "\n".join(parts)


def model_arrays(qm: Any) -> tuple[dict[str, np.ndarray], int]:
    """The arrays the C library stores, and U's block size: of a block-diagonal U only the diagonal
    blocks are kept (row i holds U[i, its block's columns]), so an ensemble does not pay for zeros."""
    a = qm.to_arrays()
    b = u_block_size(a["U_q"])
    h = a["U_q"].shape[0]
    a["U_q"] = np.stack([a["U_q"][i, (i // b) * b:(i // b + 1) * b] for i in range(h)]) if b < h else a["U_q"]
    return a, b


def weights_source(a: dict[str, np.ndarray]) -> str:
    """kws_weights.c from the arrays of model_arrays."""
    parts = ['/* kws_weights.c - int8 FastGRNN, generated from kws.quantize; do not edit. */',
             '#include "kws_internal.h"', ""]
    for name, length in (("W_q", "KWS_HIDDEN * KWS_N_FEATURES"), ("W_mult", "KWS_HIDDEN"),
                         ("W_shift", "KWS_HIDDEN"), ("U_q", "KWS_HIDDEN * KWS_U_BLOCK"),
                         ("U_mult", "KWS_HIDDEN"), ("U_shift", "KWS_HIDDEN"), ("b_z", "KWS_HIDDEN"),
                         ("b_h", "KWS_HIDDEN"), ("head_q", "KWS_HIDDEN")):
        parts.append(c_array(f"kws_{name}", a[name], length=length))
    if "zeta_q15" in a:
        parts += ["#if KWS_ZETA_PER_UNIT", c_array("kws_zeta_q15", a["zeta_q15"], length="KWS_HIDDEN"),
                  c_array("kws_nu_q15", a["nu_q15"], length="KWS_HIDDEN"), "#endif"]
    if "sigmoid_lut" in a:
        parts += ["#if KWS_NONLIN_LUT", c_array("kws_sigmoid_lut", a["sigmoid_lut"], length="513"),
                  c_array("kws_tanh_lut", a["tanh_lut"], length="513"), "#endif"]
    return "\n".join(parts)


def golden_source(g: dict[str, Any]) -> str:
    p = g["params"]
    parts = ['/* golden_data.c - Python reference outputs for the harness; generated, do not edit. */',
             '#include "golden.h"', "",
             f"const uint32_t golden_n_samples = {g['pcm'].size}u;",
             c_array("golden_pcm", g["pcm"]),
             f"const uint32_t golden_n_frames = {g['feats'].shape[0]}u;",
             c_array("golden_feats", g["feats"]),
             c_array("golden_xq", g["xq"]),
             f"const float golden_feat_tol = {c_float(FEATURE_TOLERANCE)};",
             f"const uint32_t golden_n_windows = {len(g['logits'])}u;",
             c_array("golden_window_end", g["window_end"].astype(np.uint32)),
             c_array("golden_logits", g["logits"].astype(np.int64)),
             c_array("golden_sums", g["sums"].astype(np.int64)),
             f"const uint32_t golden_trace_frames = {g['trace_h'].shape[0]}u;",
             c_array("golden_trace_h", g["trace_h"].astype(np.int16)),
             c_array("golden_trace_logit", g["trace_logit"].astype(np.int64)),
             f"const kws_params_t golden_params = {{{c_int(p['threshold'], np.dtype(np.int64))}, "
             f"{p['smoothing']}u, {p['refractory_hops']}u}};",
             f"const uint32_t golden_n_detections = {len(g['detections'])}u;",
             c_array("golden_detection_hop", np.asarray(g["detections"], np.uint32)),
             "/* with kws_default_params() (the bundle's 3% FPR threshold) */",
             f"const uint32_t golden_n_default_detections = {len(g['default_detections'])}u;",
             c_array("golden_default_detection_hop", np.asarray(g["default_detections"], np.uint32))]
    return "\n".join(parts)


# ---------------------------------------------------------------------------- golden vectors
def make_golden(bundle: Any, qm: Any, det: DetectorSpec, pcm: np.ndarray) -> dict[str, Any]:
    from kws.features import featurize

    fc = bundle.feature_config
    feats = featurize(pcm.astype(np.float32) / np.float32(32768.0), fc)
    xq = qm.quantize_input(feats)
    ends = window_ends(feats.shape[0], fc.window_frames, det.hop_frames)
    windows = np.stack([feats[e - fc.window_frames:e] for e in ends]) if len(ends) else \
        np.zeros((0, fc.window_frames, fc.n_features), np.float32)
    logits = qm.run_int(windows) if len(ends) else np.zeros(0, np.int64)
    # A golden threshold that makes the detector fire (random or trained weights alike): the
    # 70th percentile of the smoothed logits, so the rising-edge/refractory logic is exercised.
    _, sums0 = reference_detect(logits, det.smoothing, 0, det.refractory_hops)
    counts = np.minimum(np.arange(1, len(logits) + 1), det.smoothing)
    means = np.floor_divide(sums0, counts) if len(logits) else np.zeros(0, np.int64)
    threshold = int(np.percentile(means, 70)) if len(means) else det.threshold_q
    fires, sums = reference_detect(logits, det.smoothing, threshold, det.refractory_hops)
    default_fires, _ = reference_detect(logits, det.smoothing, det.threshold_q, det.refractory_hops)
    trace = qm.golden(feats[:fc.window_frames])
    return {"pcm": pcm, "feats": feats.astype(np.float32), "xq": xq.astype(np.int8), "window_end": ends,
            "logits": logits.astype(np.int64), "sums": sums, "trace_h": trace["h"],
            "trace_logit": trace["logit_q"], "detections": fires, "default_detections": default_fires,
            "params": {"threshold": threshold, "smoothing": det.smoothing,
                       "refractory_hops": det.refractory_hops}}


# ---------------------------------------------------------------------------- main entry
def generate(bundle_path: str | Path | Any, out_dir: str | Path, *, data_dir: str | Path | None = None,
             calib_x_raw: np.ndarray | None = None, verify: bool = True,
             golden_pcm: np.ndarray | None = None) -> str:
    """Write the C library for a FastGRNN bundle (path or loaded kws.bundle.Bundle) into out_dir;
    build and verify it when the toolchains are present. Returns the summary text (also written to
    OUT/SUMMARY.txt).

    Calibration of the int8 scales (kws.quantize): `calib_x_raw` raw windows [N, T, F], else the
    training split of `data_dir`, else the dataset recorded in the bundle; ExportError otherwise."""
    from kws.bundle import Bundle, load_bundle
    from kws.quantize import quantize_bundle

    bundle = bundle_path if isinstance(bundle_path, Bundle) else load_bundle(bundle_path)
    if bundle.model_kind != "fastgrnn":
        raise ExportError(f"{bundle.path}: the C library supports FastGRNN bundles only; this one is "
                          f"{bundle.model_kind} (export it with --format onnx instead)")
    out = Path(out_dir).resolve()  # the build runs with cwd=out: relative paths would point elsewhere
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder; choose another --out")
    fc = bundle.feature_config
    pcm = golden_audio() if golden_pcm is None else np.asarray(golden_pcm, dtype=np.int16)
    qm = quantize_bundle(bundle, calib_x=calib_x_raw, data_dir=str(data_dir) if data_dir else None)
    try:
        tau = bundle.threshold(0.03)
    except BundleError:
        tau = next(iter(bundle.thresholds.values()))
    det = detector_spec(bundle, qm, tau)
    tables = feature_tables(fc)
    golden = make_golden(bundle, qm, det, pcm)

    (out / "harness").mkdir(parents=True, exist_ok=True)
    (out / "examples").mkdir(parents=True, exist_ok=True)
    for name in LIBRARY_FILES:
        shutil.copyfile(TEMPLATES / name, out / name)
    for name in HARNESS_FILES:
        shutil.copyfile(HERE / "harness" / name, out / "harness" / name)
    shutil.copyfile(HERE / "examples" / "main.c", out / "examples" / "main.c")
    shutil.copyfile(TEMPLATES / "Makefile", out / "Makefile")
    shutil.copyfile(TEMPLATES / "README.md", out / "README.md")
    arrays, u_block = model_arrays(qm)
    atomic_write_text(out / "kws_config.h", config_header(bundle, qm, tables, det, arrays, u_block))
    atomic_write_text(out / "kws_tables.c", tables_source(qm, tables, fc))
    atomic_write_text(out / "kws_weights.c", weights_source(arrays))
    atomic_write_text(out / "harness" / "golden_data.c", golden_source(golden))

    weight_bytes = sum(v.nbytes for k, v in arrays.items() if k not in ("x_mean", "x_inv_scale"))
    lines = [f"C library for '{bundle.keyword}' ({bundle.model_kind}, hidden {qm.hidden}, "
             f"{fc.n_features} {fc.kind} features, nonlinearity {qm.nonlinearity}) in {out}",
             f"  model weights (int8 + int32 scales/biases{' + LUTs' if qm.nonlinearity != 'pwl' else ''}): "
             f"{weight_bytes} bytes",
             f"  detector: {fc.window_frames}-frame window every {det.hop_frames} frames, smoothing {det.smoothing}, "
             f"refractory {det.refractory_hops} hops, threshold_q {det.threshold_q} (score {tau:g})",
             f"  int8 scales: s_x {qm.s_x:.4g}, s_h {qm.s_h:.4g}, calibrated on "
             f"{'the given windows' if calib_x_raw is not None else 'the training split'}"]
    if u_block < qm.hidden:
        lines.append(f"  recurrent matrix block-diagonal ({qm.hidden // u_block} blocks of {u_block}: an ensemble); "
                     "only the blocks are stored and multiplied")
    if "W1" in bundle.weights or "U1" in bundle.weights:
        lines.append("  low-rank W/U exported as their dense int8 product (docs/QUANTIZATION.md)")
    if verify:
        lines += build.verify_all(out)
    summary = "\n".join(lines)
    atomic_write_text(out / "SUMMARY.txt", summary + "\n")
    return summary
