"""Does a detector depend on the recording's noise floor? Score CLEAN synthesized keyword clips
(held-out test-split voices of each bundle's dataset, nothing added) and the same clips over a faint
white-noise floor, at the bundle's own 3%-FPR threshold.

Why: our training clips always carry a noise floor (every clip gets dither at -80..-55 dBFS, plus
rooms, channels and noise), so a model never sees digitally silent audio, and a one-class method
such as DROCC-LF may learn "no noise floor = not the keyword". Real microphones always have a
floor; speech-synthesis output and files padded with zeros do not. This tool measures the effect.

Clip score as everywhere else: max over the streaming detector's 1 s windows with 0.5 s of padding
on each side (the padding is digital silence for the clean row, the same noise floor otherwise).

    python tools/probe_noise_floor.py --bundles runs/bench/peers/runs/marvin-fastgrnn-{bce,drocc-lf}/model.kws
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FLOORS_DB = (None, -80.0, -70.0, -55.0, -40.0)  # None: digitally clean


def clean_keyword_clips(bundle, n: int, seed: int, work: Path) -> list[np.ndarray]:
    """`n` clean synthesized clips of the bundle's keyword by its dataset's test-split voices."""
    from kws.data import tts
    from tools.bench_stream import _trim, test_speakers

    voices = tts.voice_configs(n, seed, speakers=test_speakers(bundle))
    res = tts.synthesize_many([(bundle.keyword, v) for v in voices], cache_dir=work / "tts",
                              desc=f"'{bundle.keyword}' clean voices")
    return [_trim(a) for a in res.audio if a is not None]


def floor_scores(bundle, clips: list[np.ndarray], floor_db: float | None, seed: int) -> np.ndarray:
    from kws.evaluate import bundle_scores, clip_stream_features, max_window_scores

    rng = np.random.default_rng(seed)
    feats = []
    for c in clips:
        x = c if floor_db is None else c + rng.standard_normal(len(c)).astype(np.float32) * np.float32(10 ** (floor_db / 20))
        feats.append(clip_stream_features(x, bundle.feature_config, pad_db=floor_db))
    return max_window_scores(feats, lambda w: bundle_scores(bundle, w), bundle.feature_config)


def main(argv: list[str] | None = None) -> int:
    from kws.bundle import load_bundle

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundles", nargs="+", required=True)
    ap.add_argument("--clips", type=int, default=120, help="clean synthesized clips per keyword")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="/tmp/kws-noise-floor", help="speech-synthesis cache (outside the repo)")
    ap.add_argument("--section", default="noise_floor")
    ap.add_argument("--no-report", action="store_true")
    ap.add_argument("--note", action="append", default=[])
    args = ap.parse_args(argv)

    rows = []
    clips_by_kw: dict[str, list[np.ndarray]] = {}
    for path in args.bundles:
        b = load_bundle(Path(path))
        if b.keyword not in clips_by_kw:
            clips_by_kw[b.keyword] = clean_keyword_clips(b, args.clips, args.seed, Path(args.work))
        clips = clips_by_kw[b.keyword]
        t = b.threshold(0.03)
        cells = []
        for floor in FLOORS_DB:
            s = floor_scores(b, clips, floor, args.seed)
            cells.append((float(np.mean(s >= t)), float(np.median(s))))
        method = b.provenance.get("method", "?")
        rows.append((path, b.keyword, method, len(clips), t, cells))
        print(f"{path}: " + "  ".join(f"{'clean' if f is None else f'{f:g} dBFS'} {100 * r:.1f}%" for f, (r, _) in
                                       zip(FLOORS_DB, cells)), flush=True)
    if args.no_report:
        return 0
    sys.path.insert(0, str(REPO / "tools"))
    from report import update_section

    head = " | ".join("clean (digital silence)" if f is None else f"floor {f:g} dBFS" for f in FLOORS_DB)
    lines = ["## Noise-floor dependence: clean synthesized keywords vs the same over a faint floor", "",
             "Recall of each bundle at its own 3%-FPR threshold (calibrated on its validation split) on CLEAN "
             "speech-synthesis clips of the keyword by the held-out test-split voices of its dataset, then on "
             "the same clips with white noise added at the given level (dBFS, RMS of the noise); median clip "
             "score in brackets. Clip score = max over the detector's 1 s windows, 0.5 s padding each side.", "",
             f"| bundle | keyword | method | clips | threshold | {head} |",
             "|---|---|---|---|---|" + "---|" * len(FLOORS_DB)]
    for path, kw, method, n, t, cells in rows:
        lines.append(f"| `{path}` | {kw} | {method} | {n} | {t:.3f} | "
                     + " | ".join(f"{100 * r:.1f}% ({m:.2f})" for r, m in cells) + " |")
    lines += [""] + [f"- {n}" for n in args.note]
    update_section(args.section, "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
