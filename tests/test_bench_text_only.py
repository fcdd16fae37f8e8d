"""tools/bench_text_only.py and tools/real_data.py on small generated corpora laid out like
../shared/data: speaker halves, few-shot clip choice, the test set (no training clip, no
near-homophone close negative), and one tiny end-to-end run (build, train, score, PocketSphinx,
report, resume)."""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kws.errors import DataError  # noqa: E402
from tools import bench_text_only as bench  # noqa: E402
from tools import real_data  # noqa: E402

needs_espeak = pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng is not installed")

WORDS = ("stop", "yes", "left", "go")


def tone(rng: np.random.Generator, seconds: float) -> np.ndarray:
    n = int(seconds * 16000)
    t = np.arange(n) / 16000
    x = 0.2 * np.sin(2 * np.pi * rng.uniform(150, 500) * t) * np.hanning(n) + 0.01 * rng.standard_normal(n)
    return x.astype(np.float32)


def make_shared(root: Path, n_speakers: int = 30, n_mycroft: int = 12) -> Path:
    """A shared-data folder: Speech Commands test-set layout (4 words, a noise folder) and the
    Mycroft community layout (athena/en, not-wake-words/en)."""
    rng = np.random.default_rng(5)
    sc = root / real_data.SC_NAME
    speakers = [f"{i:08x}" for i in rng.integers(1 << 31, size=n_speakers)]
    for w in WORDS:
        (sc / w).mkdir(parents=True)
        for s in speakers:
            for k in range(2 if w == "stop" else 1):
                sf.write(sc / w / f"{s}_nohash_{k}.flac", tone(rng, 1.0), 16000)
    (sc / "_background_noise_").mkdir()
    sf.write(sc / "_background_noise_" / "hum.flac", 0.05 * rng.standard_normal(48000), 16000)
    my = root / real_data.MYCROFT_NAME
    (my / "athena" / "en").mkdir(parents=True)
    (my / "not-wake-words" / "en").mkdir(parents=True)
    for i in range(n_mycroft):
        sf.write(my / "athena" / "en" / f"athena-en-{uuid.UUID(int=i + 1)}.flac", tone(rng, 0.6 + 0.2 * (i % 4)), 16000)
    for i in range(3):
        sf.write(my / "not-wake-words" / "en" / f"notwakeword-en-{uuid.UUID(int=100 + i)}.flac", tone(rng, 1.4), 16000)
    return root


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    return make_shared(tmp_path_factory.mktemp("shared"))


def test_speaker_halves_links_and_noise_folders(shared, tmp_path):
    sc = shared / real_data.SC_NAME
    halves = real_data.sc_halves(sc, exclude_word="stop")
    spk = {h: {real_data.speaker_of(f) for f in fs} for h, fs in halves.items()}
    assert spk["A"] and spk["B"] and not spk["A"] & spk["B"]
    assert all(f.parent.name in ("yes", "left", "go") for fs in halves.values() for f in fs)
    assert len(halves["A"]) + len(halves["B"]) == 3 * 30  # every clip of the other words, no noise file
    tree = real_data.link_tree(halves["A"], tmp_path / "tree")
    assert real_data.link_tree(halves["A"], tmp_path / "tree") == tree  # idempotent
    links = sorted(p for p in tree.rglob("*.flac"))
    assert len(links) == len(halves["A"]) and all(p.is_symlink() and p.resolve().is_file() for p in links)
    flat = real_data.link_files(halves["A"][:3], tmp_path / "flat")
    real_data.link_files(halves["A"][1:3], flat)  # a smaller set: the stale link goes
    assert sorted(p.name for p in flat.iterdir()) == sorted(f.name for f in halves["A"][1:3])


