"""Real-speech test of "train a keyword from its text alone".

For "athena": train on synthesized keyword clips, synthesized negatives and close negatives plus
REAL negatives from one speaker half (A) of the Speech Commands v0.02 test set; then test on the
real "athena" recordings of the Mycroft Precise community data against real negatives from the
other speaker half (B), Mycroft's not-wake-words and the builder's synthesized test-split close
negatives. For "stop": the same, with Speech Commands' real "stop" folder left out of training
entirely and its half-B clips used as the real positives (speaker-disjoint from training).

Reports recall at 3% / 5% FPR (threshold chosen on this test set's negatives, the metric
definition) and at the bundle's thresholds calibrated on the synthesized validation split.

    python tools/bench_real_speech.py --keywords athena stop --epochs 15
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kws.util import atomic_write_text  # noqa: E402

SHARED = Path(os.environ.get("KWS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SC_DIR = SHARED / "speech_commands_v0.02_test"
MYCROFT = SHARED / "mycroft_precise_community"
NOT_WORDS = ("_background_noise_", "_silence_")


def speaker_of(path: Path) -> str:
    return path.name.split("_nohash_")[0]


def speaker_half(speaker: str) -> str:
    """A stable half assignment independent of the file order: by a hash of the speaker id."""
    return "A" if hashlib.sha1(speaker.encode()).digest()[0] % 2 == 0 else "B"


def sc_clips(exclude_word: str | None) -> dict[str, list[Path]]:
    halves: dict[str, list[Path]] = {"A": [], "B": []}
    for word_dir in sorted(p for p in SC_DIR.iterdir() if p.is_dir() and p.name not in NOT_WORDS):
        if exclude_word and word_dir.name == exclude_word:
            continue
        for f in sorted(word_dir.iterdir()):
            if f.suffix.lower() in AUDIO:
                halves[speaker_half(speaker_of(f))].append(f)
    return halves


def link_tree(files: list[Path], dest: Path) -> Path:
    """A Speech-Commands-shaped folder of symlinks (word/speaker_nohash_n.flac) for the builder."""
    for f in files:
        target = dest / f.parent.name / f.name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(f.resolve(), target)
    return dest


AUDIO = (".flac", ".wav")


def audio_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.suffix.lower() in AUDIO)


def featurize_files(files: list[Path], config) -> np.ndarray:
    from kws.audio import fit_to_window, load_audio
    from kws.features import featurize

    n = config.window_samples
    return np.stack([featurize(fit_to_window(load_audio(f), n), config) for f in files]).astype(np.float32)


def run_keyword(keyword: str, args: argparse.Namespace, workdir: Path) -> dict:
    from kws.bundle import load_bundle
    from kws.data.builder import BuildOptions, build_dataset
    from kws.data.dataset import load_split
    from kws.evaluate import bundle_scores, split_metrics
    from kws.train.api import TrainOptions, train_keyword

    halves = sc_clips(exclude_word=keyword)
    if args.synthetic_only:  # no real audio at all in training (tests the "real = negative" shortcut)
        negatives, variant = [], "-synth"
    else:
        negatives, variant = [link_tree(halves["A"], workdir / "sc_half_A" / keyword)], ""
    data = workdir / "data" / f"{keyword}-{args.preset}{variant}"
    if not (data / "dataset.json").exists():  # finished datasets are reused as built
        build_dataset(BuildOptions(keyword=keyword, out=data, preset=args.preset, negatives=negatives, seed=0,
                                   workers=args.workers))
    out: dict = {}
    for method in args.methods:
        tag = f"{keyword}-{method}-{args.model}{variant}" + (f"-seed{args.seed}" if args.seed else "")
        r = train_keyword(TrainOptions(keyword=keyword, data=data, method=method, model=args.model, epochs=args.epochs,
                                       seed=args.seed, run_dir=workdir / "runs" / tag, out=workdir / "bundles" / f"{tag}.kws",
                                       desc=tag))
        bundle = load_bundle(r.bundle)
        fc = bundle.feature_config
        if keyword == "stop":
            pos_files = [f for f in audio_files(SC_DIR / "stop") if speaker_half(speaker_of(f)) == "B"]
        else:
            pos_files = audio_files(MYCROFT / keyword / "en")
        neg_files = halves["B"] + audio_files(MYCROFT / "not-wake-words" / "en")
        test = load_split(data, "test")
        close = np.asarray(test.kinds) == "close_negative"
        x = np.concatenate([featurize_files(pos_files, fc), featurize_files(neg_files, fc),
                            np.asarray(test.x[close], dtype=np.float32)])
        y = np.concatenate([np.ones(len(pos_files)), np.zeros(len(neg_files) + int(close.sum()))]).astype(int)
        kinds = np.array(["positive"] * len(pos_files) + ["negative"] * len(neg_files)
                         + ["close_negative"] * int(close.sum()))
        m = split_metrics(bundle_scores(bundle, x), y, kinds, bundle.thresholds)
        out[method] = {"n_pos": len(pos_files), "n_real_neg": len(neg_files), "n_close": int(close.sum()),
                       "auc": m["auc"], "train_seconds": r.train_seconds,
                       "synth_test_recall_0.03": r.test["own"]["0.03"]["recall"],
                       **{f"recall_{k}": v["recall"] for k, v in m["own"].items()},
                       **{f"close_fpr_{k}": v["per_kind"].get("close_negative") for k, v in m["own"].items()},
                       **{f"calibrated_recall_{k}": v["recall"] for k, v in m["calibrated"].items()},
                       **{f"calibrated_fpr_{k}": v["fpr"] for k, v in m["calibrated"].items()}}
        print(f"{tag}: real recall {100 * out[method]['recall_0.03']:.1f}% @3%, "
              f"{100 * out[method]['recall_0.05']:.1f}% @5% FPR, AUC {m['auc']:.3f}", flush=True)
    return out


def report(results: dict, args: argparse.Namespace) -> str:
    lines = ["## Real speech: keywords trained from text alone",
             "",
             f"Training: synthesized keyword + synthesized negatives/close negatives + real Speech Commands "
             f"(v0.02 test set) negatives from speaker half A (rows marked synthetic-only: no real audio in "
             f"training at all); preset `{args.preset}`, {args.model}, "
             f"epochs {args.epochs or 'default'}, seed 0 unless the row says otherwise. Test: real keyword clips (athena: Mycroft Precise "
             f"community; stop: Speech Commands half B, never in training) vs real half-B Speech Commands words, "
             f"Mycroft not-wake-words and the synthesized test-split close negatives.",
             "",
             "| keyword | method | real pos | real neg | close neg | recall @3% FPR | recall @5% FPR | close-neg FPR @3% | AUC | at val thresholds 3% (recall / FPR) | synth test recall @3% |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for kw, by_method in results.items():
        for method, r in by_method.items():
            lines.append(f"| {kw} | {method} | {r['n_pos']} | {r['n_real_neg']} | {r['n_close']} | "
                         f"{100 * r['recall_0.03']:.1f}% | {100 * r['recall_0.05']:.1f}% | "
                         f"{100 * (r['close_fpr_0.03'] or 0):.1f}% | {r['auc']:.3f} | "
                         f"{100 * r['calibrated_recall_0.03']:.1f}% / {100 * r['calibrated_fpr_0.03']:.1f}% | "
                         f"{100 * r['synth_test_recall_0.03']:.1f}% |")
    lines += [""] + [f"- {n}" for n in getattr(args, "note", [])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keywords", nargs="+", default=["athena", "stop"], choices=["athena", "stop"])
    p.add_argument("--methods", nargs="+", default=["drocc-lf", "bce"])
    p.add_argument("--model", default="fastgrnn", choices=["fastgrnn", "lstm", "gru"])
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--preset", default="paper")
    p.add_argument("--workdir", default="runs/bench/real_speech")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--no-report", action="store_true")
    p.add_argument("--report-only", action="store_true", help="train nothing; report results.json")
    p.add_argument("--note", action="append", default=[], help="a line under the table (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="training seed (the dataset is the same)")
    p.add_argument("--synthetic-only", action="store_true",
                   help="train without the real half-A negatives (everything in training synthesized)")
    args = p.parse_args(argv)
    if not SC_DIR.is_dir() or not MYCROFT.is_dir():
        print(f"real-speech corpora not found under {SHARED} (set KWS_SHARED_DATA)", file=sys.stderr)
        return 2
    workdir = Path(args.workdir)
    res_path = workdir / "results.json"
    results = json.loads(res_path.read_text()) if res_path.exists() else {}
    for kw in ([] if args.report_only else args.keywords):
        name = kw + (" (synthetic-only training)" if args.synthetic_only else "") + (f" seed {args.seed}" if args.seed else "")
        results[name] = run_keyword(kw, args, workdir)  # each training run resumes from its checkpoints
        atomic_write_text(res_path, json.dumps(results, indent=1) + "\n")
    md = report(results, args)
    print(md)
    if not args.no_report:
        from tools.report import update_section

        update_section("real_speech", md)
    return 0


if __name__ == "__main__":
    import logging

    os.environ.setdefault("KWS_NO_PROGRESS", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    sys.exit(main())
