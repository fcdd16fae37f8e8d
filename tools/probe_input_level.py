"""Would an input gain control help? Rescore trained text-only runs on their real test clips after
bringing every clip (keyword and negative alike) to one level of active speech.

Why: a quarter of the real "athena" clips are recorded with speech near -66 dBFS, and models trained
from text miss most of them, more so with a higher feature floor (BuildOptions.log_floor). This
measures what a gain control in front of the featurizer could buy, before one is built: the gain
here is per clip and sees the whole clip (offline), so it is an upper bound for a streaming one.

Reads a run folder of tools/bench_text_only.py (model.kws and test_scores.npz, whose keys name the
real clips); the threshold is set at 3% FPR on the real negatives, as in the text_only sections.

    python tools/probe_input_level.py --runs runs/bench/ALL/runs/floor3/athena-rp0-seed0 ...
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FPR = 0.03
QUIET_DB = -42.0  # active speech below this: "recorded quietly" (the bottom of the realistic recipe)


@functools.lru_cache(maxsize=2)
def levelled_features(root: Path, keys: tuple[str, ...], target_db: float, fc) -> tuple[list[np.ndarray], np.ndarray]:
    """Stream features of the clips `keys` (bench keys "real:<path under root>") each brought to
    `target_db` of active speech, and the clips' own levels (dBFS). Cached: the runs of one keyword
    share their test clips, and the seeds of one recipe their featurizer."""
    import soundfile as sf

    from kws.data.augment import active_level_dbfs
    from kws.evaluate import clip_stream_features

    audio = [sf.read(root / k.split(":", 1)[1], dtype="float32")[0] for k in keys]
    level = np.array([active_level_dbfs(a) for a in audio])
    gains = 10 ** ((target_db - level) / 20)
    return [clip_stream_features(np.clip(a * g, -1, 1).astype(np.float32), fc) for a, g in zip(audio, gains)], level


def probe_run(run: Path, root: Path, target_db: float) -> dict:
    from kws.bundle import load_bundle
    from kws.evaluate import bundle_scores, peak_scores, stream_window_scores
    from kws.metrics import recall_at_fpr, recall_at_threshold

    saved = np.load(run / "test_scores.npz")
    sel = np.where(np.isin(saved["kinds"], ("positive", "negative")))[0]
    kinds = saved["kinds"][sel]
    pos, neg = kinds == "positive", kinds == "negative"
    b = load_bundle(run / "model.kws")
    fc = b.feature_config
    feats, level = levelled_features(root, tuple(str(k) for k in saved["keys"][sel]), target_db, fc)
    levelled = peak_scores(stream_window_scores(feats, lambda x: bundle_scores(b, x), fc))
    quiet = pos & (level < QUIET_DB)
    out = {"run": str(run), "keyword": b.keyword, "floor": fc.log_floor, "n_pos": int(pos.sum()),
           "n_neg": int(neg.sum()), "n_quiet": int(quiet.sum())}
    for name, s in (("as recorded", saved["float"][sel]), ("levelled", levelled)):
        r, t = recall_at_fpr(s[pos], s[neg], FPR)  # the threshold rule of every text_only section
        out[name] = (r, recall_at_threshold(s[quiet], t) if quiet.any() else float("nan"))
    return out


def main(argv: list[str] | None = None) -> int:
    from tools.real_data import shared_root

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", required=True, help="run folders of tools/bench_text_only.py")
    ap.add_argument("--target-db", type=float, default=-30.0, help="active-speech level every clip is brought to")
    ap.add_argument("--shared", default=None, help="shared data folder (default $KWS_SHARED_DATA or ../shared/data)")
    ap.add_argument("--section", default="input_level")
    ap.add_argument("--no-report", action="store_true")
    ap.add_argument("--note", action="append", default=[])
    args = ap.parse_args(argv)

    root = shared_root(args.shared)
    if not root.is_dir():
        ap.error(f"shared data folder {root} not found: pass --shared or set KWS_SHARED_DATA")
    missing = [r for r in args.runs if not (Path(r) / "test_scores.npz").is_file() or not (Path(r) / "model.kws").is_file()]
    if missing:
        ap.error(f"not a finished run of tools/bench_text_only.py (needs model.kws and test_scores.npz): {missing[0]}")
    rows = []
    for run in args.runs:
        r = probe_run(Path(run), root, args.target_db)
        rows.append(r)
        print(f"{run}: floor {r['floor']:g}, recall @3% as recorded {100 * r['as recorded'][0]:.1f}%, "
              f"levelled {100 * r['levelled'][0]:.1f}%", flush=True)
    if args.no_report:
        return 0
    from tools.report import update_section

    def cell(v: tuple[float, float], n_quiet: int) -> str:
        return f"{100 * v[0]:.1f}" + (f" ({100 * v[1]:.0f})" if n_quiet else "")

    lines = ["## Input level: text-only models on real clips as recorded vs brought to one level (issue 7)", "",
             f"Recall at 3% FPR (threshold on the real negatives, float) of trained text-only runs on their real "
             f"test clips as recorded, then with every clip, keyword and negative alike, scaled so its active "
             f"speech is at {args.target_db:g} dBFS (per clip, offline: an upper bound for a streaming gain "
             f"control). In brackets: recall on the keyword clips recorded below {QUIET_DB:g} dBFS of active "
             f"speech. Clip score = max over the streaming detector's 1 s windows, 0.5 s of silence each side.", "",
             "| run | keyword | log floor | clips: pos / neg real (quiet pos) | as recorded | levelled |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['run']}` | {r['keyword']} | {r['floor']:g} | {r['n_pos']} / {r['n_neg']} ({r['n_quiet']}) "
                     f"| {cell(r['as recorded'], r['n_quiet'])} | {cell(r['levelled'], r['n_quiet'])} |")
    lines += [""] + [f"- {n}" for n in args.note]
    update_section(args.section, "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