def test_few_shot_clips_are_nested_seeded_and_speaker_disjoint_from_the_test(shared):
    corpora = real_data.Corpora(shared)
    five = bench.choose_real_positives("stop", 5, corpora, seed=0)
    ten = bench.choose_real_positives("stop", 10, corpora, seed=0)
    assert ten[:5] == five and bench.choose_real_positives("stop", 5, corpora, seed=1) != five
    speakers = [real_data.speaker_of(f) for f in ten]
    assert len(set(speakers)) == len(speakers)  # one clip per speaker while speakers last
    assert {real_data.speaker_half(s) for s in speakers} == {"A"}
    test = bench.make_test_set("stop", corpora, ten, None)
    pos = [p for p, k in zip(test.paths, test.kinds) if k == "positive"]
    assert pos and {real_data.speaker_half(real_data.speaker_of(p)) for p in pos} == {"B"}
    assert not {real_data.speaker_of(p) for p in pos} & set(speakers)
    neg = [p for p, k in zip(test.paths, test.kinds) if k == "negative"]
    assert not any(p.parent.name == "stop" for p in neg)
    assert {p.parent.name for p in neg} == {"yes", "left", "go", "en"}  # + Mycroft not-wake-words
    assert test.pos_speakers == len({real_data.speaker_of(p) for p in pos})
    # Mycroft: a seeded draw, removed from the test
    drawn = bench.choose_real_positives("athena", 4, corpora, seed=0)
    t2 = bench.make_test_set("athena", corpora, drawn, None)
    t2_pos = {p for p, k in zip(t2.paths, t2.kinds) if k == "positive"}
    assert len(t2_pos) == 12 - 4 and not t2_pos & set(drawn) and t2.pos_speakers is None
    with pytest.raises(DataError, match="only 12"):
        bench.choose_real_positives("athena", 13, corpora)


def test_close_negatives_that_sound_like_the_keyword_are_dropped(shared, tmp_path):
    from kws.audio import save_wav
    from kws.data.manifest import ClipRecord, write_manifest

    data = tmp_path / "ds"
    rng = np.random.default_rng(0)
    recs = []
    for i, text in enumerate(["marina", "at tina", "farina", "athena"]):
        path = f"clips/test/test-close-negative-{i:05d}.wav"
        save_wav(data / path, tone(rng, 1.0))
        recs.append(ClipRecord(id=f"c{i}", path=path, label=0, kind="close_negative", text=text,
                               source="tts:espeak-ng:en", speaker="espeak-ng:+m1", split="test"))
    write_manifest(data / "manifest.jsonl", recs)
    (data / "dataset.json").write_text(json.dumps({"keyword": "athena", "close_negatives": [
        {"text": r.text, "how": "test"} for r in recs]}))
    test = bench.make_test_set("athena", real_data.Corpora(shared), [], data)
    assert test.close_words == ["marina", "at tina", "farina", "athena"]
    assert test.close_dropped == ["at tina", "athena"]
    assert (test.kinds == "close_negative").sum() == 2
    assert len(set(test.keys)) == len(test.keys)  # clip keys are unique (file digests for synthesized clips)


def test_metrics_set_the_threshold_on_real_negatives_and_show_close_negatives_apart():
    kinds = np.array(["positive"] * 4 + ["negative"] * 50 + ["close_negative"] * 50)
    scores = np.r_[[0.9, 0.8, 0.7, 0.1], np.linspace(0.0, 0.5, 50), np.linspace(0.0, 0.95, 50)]
    m = bench.summarize(scores, kinds, {"0.03": 0.85, "0.05": 0.6})
    # 50 real negatives: one may pass at 3% FPR -> the threshold is the top real negative, 0.5
    assert m["recall_0.03"] == pytest.approx(0.75) and m["real_neg_fpr_0.03"] == pytest.approx(0.02)
    assert m["close_fpr_0.03"] == pytest.approx(24 / 50)  # close negatives at or above 0.5
    # real and close together (100 negatives, 3 may pass): only 0.9 is above the 4th highest close one
    assert m["recall_all_0.03"] == pytest.approx(0.25)
    assert m["calibrated_recall_0.03"] == pytest.approx(0.25) and m["calibrated_close_fpr_0.03"] == pytest.approx(0.12)
    assert m["auc"] == pytest.approx((3 * 50 + 10) / 200)
    assert bench._pct([0.5, 0.7, 0.6], rng=True) == "60.0 ± 10.0 (50.0–70.0)"
    assert bench._pct([0.5]) == "50.0"


