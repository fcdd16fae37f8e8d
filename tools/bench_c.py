"""Benchmark of the C library export (BENCHMARKS.md section "export-c").

Measures, for the default FastGRNN detector (hidden 32, 32 log-mel, random weights: size and speed
do not depend on the weight values) and optionally a trained bundle:
  - Cortex-M4 flash and RAM (arm-none-eabi-gcc -Os, featurizer + model + detector + state + stack),
  - int8 model bytes,
  - host nanoseconds per 10 ms frame of kws_process over a long buffer (gcc -O2), side by side with
    the Python pipeline on the same audio (kws.stream.Detector numpy backend, and the int8 reference
    kws.features + kws.quantize),
  - instructions per frame under valgrind --tool=callgrind (difference of two run lengths).

    nice -n 10 .venv/bin/python tools/bench_c.py [--bundle B.kws ...] [--data DATASET] [--seconds 60]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from firmware_export import build  # noqa: E402
from firmware_export.generate import calibration_from_audio, generate, golden_audio  # noqa: E402
from tools.report import update_section  # noqa: E402


def host_speed(out: Path, seconds: float) -> dict[str, float]:
    exe = build.host_build(out, name="harness_bench")
    p = subprocess.run([str(exe), "bench", str(seconds)], capture_output=True, text=True, check=True)
    return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", p.stdout)}


def callgrind_per_frame(out: Path) -> float | None:
    if not build.have("valgrind"):
        return None
    exe = out / "build" / "harness_bench"
    counts = {}
    for secs in (2.0, 4.0):
        p = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", str(exe), "bench",
                            str(secs)], capture_output=True, text=True)
        m = re.search(r"Collected\s*:\s*(\d+)", p.stderr)
        f = re.search(r"frames=(\d+)", p.stdout)
        if not (m and f):
            return None
        counts[secs] = (int(m.group(1)), int(f.group(1)))
    (i2, f2), (i4, f4) = counts[2.0], counts[4.0]
    return (i4 - i2) / (f4 - f2)


def python_speed(bundle_path: Path, calib: np.ndarray, seconds: float) -> dict[str, float]:
    """ns per frame of the Python pipelines on the same audio (repeated golden signal)."""
    from kws.bundle import load_bundle
    from kws.features import featurize
    from kws.quantize import quantize_bundle
    from kws.stream import Detector

    b = load_bundle(bundle_path)
    pcm = np.resize(golden_audio(), int(seconds * 16000))
    x = pcm.astype(np.float32) / np.float32(32768.0)
    det = Detector(b, backend="numpy")
    t0 = time.perf_counter()
    for i in range(0, len(pcm), 160):
        det.process(pcm[i:i + 160])
    t_stream = time.perf_counter() - t0
    frames = b.feature_config.n_frames(len(pcm))
    qm = quantize_bundle(b, calib_x=calib)
    t0 = time.perf_counter()
    feats = featurize(x, b.feature_config)
    ends = np.arange(b.feature_config.window_frames, feats.shape[0] + 1, 10)
    qm.run_int(np.stack([feats[e - 98:e] for e in ends]))
    t_int8 = time.perf_counter() - t0
    return {"stream_ns": 1e9 * t_stream / frames, "int8_ref_ns": 1e9 * t_int8 / frames}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", action="append", default=[],
                    help="also measure this trained FastGRNN bundle (repeatable: e.g. one model and its ensembles)")
    ap.add_argument("--data", help="their dataset folder (int8 calibration; default: the one each bundle records)")
    ap.add_argument("--seconds", type=float, default=60.0, help="audio seconds in the host timing loop")
    ap.add_argument("--py-seconds", type=float, default=10.0, help="audio seconds for the Python pipelines")
    args = ap.parse_args()
    from kws.bundle import load_bundle, random_bundle

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        calib = calibration_from_audio(golden_audio(), load_bundle(random_bundle(tmp / "x.kws")).feature_config)
        cases = [("FastGRNN h32 standard (random weights)", random_bundle(tmp / "r32.kws", hidden=32, seed=1), None),
                 ("FastGRNN h32 pwl (random weights)",
                  random_bundle(tmp / "p32.kws", hidden=32, seed=1, nonlinearity="pwl"), None)]
        for b in args.bundle:
            hp = load_bundle(b).hparams
            cases.append((f"trained {Path(b).parent.name}/{Path(b).name} (hidden {hp['hidden']})", Path(b),
                          args.data or load_bundle(b).provenance.get("dataset")))
        for name, bpath, data in cases:
            out = tmp / f"out{len(rows)}"
            kw = {"data_dir": data} if data else {"calib_x_raw": calib}
            summary = generate(bpath, out, verify=False, **kw)
            weight_bytes = int(re.search(r"\): (\d+) bytes", summary).group(1))
            size = build.arm_size(out) if build.have("arm-none-eabi-gcc") else None
            speed = host_speed(out, args.seconds)
            ir = callgrind_per_frame(out)
            py = python_speed(Path(bpath), calib, args.py_seconds)
            rows.append((name, weight_bytes, size, speed, ir, py))
            print(f"{name}: weights {weight_bytes} B; "
                  + (f"M4 flash {size.flash} B, RAM {size.ram} B (state {size.state}, stack <= {size.stack}); "
                     if size else "")
                  + f"C {speed['ns_per_frame']:.0f} ns/frame, "
                  + (f"{ir:.0f} instr/frame; " if ir else "")
                  + f"Python stream {py['stream_ns']:.0f} ns/frame, int8 ref {py['int8_ref_ns']:.0f} ns/frame")
    lines = ["C library export (`kws export B --format c`): featurizer (float32, no libm) + int8 FastGRNN + "
             "detector. Flash = text + rodata + data of the library on Cortex-M4 "
             "(arm-none-eabi-gcc -Os -mcpu=cortex-m4 -mfloat-abi=hard); RAM = kws_state_t + data/bss + "
             "stack upper bound (sum of all frames), excluding the caller's audio block. Host timing: "
             f"kws_process over {args.seconds:g} s of audio in 10 ms blocks (gcc -O2, one core); Python "
             f"on {args.py_seconds:g} s of the same audio. Goal: < 32 KB flash, < 8 KB RAM.", "",
             "| model | int8 model bytes | M4 flash (B) | M4 RAM (B) | C ns / 10 ms frame | instr / frame (callgrind) "
             "| Python kws.stream ns / frame | Python int8 ref ns / frame | C speed-up vs kws.stream |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, wb, size, speed, ir, py in rows:
        lines.append(f"| {name} | {wb} | {size.flash if size else 'n/a'} | {size.ram if size else 'n/a'} | "
                     f"{speed['ns_per_frame']:.0f} | {f'{ir:.0f}' if ir else 'n/a'} | {py['stream_ns']:.0f} | "
                     f"{py['int8_ref_ns']:.0f} | {py['stream_ns'] / speed['ns_per_frame']:.1f}x |")
    if rows and rows[0][2]:
        s = rows[0][2]
        lines += ["", f"Breakdown (h32 standard): text {s.text}, rodata {s.rodata}, data {s.data}, bss {s.bss}, "
                      f"state {s.state}, stack <= {s.stack}; flash by file: "
                      + ", ".join(f"{k} {v}" for k, v in s.by_file.items()) + "."]
    update_section("export-c", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
