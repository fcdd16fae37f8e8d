"""int8 post-training quantization and the integer reference of FastGRNN.

The integer arithmetic is specified in docs/QUANTIZATION.md; this module is its reference
implementation (numpy, integer ops only between the float input edge and the integer logit) and
the C library reproduces it bit for bit. Weights: int8 symmetric per output row. Input: int8 at a
calibrated per-tensor scale. Pre-activations: int16 Q3.12. Gates: Q15. State: int16 at a
calibrated scale. Accumulators: int32 (bounds in the spec), fixed-point requantization in int64.

No torch here: the quantized model, its calibration and `quantized_scores` run on numpy alone.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kws.errors import ExportError

PRE_FRAC = 12            # pre-activations are int16 Q3.12 (s_p = 2^-12)
Q15 = 32768
LUT_SIZE = 513           # table entries (512 intervals of 128 pre-activation steps)
LUT_STEP_BITS = 7
MAX_HIDDEN = 516         # H * 127 * 32767 < 2^31
X_PERCENTILE = 99.99
H_MARGIN = 1.25
CALIB_WINDOWS = 2000     # calibration uses at most this many windows (evenly spaced)


# ---------------------------------------------------------------- integer primitives
def rrshift(v: np.ndarray | int, s: np.ndarray | int) -> np.ndarray:
    """Rounding arithmetic right shift on int64: (v + 2^(s-1)) >> s, and v when s == 0."""
    v = np.asarray(v, dtype=np.int64)
    s = np.asarray(s, dtype=np.int64)
    half = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)
    return np.right_shift(v + half, s)


def fixed_mul(v: np.ndarray, mult: np.ndarray | int, shift: np.ndarray | int) -> np.ndarray:
    """v * mult / 2^shift with rounding (spec's `mul`), all int64."""
    return rrshift(np.asarray(v, dtype=np.int64) * np.asarray(mult, dtype=np.int64), shift)


def sat16(v: np.ndarray) -> np.ndarray:
    return np.clip(v, -32768, 32767)


def round_half_away(v: np.ndarray | float) -> np.ndarray:
    v = np.asarray(v)
    return np.trunc(v + np.copysign(np.asarray(0.5, dtype=v.dtype), v))


def quantize_multiplier(m: float) -> tuple[int, int]:
    """Real m >= 0 -> (M, S) with M / 2^S ~= m, M in [2^30, 2^31) (or smaller when S hits 62)."""
    m = float(m)
    if not math.isfinite(m) or m < 0:
        raise ValueError(f"multiplier must be finite and >= 0, got {m}")
    if m == 0.0:
        return 0, 1
    s = 30 - math.floor(math.log2(m))
    mult = int(round_half_away(math.ldexp(m, s)))
    if mult >= 1 << 31:
        s -= 1
        mult = int(round_half_away(math.ldexp(m, s)))
    if s > 62:
        s = 62
        mult = int(round_half_away(math.ldexp(m, 62)))
    if s < 1:
        raise ValueError(f"multiplier {m} too large for the fixed-point format")
    return mult, s


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


def make_lut(kind: str) -> np.ndarray:
    """513-entry int16 Q15 table of sigmoid or tanh over the Q3.12 range, step 1/32."""
    x = (np.arange(LUT_SIZE, dtype=np.float64) * (1 << LUT_STEP_BITS) - 32768) / (1 << PRE_FRAC)
    if kind == "sigmoid":
        y, lo = _sigmoid(x), 0
    elif kind == "tanh":
        y, lo = np.tanh(x), -32767
    else:
        raise ValueError(kind)
    return np.clip(round_half_away(y * Q15), lo, 32767).astype(np.int16)


def lut_apply(lut: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Spec's interpolated table lookup: p int16 Q3.12 -> Q15 (int64 array)."""
    u = np.asarray(p, dtype=np.int64) + 32768
    k = u >> LUT_STEP_BITS
    f = u & ((1 << LUT_STEP_BITS) - 1)
    lo = lut.astype(np.int64)[k]
    hi = lut.astype(np.int64)[np.minimum(k + 1, LUT_SIZE - 1)]
    return lo + (((hi - lo) * f + (1 << (LUT_STEP_BITS - 1))) >> LUT_STEP_BITS)


def pwl_sigmoid_q(p: np.ndarray) -> np.ndarray:
    return np.clip((np.asarray(p, dtype=np.int64) + (1 << PRE_FRAC)) * 4, 0, 32767)


def pwl_tanh_q(p: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(p, dtype=np.int64) * 8, -32767, 32767)


def quantize_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output row: (int8 [R, C], float64 scales [R]); a zero row gets scale 1."""
    w = np.asarray(w, dtype=np.float64)
    amax = np.max(np.abs(w), axis=1)
    scale = np.where(amax > 0, amax / 127.0, 1.0)
    q = np.clip(round_half_away(w / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def int_matmul(a: np.ndarray, b_t: np.ndarray) -> np.ndarray:
    """Exact integer a @ b_t.T via float64 BLAS: every product and partial sum is an integer
    below 2^53 (|a| <= 32768, |b| <= 127, inner size <= 2^20), so float64 is exact."""
    if a.shape[-1] > (1 << 20):
        raise ValueError("inner dimension too large for exact float64 accumulation")
    return (a.astype(np.float64) @ b_t.astype(np.float64).T).astype(np.int64)


# ---------------------------------------------------------------- float FastGRNN (numpy)
def fastgrnn_dense(weights: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(W [H, F], U [H, H]) in float64, forming the product for low-rank factors."""
    w = np.asarray(weights["W"], np.float64) if "W" in weights else \
        np.asarray(weights["W1"], np.float64) @ np.asarray(weights["W2"], np.float64)
    u = np.asarray(weights["U"], np.float64) if "U" in weights else \
        np.asarray(weights["U1"], np.float64) @ np.asarray(weights["U2"], np.float64)
    return w, u


def float_fastgrnn(weights: dict[str, np.ndarray], nonlinearity: str, x_norm: np.ndarray,
                   track_max: bool = False) -> tuple[np.ndarray, float]:
    """Float64 FastGRNN over normalized windows x [B, T, F] from h = 0.
    Returns (logits [B], max |h| over all frames if track_max else 0)."""
    w, u = fastgrnn_dense(weights)
    b_z = np.asarray(weights["b_z"], np.float64)
    b_h = np.asarray(weights["b_h"], np.float64)
    zeta = _sigmoid(np.asarray(weights["zeta"], np.float64).reshape(-1))  # [1] or [H]
    nu = _sigmoid(np.asarray(weights["nu"], np.float64).reshape(-1))
    if nonlinearity == "pwl":
        sig = lambda v: np.clip((v + 1.0) * 0.5, 0.0, 1.0)  # noqa: E731
        tanh = lambda v: np.clip(v, -1.0, 1.0)  # noqa: E731
    else:
        sig, tanh = _sigmoid, np.tanh
    x = np.asarray(x_norm, dtype=np.float64)
    wx = x @ w.T
    h = np.zeros((x.shape[0], w.shape[0]))
    hmax = 0.0
    for t in range(x.shape[1]):
        pre = wx[:, t] + h @ u.T
        z = sig(pre + b_z)
        c = tanh(pre + b_h)
        h = (zeta * (1.0 - z) + nu) * c + z * h
        if track_max:
            hmax = max(hmax, float(np.max(np.abs(h))) if h.size else 0.0)
    head_w = np.asarray(weights["head.weight"], np.float64).reshape(-1)
    logits = h @ head_w + float(np.asarray(weights["head.bias"]).reshape(-1)[0])
    return logits, hmax


# ---------------------------------------------------------------- the quantized model
@dataclass
class QuantizedFastGRNN:
    """Integer FastGRNN (docs/QUANTIZATION.md). Build with `quantize_fastgrnn`."""

    n_features: int
    hidden: int
    nonlinearity: str                 # "pwl" | "standard" (LUT)
    x_mean: np.ndarray                # float32 [F]
    x_inv_scale: np.ndarray           # float32 [F]
    w_q: np.ndarray                   # int8 [H, F]
    w_mult: np.ndarray                # int32 [H]
    w_shift: np.ndarray               # int32 [H]
    u_q: np.ndarray                   # int8 [H, H]
    u_mult: np.ndarray
    u_shift: np.ndarray
    b_z: np.ndarray                   # int32 [H] (Q3.12)
    b_h: np.ndarray
    zeta_q15: np.ndarray              # int64 [1], or [H] when zeta/nu are per unit (ensembles)
    nu_q15: np.ndarray
    h_mult: int
    h_shift: int
    head_q: np.ndarray                # int8 [H]
    head_bias: int                    # int64
    logit_scale: float
    s_x: float
    s_h: float
    # float scales kept for fake-quant / reporting (not used by the integer step)
    s_w: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    s_u: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    s_head: float = 1.0
    thresholds: dict[str, float] = field(default_factory=dict)
    sigmoid_lut: np.ndarray = field(repr=False, default_factory=lambda: make_lut("sigmoid"))
    tanh_lut: np.ndarray = field(repr=False, default_factory=lambda: make_lut("tanh"))

    # ------------------------------------------------------------ integer pieces
    def quantize_input(self, x_raw: np.ndarray) -> np.ndarray:
        """The float edge: raw log-mel [..., F] -> int8, float32 arithmetic, ties away from 0."""
        x = np.asarray(x_raw, dtype=np.float32)
        if x.shape[-1] != self.n_features:
            raise ValueError(f"expected {self.n_features} features per frame, got {x.shape[-1]}")
        if not np.all(np.isfinite(x)):
            # a NaN would become an arbitrary int8 (undefined cast), silently wrong
            raise ValueError("features contain NaN or infinity")
        v = (x - self.x_mean) * self.x_inv_scale          # float32 throughout
        return np.clip(round_half_away(v), -127, 127).astype(np.int8)

    def _sig(self, p: np.ndarray) -> np.ndarray:
        return pwl_sigmoid_q(p) if self.nonlinearity == "pwl" else lut_apply(self.sigmoid_lut, p)

    def _tanh(self, p: np.ndarray) -> np.ndarray:
        return pwl_tanh_q(p) if self.nonlinearity == "pwl" else lut_apply(self.tanh_lut, p)

    def step_int(self, acc_w: np.ndarray, h: np.ndarray) -> dict[str, np.ndarray]:
        """Steps 2-8 of the spec for a batch: acc_w [B, H] (int32 values), h [B, H] int16 ->
        dict of the intermediate integer arrays (int64) including the new state 'h'."""
        h = np.asarray(h, dtype=np.int64)
        acc_u = int_matmul(h, self.u_q)
        p = fixed_mul(acc_w, self.w_mult, self.w_shift) + fixed_mul(acc_u, self.u_mult, self.u_shift)
        pz = sat16(p + self.b_z.astype(np.int64))
        pc = sat16(p + self.b_h.astype(np.int64))
        z = self._sig(pz)
        c = self._tanh(pc)
        coef = self.nu_q15 + rrshift(self.zeta_q15 * (Q15 - z), 15)
        g = rrshift(coef * c, 15)
        h_new = sat16(fixed_mul(g, self.h_mult, self.h_shift) + rrshift(z * h, 15))
        return {"acc_u": acc_u, "p": p, "pz": pz, "pc": pc, "z": z, "c": c, "h": h_new}

    def logit_int(self, h: np.ndarray) -> np.ndarray:
        """Step 9: int64 logit of states h [..., H]."""
        return int_matmul(np.asarray(h, np.int64), self.head_q[None, :])[..., 0] + np.int64(self.head_bias)

    def init_state(self, batch: int) -> np.ndarray:
        return np.zeros((batch, self.hidden), dtype=np.int16)

    def step(self, frame_raw: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Streaming: raw frame [B, F] and int16 state [B, H] -> (int64 logit [B], new state)."""
        xq = self.quantize_input(frame_raw)
        acc_w = int_matmul(xq, self.w_q)
        h = self.step_int(acc_w, state)["h"].astype(np.int16)
        return self.logit_int(h), h

    def run_int(self, x_raw: np.ndarray) -> np.ndarray:
        """Windows x [B, T, F] (raw log-mel) from h = 0 -> int64 logit of the last state [B]."""
        x_raw = np.asarray(x_raw)
        if x_raw.ndim != 3:
            raise ValueError(f"expected [B, T, F] windows, got shape {x_raw.shape}")
        acc_w = int_matmul(self.quantize_input(x_raw), self.w_q)      # [B, T, H] all frames at once
        h = self.init_state(x_raw.shape[0]).astype(np.int64)
        for t in range(x_raw.shape[1]):
            h = self.step_int(acc_w[:, t], h)["h"]
        return self.logit_int(h)

    def scores(self, x_raw: np.ndarray, batch: int = 1024) -> np.ndarray:
        """sigmoid(integer logit * logit_scale) for windows [N, T, F], float64 [N]."""
        out = [self.run_int(np.asarray(x_raw[i:i + batch])) for i in range(0, len(x_raw), batch)]
        logits = np.concatenate(out) if out else np.zeros(0, np.int64)
        return _sigmoid(logits.astype(np.float64) * self.logit_scale)

    def threshold_q(self, tau: float) -> int:
        """Integer-logit threshold equivalent to score >= tau (spec, Decision)."""
        if not 0.0 < tau < 1.0:
            # A score threshold of 0 or 1 (or beyond) accepts everything / nothing.
            return -(1 << 62) if tau <= 0.0 else (1 << 62)
        return int(math.ceil(math.log(tau / (1.0 - tau)) / self.logit_scale))

    @property
    def zeta_per_unit(self) -> bool:
        return self.zeta_q15.size > 1

    def dequantized(self) -> dict[str, np.ndarray]:
        """Float weights after int8 rounding (for fake-quant comparison / ONNX int8 reference)."""
        return {"W": self.w_q.astype(np.float64) * self.s_w[:, None],
                "U": self.u_q.astype(np.float64) * self.s_u[:, None]}

    # ------------------------------------------------------------ C generator interface
    def to_arrays(self) -> dict[str, np.ndarray]:
        d = {
            "x_mean": self.x_mean.astype(np.float32), "x_inv_scale": self.x_inv_scale.astype(np.float32),
            "W_q": self.w_q.astype(np.int8), "W_mult": self.w_mult.astype(np.int32),
            "W_shift": self.w_shift.astype(np.int32),
            "U_q": self.u_q.astype(np.int8), "U_mult": self.u_mult.astype(np.int32),
            "U_shift": self.u_shift.astype(np.int32),
            "b_z": self.b_z.astype(np.int32), "b_h": self.b_h.astype(np.int32),
            "head_q": self.head_q.astype(np.int8), "head_bias": np.array([self.head_bias], np.int64),
        }
        if self.zeta_per_unit:
            d["zeta_q15"] = self.zeta_q15.astype(np.int32)
            d["nu_q15"] = self.nu_q15.astype(np.int32)
        if self.nonlinearity != "pwl":
            d["sigmoid_lut"] = self.sigmoid_lut.astype(np.int16)
            d["tanh_lut"] = self.tanh_lut.astype(np.int16)
        return d

    def scalars(self) -> dict[str, Any]:
        return {"n_features": self.n_features, "hidden": self.hidden,
                "nonlinearity": 0 if self.nonlinearity == "pwl" else 1,
                "zeta_per_unit": int(self.zeta_per_unit),
                # one pair: the values (per unit: the arrays of to_arrays)
                "zeta_q15": None if self.zeta_per_unit else int(self.zeta_q15[0]),
                "nu_q15": None if self.zeta_per_unit else int(self.nu_q15[0]),
                "h_mult": int(self.h_mult), "h_shift": int(self.h_shift),
                "logit_scale": float(self.logit_scale), "s_x": float(self.s_x), "s_h": float(self.s_h),
                "threshold_q": {k: self.threshold_q(v) for k, v in self.thresholds.items()}}

    def golden(self, x_raw: np.ndarray) -> dict[str, np.ndarray]:
        """Traces of every integer stage for one sequence x_raw [T, F] from h = 0 (the C harness
        compares them); logit_q/score are taken after every frame."""
        x_raw = np.asarray(x_raw)
        if x_raw.ndim != 2:
            raise ValueError(f"golden expects one sequence [T, F], got shape {x_raw.shape}")
        xq = self.quantize_input(x_raw)
        acc_w = int_matmul(xq, self.w_q)
        h = np.zeros((1, self.hidden), np.int64)
        names = ("acc_u", "p", "pz", "pc", "z", "c", "h")
        traces: dict[str, list[np.ndarray]] = {n: [] for n in names}
        logits = []
        for t in range(x_raw.shape[0]):
            r = self.step_int(acc_w[t:t + 1], h)
            h = r["h"]
            for n in names:
                traces[n].append(r[n][0])
            logits.append(self.logit_int(h)[0])
        out: dict[str, np.ndarray] = {"x_raw": x_raw.astype(np.float32), "x_q": xq,
                                      "acc_w": acc_w.astype(np.int32)}
        for n in names:
            arr = np.stack(traces[n]) if traces[n] else np.zeros((0, self.hidden), np.int64)
            out[n] = arr.astype(np.int64 if n == "p" else (np.int32 if n == "acc_u" else np.int16))
        out["logit_q"] = np.asarray(logits, dtype=np.int64)
        out["score"] = _sigmoid(out["logit_q"].astype(np.float64) * self.logit_scale)
        return out


def _windows_for_calibration(x: np.ndarray, limit: int = CALIB_WINDOWS) -> np.ndarray:
    n = len(x)
    if n == 0:
        raise ValueError("no calibration windows")
    idx = np.unique(np.linspace(0, n - 1, min(n, limit)).round().astype(int))
    return np.asarray(x[idx], dtype=np.float32)


def quantize_fastgrnn(weights: dict[str, np.ndarray], hparams: dict[str, Any], mean: np.ndarray,
                      std: np.ndarray, calib_x_raw: np.ndarray,
                      thresholds: dict[str, float] | None = None,
                      nonlinearity: str | None = None) -> QuantizedFastGRNN:
    """Post-training int8 quantization of a FastGRNN (float weights dict as in a bundle).

    calib_x_raw: raw log-mel windows [N, T, F] from the TRAINING split (scales only, no labels).
    nonlinearity: override the model's ("pwl" on a model trained with "standard" measures the
    cost of switching; default keeps the model's own)."""
    nonlin = nonlinearity or hparams.get("nonlinearity", "standard")
    if nonlin not in ("standard", "pwl"):
        raise ValueError(f"nonlinearity must be 'standard' or 'pwl', got {nonlin!r}")
    w, u = fastgrnn_dense(weights)
    n_hidden, n_feat = w.shape
    if n_hidden > MAX_HIDDEN:
        raise ExportError(f"int8 FastGRNN supports hidden <= {MAX_HIDDEN} (int32 accumulators); "
                          f"this model has {n_hidden}")
    mean = np.asarray(mean, np.float64).reshape(-1)
    std = np.asarray(std, np.float64).reshape(-1)
    if mean.shape != (n_feat,) or std.shape != (n_feat,):
        raise ValueError(f"normalization must have {n_feat} entries")
    calib = _windows_for_calibration(calib_x_raw)
    if calib.ndim != 3 or calib.shape[-1] != n_feat:
        raise ValueError(f"calibration windows must be [N, T, {n_feat}], got {calib.shape}")
    x_norm = (calib.astype(np.float64) - mean) / std
    amax = float(np.percentile(np.abs(x_norm), X_PERCENTILE))
    s_x = max(amax, 1e-6) / 127.0
    # h range of the float model with the chosen nonlinearity.
    _, hmax = float_fastgrnn(weights, nonlin, x_norm, track_max=True)
    s_h = H_MARGIN * max(hmax, 1e-3) / 32767.0

    w_q, s_w = quantize_rows(w)
    u_q, s_u = quantize_rows(u)
    pre = float(1 << PRE_FRAC)
    wm = [quantize_multiplier(s * s_x * pre) for s in s_w]
    um = [quantize_multiplier(s * s_h * pre) for s in s_u]
    head = np.asarray(weights["head.weight"], np.float64).reshape(1, -1)
    head_q, s_head_arr = quantize_rows(head)
    s_head = float(s_head_arr[0])
    logit_scale = s_head * s_h
    head_bias = int(round_half_away(float(np.asarray(weights["head.bias"]).reshape(-1)[0]) / logit_scale))
    h_mult, h_shift = quantize_multiplier(1.0 / (Q15 * s_h))
    zeta = _sigmoid(np.asarray(weights["zeta"], np.float64).reshape(-1))
    nu = _sigmoid(np.asarray(weights["nu"], np.float64).reshape(-1))

    def bias_q(b: np.ndarray) -> np.ndarray:
        return np.clip(round_half_away(np.asarray(b, np.float64) * pre), -(2**31 - 1), 2**31 - 1).astype(np.int32)

    return QuantizedFastGRNN(
        n_features=n_feat, hidden=n_hidden, nonlinearity=nonlin,
        x_mean=mean.astype(np.float32), x_inv_scale=(1.0 / (std * s_x)).astype(np.float32),
        w_q=w_q, w_mult=np.array([m for m, _ in wm], np.int32), w_shift=np.array([s for _, s in wm], np.int32),
        u_q=u_q, u_mult=np.array([m for m, _ in um], np.int32), u_shift=np.array([s for _, s in um], np.int32),
        b_z=bias_q(weights["b_z"]), b_h=bias_q(weights["b_h"]),
        zeta_q15=round_half_away(zeta * Q15).astype(np.int64), nu_q15=round_half_away(nu * Q15).astype(np.int64),
        h_mult=h_mult, h_shift=h_shift, head_q=head_q[0], head_bias=head_bias,
        logit_scale=logit_scale, s_x=s_x, s_h=s_h, s_w=s_w, s_u=s_u, s_head=s_head,
        thresholds={str(k): float(v) for k, v in (thresholds or {}).items()},
    )


# ---------------------------------------------------------------- LSTM / GRU (simulated int8)
class SimulatedInt8Rnn:
    """int8 LSTM/GRU as onnxruntime's dynamic quantization runs it, simulated in float: weights
    int8 per row (dequantized), and the inputs of every mat-vec (frame, state) rounded to uint8
    with an asymmetric per-tensor range computed per call. Not bit-exact with onnxruntime."""

    def __init__(self, kind: str, hparams: dict[str, Any], weights: dict[str, np.ndarray],
                 mean: np.ndarray, std: np.ndarray) -> None:
        from kws.models.reference import ReferenceModel

        qw = {}
        for name, v in weights.items():
            v = np.asarray(v, np.float64)
            if v.ndim == 2 and name.startswith(kind + ".weight"):
                q, s = quantize_rows(v)
                qw[name] = q.astype(np.float64) * s[:, None]
            else:
                qw[name] = v
        self.kind = kind
        self.ref = ReferenceModel(kind, hparams, qw)
        self.mean = np.asarray(mean, np.float64)
        self.std = np.asarray(std, np.float64)

    @staticmethod
    def _uint8(v: np.ndarray) -> np.ndarray:
        lo = min(float(v.min()), 0.0)
        hi = max(float(v.max()), 0.0)
        scale = (hi - lo) / 255.0 if hi > lo else 1.0
        zp = np.round(-lo / scale)
        return (np.clip(np.round(v / scale) + zp, 0, 255) - zp) * scale

    def scores(self, x_raw: np.ndarray, batch: int = 1024) -> np.ndarray:
        out = []
        for i in range(0, len(x_raw), batch):
            x = (np.asarray(x_raw[i:i + batch], np.float64) - self.mean) / self.std
            state = self.ref.init_state(x.shape[0])
            logit = np.zeros(x.shape[0])
            for t in range(x.shape[1]):
                state = tuple(self._uint8(s) for s in state[:1]) + tuple(state[1:])
                logit, state = self.ref.step(self._uint8(x[:, t]), state)
            out.append(np.asarray(logit, np.float64))
        logits = np.concatenate(out) if out else np.zeros(0)
        return _sigmoid(logits)


# ---------------------------------------------------------------- bundles
def calibration_windows(bundle: Any, data_dir: str | None = None, limit: int = CALIB_WINDOWS
                        ) -> np.ndarray | None:
    """Raw training windows [N, T, F] for calibration: from `data_dir` (a dataset folder), else
    from the dataset recorded in the bundle's provenance; None when neither is readable."""
    from pathlib import Path

    candidates = [data_dir] if data_dir else []
    prov = getattr(bundle, "provenance", {}) or {}
    for key in ("dataset", "data_dir"):
        if isinstance(prov.get(key), str):
            candidates.append(prov[key])
    for cand in candidates:
        path = Path(cand)
        if not (path / "features" / "train.npy").exists():
            if data_dir and cand == data_dir:
                from kws.errors import DataError

                raise DataError(f"{path}: no training features (features/train.npy) to calibrate the int8 "
                                "scales; pass the dataset folder the bundle was trained on")
            continue
        from kws.data.dataset import load_split

        split = load_split(path, "train")
        if split.feature_config != bundle.feature_config:
            from kws.errors import DataError

            raise DataError(f"{path} was featurized differently from the bundle {bundle.path}; "
                            "calibrate with the dataset the bundle was trained on")
        if len(split.x) == 0:
            continue
        return _windows_for_calibration(split.x, limit)
    return None


def quantize_bundle(bundle: Any, calib_x: np.ndarray | None = None, data_dir: str | None = None,
                    nonlinearity: str | None = None) -> QuantizedFastGRNN | SimulatedInt8Rnn:
    """The int8 model of a loaded bundle. FastGRNN: the integer reference (calibrated on
    `calib_x`, or the training split of `data_dir` / the bundle's recorded dataset); LSTM/GRU:
    the simulated dynamic int8 model (needs no calibration)."""
    if bundle.model_kind != "fastgrnn":
        return SimulatedInt8Rnn(bundle.model_kind, bundle.hparams, bundle.weights, bundle.mean, bundle.std)
    if calib_x is None:
        calib_x = calibration_windows(bundle, data_dir)
    if calib_x is None:
        raise ExportError(f"{bundle.path}: int8 quantization needs training features to calibrate its scales "
                          "and the bundle's recorded dataset is not readable here; pass the dataset folder "
                          "(kws export ... --data DATASET_DIR)")
    return quantize_fastgrnn(bundle.weights, bundle.hparams, bundle.mean, bundle.std, calib_x,
                             thresholds=bundle.thresholds, nonlinearity=nonlinearity)


def quantized_scores(bundle: Any, x_features_raw: np.ndarray, calib_x: np.ndarray | None = None,
                     data_dir: str | None = None) -> np.ndarray:
    """Scores [N] of raw log-mel windows [N, T, F] under the int8 model of `bundle` (what
    `kws eval --int8` reports). Calibration as in quantize_bundle; when no training features can
    be found, the scales are calibrated on the scored windows themselves (label-free) with a warning."""
    x = np.asarray(x_features_raw, dtype=np.float32)
    if bundle.model_kind == "fastgrnn" and calib_x is None:
        calib_x = calibration_windows(bundle, data_dir)
        if calib_x is None:
            warnings.warn(f"{bundle.path}: training features not found; int8 scales calibrated on the "
                          "evaluated windows themselves (no labels used)", stacklevel=2)
            calib_x = x
    model = quantize_bundle(bundle, calib_x=calib_x, data_dir=data_dir)
    return model.scores(x)


def switch_to_pwl_loss(bundle: Any, x_raw: np.ndarray, calib_x: np.ndarray) -> dict[str, float]:
    """Mean |score change| when a model trained with standard sigmoid/tanh is run with the
    piecewise-linear forms (float and int8), to decide whether the pwl export is acceptable."""
    xn = (np.asarray(x_raw, np.float64) - bundle.mean) / bundle.std
    f_std, _ = float_fastgrnn(bundle.weights, "standard", xn)
    f_pwl, _ = float_fastgrnn(bundle.weights, "pwl", xn)
    q = quantize_fastgrnn(bundle.weights, bundle.hparams, bundle.mean, bundle.std, calib_x, nonlinearity="pwl")
    s_std = _sigmoid(f_std)
    return {"float_pwl": float(np.mean(np.abs(_sigmoid(f_pwl) - s_std))),
            "int8_pwl": float(np.mean(np.abs(q.scores(x_raw) - s_std)))}



# ---------------------------------------------------------------- quantization-aware fine-tuning
def _fake_quant_logits(model: Any, x_norm: Any, s_x: float, s_h: float) -> Any:
    """Float simulation of the integer spec in torch with straight-through rounding: int8 input,
    int8 per-row weights (scales follow the weights), Q3.12 pre-activations, Q15 gates, int16
    state at the calibrated s_h. Returns logits [B] (differentiable w.r.t. the model's weights)."""
    import torch

    def ste(v):
        return v + (torch.round(v) - v).detach()

    def rows(w):
        scale = (w.detach().abs().amax(dim=1, keepdim=True) / 127.0).clamp_min(1e-12)
        return torch.clamp(ste(w / scale), -127, 127) * scale

    hp = model.hparams
    w = model.W if hp["w_rank"] is None else model.W1 @ model.W2
    u = model.U if hp["u_rank"] is None else model.U1 @ model.U2
    wq, uq, head = rows(w), rows(u), rows(model.head.weight)
    if hp["nonlinearity"] == "pwl":
        sig = lambda v: torch.clamp((v + 1.0) * 0.5, 0.0, 1.0)  # noqa: E731
        tanh = lambda v: torch.clamp(v, -1.0, 1.0)  # noqa: E731
    else:
        sig, tanh = torch.sigmoid, torch.tanh
    pre_s = float(1 << PRE_FRAC)
    xq = torch.clamp(ste(x_norm / s_x), -127, 127) * s_x
    wx = xq @ wq.t()
    zeta, nu = torch.sigmoid(model.zeta), torch.sigmoid(model.nu)
    h = torch.zeros(x_norm.shape[0], w.shape[0], dtype=x_norm.dtype)
    for t in range(x_norm.shape[1]):
        pre = wx[:, t] + h @ uq.t()
        pz = torch.clamp(ste((pre + model.b_z) * pre_s), -32768, 32767) / pre_s
        pc = torch.clamp(ste((pre + model.b_h) * pre_s), -32768, 32767) / pre_s
        z = torch.clamp(ste(sig(pz) * Q15), 0, 32767) / Q15
        c = torch.clamp(ste(tanh(pc) * Q15), -32767, 32767) / Q15
        h = (zeta * (1.0 - z) + nu) * c + z * h
        h = torch.clamp(ste(h / s_h), -32768, 32767) * s_h
    return (h @ head.t()).squeeze(-1) + model.head.bias


def quantize_aware_finetune(bundle_path: Any, data_dir: Any, epochs: int = 3, out: Any = None,
                            lr: float = 3e-4, batch_size: int = 64, seed: int = 0,
                            nonlinearity: str | None = None) -> tuple[Any, dict[str, Any]]:
    """Fine-tune a FastGRNN bundle for a few epochs through the fake-quantized forward (straight-
    through estimators), BCE with class balance, on the dataset's train split; keep the epoch whose
    INTEGER model (this module's reference) has the best validation recall at 3% FPR (epoch 0 = the
    original weights, so it never gets worse on validation). Saves a new bundle (float weights,
    thresholds recalibrated on validation with the float model as the bundle format defines) and
    returns (path, report). nonlinearity="pwl" on a model trained with sigmoid/tanh fine-tunes it
    into the piecewise-linear forms (no lookup tables on the device), recovering the loss of the
    plain switch; the saved bundle then has nonlinearity "pwl"."""
    from pathlib import Path

    import torch

    from kws.bundle import load_bundle, save_model_bundle
    from kws.data.dataset import load_split
    from kws.metrics import recall_at_fpr
    from kws.util import progress

    bundle_path = Path(bundle_path)
    b = load_bundle(bundle_path)
    if b.model_kind != "fastgrnn":
        raise ExportError(f"{bundle_path}: quantization-aware fine-tuning is for FastGRNN bundles "
                          f"(this is {b.model_kind}; its int8 export uses dynamic quantization)")
    hparams = dict(b.hparams)
    if nonlinearity is not None:
        if nonlinearity not in ("standard", "pwl"):
            raise ValueError(f"nonlinearity must be 'standard' or 'pwl', got {nonlinearity!r}")
        hparams["nonlinearity"] = nonlinearity
    train, val = load_split(data_dir, "train"), load_split(data_dir, "val")
    calib = _windows_for_calibration(train.x)
    from kws.models import build_model

    def make_model() -> Any:
        m = build_model("fastgrnn", b.n_features, **hparams)
        m.load_weights_numpy(b.weights)
        return m

    model = make_model().double()
    x_tr = torch.as_tensor(b.normalize(np.asarray(train.x)), dtype=torch.float64)
    y_tr = torch.as_tensor(np.asarray(train.y), dtype=torch.float64)
    x_val = np.asarray(val.x, np.float32)
    y_val = np.asarray(val.y)

    def int8_val_recall(weights: dict[str, np.ndarray]) -> tuple[float, QuantizedFastGRNN]:
        q = quantize_fastgrnn(weights, hparams, b.mean, b.std, calib)
        s = q.scores(x_val)
        return recall_at_fpr(s[y_val == 1], s[y_val == 0], 0.03)[0], q

    def weights_now() -> dict[str, np.ndarray]:
        return {k: v.detach().float().numpy().copy() for k, v in model.state_dict().items()}

    best_w = weights_now()
    best_recall, q0 = int8_val_recall(best_w)
    history = [{"epoch": 0, "val_int8_recall@3%": best_recall}]
    n_pos = float(y_tr.sum())
    pos_weight = torch.tensor((len(y_tr) - n_pos) / max(n_pos, 1.0), dtype=torch.float64)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for epoch in progress(range(1, epochs + 1), desc="QAT epochs", total=epochs):
        # scales of the fixed-point format follow the current weights' calibration
        s_x, s_h = q0.s_x, q0.s_h
        perm = torch.randperm(len(y_tr), generator=gen)
        model.train()
        for i in range(0, len(perm), batch_size):
            idx = perm[i:i + batch_size]
            logits = _fake_quant_logits(model, x_tr[idx], s_x, s_h)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y_tr[idx], pos_weight=pos_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
        recall, q0 = int8_val_recall(weights_now())
        history.append({"epoch": epoch, "val_int8_recall@3%": recall, "last_loss": float(loss.detach())})
        if recall > best_recall:
            best_recall, best_w = recall, weights_now()
    model = make_model()
    model.load_weights_numpy(best_w)
    from kws.models.reference import ReferenceModel

    ref_scores = ReferenceModel(b.model_kind, hparams, best_w).score(b.normalize(x_val))
    thresholds = {f"{p:g}": recall_at_fpr(ref_scores[y_val == 1], ref_scores[y_val == 0], p)[1]
                  for p in (0.03, 0.05)}
    out = Path(out) if out else bundle_path.with_name(bundle_path.stem + "-qat.kws")
    provenance = {**b.provenance, "qat": {"from": str(bundle_path), "epochs": epochs, "lr": lr,
                                          "nonlinearity": hparams["nonlinearity"],
                                          "history": history, "dataset": str(data_dir)}}
    provenance.setdefault("dataset", str(Path(data_dir).resolve()))
    # the original's val/test metrics describe other weights: keep them only in provenance
    provenance["qat"]["original_metrics"] = {k: v for k, v in b.metrics.items() if k in ("val", "test")}
    metrics = {"qat": {"val_int8_recall@3%": best_recall, "val_float_recall@3%": recall_at_fpr(
        ref_scores[y_val == 1], ref_scores[y_val == 0], 0.03)[0]}}
    save_model_bundle(out, model, b.feature_config, b.mean, b.std, b.keyword, thresholds,
                      metrics=metrics, provenance=provenance)
    return out, {"history": history, "best_val_int8_recall@3%": best_recall}