def test_seed_ensemble_averages_the_models_logits_per_clip(tmp_path):
    kinds = np.array(["positive"] * 4 + ["negative"] * 40)
    keys = np.array([f"c{i}" for i in range(44)])
    neg = np.linspace(0.05, 0.6, 40)
    # each model misses a different half of the keyword clips; averaged, all four pass the top negative
    a = np.r_[[0.95, 0.9, 0.3, 0.35], neg]
    b = np.r_[[0.3, 0.35, 0.95, 0.9], neg]
    runs = []
    for name, sc in (("a", a), ("b", b)):
        np.savez(tmp_path / f"{name}.npz", keys=keys, kinds=kinds, float=sc)
        runs.append({"scores_file": f"{name}.npz"})
    assert bench.summarize(a, kinds)["recall_0.03"] == pytest.approx(0.5)
    ens = bench.seed_ensemble(runs, tmp_path)
    assert ens["recall_0.03"] == pytest.approx(1.0)
    same = bench.seed_ensemble([runs[0], runs[0]], tmp_path)
    assert same["recall_0.03"] == pytest.approx(0.5) and same["auc"] == pytest.approx(bench.summarize(a, kinds)["auc"])
    assert bench.seed_ensemble(runs[:1], tmp_path) is None
    np.savez(tmp_path / "c.npz", keys=keys[::-1], kinds=kinds, float=a)  # another test: no ensemble
    assert bench.seed_ensemble([runs[0], {"scores_file": "c.npz"}], tmp_path) is None


