"""ONNX export benchmark: weight bytes float vs int8, onnxruntime microseconds per 10 ms frame (step
model, batch 1) and per 1 s window (window model, batch 1) on one thread, and recall at 3% / 5% FPR
of the float model, the Python int8 reference (docs/QUANTIZATION.md) and the float / int8 ONNX
models on the same test split.

    nice -n 10 .venv/bin/python tools/bench_export.py [--bundle B.kws --data DATASET] [--no-write]

Without --bundle, random FastGRNN / LSTM / GRU bundles give the size and speed figures only (no
recall). Writes the "export-onnx" section of BENCHMARKS.md (tools/report.py)."""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def time_call(fn, min_seconds: float = 0.5, min_calls: int = 20) -> float:
    """Median microseconds per call over batches of calls lasting >= min_seconds in total."""
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e6)


def onnx_timings(out: Path, info: dict, int8: bool) -> dict[str, float]:
    suffix = "_int8" if int8 else ""
    f = info["model"]["n_features"]
    h = info["model"]["hparams"]["hidden"]
    frames = info["window"]["inputs"]["logmel"][1]
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((1, frames, f)) - 6).astype(np.float32)
    win = session(out / f"model_window{suffix}.onnx")
    step = session(out / f"model_step{suffix}.onnx")
    feed = {"frame": x[:, 0], **{s: np.zeros((1, h), np.float32) for s in info["step"]["state"]}}
    return {"window_us": time_call(lambda: win.run(None, {"logmel": x})),
            "frame_us": time_call(lambda: step.run(None, feed))}


def onnx_scores(path: Path, x: np.ndarray, batch: int = 256) -> np.ndarray:
    s = session(path)
    return np.concatenate([s.run(["score"], {"logmel": np.ascontiguousarray(x[i:i + batch], np.float32)})[0]
                           for i in range(0, len(x), batch)]).astype(np.float64)


def recall_row(name: str, scores: np.ndarray, y: np.ndarray, reference: np.ndarray | None = None) -> list[str]:
    """name, recall at 3% and 5% FPR, AUC, mean |score - float score|."""
    from kws.metrics import auc, recall_at_fpr

    pos, neg = scores[y == 1], scores[y == 0]
    diff = "-" if reference is None else f"{np.mean(np.abs(scores - reference)):.4f}"
    return ([name] + [f"{100 * recall_at_fpr(pos, neg, p)[0]:.1f}" for p in (0.03, 0.05)]
            + [f"{auc(pos, neg):.4f}", diff])


