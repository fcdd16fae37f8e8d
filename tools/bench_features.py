"""Featurizer speed on ONE core: batch throughput in multiples of real time (numpy, torch batched)
and the cost of one streaming 10 ms frame, each next to librosa run the same way as the baseline.

    nice -n 10 .venv/bin/python tools/bench_features.py [--seconds 200] [--repeats 5] [--no-write]

Writes the table into the "features" section of BENCHMARKS.md (tools/report.py)."""

from __future__ import annotations

import os

# Pin every BLAS/OpenMP pool to one thread before numpy/torch load them.
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
           "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kws.features import FeatureConfig, StreamingFeaturizer, featurize, featurize_torch  # noqa: E402


def one_core() -> str:
    """Pin the process to one CPU and every thread pool to one thread; say what was done."""
    notes = []
    if hasattr(os, "sched_setaffinity"):
        cpu = sorted(os.sched_getaffinity(0))[-1]
        os.sched_setaffinity(0, {cpu})
        notes.append(f"pinned to CPU {cpu}")
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
        notes.append("threadpoolctl limit 1")
    except ImportError:
        notes.append("BLAS threads limited by env")
    try:
        import torch

        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)
    except (ImportError, RuntimeError):
        pass
    return ", ".join(notes)


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Best-of-N CPU time of this process (all its threads). On the shared development machine,
    wall time swings with other jobs; the CPU time of a one-thread run does not, and equals wall
    time on an idle core. Any extra thread would only add to it (conservative)."""
    fn()  # warm-up (caches, allocator, JIT)
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def librosa_logmel(lr, x: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    pad = (cfg.n_fft - cfg.frame_length) // 2  # see tests/test_features.py: same frames as ours
    m = lr.feature.melspectrogram(y=np.pad(x, pad), sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                                  win_length=cfg.frame_length, window="hann", center=False, power=2.0,
                                  n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax, htk=True, norm=None)
    return np.log(m + cfg.log_floor)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=200.0, help="audio length for the batch figures")
    ap.add_argument("--stream-seconds", type=float, default=20.0, help="audio pushed in 10 ms chunks")
    ap.add_argument("--repeats", type=int, default=10, help="best of N (the machine is shared)")
    ap.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md alone")
    args = ap.parse_args(argv)

    pinning = one_core()
    cfg = FeatureConfig()
    sr = cfg.sample_rate
    rng = np.random.default_rng(0)
    n = int(args.seconds * sr)
    x = (0.1 * rng.standard_normal(n)).astype(np.float32)
    clips = x[: (n // sr) * sr].reshape(-1, sr)  # the same audio as 1 s training clips
    rows: list[tuple[str, str, float, float | None]] = []  # (what, unit, ours, librosa)

    try:
        import librosa
    except ImportError:
        librosa = None
    if librosa is not None:
        librosa_logmel(librosa, x[:sr], cfg)  # numba compile outside the timings

    def xrt(t: float) -> float:
        return args.seconds / t

    # batch, one long array
    t_np = best_time(lambda: featurize(x, cfg), args.repeats)
    t_lr = best_time(lambda: librosa_logmel(librosa, x, cfg), args.repeats) if librosa else None
    rows.append((f"numpy `featurize`, one {args.seconds:g} s array", "x real time", xrt(t_np),
                 xrt(t_lr) if t_lr else None))
    mfcc = FeatureConfig(kind="mfcc")
    rows.append((f"numpy `featurize` MFCC, one {args.seconds:g} s array", "x real time",
                 xrt(best_time(lambda: featurize(x, mfcc), args.repeats)), None))

    # batch, a loop over 1 s clips (how the dataset cache is built)
    t_np_clips = best_time(lambda: [featurize(c, cfg) for c in clips], args.repeats)
    t_lr_clips = (best_time(lambda: [librosa_logmel(librosa, c, cfg) for c in clips], max(1, args.repeats // 2))
                  if librosa else None)
    rows.append((f"numpy `featurize`, loop over {len(clips)} x 1 s clips", "x real time", xrt(t_np_clips),
                 xrt(t_lr_clips) if t_lr_clips else None))

    # torch, batched [B, 16000]
    try:
        import torch

        tb = torch.from_numpy(clips.copy())
        with torch.no_grad():
            t_th = best_time(lambda: featurize_torch(tb, cfg), args.repeats)
        rows.append((f"torch `featurize_torch`, batch [{len(clips)}, 16000]", "x real time", xrt(t_th),
                     xrt(t_lr) if t_lr else None))
    except ImportError:
        pass

    # streaming: one 10 ms chunk -> one frame
    m = int(args.stream_seconds * sr)
    xs = x[:m]
    hop = cfg.hop_length
    chunks = [xs[i:i + hop] for i in range(0, m - hop + 1, hop)]
    sfz = StreamingFeaturizer(cfg)

    def run_stream():
        sfz.reset()
        for c in chunks:
            sfz.push(c)

    t_st = best_time(run_stream, args.repeats)
    frames = cfg.n_frames(len(chunks) * hop)
    us_frame = t_st / frames * 1e6
    us_lr = None
    if librosa:
        # baseline: recompute the newest frame with librosa on every 10 ms chunk
        k = min(frames, 300)

        def run_lr():
            for t in range(k):
                librosa_logmel(librosa, xs[t * hop:t * hop + cfg.frame_length], cfg)

        us_lr = best_time(run_lr, max(1, args.repeats // 2)) / k * 1e6
    rows.append(("streaming `push` of 160 samples (one 10 ms frame)", "us / frame", us_frame, us_lr))

    lines = [f"Featurizer, default config (25 ms / 10 ms / 512 FFT / 32 HTK mels), white noise, one core "
             f"({pinning}); best of {args.repeats}, CPU time of the process. librosa = `melspectrogram(center=False, htk=True, norm=None)` "
             "+ log on the same input (streaming baseline: one librosa call per 10 ms frame).",
             "",
             "| measurement | unit | kws | librosa | speed-up vs librosa |",
             "|---|---|---:|---:|---:|"]
    for what, unit, ours, base in rows:
        fmt = "{:,.1f}" if unit.startswith("us") else "{:,.0f}"
        if base is None:
            lines.append(f"| {what} | {unit} | {fmt.format(ours)} | - | - |")
        else:
            speedup = ours / base if unit.startswith("x") else base / ours  # > 1: kws is faster
            lines.append(f"| {what} | {unit} | {fmt.format(ours)} | {fmt.format(base)} | {speedup:.1f}x |")
    lines += ["", f"Goal: batch over 1000x real time on one core: "
              f"{'met' if min(r[2] for r in rows if r[1].startswith('x')) > 1000 else 'NOT met'} "
              f"(slowest batch row {min(r[2] for r in rows if r[1].startswith('x')):,.0f}x)."]
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        from tools.report import update_section

        cmd = "nice -n 10 .venv/bin/python tools/bench_features.py" + (
            f" --seconds {args.seconds:g}" if args.seconds != 200 else "")
        print("wrote", update_section("features", table, command=cmd))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
