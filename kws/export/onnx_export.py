"""Export a bundle to ONNX models that onnxruntime runs with no torch (float and int8).

Files written to the output folder (names are part of the contract with kws.stream):

    model_window.onnx       input  "logmel" float32 [B, 98, F]  raw log-mel (normalization folded in)
                            output "score"  float32 [B]          sigmoid of the logit after the last frame
    model_step.onnx         inputs "frame" float32 [B, F] (raw log-mel), "h" float32 [B, H]
                                   (LSTM also "c" [B, H]); zero state at the start of a window
                            outputs "score" [B], "h_out" [B, H] (LSTM also "c_out")
    model_window_int8.onnx, model_step_int8.onnx    the same interface, int8 (with --int8)
    export.json             keyword, feature config, normalization, thresholds, files, shapes

FastGRNN is written as MatMul + elementwise ops (the window model unrolled over its 98 frames), so
onnxruntime's static QDQ quantization quantizes all its matrix products (int8 weights per output
channel; symmetric activations calibrated on training features: int8 input features, int16 state,
as in docs/QUANTIZATION.md). GRU is also written as MatMul +
elementwise ops (onnxruntime's quantizers leave the ONNX GRU op float) and LSTM uses the ONNX LSTM
op; both get dynamic quantization (int8 weights per output channel, activations quantized per call:
MatMulInteger, and DynamicQuantizeLSTM for the LSTM op), which needs no calibration data.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from kws.errors import ExportError
from kws.util import atomic_write_text

OPSET = 17
WINDOW_FILE = "model_window.onnx"
STEP_FILE = "model_step.onnx"
EXPORT_JSON = "export.json"
CALIB_ONNX_WINDOWS = 256    # windows fed to onnxruntime's static calibration (it is slow per tensor)


def int8_name(name: str) -> str:
    return name.replace(".onnx", "_int8.onnx")


# ---------------------------------------------------------------- torch graphs for export
def _modules():
    """Torch modules written for export (defined lazily so importing this file needs no torch)."""
    import torch
    from torch import nn

    def const(v: np.ndarray) -> nn.Parameter:
        return nn.Parameter(torch.as_tensor(np.asarray(v, dtype=np.float32)), requires_grad=False)

    class FastGRNNGraph(nn.Module):
        """FastGRNN as MatMul + elementwise ops; weights stored [in, out] so MatMul's B is a constant
        initializer with output channels on axis 1."""

        def __init__(self, weights: dict[str, np.ndarray], hparams: dict[str, Any],
                     mean: np.ndarray, std: np.ndarray) -> None:
            super().__init__()
            self.low_w = "W" not in weights
            self.low_u = "U" not in weights
            if self.low_w:
                self.w2_t, self.w1_t = const(weights["W2"].T), const(weights["W1"].T)
            else:
                self.w_t = const(weights["W"].T)
            if self.low_u:
                self.u2_t, self.u1_t = const(weights["U2"].T), const(weights["U1"].T)
            else:
                self.u_t = const(weights["U"].T)
            self.b_z, self.b_h = const(weights["b_z"]), const(weights["b_h"])
            def sig(v):  # a scalar for one pair, [H] when per unit (ensembles)
                v = np.asarray(v, np.float64).reshape(-1)
                return 1.0 / (1.0 + np.exp(-(v if v.size > 1 else v[0])))

            self.zeta = const(np.array(sig(weights["zeta"])))
            self.nu = const(np.array(sig(weights["nu"])))
            self.head_t = const(weights["head.weight"].T)          # [H, 1]
            self.head_b = const(weights["head.bias"])
            self.inv_std = const(1.0 / np.asarray(std, np.float64))
            self.shift = const(-np.asarray(mean, np.float64) / np.asarray(std, np.float64))
            self.pwl = hparams.get("nonlinearity") == "pwl"

        def _sig(self, v):
            return torch.clamp((v + 1.0) * 0.5, 0.0, 1.0) if self.pwl else torch.sigmoid(v)

        def _tanh(self, v):
            return torch.clamp(v, -1.0, 1.0) if self.pwl else torch.tanh(v)

        def project(self, x):  # W x for every frame at once (one MatMul)
            xn = x * self.inv_std + self.shift
            return (xn @ self.w2_t) @ self.w1_t if self.low_w else xn @ self.w_t

        def uh(self, h):
            return (h @ self.u2_t) @ self.u1_t if self.low_u else h @ self.u_t

        def cell(self, wx, h):
            pre = wx if h is None else wx + self.uh(h)
            z = self._sig(pre + self.b_z)
            c = self._tanh(pre + self.b_h)
            new = (self.zeta * (1.0 - z) + self.nu) * c
            return new if h is None else new + z * h

        def score(self, h):
            return torch.sigmoid((h @ self.head_t + self.head_b).squeeze(-1))

    class CellWindow(nn.Module):
        """The 1 s window model of a graph with project(x) / cell(p, h) / score(h) (FastGRNN, GRU)."""

        def __init__(self, g: nn.Module, frames: int) -> None:
            super().__init__()
            self.g, self.frames = g, frames

        def forward(self, x):
            p = self.g.project(x)
            h = None                                # h0 = 0: the first step skips the recurrent terms
            for t in range(self.frames):
                h = self.g.cell(p[:, t], h)
            return self.g.score(h)

    class CellStep(nn.Module):
        """The streaming step model of the same graphs: (frame, h) -> (score, h)."""

        def __init__(self, g: nn.Module) -> None:
            super().__init__()
            self.g = g

        def forward(self, frame, h):
            h = self.g.cell(self.g.project(frame), h)
            return self.g.score(h), h

    class RnnGraph(nn.Module):
        def __init__(self, kind: str, weights: dict[str, np.ndarray], hidden: int,
                     mean: np.ndarray, std: np.ndarray) -> None:
            super().__init__()
            n_features = weights[f"{kind}.weight_ih_l0"].shape[1]
            self.kind = kind
            self.rnn = nn.LSTM(n_features, hidden, batch_first=True)
            with torch.no_grad():
                for name, p in self.rnn.named_parameters():
                    p.copy_(torch.as_tensor(np.asarray(weights[f"{kind}.{name}"], np.float32)))
            self.head_t = const(weights["head.weight"].T)
            self.head_b = const(weights["head.bias"])
            self.inv_std = const(1.0 / np.asarray(std, np.float64))
            self.shift = const(-np.asarray(mean, np.float64) / np.asarray(std, np.float64))

        def score(self, h):
            return torch.sigmoid((h @ self.head_t + self.head_b).squeeze(-1))

    class RnnWindow(nn.Module):
        def __init__(self, g: RnnGraph) -> None:
            super().__init__()
            self.g = g

        def forward(self, x):
            out, _ = self.g.rnn(x * self.g.inv_std + self.g.shift)
            return self.g.score(out[:, -1])

    class LstmStep(nn.Module):
        def __init__(self, g: RnnGraph) -> None:
            super().__init__()
            self.g = g

        def forward(self, frame, h, c):
            xn = (frame * self.g.inv_std + self.g.shift).unsqueeze(1)
            out, (h2, c2) = self.g.rnn(xn, (h.unsqueeze(0), c.unsqueeze(0)))
            return self.g.score(out[:, 0]), h2.squeeze(0), c2.squeeze(0)

    class GruGraph(nn.Module):
        """GRU as MatMul + elementwise ops (torch.nn.GRU's equations), so that onnxruntime's
        quantizer turns its matrix products into int8 (it leaves the ONNX GRU op float)."""

        def __init__(self, weights: dict[str, np.ndarray], mean: np.ndarray, std: np.ndarray) -> None:
            super().__init__()
            self.w_ih_t = const(weights["gru.weight_ih_l0"].T)     # [F, 3H]
            self.w_hh_t = const(weights["gru.weight_hh_l0"].T)     # [H, 3H]
            self.b_ih, self.b_hh = const(weights["gru.bias_ih_l0"]), const(weights["gru.bias_hh_l0"])
            self.head_t = const(weights["head.weight"].T)
            self.head_b = const(weights["head.bias"])
            self.inv_std = const(1.0 / np.asarray(std, np.float64))
            self.shift = const(-np.asarray(mean, np.float64) / np.asarray(std, np.float64))
            self.hidden = int(weights["gru.weight_hh_l0"].shape[1])

        def project(self, x):  # input gates for every frame at once
            return (x * self.inv_std + self.shift) @ self.w_ih_t + self.b_ih

        def cell(self, gi, h):
            n_h = self.hidden
            gh = self.b_hh if h is None else h @ self.w_hh_t + self.b_hh
            i_r, i_z, i_n = gi.split(n_h, dim=-1)          # one ONNX Split, not three Slices
            h_r, h_z, h_n = gh.split(n_h, dim=-1)
            r = torch.sigmoid(i_r + h_r)
            z = torch.sigmoid(i_z + h_z)
            n = torch.tanh(i_n + r * h_n)
            return (1.0 - z) * n if h is None else (1.0 - z) * n + z * h

        def score(self, h):
            return torch.sigmoid((h @ self.head_t + self.head_b).squeeze(-1))

    return FastGRNNGraph, CellWindow, CellStep, RnnGraph, RnnWindow, LstmStep, GruGraph


def build_torch_graphs(bundle: Any) -> tuple[Any, Any]:
    """(window module, step module) in float32 for a loaded bundle."""
    FastGRNNGraph, CellWindow, CellStep, RnnGraph, RnnWindow, LstmStep, GruGraph = _modules()
    frames = bundle.feature_config.window_frames
    if bundle.model_kind == "fastgrnn":
        g = FastGRNNGraph(bundle.weights, bundle.hparams, bundle.mean, bundle.std)
        return CellWindow(g, frames).eval(), CellStep(g).eval()
    if bundle.model_kind == "gru":
        g = GruGraph(bundle.weights, bundle.mean, bundle.std)
        return CellWindow(g, frames).eval(), CellStep(g).eval()
    g = RnnGraph(bundle.model_kind, bundle.weights, bundle.hparams["hidden"], bundle.mean, bundle.std)
    return RnnWindow(g).eval(), LstmStep(g).eval()


def state_names(kind: str) -> list[str]:
    return ["h", "c"] if kind == "lstm" else ["h"]


def _export(module: Any, args: tuple, path: Path, input_names: list[str], output_names: list[str]) -> None:
    import torch

    dyn = {n: {0: "batch"} for n in input_names + output_names}
    # The tracer warns about shape checks inside nn.LSTM/GRU and about batch sizes with RNN ops; the
    # states are explicit inputs (step) or built from the input's batch (window), and the tests run
    # other batch sizes than the traced one.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                          dynamic_axes=dyn, opset_version=OPSET, dynamo=False, do_constant_folding=True)


def export_float(bundle: Any, out: Path) -> dict[str, Path]:
    """Write the float window and step models into `out` (atomic per file)."""
    import torch

    window, step = build_torch_graphs(bundle)
    f, h = bundle.n_features, bundle.hparams["hidden"]
    frames = bundle.feature_config.window_frames
    states = state_names(bundle.model_kind)
    paths = {}
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        tw, ts = Path(tmp) / WINDOW_FILE, Path(tmp) / STEP_FILE
        _export(window, (torch.zeros(2, frames, f),), tw, ["logmel"], ["score"])
        _export(step, (torch.zeros(2, f),) + tuple(torch.zeros(2, h) for _ in states), ts,
                ["frame"] + states, ["score"] + [s + "_out" for s in states])
        for src in (tw, ts):
            os.replace(src, out / src.name)
            paths[src.name] = out / src.name
    return paths


# ---------------------------------------------------------------- int8
class _Reader:
    """onnxruntime CalibrationDataReader over a list of feed dicts."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self.feeds = feeds
        self.i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.feeds):
            return None
        self.i += 1
        return self.feeds[self.i - 1]

    def rewind(self) -> None:
        self.i = 0


