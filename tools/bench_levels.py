"""Recall on real keyword clips by their speech level: where a recipe wins or loses.

Reads the clip scores `tools/bench_text_only.py` saved for each run (test_scores.npz beside each
bundle, PocketSphinx's cache) and splits the REAL keyword clips by their active speech level
(`kws.data.augment.active_power`: 10 ms frames within 40 dB of the loudest, in dBFS). Each run's
threshold is its own 3%-FPR threshold on the real negatives (the text_only sections' protocol), so
the bins add up to the run's recall. The default bins are the realistic recipe's level range
(-42..-12 dBFS): clips below it, in it and above it.

    python tools/bench_levels.py --workdir runs/bench/lv_all --tags default wide --keywords athena amelia \
        --section text_only_levels
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools import real_data  # noqa: E402
from tools.report import update_section  # noqa: E402

DEFAULT_EDGES = (-42.0, -12.0)
FPR = 0.03


def clip_levels(keys: list[str], root: Path) -> np.ndarray:
    """Active speech level (dBFS) of each `real:<path under root>` clip."""
    from kws.audio import load_audio
    from kws.data.augment import active_level_dbfs

    return np.array([active_level_dbfs(load_audio(root / k.split(":", 1)[1])) for k in keys])


def bin_labels(edges: tuple[float, ...]) -> list[str]:
    lo = [f"< {edges[0]:g}"]
    mid = [f"{a:g} to {b:g}" for a, b in zip(edges[:-1], edges[1:])]
    return lo + mid + [f">= {edges[-1]:g}"]


def recall_row(scores: np.ndarray, kinds: np.ndarray, bins: np.ndarray, n_bins: int) -> list[float | None]:
    """Recall of the positives of each level bin, then of all, at the 3%-FPR threshold on the real
    negatives (`bins`: each positive's bin, in the order of the positives)."""
    from kws.metrics import recall_at_fpr

    pos, neg = scores[kinds == "positive"], scores[kinds == "negative"]
    recall, t = recall_at_fpr(pos, neg, FPR)
    return [float(np.mean(pos[bins == b] >= t)) if np.any(bins == b) else None for b in range(n_bins)] + [recall]


def run_scores(work: Path, results: dict[str, Any], tag: str, keyword: str, system: str) -> list[tuple[list[str], np.ndarray, np.ndarray]]:
    """(keys, kinds, scores) of the real test clips for every seed of `tag` on `keyword` without real
    positives in training."""
    out = []
    for key, e in sorted(results.get("runs", {}).items()):
        parts = key.split("|")
        if parts[:3] != [tag, keyword, "rp0"] or "scores_file" not in e:
            continue
        z = np.load(work / e["scores_file"])
        keys, kinds = np.asarray(z["keys"]).astype(str), np.asarray(z["kinds"]).astype(str)
        real = np.char.startswith(keys, "real:")  # each dataset adds its own synthesized close negatives
        out.append((list(keys[real]), kinds[real], np.asarray(z[system], np.float64)[real]))
    return out


def pocketsphinx(work: Path, results: dict[str, Any], keyword: str, keys: list[str]) -> np.ndarray | None:
    for key, e in results.get("pocketsphinx", {}).items():
        if key.split("|")[1:3] == [keyword, "rp0"] and "scores_file" in e:
            cached = json.loads((work / e["scores_file"]).read_text())
            if all(k in cached for k in keys):
                return np.array([cached[k] for k in keys])
    return None


def table(work: Path, tags: list[str], keywords: list[str], edges: tuple[float, ...], root: Path,
          system: str = "float") -> tuple[str, dict[str, Any]]:
    results = json.loads((work / "results.json").read_text())
    labels = bin_labels(edges)
    head = "| keyword | system | seeds | " + " | ".join(f"{b} dBFS" for b in labels) + " | all |"
    lines = [head, "|" + "---|" * (len(labels) + 4)]
    measured: dict[str, Any] = {}
    for kw in keywords:
        runs = {tag: run_scores(work, results, tag, kw, system) for tag in tags}
        first = next((r for r in runs.values() if r), None)
        if first is None:
            continue
        keys, kinds = first[0][0], first[0][1]
        pos_keys = [k for k, kind in zip(keys, kinds) if kind == "positive"]
        levels = clip_levels(pos_keys, root)
        bins_pos = np.digitize(levels, edges)
        counts = [int(np.sum(bins_pos == b)) for b in range(len(labels))]
        lines.append(f"| {kw} | real keyword clips | - | " + " | ".join(str(c) for c in counts) + f" | {len(pos_keys)} |")
        rows: list[tuple[str, int, list[list[float | None]]]] = []
        for tag, seeds in runs.items():
            per_seed = []
            for k2, kinds2, s in seeds:
                if k2 != keys:
                    raise SystemExit(f"bench_levels: {tag} on {kw} was scored on other real clips than the first tag")
                per_seed.append(recall_row(s, kinds2, bins_pos, len(labels)))
            if per_seed:
                rows.append((f"ours {system}, `{tag}`", len(per_seed), per_seed))
        ps = pocketsphinx(work, results, kw, keys)
        if ps is not None:
            rows.append(("PocketSphinx", 0, [recall_row(ps, kinds, bins_pos, len(labels))]))
        for name, n, per_seed in rows:
            cells = []
            for col in range(len(labels) + 1):
                vals = [r[col] for r in per_seed if r[col] is not None]
                cells.append(f"{100 * np.mean(vals):.1f}" if vals else "-")
            lines.append(f"| {kw} | {name} | {n or '-'} | " + " | ".join(cells) + " |")
            measured[f"{kw}|{name}"] = per_seed
    return "\n".join(lines), measured


def make_plot(measured: dict[str, Any], labels: list[str], path: Path) -> Path:
    """Grouped bars: recall @3% FPR per level bin (and all clips), one panel per keyword."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tools.bench_text_only import _save_figure

    keywords = list(dict.fromkeys(k.split("|", 1)[0] for k in measured))
    fig, axes = plt.subplots(1, len(keywords), figsize=(5.5 * len(keywords), 3.8), squeeze=False)
    for ax, kw in zip(axes[0], keywords):
        systems = [k for k in measured if k.startswith(f"{kw}|")]
        width = 0.8 / max(len(systems), 1)
        for i, key in enumerate(systems):
            cols = list(zip(*measured[key]))
            means = [100 * np.mean([v for v in c if v is not None]) if any(v is not None for v in c) else 0.0
                     for c in cols]
            ax.bar(np.arange(len(means)) + (i - (len(systems) - 1) / 2) * width, means, width,
                   label=key.split("|", 1)[1].replace("`", ""))
        ax.set_xticks(np.arange(len(labels) + 1), [f"{b}" for b in labels] + ["all"], fontsize=8)
        ax.set_xlabel("speech level of the real keyword clip (dBFS)")
        ax.set_ylabel(f"recall @{FPR:.0%} FPR (%)")
        ax.set_ylim(0, 119)  # room for the legend above the bars
        ax.set_title(kw)
        ax.legend(fontsize=7, loc="upper center", ncol=2)
    return _save_figure(fig, path, plt)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True, help="a tools/bench_text_only.py workdir (results.json)")
    p.add_argument("--tags", nargs="+", required=True, help="recipe tags to compare (the first sets the clips)")
    p.add_argument("--keywords", nargs="+", required=True)
    p.add_argument("--edges", nargs="+", type=float, default=list(DEFAULT_EDGES), help="level bin edges, dBFS")
    p.add_argument("--system", default="float", choices=["float", "int8"])
    p.add_argument("--shared", default=None, help="shared data folder (default $KWS_SHARED_DATA or ../shared/data)")
    p.add_argument("--section", default=None, help="BENCHMARKS.md section to write (default: print only)")
    p.add_argument("--note", action="append", default=[], help="a line under the table (repeatable)")
    args = p.parse_args(argv)
    root = real_data.shared_root(args.shared)
    if not root.is_dir():
        print(f"bench_levels: shared data not found at {root} (set KWS_SHARED_DATA or --shared)", file=sys.stderr)
        return 2
    edges = tuple(sorted(args.edges))
    md, measured = table(Path(args.workdir), args.tags, args.keywords, edges, root, args.system)
    plot = None
    if args.section and measured:
        plot = make_plot(measured, bin_labels(edges), Path(__file__).resolve().parents[1] / "docs" / f"{args.section}.png")
    body = ("## Real-speech recall by the clip's speech level (issue 7)\n\n"
            f"Recall @{FPR:.0%} FPR (each run's own threshold on the real negatives, as in the text_only sections) "
            "of the real keyword clips split by their active speech level (10 ms frames within 40 dB of the loudest; "
            "dBFS); mean over seeds, trained from text alone. The first row of each keyword counts the clips per "
            "bin.\n\n" + md + "\n" + "".join(f"\n- {n}" for n in args.note) + "\n"
            + (f"\n![recall by speech level](docs/{plot.name})\n" if plot else ""))
    print(body)
    if args.section:
        update_section(args.section, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
