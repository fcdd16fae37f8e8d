"""tools/bench_selection.py: the real negatives of a dataset's held-out speakers, and the rank
correlation that compares validation signals."""

from __future__ import annotations

import json

import numpy as np
from scipy.stats import spearmanr

from kws.data.manifest import ClipRecord, write_manifest
from tools import bench_selection


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 30).astype(float), rng.standard_normal(30)
    assert np.isclose(bench_selection.spearman(a, b), spearmanr(a, b).statistic)
    assert np.isclose(bench_selection.spearman(np.arange(5.0), np.arange(5.0) ** 3), 1.0)
    assert np.isclose(bench_selection.spearman(np.arange(5.0), -np.arange(5.0)), -1.0)


def test_held_out_real_negatives_are_the_val_and_test_speakers_other_words(tmp_path):
    tree = tmp_path / "sc"
    speakers = {"train": "aaaa0001", "val": "bbbb0002", "test": "cccc0003"}
    for word in ("yes", "off", "left", "lent"):
        (tree / word).mkdir(parents=True)
        for spk in speakers.values():
            (tree / word / f"{spk}_nohash_0.wav").write_bytes(b"")  # never read: only listed
    data = tmp_path / "ds"
    data.mkdir()
    (data / "dataset.json").write_text(json.dumps({"options": {"negatives": [str(tree)]},
                                                   "close_negatives": [{"text": "lent"}]}))
    write_manifest(data / "manifest.jsonl", [
        ClipRecord(id=f"{split}-negative-00000", path=f"clips/{split}/x.wav", label=0, kind="negative", text="yes",
                   source="real:speech_commands", speaker=f"real:{spk}", split=split)
        for split, spk in speakers.items()] + [
        ClipRecord(id="val-positive-00000", path="clips/val/p.wav", label=1, kind="positive", text="left",
                   source="tts:espeak-ng:en", speaker="espeak-ng:en", split="val")])
    got = bench_selection.held_out_real_negatives(data, "left")
    assert sorted(str(p.relative_to(tree)) for p in got) == [
        f"{w}/{speakers[s]}_nohash_0.wav" for w in ("off", "yes") for s in ("val", "test")]
