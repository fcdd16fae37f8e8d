"""Benchmark the models on one CPU core: training step time of FastGRNN's hand-written BPTT vs plain
autograd (side by side, same weights and batch), LSTM/GRU for reference, the distillation teacher's
forward (a joined ensemble's dense block-diagonal FastGRNN vs the same model run block by block),
and streaming cost per 10 ms frame (torch step, numpy reference step) with each model's cost() figures.

    nice -n 10 .venv/bin/python tools/bench_models.py [--batch 256] [--repeats 5] [--no-report]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kws.models import build_model  # noqa: E402
from kws.models.ensemble import merge_weights  # noqa: E402
from kws.models.fastgrnn import blockwise  # noqa: E402
from kws.models.reference import ReferenceModel  # noqa: E402


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def _paired_ms(fast, slow, repeats: int) -> tuple[float, float, float]:
    """Alternate the two runs so load changes on a shared machine hit both alike; returns the
    medians (ms) and the median of the per-pair ratios slow / fast."""
    fast()
    slow()
    tf, ts = [], []
    for _ in range(repeats):
        for fn, acc in ((fast, tf), (slow, ts)):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    ratio = statistics.median(b / a for a, b in zip(tf, ts))
    return 1e3 * statistics.median(tf), 1e3 * statistics.median(ts), ratio


def train_step(model, x, use_autograd: bool = False):
    def run():
        model.zero_grad(set_to_none=True)
        if use_autograd:
            logits = model._run_autograd(x)[:, -1]
        else:
            logits = model(x)
        torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.ones_like(logits)).backward()
    return run


def teacher_forward(members: int, hidden: int, batch: int, x: torch.Tensor, repeats: int) -> tuple[float, float, float]:
    """(blockwise ms, dense ms, paired ratio) of one no-grad forward of `members` joined FastGRNNs."""
    ms = [build_model("fastgrnn", x.shape[-1], hidden=hidden) for _ in range(members)]
    hp, w = merge_weights("fastgrnn", x.shape[-1], [(m.hparams, m.weights_numpy()) for m in ms])
    dense = build_model("fastgrnn", x.shape[-1], **hp).eval()
    dense.load_weights_numpy(w)
    fast = blockwise(dense)
    xb = x[:batch]
    with torch.no_grad():
        assert torch.allclose(fast(xb), dense(xb), atol=1e-4)

    def run(model):
        def go():
            with torch.no_grad():
                model(xb)
        return go
    return _paired_ms(run(fast), run(dense), repeats)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--frames", type=int, default=98)
    ap.add_argument("--features", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--teacher-members", type=int, default=4, help="members of the joined teacher (kws train --ensemble)")
    ap.add_argument("--teacher-hidden", type=int, default=64, help="hidden units per member (the paper preset's)")
    ap.add_argument("--teacher-batch", type=int, default=128, help="the training batch (TrainHparams.batch_size)")
    ap.add_argument("--no-report", action="store_true", help="print only; do not rewrite BENCHMARKS.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.frames, args.features)

    rows = []
    for label, kind, hp in [("FastGRNN", "fastgrnn", {}), ("FastGRNN pwl", "fastgrnn", {"nonlinearity": "pwl"}),
                            ("FastGRNN rank 8/8", "fastgrnn", {"w_rank": 8, "u_rank": 8})]:
        m = build_model(kind, args.features, hidden=args.hidden, **hp)
        scan, auto, ratio = _paired_ms(train_step(m, x), train_step(m, x, use_autograd=True), args.repeats)
        rows.append((label, scan, auto, ratio))
    base = []
    for kind in ("lstm", "gru"):
        m = build_model(kind, args.features, hidden=args.hidden)
        base.append((kind.upper(), _median_ms(train_step(m, x), args.repeats)))

    teacher = teacher_forward(args.teacher_members, args.teacher_hidden, args.teacher_batch, x, args.repeats)

    stream = []
    frames = x[0].numpy()
    for label, kind, hp in [("FastGRNN", "fastgrnn", {}), ("FastGRNN rank 8/8", "fastgrnn", {"w_rank": 8, "u_rank": 8}),
                            ("LSTM", "lstm", {}), ("GRU", "gru", {})]:
        m = build_model(kind, args.features, hidden=args.hidden, **hp).eval()
        ref = ReferenceModel(kind, m.hparams, m.weights_numpy(), dtype=np.float32)

        def torch_frames():
            with torch.no_grad():
                s = m.init_state(1)
                for t in range(args.frames):
                    _, s = m.step(x[:1, t], s)

        def numpy_frames():
            s = ref.init_state()
            for t in range(args.frames):
                _, s = ref.step(frames[t], s)

        us_torch = 1e3 * _median_ms(torch_frames, args.repeats) / args.frames
        us_np = 1e3 * _median_ms(numpy_frames, args.repeats) / args.frames
        stream.append((label, m.cost(), us_torch, us_np))

    lines = [f"Training step (forward + backward, BCE), batch {args.batch} x {args.frames} frames x "
             f"{args.features} features, hidden {args.hidden}, one thread, median of {args.repeats}:", "",
             "| model | hand-written BPTT (ms) | plain autograd loop (ms) | speed-up (median of paired runs) |",
             "|---|---|---|---|"]
    lines += [f"| {label} | {scan:.1f} | {auto:.1f} | {ratio:.2f}x |" for label, scan, auto, ratio in rows]
    lines += ["", "| baseline (fused torch.nn) | ms |", "|---|---|"]
    lines += [f"| {label} | {ms:.1f} |" for label, ms in base]
    n, hid = args.teacher_members, args.teacher_hidden
    lines += ["", f"Distillation teacher (`kws train --ensemble {n} --distill`), one forward without gradients, "
              f"batch {args.teacher_batch}: {n} FastGRNN {hid} joined into one of {n * hid} units "
              f"(kws.models.ensemble), median of {args.repeats}:", "",
              "| teacher | run block by block (kws.models.fastgrnn.blockwise, ms) | dense block-diagonal U (ms) | "
              "speed-up (median of paired runs) |", "|---|---|---|---|",
              f"| {n} x FastGRNN {hid} | {teacher[0]:.1f} | {teacher[1]:.1f} | {teacher[2]:.2f}x |"]
    lines += ["", f"Streaming, one clip frame by frame (Python), hidden {args.hidden}:", "",
              "| model | params | int8 bytes | MACs/frame | torch step (us/frame) | numpy reference float32 (us/frame) |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {label} | {c['params']} | {c['int8_bytes']} | {c['macs_per_frame']} | {ut:.1f} | {un:.1f} |"
              for label, c, ut, un in stream]
    lines += ["", f"Load average at the end: {os.getloadavg()[0]:.1f} (shared machine: absolute times vary, "
              f"the paired ratios less)."]
    text = "\n".join(lines)
    print(text)
    if not args.no_report:
        from tools.report import update_section

        update_section("models", "## Models (tools/bench_models.py)\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