def _step_calibration_feeds(bundle: Any, calib_x: np.ndarray, batch: int = 32) -> list[dict[str, np.ndarray]]:
    """(frame, state) pairs along real trajectories of the float model, for the step model."""
    ref = bundle.reference_model()
    names = state_names(bundle.model_kind)
    feeds = []
    for i in range(0, len(calib_x), batch):
        x = np.asarray(calib_x[i:i + batch], np.float64)
        state = ref.init_state(x.shape[0])
        for t in range(x.shape[1]):
            if t % 7 == 3:  # a spread of time steps, including the early (small-state) ones
                feed = {"frame": x[:, t].astype(np.float32)}
                feed.update({n: s.astype(np.float32) for n, s in zip(names, state)})
                feeds.append(feed)
            _, state = ref.step(bundle.normalize(x[:, t]).astype(np.float64), state)
    return feeds


def _state_matmul_inputs(path: Path) -> list[str]:
    """Activation inputs of every FastGRNN MatMul except the input projection's first one: the
    state (U h, head) and low-rank intermediates. They are quantized to int16, as the integer spec
    keeps an int16 state: an int8 state loses the small updates of the z * h memory path (measured
    on a trained marvin model: mean |score change| 0.021 with int8, 0.0026 with int16)."""
    import onnx

    g = onnx.load(str(path)).graph
    inputs = [n.input[0] for n in g.node if n.op_type == "MatMul" and n.input[1] not in ("g.w_t", "g.w2_t")]
    if not any(n.op_type == "MatMul" and n.input[1] in ("g.w_t", "g.w2_t") for n in g.node):
        raise ExportError(f"{path}: unexpected FastGRNN graph (no input projection found); please report this")
    return inputs


