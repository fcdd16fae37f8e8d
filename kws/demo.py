"""`make demo`: text to device for "marvin" in one go.

1. build a speaker-disjoint dataset from speech synthesis (paper preset),
2. train a FastGRNN with `kws train`'s defaults and print its validation/test table,
3. export int8 ONNX and the C library (host-verified, Cortex-M sized),
4. run the streaming detector on a demo recording made of held-out voices.

Every step resumes: rerunning reuses the dataset, the training checkpoints and the exports.
"""

from __future__ import annotations

import time
from pathlib import Path

KEYWORD = "marvin"


def _banner(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def run_demo(workdir: Path, quick: bool = False) -> int:
    from kws.data.builder import BuildOptions, build_dataset
    from kws.export import export_bundle
    from kws.train.api import TrainOptions, train_keyword

    workdir = Path(workdir)
    data_dir = workdir / "data"
    bundle = workdir / f"{KEYWORD}.kws"
    t0 = time.time()

    _banner(f"1/4 dataset for '{KEYWORD}' from speech synthesis ({'small' if quick else 'paper'} preset)")
    summary = build_dataset(BuildOptions(keyword=KEYWORD, out=data_dir, preset="small" if quick else "paper"))
    print(summary.table())

    opts = TrainOptions(keyword=KEYWORD, data=data_dir, out=bundle, run_dir=workdir / "run",
                        epochs=3 if quick else None)
    _banner(f"2/4 training a {opts.model} detector ({opts.method}; validation picks the model, test is reported)")
    result = train_keyword(opts)
    print(result.table())

    _banner("3/4 export: int8 ONNX and the C library")
    print(export_bundle(bundle, fmt="onnx", out=workdir / "onnx", int8=True))
    print(export_bundle(bundle, fmt="c", out=workdir / "c", int8=True))

    _banner("4/4 streaming detection on a demo recording (held-out synthesized voices)")
    from kws.stream import Detector, demo_stream, detect_file, format_detections

    wav, spans = demo_stream(bundle, data_dir, workdir / "demo_stream.wav")
    print(f"{wav}: '{KEYWORD}' spoken at {', '.join(f'{s:.1f}s' for s, _ in spans)}")
    res = detect_file(Detector(bundle, fpr=0.03), wav)  # as `kws detect` at its default 3% FPR
    print(format_detections(res))
    print(stream_verdict(res, spans))

    print(f"\nDemo finished in {time.time() - t0:.0f} s. Bundle: {bundle}; try `kws detect {bundle} FILE.wav` "
          f"or `kws listen {bundle}`.")
    return 0


def stream_verdict(res: dict, spans: list[tuple[float, float]]) -> str:
    """One line saying how many of the recording's keywords a `detect_file` result found and its
    false alarms, so nobody has to match times by eye (matching as in DESIGN.md section 6)."""
    from kws.stream import ACCEPT_AFTER_END, match_detections

    times = [d["time_s"] for d in res["detections"]]
    found, hit = match_detections(times, spans)
    false = [t for t, h in zip(times, hit) if not h]
    return (f"found {int(found.sum())} of {len(spans)} '{KEYWORD}' (a detection counts up to "
            f"{ACCEPT_AFTER_END:g} s after the word ends), {len(false)} false alarm{'s' if len(false) != 1 else ''}"
            + (f" at {', '.join(f'{t:.1f} s' for t in false)}" if false else ""))
