"""The paper's OCLN wake-word experiment (DROCC paper Section 5.2, Appendix E.5, Figures 3 and 9).

For each keyword x method x model x seed: train on the keyword's dataset (train 1000 keyword +
2000 other words; validation/test 600 keyword + 600 other + 600 synthesized close negatives with
the paper preset), pick the epoch on validation, and measure recall at 3% / 5% FPR on the TEST
split (negatives = generic + close together) and the close-negative FPR at that threshold.
Reports mean +- std over seeds beside the paper's Figure 3 / 9 values, plus training time and size.

Corpus: a Speech Commands tree when --speech-commands DIR is given (its keyword folder gives real
positives, the other words real negatives); otherwise everything is synthesized by the dataset
builder. The paper used real Speech Commands audio, so only the former is comparable in level.

Resumable: every finished run is stored in the results JSON and skipped on rerun; an interrupted
run resumes from its last epoch checkpoint.

    python tools/bench_ocln.py --keywords marvin --methods bce drocc-lf --models fastgrnn --seeds 1 --epochs 10
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kws.util import atomic_write_text  # noqa: E402

KEYWORDS = ("marvin", "seven", "forward", "follow")
METHODS = ("bce", "drocc-oe", "drocc-lf")
MODELS = ("lstm", "fastgrnn")
# Paper, Figure 3 (marvin, seven) and Figure 9 (forward, follow): recall % at 3% / 5% FPR.
PAPER = {
    "drocc-lf": {"marvin": (72.3, 76.2), "seven": (68.7, 72.3), "forward": (59.3, 65.7), "follow": (56.2, 65.4)},
    "bce": {"marvin": (52.5, 59.2), "seven": (50.3, 57.2), "forward": (41.9, 50.8), "follow": (28.8, 38.3)},
}


def run_key(keyword: str, method: str, model: str, seed: int, tag: str = "") -> str:
    return f"{keyword}/{method}{tag}/{model}/seed{seed}"


def load_results(path: Path) -> dict:
    if path.exists():
        try:
            return json.loads(path.read_text())
        except ValueError:
            print(f"warning: {path} is unreadable; starting a new results file", file=sys.stderr)
    return {"runs": {}}


def build_data(keyword: str, args: argparse.Namespace, workdir: Path) -> Path:
    from kws.data.builder import BuildOptions, build_dataset

    corpus = "speech-commands" if args.speech_commands else "synth"
    out = workdir / "data" / f"{keyword}-{corpus}-{args.preset}-cn{args.close_negatives_in_train}"
    positives, negatives = [], []
    if args.speech_commands:
        sc = Path(args.speech_commands)
        negatives = [sc]
        if (sc / keyword).is_dir():
            positives = [sc / keyword]
    if (out / "dataset.json").exists() and args.reuse_data:
        # finished earlier (dataset.json is written last); a newer builder may refuse its options
        print(f"dataset {out} reused as built", flush=True)
        return out
    t0 = time.time()
    summary = build_dataset(BuildOptions(keyword=keyword, out=out, preset=args.preset, positives=positives,
                                         negatives=negatives, seed=0, workers=args.workers,
                                         close_negatives_in_train=args.close_negatives_in_train))
    print(summary.table() if time.time() - t0 > 5 else f"dataset {out} ready", flush=True)
    return out


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    a = 100 * np.asarray(values, dtype=float)
    return f"{a.mean():.1f} ± {a.std(ddof=1):.1f}" if len(a) > 1 else f"{a.mean():.1f}"


def report(results: dict, args: argparse.Namespace) -> str:
    runs = results["runs"]
    corpus = ("Speech Commands tree " + str(args.speech_commands)) if args.speech_commands else \
        "synthesized by the dataset builder (TTS positives, negatives and close negatives; no real speech)"
    lines = [
        "## OCLN wake-word experiment (paper Section 5.2)" + (f" — variant `{args.tag}` {args.train_hparams}" if args.tag else ""),
        "",
        f"Corpus: {corpus}; preset `{args.preset}`; close negatives in train: `{args.close_negatives_in_train}`"
        f"{' (the paper protocol)' if args.close_negatives_in_train == 'none' else ''}; epochs {args.epochs or 'default'}; "
        f"recall on the TEST split at the threshold giving 3% / 5% FPR over its negatives (generic + close), "
        f"model chosen on validation. Mean ± std over seeds (n = number of seeds finished).",
        "",
        "| keyword | method | model | n | recall @3% FPR | recall @5% FPR | close-neg FPR @3% | test AUC | paper @3% / @5% | train s | params | int8 bytes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kw in args.keywords:
        for method in args.methods:
            for model in args.models:
                rs = [runs[k] for k in (run_key(kw, method, model, s, args.tag) for s in range(args.seeds)) if k in runs]
                if not rs:
                    continue
                paper = PAPER.get(method, {}).get(kw)
                paper_s = f"{paper[0]} / {paper[1]} (LSTM)" if paper else "-"
                lines.append(
                    f"| {kw} | {method}{args.tag} | {model} | {len(rs)} | {mean_std([r['test_recall_0.03'] for r in rs])} | "
                    f"{mean_std([r['test_recall_0.05'] for r in rs])} | "
                    f"{mean_std([r['test_close_fpr_0.03'] or 0.0 for r in rs])} | "
                    f"{np.mean([r['test_auc'] for r in rs]):.3f} | {paper_s} | "
                    f"{np.mean([r['train_seconds'] for r in rs]):.0f} | {rs[0]['params']} | {rs[0]['int8_bytes']} |")
    lines += ["", "Paper values are the DROCC paper's Figure 3 / 9 (LSTM, real Speech Commands); "
              "the paper reports no FastGRNN OCLN numbers."]
    lines += [f"- {n}" for n in getattr(args, "note", [])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keywords", nargs="+", default=list(KEYWORDS))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=["bce", "drocc", "drocc-oe", "drocc-lf"])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=["lstm", "gru", "fastgrnn"])
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: kws train's default)")
    p.add_argument("--hidden", type=int, default=None)
    p.add_argument("--preset", default="paper", help="dataset preset (paper or small)")
    p.add_argument("--close-negatives-in-train", default="none", choices=["none", "disjoint", "all"],
                   help="none = the paper's protocol (close negatives only in val/test); disjoint = kws's "
                        "product default (other close-negative words in train)")
    p.add_argument("--speech-commands", default=None, metavar="DIR", help="Speech Commands tree (default: synthesize)")
    p.add_argument("--workdir", default="runs/bench/ocln", help="datasets, checkpoints, bundles (rerun resumes)")
    p.add_argument("--results", default=None, help="results JSON (default WORKDIR/results.json)")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--no-report", action="store_true", help="do not rewrite the BENCHMARKS.md section")
    p.add_argument("--report-only", action="store_true", help="train nothing; report the finished runs")
    p.add_argument("--rebuild-data", dest="reuse_data", action="store_false",
                   help="run the dataset builder even when a finished dataset folder exists")
    p.add_argument("--tag", default="", help="suffix for run folders/keys of a variant, e.g. -gradient")
    p.add_argument("--train-hparams", default="{}", help='JSON overrides of TrainHparams, e.g. {"lf_metric": "gradient"}')
    p.add_argument("--section", default="ocln", help="BENCHMARKS.md section to rewrite")
    p.add_argument("--note", action="append", default=[], help="a line to add under the table (repeatable)")
    args = p.parse_args(argv)

    from kws.train.api import TrainOptions, train_keyword

    workdir = Path(args.workdir)
    res_path = Path(args.results) if args.results else workdir / "results.json"
    results = load_results(res_path)
    train_hp = json.loads(args.train_hparams)
    settings = {"preset": args.preset, "epochs": args.epochs, "hidden": args.hidden, **({"train_hparams": train_hp} if train_hp else {}),
                "speech_commands": str(args.speech_commands) if args.speech_commands else None}
    datasets: dict[str, Path] = {}
    # Seeds outermost: an interrupted grid still has every cell at n >= 1 before any reaches n = 3.
    for seed in range(args.seeds):
        for kw in args.keywords:
            for method in args.methods:
                for model in args.models:
                    key = run_key(kw, method, model, seed, args.tag)
                    if args.report_only or (key in results["runs"]
                                            and results["runs"][key].get("settings") == settings):
                        continue
                    if kw not in datasets:
                        datasets[kw] = build_data(kw, args, workdir)
                    tag = key.replace("/", "-")
                    r = train_keyword(TrainOptions(keyword=kw, data=datasets[kw], method=method, model=model,
                                                   epochs=args.epochs, hidden=args.hidden, seed=seed,
                                                   train_hparams=train_hp,
                                                   run_dir=workdir / "runs" / tag,
                                                   out=workdir / "bundles" / f"{tag}.kws", desc=tag))
                    results["runs"][key] = {**r.summary(), "settings": settings}
                    atomic_write_text(res_path, json.dumps(results, indent=1) + "\n")
                    s = results["runs"][key]
                    print(f"{key}: test recall {100 * s['test_recall_0.03']:.1f}% @3%, "
                          f"{100 * s['test_recall_0.05']:.1f}% @5% FPR, AUC {s['test_auc']:.3f}, "
                          f"{s['train_seconds']:.0f} s", flush=True)
    md = report(results, args)
    print(md)
    if not args.no_report:
        from tools.report import update_section

        update_section(args.section, md)
    return 0


if __name__ == "__main__":
    import logging

    os.environ.setdefault("KWS_NO_PROGRESS", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    sys.exit(main())