def test_teacher_ensemble_names_a_built_ensemble_and_offsets_the_student_seeds(tmp_path):
    results = bench.Results(tmp_path / "results.json")
    with pytest.raises(bench.KwsError, match="run tag 'default' there first with --seeds 4 --ensemble 4"):
        bench.teacher_ensemble_bundle(results, tmp_path, "default:4", "stop", 0)
    key = bench.ensemble_key("default", "stop", 0, [0, 1, 2, 3])
    results.ensembles[key] = {"scores_file": "runs/default/stop-rp0-ens0+1+2+3/test_scores.npz"}
    path, offset = bench.teacher_ensemble_bundle(results, tmp_path, "default:4", "stop", 0)
    assert path == str(tmp_path / "runs/default/stop-rp0-ens0+1+2+3/model.kws") and offset == 4
    args = bench.parse_args(["--teacher-ensemble", "default:4", "--method", "drocc-lf"])
    assert bench.tag_config(args)["teacher_ensemble"] == "default:4"
    assert "teacher_ensemble" not in bench.tag_config(bench.parse_args([]))  # older tags still match
    for bad in (["--teacher-ensemble", "default"], ["--teacher-ensemble", "default:4", "--teacher", "openwakeword"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)
    # the report line: members 0.70-0.76 (mean 0.73), ensemble 0.83, students 0.80 and 0.78 -> 60% of the gain
    results.configs["kd"] = {"teacher_ensemble": "default:4"}
    test = {"clips": 1}

    def run(tag: str, seed: int, recall: float) -> dict:
        return {"tag": tag, "keyword": "stop", "real_positives": 0, "seed": seed, "test": test,
                "systems": {"float": {"recall_0.03": recall}}}

    for seed, r in enumerate((0.70, 0.72, 0.74, 0.76)):
        results.runs[bench.run_key("default", "stop", 0, seed)] = run("default", seed, r)
    for seed, r in enumerate((0.80, 0.78)):
        results.runs[bench.run_key("kd", "stop", 0, seed)] = run("kd", seed, r)
    results.ensembles[key].update(systems={"float": {"recall_0.03": 0.83}}, int8_bytes=4096)
    (line,) = bench.teacher_lines(results, "kd")
    assert "members 73.0 ± 2.6, ensemble 83.0 (4.0 KB int8), students 79.0 ± 1.4 (78.0–80.0) (seeds 4, 5), 60% of its gain kept" in line
    assert bench.teacher_lines(results, "default") == []
    # with the openWakeWord head too: its line first, then the ensemble's
    results.configs["kd"]["teacher"] = "openwakeword-head"
    head, ens = bench.teacher_lines(results, "kd")
    assert "averaged with the ensemble's" in head and "--ensemble N --distill" in head and "60% of its gain" in ens
    assert bench.parse_args(["--teacher-ensemble", "default:4", "--teacher", "openwakeword-head"]).teacher


def test_the_head_teacher_gets_a_report_row_and_merges_with_its_scores(tmp_path):
    other = tmp_path / "other"
    theirs = bench.Results(other / "results.json")
    theirs.configs["oww"] = {"teacher": "openwakeword-head"}
    test = {"n_pos": 2, "n_neg_real": 3, "n_close": 0, "pos_speakers": None, "neg_speakers": 2, "close_words": []}
    m = {"recall_0.03": 0.95, "recall_0.05": 0.97, "close_fpr_0.03": None, "auc": 0.99, "recall_all_0.03": 0.9}
    key = bench.run_key("oww", "athena", 0)
    theirs.teachers[key] = {"metrics": m, "test": test, "params": 50_000, "scores_file": "teachers/x.npz"}
    (other / "teachers").mkdir(parents=True)
    np.savez(other / "teachers" / "x.npz", float=np.ones(5))
    theirs.runs[bench.run_key("oww", "athena", 0, 0)] = {
        "tag": "oww", "keyword": "athena", "real_positives": 0, "seed": 0, "test": test, "train_seconds": 1.0,
        "systems": {s: {**m, "recall_0.03": 0.9} for s in ("float", "int8", "float_centred", "int8_centred")}}
    theirs.save()
    mine = bench.Results(tmp_path / "results.json")
    assert bench.merge_from(mine, tmp_path, other, "oww") == 2
    assert (tmp_path / "teachers" / "x.npz").is_file() and key in bench.Results(tmp_path / "results.json").teachers
    text = bench.report(mine, "oww", None, [])
    (row,) = [line for line in text.splitlines() if "teacher: openWakeWord head" in line]
    assert "50,000 parameters" in row and "| 95.0 | - | 97.0 |" in row  # no smoothed score for the head
    assert "the students learn its logit" in text


def test_control_threshold_uses_only_negatives_of_words_the_word_task_never_named(tmp_path):
    sc = f"real:{real_data.SC_NAME}"
    assert bench.negative_word(f"{sc}/Go/abc_nohash_0.flac") == "go"
    assert bench.negative_word(f"real:{real_data.MYCROFT_NAME}/not-wake-words/en/x.flac") is None
    assert bench.negative_word("synth:0123") is None
    # the unnamed word ('go') scores high and the named one ('yes') low: the control's threshold sits
    # among the 'go' clips only, so it is higher than the one over every negative
    keys = ([f"{sc}/stop/p{i}.flac" for i in range(10)] + [f"{sc}/yes/n{i}.flac" for i in range(50)]
            + [f"{sc}/go/n{i}.flac" for i in range(50)] + ["synth:c"] * 5)
    kinds = np.array(["positive"] * 10 + ["negative"] * 100 + ["close_negative"] * 5)
    scores = np.r_[np.linspace(0.5, 0.95, 10), np.full(50, 0.1), np.linspace(0.3, 0.8, 50), np.full(5, 0.99)]
    np.savez(tmp_path / "s.npz", keys=np.array(keys), kinds=kinds, float=scores)
    entry = {"scores_file": "s.npz"}
    recall, n = bench.unnamed_word_recall(tmp_path, entry, {"yes"})
    assert n == 50  # the 'go' negatives; never the positives or the synthesized close negatives
    assert bench.unnamed_words(tmp_path, entry, {"yes"}) == ["go"]
    from kws.metrics import recall_at_fpr

    assert recall == recall_at_fpr(scores[:10], scores[60:110], 0.03)[0]
    assert recall < recall_at_fpr(scores[:10], scores[10:110], 0.05)[0]


def test_feature_cache_follows_the_bundles_feature_config(tmp_path):
    """A bundle trained on mean-normalized features is scored on test frames featurized the same
    way: the cache hands out a sibling file per feature config, filled on demand and reloaded."""
    from kws.features import FeatureConfig, featurize

    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"c{i}.wav")
        sf.write(paths[-1], (0.1 * rng.standard_normal(12000)).astype(np.float32), 16000, subtype="FLOAT")
    padding = bench.Padding(0.5, 0.5, None)
    cache = bench.FeatureCache(tmp_path / "f" / "p.npz", padding)
    norm = FeatureConfig(mean_norm_seconds=0.5)
    assert cache.for_config(FeatureConfig()) is cache
    sib = cache.for_config(norm)
    assert sib is cache.for_config(norm) and sib.path != cache.path and sib.config == norm
    sib.ensure(["a", "b"], paths)
    x = sf.read(paths[1], dtype="float32")[0]
    np.testing.assert_array_equal(sib.frames["b"], featurize(padding.audio(x, "b"), norm))
    assert sib.path.is_file() and not cache.path.exists() and "b" not in cache.frames
    again = bench.FeatureCache(tmp_path / "f" / "p.npz", padding).for_config(norm)
    np.testing.assert_array_equal(again.frames["b"], sib.frames["b"])


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng not installed")
def test_tiny_grid_end_to_end_resumes_and_reports(shared, tmp_path, monkeypatch):
    import tools.report as report

    monkeypatch.setattr(report, "BENCHMARKS", tmp_path / "BENCHMARKS.md")
    (tmp_path / "BENCHMARKS.md").write_text("# B\n\n<!-- BEGIN real_speech -->\nold\n<!-- END real_speech -->\n")
    work = tmp_path / "work"
    build = {"sizes": "train_pos=8,train_neg=12,eval_each=4", "engines": ["espeak-ng", "flite"],
             "tts_cache": str(tmp_path / "tts"), "max_close_negatives": 8}
    argv = ["--keywords", "athena", "--real-positives", "0", "3", "--seeds", "1", "--preset", "small",
            "--epochs", "1", "--hidden", "8", "--build-options", json.dumps(build), "--workdir", str(work),
            "--shared", str(shared), "--workers", "1", "--plot", str(tmp_path / "plot.png"), "--tag", "t"]
    assert bench.main(argv) == 0
    res = json.loads((work / "results.json").read_text())
    assert sorted(res["runs"]) == ["t|athena|rp0|seed0", "t|athena|rp3|seed0"]
    few = res["runs"]["t|athena|rp3|seed0"]
    assert few["test"]["n_pos"] == 12 - 3 and res["runs"]["t|athena|rp0|seed0"]["test"]["n_pos"] == 12
    half_b = real_data.sc_halves(shared / real_data.SC_NAME)["B"]
    assert few["test"]["n_neg_real"] == len(half_b) + 3  # every half-B Speech Commands clip + not-wake-words
    assert set(few["systems"]) == set(bench.SYSTEMS)
    assert 0.0 <= few["systems"]["int8"]["recall_0.03"] <= 1.0
    usage = res["datasets"]["t/athena-small-rp3"]["real_positive_usage"]
    assert sum(u["real_files"] for u in usage.values()) == 3 and usage["train"]["real_files"] >= 1
    assert all(u["real"] >= u["real_files"] for u in usage.values())  # few recordings: reused
    assert "t|athena|rp0" in res["pocketsphinx"]  # scored, or the reason it could not be
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "BEGIN text_only" in text and "real_speech" not in text
    assert "| athena | 3 | ours int8 |" in text and (tmp_path / "plot.png").stat().st_size > 0
    # a rerun skips every finished entry; the same tag with another recipe is refused
    stamp = (work / "results.json").stat().st_mtime_ns
    assert bench.main(argv + ["--no-report"]) == 0
    rescored = json.loads((work / "results.json").read_text())["runs"]
    assert {k: e["systems"] for k, e in rescored.items()} == {k: e["systems"] for k, e in res["runs"].items()}
    assert {k: e["train_seconds"] for k, e in rescored.items()} == {k: e["train_seconds"] for k, e in res["runs"].items()}
    assert (work / "results.json").stat().st_mtime_ns == stamp
    assert bench.main([a if a != "1" else "2" for a in argv]) == 2
    # metrics can be recomputed from the saved clip scores (after a metric change): same numbers
    assert bench.main(argv + ["--rescore", "--no-report"]) == 0
    again = json.loads((work / "results.json").read_text())
    assert again["runs"] == res["runs"] and again["pocketsphinx"] == res["pocketsphinx"]
    # the smoothed score (what the live detector thresholds) never exceeds the raw peak; an entry
    # scored before it existed is scored again from its saved model, nothing trained
    with np.load(work / few["scores_file"]) as z:
        assert np.all(z["float_smoothed"] <= z["float"] + 1e-12) and np.any(z["float_smoothed"] < z["float"])
    for e in again["runs"].values():
        del e["systems"]["float_smoothed"], e["systems"]["int8_smoothed"]
    (work / "results.json").write_text(json.dumps(again))
    assert bench.main(argv + ["--no-report"]) == 0
    rescored = json.loads((work / "results.json").read_text())["runs"]
    assert {k: e["systems"] for k, e in rescored.items()} == {k: e["systems"] for k, e in res["runs"].items()}
    assert {k: e["train_seconds"] for k, e in rescored.items()} == {k: e["train_seconds"] for k, e in res["runs"].items()}
    # --ensemble 2: a second seed, then one model joining both seeds' models, scored like a run
    ens_argv = list(argv)
    ens_argv[ens_argv.index("--seeds") + 1] = "2"
    del ens_argv[ens_argv.index("--real-positives") + 2]  # rp0 only
    assert bench.main(ens_argv + ["--ensemble", "2"]) == 0
    res = json.loads((work / "results.json").read_text())
    ens = res["ensembles"]["t|athena|rp0|ens0+1"]
    assert ens["members"] == [0, 1] and set(ens["systems"]) == set(bench.SYSTEMS)
    assert (work / ens["scores_file"]).is_file() and (work / ens["scores_file"]).parent.name == "athena-rp0-ens0+1"
    assert "| athena | 0 | ours int8, ensemble of 2 (" in (tmp_path / "BENCHMARKS.md").read_text()
    # --first-seed: seeds 2 and 3 (more seeds for the tag, e.g. from a second workdir), their own pair
    assert bench.ensemble_seeds(4, 2, first=2) == [[2, 3], [4, 5]]
    assert bench.main(ens_argv + ["--ensemble", "2", "--first-seed", "2", "--no-report"]) == 0
    more = json.loads((work / "results.json").read_text())
    assert {"t|athena|rp0|seed2", "t|athena|rp0|seed3"} <= set(more["runs"])
    assert more["ensembles"]["t|athena|rp0|ens2+3"]["members"] == [2, 3]
    assert more["runs"]["t|athena|rp0|seed0"] == res["runs"]["t|athena|rp0|seed0"]  # not trained again
    res = more
    # --merge-from brings another workdir's entries in, with their files (rescoring reads them)
    work2 = tmp_path / "work2"
    assert bench.main(argv + ["--workdir", str(work2), "--merge-from", str(work), "--rescore", "--no-report"]) == 0
    merged = json.loads((work2 / "results.json").read_text())
    assert merged["runs"] == res["runs"] and merged["ensembles"] == res["ensembles"]
    assert (work2 / ens["scores_file"]).is_file()
    # a recipe change (the word task) against the first tag as its side-by-side baseline
    w_argv = [a if a != "t" else "w" for a in argv[:argv.index("--build-options") + 1]] \
        + [json.dumps(dict(build, word_task=8))] + argv[argv.index("--build-options") + 2:]
    w_argv[w_argv.index("--tag") + 1] = "w"
    w_argv[w_argv.index("--real-positives") + 1:w_argv.index("--real-positives") + 3] = ["0"]
    (tmp_path / "plot.png").unlink()
    assert bench.main(w_argv + ["--baseline", "t"]) == 0
    assert (tmp_path / "plot.png").stat().st_size > 0  # text-only rows alone: bars beside the baseline
    res = json.loads((work / "results.json").read_text())
    assert res["runs"]["w|athena|rp0|seed0"]["test"] == res["runs"]["t|athena|rp0|seed0"]["test"]  # same test clips
    manifest = (work / "data" / "w" / "athena-small-rp0" / "manifest.jsonl").read_text()
    assert manifest.count('"kind": "word"') == 8
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "| athena | 0 | baseline `t`, ours float |" in text
    # --join-with: each seed's model joined with the other recipe's model of the same seed, scored
    assert bench.main(w_argv + ["--join-with", "t", "--baseline", "t"]) == 0
    res = json.loads((work / "results.json").read_text())
    joined = res["ensembles"]["w|athena|rp0|join-t-seed0"]
    assert joined["joined"] == "t" and set(joined["systems"]) == set(bench.SYSTEMS)
    assert joined["params"] == res["ensembles"]["t|athena|rp0|ens0+1"]["params"]  # two models of one size, as t's pair
    assert (work / joined["scores_file"]).is_file()
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "| athena | 0 | ours int8, joined with `t`'s model of the same seed (" in text
    assert "| athena | 0 | baseline `t`, ours float, ensemble of 2 (" in text  # ensembles beside ensembles
    assert "Against baseline `t`" in text and "athena (N=0)" in text
    # --start-from: a tag whose runs resume from another tag's checkpoints (nothing trained again):
    # the same recipe gives the same model, clip for clip
    s_argv = list(argv)
    s_argv[s_argv.index("--tag") + 1] = "s"
    del s_argv[s_argv.index("--real-positives") + 2]  # rp0 only
    assert bench.main(s_argv + ["--start-from", "t", "--no-report"]) == 0
    res = json.loads((work / "results.json").read_text())
    a, b = (np.load(work / res["runs"][f"{t}|athena|rp0|seed0"]["scores_file"]) for t in "ts")
    assert np.array_equal(a["float"], b["float"]) and res["runs"]["s|athena|rp0|seed0"]["epochs_run"] == \
        res["runs"]["t|athena|rp0|seed0"]["epochs_run"]
    assert not (work / "runs" / "s" / "athena-rp0-seed0.partial").exists()
    # tag s builds what tag t built: one dataset, linked; tag w's other recipe has its own
    assert (work / "data" / "s" / "athena-small-rp0").is_symlink()
    assert (work / "data" / "s" / "athena-small-rp0").resolve() == (work / "data" / "t" / "athena-small-rp0").resolve()
    assert not (work / "data" / "w" / "athena-small-rp0").is_symlink()
    u_argv = list(s_argv)
    u_argv[u_argv.index("--tag") + 1] = "u"
    assert bench.main(u_argv + ["--start-from", "nope", "--no-report"]) == 2  # never trains from scratch instead
    assert not (work / "runs" / "u").exists()
    for stage in ("", "mined-2/"):  # both stages resumed finished: not trained again
        ckpt = [work / "runs" / t / "athena-rp0-seed0" / f"{stage}checkpoint.safetensors" for t in "ts"]
        assert ckpt[0].read_bytes() == ckpt[1].read_bytes()
    # tools/probe_input_level.py on a finished run: its "as recorded" column is the bench's own
    # figure, the levelled one a real rescoring, and the section lands in BENCHMARKS.md
    from tools import probe_input_level as probe

    run = work / "runs" / "t" / "athena-rp0-seed0"
    got = probe.probe_run(run, shared, -30.0)
    entry = res["runs"]["t|athena|rp0|seed0"]
    assert (got["n_pos"], got["n_neg"]) == (entry["test"]["n_pos"], entry["test"]["n_neg_real"])
    assert got["as recorded"][0] == pytest.approx(entry["systems"]["float"]["recall_0.03"])
    assert 0.0 <= got["levelled"][0] <= 1.0
    assert probe.main(["--runs", str(run), "--shared", str(shared), "--note", "tiny"]) == 0
    assert "| athena | 1e-06 | 12 / " in (tmp_path / "BENCHMARKS.md").read_text()
    with pytest.raises(SystemExit):
        probe.main(["--runs", str(tmp_path / "nope"), "--shared", str(shared)])


@needs_espeak
def test_close_negative_line_names_near_homophones_old_runs_counted():
    old = {"close_words": ["lent", "leff"], "close_dropped": []}  # scored before "leff" was near
    line = bench.close_negative_line("left", old)
    assert "counted as close negatives in these runs" in line and line.rstrip().endswith("leff.")
    assert "No near-homophone" not in line
    new = {"close_words": ["lent"], "close_dropped": ["leff"]}
    assert "Dropped as near-homophones: leff." in bench.close_negative_line("left", new)
    clean = bench.close_negative_line("left", {"close_words": ["lent"], "close_dropped": []})
    assert 'No near-homophone of the keyword among them (checked: "leff", "lef")' in clean
