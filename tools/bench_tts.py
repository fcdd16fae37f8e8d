"""Benchmark speech synthesis: how many distinct voice configurations exist, and how long 1000 clips
take cold (empty cache) and warm (cached), with a serial run as the baseline.

Goals: >= 300 distinct configurations for one word; 1000 clips in < 60 s on a 2-core machine.

    nice -n 10 .venv/bin/python tools/bench_tts.py [--clips 1000] [--baseline 200] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kws.data import tts  # noqa: E402
from tools.report import update_section  # noqa: E402

last_cpu = 0.0
WORDS = ["marvin", "forward", "seven", "follow", "hello", "computer", "sheila", "visual"]


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the engines): unlike wall time it
    does not depend on what else the shared machine is doing."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run(jobs, workers):
    global last_cpu
    with tempfile.TemporaryDirectory(prefix="kws-bench-tts-") as cache:
        t0, c0 = time.perf_counter(), cpu_seconds()
        cold = tts.synthesize_many(jobs, cache, workers=workers, desc="cold")
        t_cold = time.perf_counter() - t0
        last_cpu = cpu_seconds() - c0
        t0 = time.perf_counter()
        warm = tts.synthesize_many(jobs, cache, workers=workers, desc="warm")
        t_warm = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in Path(cache).rglob("*") if f.is_file())
    return cold, t_cold, warm, t_warm, size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=1000)
    ap.add_argument("--baseline", type=int, default=200, help="clips for the serial (workers=1) baseline")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args()

    engines = tts.available_engines()
    if not engines:
        print("no speech engine installed:", tts.INSTALL_HINT)
        return 1
    per_engine = {e: (tts.count_configs([e]), len(tts.speakers([e]))) for e in engines}
    n_cfg = tts.count_configs()
    voices = tts.voice_configs(args.clips, seed=args.seed)
    jobs = [(WORDS[i % len(WORDS)], v) for i, v in enumerate(voices)]
    mix = Counter(v.engine for v in voices)
    workers = os.cpu_count() or 1

    load = os.getloadavg()[0]
    cold, t_cold, warm, t_warm, size = run(jobs, workers)
    cpu_cold = last_cpu
    assert warm.cached == len(set(jobs)), "warm run must be answered from the cache"
    base_jobs = jobs[: args.baseline]
    b_cold, tb_cold, _, _, _ = run(base_jobs, 1)
    b_par, tb_par, _, _, _ = run(base_jobs, workers)
    lengths = [a.size / tts.SAMPLE_RATE for a in cold.audio if a is not None]

    body = "\n".join([
        "## Speech synthesis (tools/bench_tts.py)",
        "",
        f"Engines: {', '.join(f'{e} ({per_engine[e][1]} speakers, {per_engine[e][0]} configurations)' for e in engines)}.",
        f"Distinct voice configurations for one word: **{n_cfg}** (goal >= 300).",
        "",
        "| run | clips | workers | seconds | clips/s | dropped | from cache |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| cold (empty cache) | {len(jobs)} | {workers} | {t_cold:.1f} | {len(jobs) / t_cold:.0f} | {cold.dropped} | {cold.cached} |",
        f"| warm (cached) | {len(jobs)} | {workers} | {t_warm:.2f} | {len(jobs) / t_warm:.0f} | {warm.dropped} | {warm.cached} |",
        f"| baseline serial, cold | {len(base_jobs)} | 1 | {tb_cold:.1f} | {len(base_jobs) / tb_cold:.0f} | {b_cold.dropped} | 0 |",
        f"| same clips parallel, cold | {len(base_jobs)} | {workers} | {tb_par:.1f} | {len(base_jobs) / tb_par:.0f} | {b_par.dropped} | 0 |",
        "",
        f"CPU time of the cold run (this process + engine processes): {cpu_cold:.1f} s, i.e. about "
        f"{cpu_cold / workers:.0f} s of wall time on an idle {workers}-core machine; load average "
        f"when it started: {load:.1f} (the machine is shared, so wall times vary).",
        f"Goal: {len(jobs)} clips cold in < 60 s: **{'met' if t_cold < 60 else 'NOT met'}** ({t_cold:.1f} s); "
        f"warm rerun {t_cold / t_warm:.0f}x faster; parallel vs serial {tb_cold / tb_par:.2f}x.",
        f"Clip mix: {', '.join(f'{e} {n}' for e, n in sorted(mix.items()))}; words: {', '.join(WORDS)}; "
        f"trimmed clip length {min(lengths):.2f}-{max(lengths):.2f} s (median {sorted(lengths)[len(lengths) // 2]:.2f} s); "
        f"cache {size / 1e6:.1f} MB.",
        f"Drop reasons: {dict(cold.reasons) or 'none'}.",
    ])
    print(body)
    if not args.no_write:
        update_section("tts", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