def quantize_onnx(bundle: Any, float_paths: dict[str, Path], out: Path, calib_x: np.ndarray | None
                  ) -> dict[str, Path]:
    """int8 versions of the float models: static QDQ (FastGRNN) or dynamic (LSTM/GRU)."""
    paths = {}
    # onnxruntime's quantizer logs a generic "consider pre-processing" warning per model via the root
    # logger; silence it (our graphs are already constant-folded by the exporter).
    logging.disable(logging.WARNING)
    try:
        with tempfile.TemporaryDirectory(dir=out) as tmp:
            _quantize_all(bundle, float_paths, Path(tmp), out, calib_x, paths)
    finally:
        logging.disable(logging.NOTSET)
    return paths


def _quantize_all(bundle: Any, float_paths: dict[str, Path], tmp: Path, out: Path, calib_x: np.ndarray | None,
                  paths: dict[str, Path]) -> None:
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)

    for name, src in float_paths.items():
        dst = tmp / int8_name(name)
        if bundle.model_kind == "fastgrnn":
            if calib_x is None:
                raise ExportError(f"{bundle.path}: int8 ONNX export needs training features for calibration; "
                                  "pass --data DATASET_DIR")
            x = np.asarray(calib_x[:CALIB_ONNX_WINDOWS], np.float32)
            if name == WINDOW_FILE:
                feeds = [{"logmel": x[i:i + 16]} for i in range(0, len(x), 16)]
            else:
                feeds = _step_calibration_feeds(bundle, x[:64])
            overrides = {t: [{"quant_type": QuantType.QInt16}] for t in _state_matmul_inputs(src)}
            quantize_static(str(src), str(dst), _Reader(feeds), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=["MatMul"], per_channel=True,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                           "MatMulConstBOnly": True,
                                           "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
                                           "TensorQuantOverrides": overrides})
        else:
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True)
        os.replace(dst, out / dst.name)
        paths[dst.name] = out / dst.name


