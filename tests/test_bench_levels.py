"""tools/bench_levels.py: real keyword clips split by speech level, recall per level bin at each
run's own 3%-FPR threshold on the real negatives, on a small generated workdir."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf

from tools import bench_levels

SR = 16000


def word(level_dbfs: float, rng: np.random.Generator) -> np.ndarray:
    x = np.zeros(SR, np.float32)
    burst = rng.standard_normal(8000)
    x[4000:12000] = burst / np.sqrt(np.mean(burst ** 2)) * 10 ** (level_dbfs / 20)
    return x


def test_recall_per_level_bin_from_saved_scores(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "shared"
    (root / "kw").mkdir(parents=True)
    levels = [-55.0, -50.0, -30.0, -25.0, -20.0, -8.0]
    pos_keys = []
    for i, lv in enumerate(levels):
        sf.write(root / "kw" / f"c{i}.flac", word(lv, rng), SR, subtype="PCM_16")
        pos_keys.append(f"real:kw/c{i}.flac")
    neg_keys = [f"real:neg/{i}.flac" for i in range(100)]  # negatives are never read: only scored
    # each run's dataset adds synthesized close negatives of its own: not part of this table
    keys = pos_keys + neg_keys + ["synth:abc"]
    kinds = np.array(["positive"] * len(pos_keys) + ["negative"] * 100 + ["close_negative"])
    neg_scores = np.append(np.linspace(0.0, 0.5, 100), 1.0)  # 3%-FPR threshold just above the 4th highest
    work = tmp_path / "work"
    runs = {}
    # seed 0 finds the mid-level clips only, seed 1 also the loud one
    for seed, pos_scores in enumerate([[0.1, 0.2, 0.9, 0.9, 0.9, 0.1], [0.1, 0.2, 0.9, 0.9, 0.9, 0.95]]):
        d = work / "runs" / f"s{seed}"
        d.mkdir(parents=True)
        np.savez(d / "test_scores.npz", keys=np.array(keys[:-1] + [f"synth:{seed}"]), kinds=kinds,
                 float=np.concatenate([pos_scores, neg_scores]))
        runs[f"wide|kw|rp0|seed{seed}"] = {"scores_file": f"runs/s{seed}/test_scores.npz"}
    runs["wide|kw|rp5|seed0"] = {"scores_file": "runs/s0/test_scores.npz"}  # with real positives: left out
    (work / "results.json").write_text(json.dumps({"runs": runs}))

    md, measured = bench_levels.table(work, ["wide"], ["kw"], (-42.0, -12.0), root)
    assert "| kw | real keyword clips | - | 2 | 3 | 1 | 6 |" in md
    per_seed = measured["kw|ours float, `wide`"]
    assert per_seed[0] == [0.0, 1.0, 0.0, 0.5]
    assert per_seed[1] == [0.0, 1.0, 1.0, 4 / 6]
    assert "| kw | ours float, `wide` | 2 | 0.0 | 100.0 | 50.0 | 58.3 |" in md
    png = bench_levels.make_plot(measured, bench_levels.bin_labels((-42.0, -12.0)), tmp_path / "levels.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
