"""Which validation signal ranks trained models by their recall on real speech?

For runs of `tools/bench_text_only.py` (each a folder with `model.kws` and the `test_scores.npz` of
its real test), compares two signals a user has before any real test:

- the bundle's validation AUC (synthesized keywords against the validation split's negatives:
  synthesized words, close negatives and a few real clips), what picked epochs until now;
- recall at 3% FPR of the same synthesized validation keywords against REAL negatives of held-out
  speakers: every clip, in the negatives tree the dataset was built from, of the speakers the
  dataset put in its validation and test splits (never the keyword's folder or a close-negative
  word), scored like the test (max over the stream's 1 s windows of the padded clip).

and reports, per keyword, how each ranks the runs' real test recall (Spearman's rho), with the
runs in a table.

    python tools/bench_selection.py --runs runs/bench/s_left/runs/*/left-rp0-seed* --section selection_signal
"""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.report import update_section  # noqa: E402

FPR = 0.03


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    from scipy.stats import rankdata

    return float(np.corrcoef(rankdata(a), rankdata(b))[0, 1])


def held_out_real_negatives(data_dir: Path, keyword: str) -> list[Path]:
    """Real clips, in the dataset's negatives trees, of the speakers of its val and test splits."""
    from kws.data.manifest import read_manifest
    from tools.real_data import sc_clips, speaker_of

    info = json.loads((data_dir / "dataset.json").read_text())
    records = read_manifest(data_dir / "manifest.jsonl")
    speakers = {r.speaker.split(":", 1)[1] for r in records
                if r.source.startswith("real:") and r.split in ("val", "test") and ":" in r.speaker}
    avoid = [keyword] + [c["text"] for c in info.get("close_negatives", [])]
    return [p for tree in info["options"].get("negatives", []) for p in sc_clips(Path(tree), avoid)
            if speaker_of(p) in speakers]


def run_signals(run: Path, cache_dir: Path) -> dict[str, Any]:
    """The two validation signals and the real test recall of one run."""
    from kws.bundle import load_bundle
    from kws.data.manifest import read_manifest
    from kws.evaluate import bundle_scores, peak_scores, stream_window_scores
    from kws.metrics import auc, recall_at_fpr
    from tools.bench_text_only import FeatureCache, Padding

    config = json.loads(zipfile.ZipFile(run / "model.kws").read("config.json"))
    keyword = config["keyword"]
    data_dir = Path(config["provenance"]["dataset"])
    negatives = held_out_real_negatives(data_dir, keyword)
    positives = [data_dir / r.path for r in read_manifest(data_dir / "manifest.jsonl")
                 if r.split == "val" and r.kind == "positive"]
    keys = [f"real:{p}" for p in negatives] + [f"val:{p}" for p in positives]
    bundle = load_bundle(run / "model.kws")
    cache = FeatureCache(cache_dir / f"{data_dir.parent.parent.parent.name}-{data_dir.name}.npz",
                         Padding()).for_config(bundle.feature_config)
    cache.ensure(keys, negatives + positives)
    windows = stream_window_scores([cache.frames[k] for k in keys], lambda x: bundle_scores(bundle, x),
                                   bundle.feature_config)
    scores = peak_scores(windows)
    neg, pos = scores[:len(negatives)], scores[len(negatives):]
    with np.load(run / "test_scores.npz", allow_pickle=False) as z:
        test, kinds = z["float"], z["kinds"]
    return {"run": str(run), "keyword": keyword, "n_real_negatives": len(negatives),
            "val_auc": float(config["metrics"]["val"]["auc"]),
            "real_val_recall": recall_at_fpr(pos, neg, FPR)[0], "real_val_auc": auc(pos, neg),
            "test_recall": recall_at_fpr(test[kinds == "positive"], test[kinds == "negative"], FPR)[0]}


def report(rows: list[dict[str, Any]], section: str | None) -> str:
    by_kw: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_kw[r["keyword"]].append(r)
    lines = ["## Model selection: which validation signal tracks real speech (issue 7)", "",
             "Signals a user has before any real test, against each run's recall at 3% FPR on the real test "
             "(tools/bench_text_only.py): the bundle's validation AUC (synthesized keywords against the validation "
             "split's negatives: synthesized words, close negatives and a few real clips), what picked epochs until "
             "now; and the same synthesized validation keywords' recall at 3% FPR (and AUC) against REAL negatives "
             "of held-out speakers: every clip, in the negatives tree the dataset was built from, of the speakers "
             "its validation and test splits hold (never the keyword's folder or a close-negative word), scored like "
             "the test (max over the stream's 1 s windows of the padded clip). Spearman's rho over the runs of each "
             "keyword (several recipes and seeds).", "",
             "| keyword | runs | real negatives (held-out speakers) | Spearman: validation AUC (before) "
             "| Spearman: recall vs real negatives | Spearman: AUC vs real negatives |", "|---|---|---|---|---|---|"]
    for kw, rs in sorted(by_kw.items()):
        test = np.array([r["test_recall"] for r in rs])
        rho = [spearman(np.array([r[k] for r in rs]), test) for k in ("val_auc", "real_val_recall", "real_val_auc")]
        lines.append(f"| {kw} | {len(rs)} | {rs[0]['n_real_negatives']} | " + " | ".join(f"{x:.2f}" for x in rho) + " |")
    lines += ["", "| run | validation AUC | recall @3% vs real negatives | real test recall @3% FPR |", "|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["keyword"], r["run"])):
        name = "/".join(Path(r["run"]).parts[-4:])
        lines.append(f"| {name} | {r['val_auc']:.3f} | {100 * r['real_val_recall']:.1f} | {100 * r['test_recall']:.1f} |")
    body = "\n".join(lines) + "\n"
    if section:
        update_section(section, body)
    return body


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", type=Path, required=True, help="run folders (model.kws + test_scores.npz)")
    p.add_argument("--cache", type=Path, default=Path("runs/bench/selection_features"),
                   help="where the scored clips' features are cached")
    p.add_argument("--section", default=None, help="BENCHMARKS.md section to (re)write")
    args = p.parse_args(argv)
    rows = []
    for run in args.runs:
        if not (run / "model.kws").is_file() or not (run / "test_scores.npz").is_file():
            print(f"skipping {run}: no model.kws or test_scores.npz", file=sys.stderr)
            continue
        rows.append(run_signals(run, args.cache))
        print(json.dumps(rows[-1]), flush=True)
    print(report(rows, args.section))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