# ---------------------------------------------------------------- the export
def weight_bytes(path: Path) -> int:
    """Bytes of the model's parameter tensors: initializers with more than one element (weight
    matrices, biases, per-channel weight scales). Scalars are left out: they are the per-tensor
    activation scales/zero points that QDQ inserts around every MatMul of the unrolled window
    graph (98 copies of the same few numbers) plus zeta and nu."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    total = 0
    for t in m.graph.initializer:
        if int(np.prod(t.dims)) > 1:
            total += numpy_helper.to_array(t).nbytes
    return int(total)


def export_onnx(bundle_path: Path, out: Path, int8: bool = False, data_dir: str | None = None,
                calib_x: np.ndarray | None = None) -> str:
    """Write the ONNX models and export.json into `out`; returns a summary."""
    from kws.bundle import load_bundle

    bundle = load_bundle(bundle_path)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    if int8 and calib_x is None and bundle.model_kind == "fastgrnn":
        from kws.quantize import calibration_windows

        calib_x = calibration_windows(bundle, data_dir)
        if calib_x is None:
            raise ExportError(f"{bundle_path}: int8 export needs training features to calibrate activation scales "
                              "and the bundle's recorded dataset is not readable here; pass --data DATASET_DIR")
    try:
        paths = export_float(bundle, out)
        if int8:
            paths.update(quantize_onnx(bundle, dict(paths), out, calib_x))
        else:
            # int8 files of an earlier export would belong to other weights: remove them
            for stale in (int8_name(WINDOW_FILE), int8_name(STEP_FILE)):
                (out / stale).unlink(missing_ok=True)
    except ExportError:
        raise
    except Exception as e:  # torch/onnx failures: say which model and how to report
        raise ExportError(f"{bundle_path}: ONNX export failed ({type(e).__name__}: {str(e)[:300]})") from e
    h, f = bundle.hparams["hidden"], bundle.n_features
    frames = bundle.feature_config.window_frames
    states = state_names(bundle.model_kind)
    info = {
        "format": "kws-onnx-export", "format_version": 1, "keyword": bundle.keyword,
        "model": {"kind": bundle.model_kind, "hparams": bundle.hparams, "n_features": f},
        "features": bundle.feature_config.to_dict(),
        "normalization": {"mean": np.asarray(bundle.mean).tolist(), "std": np.asarray(bundle.std).tolist(),
                          "folded_into_models": True},
        "thresholds": {k: float(v) for k, v in bundle.thresholds.items()},
        "opset": OPSET,
        "window": {"file": WINDOW_FILE, "inputs": {"logmel": ["batch", frames, f]},
                   "outputs": {"score": ["batch"]}, "input_is": "raw log-mel (not normalized)"},
        "step": {"file": STEP_FILE, "inputs": {"frame": ["batch", f], **{s: ["batch", h] for s in states}},
                 "outputs": {"score": ["batch"], **{s + "_out": ["batch", h] for s in states}},
                 "initial_state": "zeros", "state": states},
        "int8": {"window": int8_name(WINDOW_FILE), "step": int8_name(STEP_FILE),
                 "method": "static QDQ on every MatMul: per-channel int8 weights, symmetric int8 input "
                           "features, int16 state (as the integer spec)"
                 if bundle.model_kind == "fastgrnn" else
                 "dynamic (per-channel int8 weights, uint8 activations quantized per call)"}
        if int8 else None,
        "bundle": str(Path(bundle_path).resolve()),
    }
    atomic_write_text(out / EXPORT_JSON, json.dumps(info, indent=1))
    lines = [f"exported '{bundle.keyword}' ({bundle.model_kind}, hidden {h}) to {out}/"]
    if int8:
        lines.append("  int8: " + (f"static QDQ calibrated on {min(len(calib_x), CALIB_ONNX_WINDOWS)} training windows"
                                   if bundle.model_kind == "fastgrnn" else "dynamic quantization (no calibration)"))
    for name in sorted(paths):
        lines.append(f"  {name:24s} {weight_bytes(paths[name]):8d} weight bytes")
    lines.append(f"  {EXPORT_JSON}  (window input 'logmel' [B, {frames}, {f}] raw log-mel -> 'score' [B]; "
                 f"step inputs 'frame' [B, {f}], {', '.join(repr(s) for s in states)} [B, {h}])")
    return "\n".join(lines)