def bench_bundle(bundle_path: Path, data_dir: Path | None, split: str) -> tuple[list[str], dict]:
    from kws.bundle import load_bundle
    from kws.export.onnx_export import export_onnx, weight_bytes
    from kws.quantize import calibration_windows, quantize_bundle

    b = load_bundle(bundle_path)
    calib = calibration_windows(b, str(data_dir) if data_dir else None)
    if calib is None and b.model_kind == "fastgrnn":
        # timing/size only (no dataset): calibrate on synthetic log-mel-like windows
        rng = np.random.default_rng(0)
        calib = (np.cumsum(0.3 * rng.standard_normal((64, 98, b.n_features)), axis=1) - 6).astype(np.float32)
    results: dict = {"kind": b.model_kind, "hidden": b.hparams["hidden"], "bundle": str(bundle_path),
                     "nonlinearity": b.hparams.get("nonlinearity")}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        export_onnx(bundle_path, out, int8=True, calib_x=calib)
        info = json.loads((out / "export.json").read_text())
        for name in ("model_window.onnx", "model_window_int8.onnx"):
            results[f"bytes:{name}"] = weight_bytes(out / name)
        results["float"] = onnx_timings(out, info, False)
        results["int8"] = onnx_timings(out, info, True)
        if b.model_kind == "fastgrnn":
            qm = quantize_bundle(b, calib_x=calib)
            results["int_spec_bytes"] = int(sum(a.nbytes for k, a in qm.to_arrays().items()
                                                if k not in ("x_mean", "x_inv_scale", "sigmoid_lut", "tanh_lut")))
            x1 = calib[:1]
            results["python_int8_window_us"] = time_call(lambda: qm.run_int(x1), min_calls=5)
        rows = []
        if data_dir is not None:
            from kws.data.dataset import load_split

            data = load_split(data_dir, split)
            x, y = np.asarray(data.x, np.float32), np.asarray(data.y)
            ref = np.asarray(b.reference_model().score(b.normalize(x)), np.float64)
            rows.append(recall_row("float (numpy reference)", ref, y))
            rows.append(recall_row("int8 Python reference" + (" (integer spec)" if b.model_kind == "fastgrnn"
                                                              else " (simulated dynamic int8)"),
                                   quantize_bundle(b, calib_x=calib).scores(x), y, ref))
            if b.model_kind == "fastgrnn" and b.hparams.get("nonlinearity") != "pwl":
                from kws.quantize import float_fastgrnn, quantize_fastgrnn

                logit_pwl, _ = float_fastgrnn(b.weights, "pwl", (x.astype(np.float64) - b.mean) / b.std)
                rows.append(recall_row("float, switched to pwl", 1 / (1 + np.exp(-logit_pwl)), y, ref))
                qp = quantize_fastgrnn(b.weights, b.hparams, b.mean, b.std, calib, nonlinearity="pwl")
                rows.append(recall_row("int8 integer spec, switched to pwl", qp.scores(x), y, ref))
            rows.append(recall_row("ONNX float (onnxruntime)", onnx_scores(out / "model_window.onnx", x), y, ref))
            rows.append(recall_row("ONNX int8 (onnxruntime)", onnx_scores(out / "model_window_int8.onnx", x), y, ref))
            results["split"] = f"{data_dir} [{split}]: {int((y == 1).sum())} positives, {int((y == 0).sum())} negatives"
        results["recall_rows"] = rows
    return rows, results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", action="append", help="trained bundle (repeatable); default: random bundles")
    ap.add_argument("--data", help="dataset folder for recall (its train split calibrates, --split scores)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    ap.add_argument("--note", default="", help="text put under the tables (e.g. how the bundles were made)")
    args = ap.parse_args()

    from kws.bundle import random_bundle

    tmp = tempfile.TemporaryDirectory()
    if args.bundle:
        bundles = [Path(b) for b in args.bundle]
        note = ""
    else:
        bundles = [random_bundle(Path(tmp.name) / f"{k}.kws", kind=k, hidden=h)
                   for k, h in (("fastgrnn", 32), ("lstm", 64), ("gru", 64))]
        note = "\nRandom-weight bundles (size and speed only; no recall without a trained bundle and --data).\n"
    data_dir = Path(args.data) if args.data else None
    all_results = []
    lines = ["| model | weight bytes float | int8 | µs/frame float (step, batch 1) | int8 | "
             "µs/window float (98 frames, batch 1) | int8 |", "|---|---|---|---|---|---|---|"]
    recall_lines: list[str] = []
    for bp in bundles:
        rows, r = bench_bundle(bp, data_dir, args.split)
        all_results.append(r)
        name = f"{r['kind']} H={r['hidden']}{' ' + r['nonlinearity'] if r.get('nonlinearity') else ''} ({bp.name})"
        lines.append(f"| {name} | {r['bytes:model_window.onnx']} | {r['bytes:model_window_int8.onnx']} | "
                     f"{r['float']['frame_us']:.1f} | {r['int8']['frame_us']:.1f} | "
                     f"{r['float']['window_us']:.0f} | {r['int8']['window_us']:.0f} |")
        if rows:
            recall_lines += [f"\nRecall (%) at FPR on {r['split']}, {name}:\n",
                             "| scores from | recall @ 3% FPR | recall @ 5% FPR | AUC | mean abs score change vs float |",
                             "|---|---|---|---|---|"]
            recall_lines += ["| " + " | ".join(row) + " |" for row in rows]
        print(json.dumps(r, indent=1))
    extra = []
    for r in all_results:
        if "int_spec_bytes" in r:
            extra.append(f"- {r['kind']} H={r['hidden']} ({Path(r['bundle']).name}): integer-spec arrays (int8 weights, int32 multipliers/"
                         f"biases, what the C library embeds, LUTs excluded): {r['int_spec_bytes']} bytes; numpy "
                         f"integer reference {r['python_int8_window_us']:.0f} µs per window (batch 1).")
    body = ("ONNX models from `kws export --format onnx --int8` run in onnxruntime "
            f"(one thread, CPUExecutionProvider); weight bytes = initializers with more than one element.\n{note}\n"
            + "\n".join(lines) + "\n\n" + "\n".join(extra) + "\n" + "\n".join(recall_lines)
            + ("\n\n" + args.note if args.note else ""))
    print(body)
    if not args.no_write:
        from tools.report import update_section

        update_section("export-onnx", body)
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
