"""Dataset builder: a real small build (espeak-ng + flite voices, augmentation, features) checked for
manifest fields, counts, speaker-disjoint splits, close negatives only in val/test, features equal
to featurize(clip), no-op reruns, resume after an interruption, determinism, unreadable inputs
skipped and listed, and a Speech Commands tree as real negatives/positives."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from kws.audio import load_audio
from kws.data import builder as B
from kws.data.builder import BuildOptions, assign_speaker_splits, build_dataset, parse_sizes, resolve_sizes
from kws.data.confusables import TABLE9, sound_distance
from kws.data.dataset import load_split
from kws.data.manifest import read_manifest
from kws.errors import DataError
from kws.features import FeatureConfig, featurize

pytestmark = pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng not installed")

ENGINES = ["espeak-ng", "flite"]  # festival is ~30x slower per utterance; it is exercised elsewhere
SIZES = "train_pos=24,train_neg=40,eval_each=10"


def opts(out: Path, cache: Path, **kw) -> BuildOptions:
    base = dict(keyword="marvin", out=out, preset="small", sizes=SIZES, engines=ENGINES, workers=1,
                tts_cache=cache, max_close_negatives=12)
    base.update(kw)
    return BuildOptions(**base)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A TTS cache shared by this module's builds; laid out as $KWS_CACHE/tts for the CLI test."""
    d = tmp_path_factory.mktemp("kws-cache") / "tts"
    d.mkdir()
    return d


@pytest.fixture(scope="module")
def built(tmp_path_factory, cache):
    out = tmp_path_factory.mktemp("ds") / "marvin"
    summary = build_dataset(opts(out, cache))
    return out, summary


def mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_sizes_parsing_and_presets():
    assert parse_sizes("train_pos=5, eval_each=3") == {"train_pos": 5, **{f"{s}_{k}": 3 for s in ("val", "test")
                                                                         for k in ("pos", "neg", "close")}}
    assert resolve_sizes("paper", None, False) == B.PRESETS["paper"]
    assert resolve_sizes("paper", None, "none") == B.PRESETS["paper"]
    for mode in ("disjoint", "all", True):
        s = resolve_sizes("paper", None, mode)
        assert s["train_close"] == 500 and s["train_neg"] == 1500
        assert {k: v for k, v in s.items() if not k.startswith("train_")} == \
            {k: v for k, v in B.PRESETS["paper"].items() if not k.startswith("train_")}
    with pytest.raises(DataError, match="none, disjoint, all"):
        BuildOptions(keyword="marvin", out=Path("x"), close_negatives_in_train="some")
    for bad in ("train_pos", "bogus=3", "train_pos=-1", "train_pos=x"):
        with pytest.raises(DataError, match="--sizes"):
            parse_sizes(bad)
    with pytest.raises(DataError, match="close-negatives-in-train"):
        resolve_sizes("small", "train_close=5", False)
    with pytest.raises(DataError, match="preset"):
        resolve_sizes("huge", None, False)


def test_speaker_split_assignment_is_stable_and_proportional():
    spk = [f"s{i}" for i in range(200)]
    a = assign_speaker_splits(spk, seed=3)
    assert a == assign_speaker_splits(list(reversed(spk)), seed=3)
    c = Counter(a.values())
    assert (c["train"], c["val"], c["test"]) == (140, 30, 30)
    assert assign_speaker_splits(spk, seed=4) != a
    small = Counter(assign_speaker_splits(["a", "b", "c", "d", "e", "f", "g"], seed=0).values())
    assert small["train"] >= 1 and small["val"] >= 1 and small["test"] >= 1


def test_build_manifest_counts_splits_and_features(built):
    out, summary = built
    recs = read_manifest(out / "manifest.jsonl")
    info = json.loads((out / "dataset.json").read_text())
    sizes = info["sizes"]
    count = Counter((r.split, r.kind) for r in recs)
    for s in ("train", "val", "test"):
        assert count[(s, "positive")] == sizes[f"{s}_pos"]
        assert count[(s, "negative")] + count[(s, "noise")] == sizes[f"{s}_neg"]
        assert count[(s, "noise")] == round(0.05 * sizes[f"{s}_neg"])
    assert count[("val", "close_negative")] == count[("test", "close_negative")] == 10
    # default "disjoint": a quarter of the train negative budget are close negatives, the sizes stay
    assert info["close_negatives_in_train"] == "disjoint"
    assert count[("train", "close_negative")] == sizes["train_close"] == 10 and sizes["train_neg"] == 30
    # val/test close negatives are exactly the paper's Table 9 words for marvin
    eval_words = {r.text for r in recs if r.split != "train" and r.kind == "close_negative"}
    assert eval_words == set(TABLE9["marvin"]) == {c["text"] for c in info["close_negatives"]}
    # train close negatives: word-disjoint from val/test, no near-homophone of a val/test word
    train_words = {r.text for r in recs if r.split == "train" and r.kind == "close_negative"}
    assert len(train_words) >= 5 and train_words <= {c["text"] for c in info["close_negatives_train"]}
    assert not train_words & eval_words
    assert not any(r.text in eval_words for r in recs if r.split == "train")
    for t in train_words:
        assert all(sound_distance(t, e) > 0.5 for e in eval_words), t
    assert "[['A@vIn]]" not in train_words  # "arvin" spelled in phonemes is still "arvin"
    for r in recs:
        assert (out / r.path).is_file() and r.path == f"clips/{r.split}/{r.id}.wav"
        assert r.label == (r.kind == "positive")
        if r.kind == "positive":
            # the word alone, or inside a carrier phrase ("hey marvin")
            assert " marvin " in f" {r.text} " and r.source.startswith("tts:")
        if r.source.startswith("tts:"):
            engine, voice = r.source.split(":")[1:3]
            assert engine in ENGINES and voice and r.speaker.startswith(engine + ":")
        if r.kind == "noise":
            assert r.source == "noise:generated" and r.speaker == "none"
    assert len({r.id for r in recs}) == len(recs)
    # speaker-disjoint splits
    spk = {s: {r.speaker for r in recs if r.split == s and r.kind != "noise"} for s in ("train", "val", "test")}
    assert not (spk["train"] & spk["val"]) and not (spk["train"] & spk["test"]) and not (spk["val"] & spk["test"])
    assert all(len(v) >= 2 for v in spk.values())
    assert info["speakers"] == {s: sorted(v) for s, v in spk.items()}
    # features: shape, dtype, rows equal featurize(saved clip), memory-mapped
    for s in ("train", "val", "test"):
        d = load_split(out, s)
        n = count_split = sum(v for (sp, _), v in count.items() if sp == s)
        assert isinstance(d.x, np.memmap) and d.x.shape == (count_split, 98, 32) and d.x.dtype == np.float32
        assert len(d.records) == n and list(d.y) == [r.label for r in d.records]
        assert list(d.kinds) == [r.kind for r in d.records]
        assert d.feature_config == FeatureConfig()
        for i in (0, n // 2, n - 1):
            audio = load_audio(out / d.records[i].path)
            assert audio.shape == (16000,)
            np.testing.assert_array_equal(d.x[i], featurize(audio))
    # the summary is printed and saved
    table = summary.table()
    assert (out / "summary.txt").read_text() == table + "\n"
    assert "speakers per split (disjoint)" in table and summary.shared_speakers == 0
    assert "close negatives" in table and "skipped inputs: 0" in table
    assert "tts:espeak-ng" in table


def test_clips_are_augmented_audio(built):
    out, _ = built
    recs = [r for r in read_manifest(out / "manifest.jsonl") if r.kind == "positive"][:6]
    levels = [np.sqrt(np.mean(load_audio(out / r.path) ** 2)) for r in recs]
    assert all(lv > 1e-3 for lv in levels) and len({round(float(lv), 5) for lv in levels}) == len(levels)


def test_rerun_is_a_noop(built, cache):
    out, _ = built
    before = mtimes(out)
    summary = build_dataset(opts(out, cache))
    assert summary.rendered == 0
    assert mtimes(out) == before


def test_other_options_in_same_folder_are_refused(built, cache):
    out, _ = built
    with pytest.raises(DataError, match="other options.*seed"):
        build_dataset(opts(out, cache, seed=1))


def test_interrupted_build_resumes_to_the_same_dataset(built, cache, tmp_path, monkeypatch):
    ref, _ = built
    out = tmp_path / "resumed"
    calls = {"n": 0}
    real = B._render_one

    def flaky(c):
        calls["n"] += 1
        if calls["n"] > 40:
            raise KeyboardInterrupt  # Ctrl-C in the middle of rendering
        return real(c)

    monkeypatch.setattr(B, "_render_one", flaky)
    with pytest.raises(KeyboardInterrupt):
        build_dataset(opts(out, cache))
    assert len(list((out / "clips").rglob("*.wav"))) == 40
    assert not (out / "manifest.jsonl").exists() and not list(out.rglob("*.tmp-*"))
    monkeypatch.setattr(B, "_render_one", real)
    summary = build_dataset(opts(out, cache))
    assert summary.rendered == summary.total() - 40
    # deterministic: the resumed build equals the uninterrupted one, clip for clip
    assert (out / "manifest.jsonl").read_text() == (ref / "manifest.jsonl").read_text()
    for s in ("train", "val", "test"):
        np.testing.assert_array_equal(np.load(out / "features" / f"{s}.npy"), np.load(ref / "features" / f"{s}.npy"))

    # lost or truncated clips and a lost feature file are rebuilt, identical; other files are left alone
    victims = sorted((out / "clips" / "val").glob("*.wav"))[:3]
    saved = {v: v.read_bytes() for v in victims}
    for v in victims[:2]:
        v.unlink()
    victims[2].write_bytes(saved[victims[2]][:1000])  # cut short, as by a crash before the data hit the disk
    (out / "features" / "test.npy").unlink()
    before = mtimes(out)
    summary = build_dataset(opts(out, cache))
    assert summary.rendered == 3
    assert all(v.read_bytes() == b for v, b in saved.items())
    after = mtimes(out)
    changed = {k for k in after if after[k] != before.get(k)}
    assert changed == {str(v.relative_to(out)) for v in victims} | {
        "features/val.npy", "features/test.npy"}
    np.testing.assert_array_equal(np.load(out / "features" / "test.npy"), np.load(ref / "features" / "test.npy"))


def test_unreadable_negatives_are_skipped_and_listed(tmp_path, cache):
    neg = tmp_path / "my_negatives"
    (neg / "alice").mkdir(parents=True)
    rng = np.random.default_rng(0)
    (neg / "bob").mkdir()
    for i in range(6):
        sf.write(neg / "alice" / f"talk{i}.wav", 0.1 * rng.standard_normal(12000), 16000)
    for i in range(3):
        sf.write(neg / "bob" / f"talk{i}.flac", 0.1 * rng.standard_normal(9000), 16000)
    pos = tmp_path / "athena_like" / "en"  # one grouping folder, no speaker information
    pos.mkdir(parents=True)
    for i in range(9):
        sf.write(pos / f"marvin-{i}.wav", 0.1 * rng.standard_normal(10000), 16000)
    long = 0.1 * rng.standard_normal(16000 * 5 + 500)
    long[32000:48000] = 0.0  # a digitally silent second: not a negative, yet the file is fine
    sf.write(neg / "long.flac", long, 16000)  # 5 one-second pieces, 4 usable
    (neg / "garbage.wav").write_bytes(b"RIFF not really a wave file" * 10)
    (neg / "empty.wav").write_bytes(b"")
    out = tmp_path / "ds"
    summary = build_dataset(opts(out, cache, negatives=[neg], real_negative_share=1.0, positives=[pos.parent],
                                 sizes="train_pos=4,train_neg=20,eval_each=4"))
    skipped = dict(summary.skipped)
    assert set(skipped) == {str(neg / "garbage.wav"), str(neg / "empty.wav")}
    table = (out / "summary.txt").read_text()
    assert "skipped inputs: 2" in table and "garbage.wav" in table and "empty.wav" in table
    assert json.loads((out / "dataset.json").read_text())["skipped"] == [list(x) for x in summary.skipped]
    recs = read_manifest(out / "manifest.jsonl")
    real = [r for r in recs if r.source == "real:my_negatives"]
    assert real and all(r.kind == "negative" and r.label == 0 for r in real)
    # speakers: the sub-folders (alice, bob) or, for loose files, the file; never split across splits
    by_spk: dict[str, set[str]] = {}
    for r in real:
        by_spk.setdefault(r.speaker, set()).add(r.split)
    assert all(len(v) == 1 for v in by_spk.values())
    assert set(by_spk) == {"real:alice", "real:bob", "real:long"}
    assert sum(r.speaker == "real:long" for r in real) == 4
    # a single grouping folder (athena/en/) is not a speaker: each file is, so they spread over splits
    real_pos = [r for r in recs if r.source == "real:athena_like"]
    assert {r.speaker for r in real_pos} <= {f"real:marvin-{i}" for i in range(9)}
    assert len({r.split for r in real_pos}) >= 2


def make_sc_tree(root: Path, n_speakers: int = 20) -> Path:
    rng = np.random.default_rng(1)
    speakers = [f"{i:08x}" for i in rng.integers(1 << 31, size=n_speakers)]
    for word in ("yes", "no", "marvin", "martin"):
        (root / word).mkdir(parents=True)
        for spk in speakers:
            t = np.arange(12000) / 16000
            x = 0.2 * np.sin(2 * np.pi * rng.uniform(150, 400) * t) * np.hanning(t.size)
            sf.write(root / word / f"{spk}_nohash_0.flac", x, 16000)
    (root / "_background_noise_").mkdir()
    sf.write(root / "_background_noise_" / "hum.flac", 0.05 * rng.standard_normal(16000 * 3), 16000)
    return root


def test_speech_commands_tree_gives_real_data_split_by_speaker(tmp_path, cache):
    tree = make_sc_tree(tmp_path / "sc")
    out = tmp_path / "ds"
    summary = build_dataset(opts(out, cache, negatives=[tree], positives=[tree], noise=[tree],
                                 close_negatives=["martin"], sizes="train_pos=10,train_neg=20,eval_each=6"))
    recs = read_manifest(out / "manifest.jsonl")
    real = [r for r in recs if r.source == "real:speech_commands"]
    kinds = Counter((r.split, r.kind, r.text) for r in real)
    assert any(k[1] == "negative" and k[2] in ("yes", "no") for k in kinds)
    assert any(k[1] == "positive" and k[2] == "marvin" for k in kinds)  # the keyword's own folder
    assert not any(k[1] == "negative" and k[2] in ("marvin", "martin") for k in kinds)
    assert all(k[0] != "train" for k in kinds if k[2] == "martin")  # a close negative word: val/test only
    assert any(k[1] == "close_negative" and k[2] == "martin" for k in kinds)
    spk = {s: {r.speaker for r in recs if r.split == s and r.kind != "noise"} for s in ("train", "val", "test")}
    assert not (spk["train"] & spk["val"]) and not (spk["train"] & spk["test"]) and not (spk["val"] & spk["test"])
    real_spk = {s: {r.speaker for r in real if r.split == s} for s in ("train", "val", "test")}
    assert all(real_spk[s] for s in ("train", "val", "test"))  # every split has its own real speakers
    noise = [r for r in recs if r.kind == "noise"]
    assert noise and all(r.source == "noise:recorded" for r in noise)
    assert "real:speech_commands" in summary.table()


@pytest.mark.parametrize("mode", ["none", "all"])
def test_close_negatives_in_train_none_and_all(tmp_path, cache, built, mode):
    out = tmp_path / "ds"
    small = "train_pos=4,train_neg=12,eval_each=3"
    # "none" with the default sizes: its val/test must be the very clips of the "disjoint" build
    summary = build_dataset(opts(out, cache, close_negatives_in_train=mode, sizes=SIZES if mode == "none" else small))
    recs = read_manifest(out / "manifest.jsonl")
    info = json.loads((out / "dataset.json").read_text())
    assert info["close_negatives_in_train"] == mode
    train_close = [r for r in recs if r.split == "train" and r.kind == "close_negative"]
    eval_words = set(TABLE9["marvin"])
    if mode == "none":  # the paper's protocol: no close negative in train, full generic budget
        assert not train_close and info["close_negative_splits"] == ["val", "test"]
        assert info["sizes"]["train_neg"] == 40 and info["close_negatives_train"] == []
        assert not any(r.text in eval_words for r in recs if r.split == "train")
        assert "close negatives in train: none" in summary.table()
        for split in ("val", "test"):
            a, b = load_split(out, split), load_split(built[0], split)
            assert [r.to_json() for r in a.records] == [r.to_json() for r in b.records]
            np.testing.assert_array_equal(np.asarray(a.x), np.asarray(b.x))
    else:
        assert len(train_close) == 3 and {r.text for r in train_close} <= eval_words
        assert info["close_negative_splits"] == ["train", "val", "test"] and info["sizes"]["train_neg"] == 9


def test_load_split_errors_are_clear(tmp_path, built):
    with pytest.raises(DataError, match="kws data build"):
        load_split(tmp_path, "train")
    out, _ = built
    with pytest.raises(DataError, match="unknown split"):
        load_split(out, "dev")


def test_cli_build_in_parallel_equals_inline_build(tmp_path, cache, monkeypatch, capsys):
    from kws.cli import main

    monkeypatch.setenv("KWS_CACHE", str(cache.parent))
    sizes = "train_pos=6,train_neg=8,eval_each=4"
    rc = main(["data", "build", "--keyword", "marvin", "--out", str(tmp_path / "cli"), "--preset", "small",
               "--sizes", sizes, "--engine", "espeak-ng", "--engine", "flite", "--workers", "2", "--seed", "5"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "speakers per split" in printed and "this run:" in printed
    inline = build_dataset(opts(tmp_path / "inline", cache, sizes=sizes, seed=5, workers=1,
                                  max_close_negatives=BuildOptions.max_close_negatives))
    assert inline.rendered == inline.total() == 6 + 8 + 2 * 12
    assert (tmp_path / "cli" / "manifest.jsonl").read_text() == (tmp_path / "inline" / "manifest.jsonl").read_text()
    for s in ("train", "val", "test"):
        np.testing.assert_array_equal(np.load(tmp_path / "cli" / "features" / f"{s}.npy"),
                                      np.load(tmp_path / "inline" / "features" / f"{s}.npy"))
    assert main(["data", "build", "--keyword", "marvin", "--out", str(tmp_path / "cli"), "--sizes", "bogus=1"]) == 2
    assert "kws: error: --sizes: unknown key 'bogus'" in capsys.readouterr().err


def test_shared_speech_commands_test_set_as_real_data(tmp_path, cache):
    from conftest import shared_data

    sc = shared_data("speech_commands_v0.02_test")
    out = tmp_path / "ds"
    summary = build_dataset(opts(out, cache, positives=[sc], negatives=[sc], noise=[sc],
                                 sizes="train_pos=8,train_neg=20,eval_each=6"))
    recs = read_manifest(out / "manifest.jsonl")
    real_pos = [r for r in recs if r.kind == "positive" and r.source == "real:speech_commands"]
    assert real_pos and all(r.text == "marvin" and "/marvin/" not in r.path for r in real_pos)
    real_neg = [r for r in recs if r.kind == "negative" and r.source == "real:speech_commands"]
    assert real_neg and all(r.text != "marvin" for r in real_neg)
    spk = {s: {r.speaker for r in recs if r.split == s and r.kind != "noise"} for s in ("train", "val", "test")}
    assert not (spk["train"] & spk["val"]) and not (spk["train"] & spk["test"]) and not (spk["val"] & spk["test"])
    assert summary.skipped == [] and "real:speech_commands" in summary.table()


def test_bad_input_folders_are_clear_errors(tmp_path, cache):
    (tmp_path / "empty").mkdir()
    (tmp_path / "afile").write_text("x")
    for kw, match in ((dict(positives=[tmp_path / "empty"]), "--positives .*no audio files"),
                      (dict(negatives=[tmp_path / "missing"]), "--negatives .*no such folder"),
                      (dict(noise=[tmp_path / "empty"]), "--noise .*no audio files")):
        with pytest.raises(DataError, match=match):
            build_dataset(opts(tmp_path / "ds", cache, **kw))
    with pytest.raises(DataError, match="is a file"):
        build_dataset(opts(tmp_path / "afile", cache))


def test_write_clip_holds_the_samples_save_wav_writes(tmp_path, speechlike):
    from kws.audio import save_wav

    x = np.concatenate([speechlike[:15990], [1.5, -1.5, 0.99999, -1.0, 0.5, 0, 1e-6, -3e-5, 0.25, 2.0]])
    x = x.astype(np.float32)
    B.write_clip(tmp_path / "a.wav", x)
    save_wav(tmp_path / "b.wav", x)
    assert (tmp_path / "a.wav").stat().st_size == B.CLIP_BYTES
    np.testing.assert_array_equal(load_audio(tmp_path / "a.wav"), load_audio(tmp_path / "b.wav"))


def test_cli_close_negatives_in_train_choices():
    from kws.cli import build_parser

    p = build_parser()
    base = ["data", "build", "--keyword", "marvin", "--out", "x"]
    assert p.parse_args(base).close_negatives_in_train == "disjoint"  # the product default
    assert p.parse_args(base + ["--close-negatives-in-train"]).close_negatives_in_train == "all"  # old flag
    assert p.parse_args(base + ["--close-negatives-in-train", "none"]).close_negatives_in_train == "none"
    with pytest.raises(SystemExit):
        p.parse_args(base + ["--close-negatives-in-train", "some"])


def test_clips_centred_by_default_or_end_aligned(built, cache):
    """align="center" (default) centres the utterance; align="end" ends it 0.05-0.3 s before the
    window end, for every kind alike (position is no cue). Only an end-aligned build changes the
    options fingerprint, so centred folders of before stay valid."""
    from kws.data import tts

    out, _ = built
    info = json.loads((out / "dataset.json").read_text())
    assert info["align"] == "center" and "align" not in info["options"]
    end_opts = opts(out, cache, align="end")
    assert B._fingerprint(end_opts, {})["align"] == "end"
    with pytest.raises(DataError, match="other options.*align"):
        build_dataset(end_opts)
    with pytest.raises(DataError, match="align"):
        BuildOptions(keyword="marvin", out=Path("x"), align="left")
    voice = B._voice_dict(tts.base_voices(["espeak-ng"])[0])
    ends = {}
    for align in ("end", "center"):
        B._init_worker({"seed": 0, "augment": False, "align": align, "cache_dir": str(cache), "noise": False,
                        "augmenter": None})
        for text in ("marvin", "market", "ok"):
            x = B._render_one({"id": f"train-positive-{text}", "src": {"type": "tts", "text": text, "voice": voice}})
            loud = np.flatnonzero(np.abs(x) > 0.01 * np.abs(x).max())
            ends[align, text] = (loud[0], loud[-1])
    for text in ("marvin", "market", "ok"):
        first, last = ends["end", text]
        assert 16000 - 0.3 * 16000 - 160 <= last <= 16000 - 0.05 * 16000, (text, last)
        c_first, c_last = ends["center", text]
        assert abs((c_first + c_last) / 2 - 8000) < 1600  # centred (synthesis keeps a little silence)
    B._init_worker({})


def test_carrier_phrases_put_speech_around_the_word(tmp_path, cache):
    """carrier_share: a share of positives and generic negatives is said inside a carrier phrase by
    the clip's own voice, and cut to the window around the word: other speech in the window, the
    word in the middle. Carriers never contain the keyword or a close negative."""
    from kws.data import tts

    assert all("marvin" not in " ".join(c) for c in B.carrier_phrases("marvin"))
    assert ("hey", "") not in B.carrier_phrases("hey marvin")
    assert not any("timer" in " ".join(c) for c in B.carrier_phrases("marvin", {"timer"}))
    out = tmp_path / "ds"
    build_dataset(opts(out, cache, carrier_share=0.6, sizes="train_pos=16,train_neg=16,eval_each=4"))
    recs = read_manifest(out / "manifest.jsonl")
    pos = [r for r in recs if r.kind == "positive"]
    with_car = [r for r in pos if r.text != "marvin"]
    assert with_car and all("marvin" in r.text for r in with_car) and len(with_car) < len(pos)
    assert all(r.text.count(" ") == 0 for r in recs if r.kind == "close_negative")
    # rendering: the word centred, the carrier's speech inside the window
    voice = B._voice_dict(tts.base_voices(["espeak-ng"])[0])
    B._init_worker({"seed": 0, "augment": False, "align": "center", "cache_dir": str(cache), "noise": False,
                    "augmenter": None})
    try:
        plain = B._render_one({"id": "a", "src": {"type": "tts", "text": "marvin", "voice": voice}})
        car = B._render_one({"id": "a", "src": {"type": "tts", "text": "marvin", "voice": voice,
                                                "carrier": ["hey", "what time is it"]}})
    finally:
        B._init_worker({})
    loud = lambda x: np.abs(x) > 0.02 * np.abs(x).max()
    assert car.shape == (16000,) and loud(car).mean() > loud(plain).mean() + 0.1
    assert loud(car)[:1500].any() and loud(car)[-1500:].any() and not loud(plain)[:1500].any()


def test_few_real_positives_are_reused_with_fresh_augmentation(tmp_path, cache):
    pos_dir = tmp_path / "mine"
    pos_dir.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        t = np.arange(12000) / 16000
        sf.write(pos_dir / f"marvin-{i:03d}.wav", 0.2 * np.sin(2 * np.pi * (200 + 50 * i) * t) * np.hanning(t.size), 16000)
    out = tmp_path / "ds"
    build_dataset(opts(out, cache, positives=[pos_dir], real_positive_repeats=4,
                       sizes="train_pos=40,train_neg=16,eval_each=4"))
    recs = read_manifest(out / "manifest.jsonl")
    real = [r for r in recs if r.kind == "positive" and r.source.startswith("real")]
    # a plain folder: each file its own speaker, split 70/15/15 like every speaker
    train_real = [r for r in real if r.split == "train"]
    n_files = len({r.speaker for r in train_real})
    assert n_files >= 1
    # the train split wants 20 real positives (real_positive_share 0.5 of 40): each recording is
    # used up to 4 times, and every copy is augmented anew
    assert len(train_real) == 4 * n_files
    assert Counter(r.speaker for r in train_real) == {s: 4 for s in {r.speaker for r in train_real}}
    clips = [sf.read(out / r.path)[0] for r in train_real]
    assert len({np.round(c, 4).tobytes() for c in clips}) == len(clips)


def test_cli_recipe_flags_reach_the_build(tmp_path, monkeypatch):
    """--augment / --carrier-share go to BuildOptions from `kws data build` and from the dataset
    `kws train` builds; left out, BuildOptions' defaults (realistic, 0.3) apply."""
    from kws import cli
    from kws.errors import KwsError

    seen = []

    def capture(o):
        seen.append(o)
        raise KwsError("stopped after the options were built")

    monkeypatch.setattr(B, "build_dataset", capture)
    assert cli.main(["data", "build", "--keyword", "athena", "--out", str(tmp_path / "d"),
                     "--augment", "standard", "--carrier-share", "0", "--word-task", "3000"]) == 2
    assert cli.main(["train", "--keyword", "athena", "--run-dir", str(tmp_path / "r"), "--carrier-share", "0.5",
                     "--clean-share", "0.25", "--word-task", "100", "--espeak-share", "0.5",
                     "--no-dictionary-variants"]) == 2
    assert cli.main(["train", "--keyword", "athena", "--run-dir", str(tmp_path / "r2")]) == 2
    assert (seen[0].augment_recipe, seen[0].carrier_share, seen[0].word_task) == ("standard", 0.0, 3000)
    assert (seen[1].augment_recipe, seen[1].carrier_share, seen[1].clean_share, seen[1].word_task,
            seen[1].espeak_share) == ("realistic", 0.5, 0.25, 100, 0.5)
    assert seen[0].espeak_share is None  # left out: the even spread
    assert seen[0].dictionary_variants and not seen[1].dictionary_variants
    assert (seen[2].augment_recipe, seen[2].carrier_share, seen[2].clean_share) == \
        ("realistic", 0.3, B.BuildOptions(keyword="x", out=tmp_path).clean_share)
    import kws.train.api as api

    trained = []
    monkeypatch.setattr(api, "train_keyword", lambda o: trained.append(o) or (_ for _ in ()).throw(KwsError("x")))
    assert cli.main(["train", "--keyword", "athena", "--word-task", "100", "--mine", "30"]) == 2
    assert cli.main(["train", "--keyword", "athena"]) == 2
    assert trained[0].train_hparams == {"mine": 30} and trained[0].build["word_task"] == 100
    assert trained[1].train_hparams == {}  # the defaults decide
    assert cli.main(["train", "--keyword", "athena", "--mine", "0"]) == 2 and trained[2].train_hparams == {"mine": 0}
    assert cli.main(["train", "--keyword", "athena", "--phone-task", "0.5"]) == 2
    assert trained[3].train_hparams == {"phone_task": 0.5}


def test_negatives_are_placed_anywhere_keywords_stay_centred(cache):
    """negative_placement: negatives land anywhere in the window (up to half cut off), as the
    streaming detector's windows show them; keywords stay centred."""
    from kws.data import tts

    voice = B._voice_dict(tts.base_voices(["espeak-ng"])[0])
    B._init_worker({"seed": 0, "augment": False, "align": "center", "cache_dir": str(cache), "noise": False,
                    "augmenter": None, "negative_placement": 1.0})
    try:
        def centre(kind: str, i: int) -> float:
            x = B._render_one({"id": f"{kind}-{i}", "kind": kind, "src": {"type": "tts", "text": "market", "voice": voice}})
            e = x.astype(np.float64) ** 2
            return float((e * np.arange(x.size)).sum() / e.sum()) / 16000

        neg = [centre("negative", i) for i in range(24)]
        pos = [centre("positive", i) for i in range(4)]
    finally:
        B._init_worker({})
    assert all(abs(c - 0.5) < 0.1 for c in pos)
    assert min(neg) < 0.25 and max(neg) > 0.75 and np.std(neg) > 0.12


def test_a_few_recordings_go_to_training(tmp_path, cache):
    pos_dir = tmp_path / "mine"
    pos_dir.mkdir()
    t = np.arange(12000) / 16000
    for i in range(5):
        sf.write(pos_dir / f"marvin-{i:03d}.wav", 0.2 * np.sin(2 * np.pi * (200 + 40 * i) * t) * np.hanning(t.size), 16000)
    out = tmp_path / "ds"
    build_dataset(opts(out, cache, positives=[pos_dir], sizes="train_pos=40,train_neg=16,eval_each=4"))
    real = [r for r in read_manifest(out / "manifest.jsonl") if r.kind == "positive" and r.source.startswith("real")]
    files = {s: {r.speaker for r in real if r.split == s} for s in ("train", "val", "test")}
    assert len(files["train"]) == 4 and len(files["val"]) == 1 and not files["test"]


def test_word_task_clips_name_other_words_in_real_and_synthesized_voices(tmp_path, cache, monkeypatch):
    """BuildOptions.word_task: train-only clips of the generic words that real training speakers
    said, half real and half those words synthesized; kind "word", never the keyword or a close
    negative; `kws train` keeps them out of the keyword task and names their words instead."""
    from kws.train.api import TrainOptions, _word_task_rows, train_keyword

    tree = make_sc_tree(tmp_path / "sc")
    out = tmp_path / "ds"
    build_dataset(opts(out, cache, negatives=[tree], close_negatives=["martin"], word_task=16,
                       sizes="train_pos=10,train_neg=20,eval_each=6"))
    info = json.loads((out / "dataset.json").read_text())
    assert info["word_task_words"] == ["no", "yes"]  # not the keyword, not the close negative
    recs = read_manifest(out / "manifest.jsonl")
    words = [r for r in recs if r.kind == "word"]
    assert {r.split for r in words} == {"train"} and all(r.label == 0 for r in words)
    real = [r for r in words if r.source == "real:speech_commands"]
    synth = [r for r in words if r.source.startswith("tts:")]
    assert len(real) == 8 and len(synth) == 8 and len(words) == 16
    assert {r.text for r in real} <= {"yes", "no"} and {r.text for r in synth} == {"yes", "no"}
    others = {r.speaker for r in recs if r.split != "train"}
    assert not ({r.speaker for r in words} & others)  # speaker-disjoint like every train clip
    split = load_split(out, "train")
    main, rows, labels = _word_task_rows(split, out)
    assert len(rows) == 16 and len(main) == len(split) - 16
    assert [split.records[i].text for i in rows] == [["no", "yes"][k] for k in labels]

    res = train_keyword(TrainOptions(keyword="marvin", data=out, method="bce", hidden=8, epochs=2,
                                     out=tmp_path / "m.kws", run_dir=tmp_path / "run"))
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["n_train"] == len(main)  # word clips are not keyword-task negatives
    assert state["hparams"]["word_task"] == 0.5 and all(h["word"] > 0 for h in state["history"])
    # by default 10% of the word clips were mined as hard negatives for 20 more epochs
    assert len(json.loads((tmp_path / "run" / "mined-2" / "mined.json").read_text())["rows"]) == 2
    assert res.epochs_run == 2 + 20
    from kws.bundle import load_bundle

    b = load_bundle(res.bundle)
    assert not any(k.startswith("aux") for k in b.weights)  # the word head never ships
    # hard-negative mining: the first run (same settings: reused as it is) picks the word clips it
    # scores highest, they join the negatives for mine_epochs more epochs
    mined = train_keyword(TrainOptions(keyword="marvin", data=out, method="bce", hidden=8, epochs=2,
                                       out=tmp_path / "mined.kws", run_dir=tmp_path / "run",
                                       train_hparams={"mine": 4, "mine_epochs": 1}))
    picked = json.loads((tmp_path / "run" / "mined-4" / "mined.json").read_text())
    assert len(picked["rows"]) == 4 and sum(picked["words"]) == 4
    first = json.loads((tmp_path / "run" / "state.json").read_text())
    assert first["epoch"] == 2 and first == state  # the first stage was not trained again
    second = json.loads((tmp_path / "run" / "mined-4" / "state.json").read_text())
    assert second["n_train"] == len(main) + 4 and second["epoch"] == 1
    assert mined.epochs_run == 3 and load_bundle(mined.bundle).model_kind == "fastgrnn"
    # the mined stage is kept only if validation says it helped; otherwise the first stage's model
    # (its checkpointed best) is what ships
    import torch

    import kws.train.api as api
    from kws.train.trainer import TrainHparams, _load_checkpoint

    rule = api.mining_helped
    assert rule({"val_auc": 0.9}, {"val_auc": 0.91}) and not rule({"val_auc": 0.9}, {"val_auc": 0.89})
    assert rule({"val_auc": 0.9}, {"val_auc": 0.897}) and not rule({"val_auc": 0.9}, {"val_auc": 0.897}, margin=0)
    report = load_bundle(mined.bundle).metrics["training"]["mining"]
    assert report["kept"] == rule({"val_auc": report["val_auc"]["first"]},
                                               {"val_auc": report["val_auc"]["mined"]})
    first_best = _load_checkpoint(tmp_path / "run" / "checkpoint.safetensors")[0]["best"]
    mined_best = _load_checkpoint(tmp_path / "run" / "mined-4" / "checkpoint.safetensors")[0]["best"]
    for helped, want in ((False, first_best), (True, mined_best)):
        monkeypatch.setattr(api, "mining_helped", lambda a, b, helped=helped: helped)
        again = train_keyword(TrainOptions(keyword="marvin", data=out, method="bce", hidden=8, epochs=2,
                                           out=tmp_path / f"again-{helped}.kws", run_dir=tmp_path / "run",
                                           train_hparams={"mine": 4, "mine_epochs": 1}))
        shipped = load_bundle(again.bundle)
        assert shipped.metrics["training"]["mining"]["kept"] is helped
        assert again.best_epoch == (3 if helped else first["best_epoch"])
        got = shipped.torch_model().state_dict()
        for k, v in want.items():
            assert torch.equal(got[k], v), k
    # mine_select "always": the mined stage ships whatever validation says
    monkeypatch.setattr(api, "mining_helped", lambda a, b: False)
    always = train_keyword(TrainOptions(keyword="marvin", data=out, method="bce", hidden=8, epochs=2,
                                        out=tmp_path / "always.kws", run_dir=tmp_path / "run",
                                        train_hparams={"mine": 4, "mine_epochs": 1, "mine_select": "always"}))
    assert load_bundle(always.bundle).metrics["training"]["mining"]["kept"] is True
    monkeypatch.undo()
    with pytest.raises(ValueError, match="mine_select"):
        TrainHparams(mine_select="best")
    # by default: as many word clips as the train split's other clips, when a Speech Commands tree
    # is among the negatives; none from plain folders
    sizes = resolve_sizes("small", "train_pos=10,train_neg=20,eval_each=6", "disjoint")
    assert B.word_task_clips(opts(out, cache, negatives=[tree]), sizes) == 30
    assert B.word_task_clips(opts(out, cache, negatives=[tree / "yes"]), sizes) == 0
    assert B.word_task_clips(opts(out, cache, negatives=[tree], word_task=0), sizes) == 0
    # restricted to some words (a close negative is never one of them)
    only = tmp_path / "only"
    build_dataset(opts(only, cache, negatives=[tree], close_negatives=["martin"], word_task=16,
                       word_task_words=["YES", "martin"], sizes="train_pos=10,train_neg=20,eval_each=6"))
    assert json.loads((only / "dataset.json").read_text())["word_task_words"] == ["yes"]
    assert {r.text for r in read_manifest(only / "manifest.jsonl") if r.kind == "word"} == {"yes"}
    with pytest.raises(DataError, match="word_task must be >= 0"):
        opts(out, cache, word_task=-1)


def test_wide_and_quiet_recipes_have_their_own_fingerprints_and_realistic_keeps_its_own(tmp_path):
    """augment_recipe="wide" (or "quiet") changes the dataset, so its fingerprint differs; a realistic build's
    fingerprint holds none of the fields wide added (folders built before stay valid)."""
    real = B._augment_fingerprint(BuildOptions(keyword="x", out=tmp_path))
    wide = B._augment_fingerprint(BuildOptions(keyword="x", out=tmp_path, augment_recipe="wide"))
    assert "p_saturate" not in real and "dither_headroom_db" not in real
    assert wide["level_dbfs"] == (-60.0, -6.0) and wide["p_saturate"] == 1.0 and wide["dither_headroom_db"] == 20.0
    quiet = B._augment_fingerprint(BuildOptions(keyword="x", out=tmp_path, augment_recipe="quiet"))
    assert quiet["level_dbfs"] == (-60.0, -12.0) and "p_saturate" not in quiet and quiet["dither_headroom_db"] == 20.0
    assert {k: v for k, v in quiet.items() if k != "dither_headroom_db"} == {**real, "level_dbfs": (-60.0, -12.0)}
    tail = B._augment_fingerprint(BuildOptions(keyword="x", out=tmp_path, augment_recipe="quiet-tail"))
    assert tail == {**real, "quiet_share": 0.25, "quiet_dbfs": (-60.0, -42.0), "dither_headroom_db": 20.0}
    with pytest.raises(DataError, match="augment_recipe"):
        BuildOptions(keyword="x", out=tmp_path, augment_recipe="loud")


def _cli_build_options(monkeypatch, tmp_path, *flags: str):
    """The BuildOptions `kws data build --keyword athena FLAGS` hands to build_dataset."""
    from kws import cli
    from kws.errors import KwsError

    seen = []

    def capture(o):
        seen.append(o)
        raise KwsError("stopped after the options were built")

    monkeypatch.setattr(B, "build_dataset", capture)
    assert cli.main(["data", "build", "--keyword", "athena", "--out", str(tmp_path / "c"), *flags]) == 2
    return seen[0]


def test_mean_normalized_features_build_beside_the_default(tmp_path, cache, built, monkeypatch):
    """mean_norm_seconds: the same clips (the TTS cache is warm) featurized with the running-mean
    normalization (kws.features.featurize_window); the fingerprint says so, a default build's fingerprint is unchanged, and the
    CLI's --mean-norm reaches BuildOptions."""
    out = tmp_path / "norm"
    build_dataset(opts(out, cache, mean_norm_seconds=0.5))
    d = load_split(out, "val")
    assert d.feature_config == FeatureConfig(mean_norm_seconds=0.5)
    from kws.features import featurize_window

    for i in (0, len(d.records) - 1):  # each clip as a stream shows it: after a history of its noise floor
        audio = load_audio(out / d.records[i].path)
        np.testing.assert_array_equal(d.x[i], featurize_window(audio, d.feature_config))
        assert not np.array_equal(d.x[i], featurize(audio, d.feature_config))
    fp = B._fingerprint(opts(out, cache, mean_norm_seconds=0.5), {})
    assert fp["features"]["mean_norm_seconds"] == 0.5
    assert "mean_norm_seconds" not in B._fingerprint(opts(out, cache), {})["features"]
    with pytest.raises(DataError, match="mean_norm_seconds"):
        opts(out, cache, mean_norm_seconds=-1)
    assert _cli_build_options(monkeypatch, tmp_path, "--mean-norm", "0.4").mean_norm_seconds == 0.4


def test_gain_controlled_features_build_beside_the_default(tmp_path, cache, built, monkeypatch):
    """agc_seconds: the same clips featurized with the input gain control after a history of their
    noise floor (featurize_window); the fingerprint says so (a default build's is unchanged), bad
    values are a DataError and the CLI's --agc reaches BuildOptions."""
    out = tmp_path / "agc"
    build_dataset(opts(out, cache, agc_seconds=1.0, log_floor=3e-4))
    d = load_split(out, "val")
    assert d.feature_config == FeatureConfig(agc_seconds=1.0, log_floor=3e-4)
    from kws.features import featurize_window

    for i in (0, len(d.records) - 1):
        audio = load_audio(out / d.records[i].path)
        np.testing.assert_array_equal(d.x[i], featurize_window(audio, d.feature_config))
        assert not np.array_equal(d.x[i], featurize(audio, FeatureConfig(log_floor=3e-4)))
    assert B._fingerprint(opts(out, cache, agc_seconds=1.0), {})["features"]["agc_seconds"] == 1.0
    assert "agc_seconds" not in B._fingerprint(opts(out, cache), {})["features"]
    with pytest.raises(DataError, match="agc_seconds"):
        opts(out, cache, agc_seconds=-1).feature_config()
    assert _cli_build_options(monkeypatch, tmp_path, "--agc", "0.8").agc_seconds == 0.8


def test_level_weight_features_build_beside_the_default(tmp_path, cache, built, monkeypatch):
    """level_weight: the same clips featurized with the level compression; the fingerprint says so
    (a default build's is unchanged), bad values are a DataError and the CLI's --level-weight
    reaches BuildOptions."""
    out = tmp_path / "level"
    build_dataset(opts(out, cache, level_weight=0.25))
    d = load_split(out, "val")
    assert d.feature_config == FeatureConfig(level_weight=0.25)
    audio = load_audio(out / d.records[0].path)
    np.testing.assert_allclose(d.x[0], featurize(audio, d.feature_config), atol=1e-5)
    assert not np.allclose(d.x[0], featurize(audio, FeatureConfig()), atol=1e-2)
    assert B._fingerprint(opts(out, cache, level_weight=0.25), {})["features"]["level_weight"] == 0.25
    assert "level_weight" not in B._fingerprint(opts(out, cache), {})["features"]
    with pytest.raises(DataError, match="level_weight"):
        opts(out, cache, level_weight=2.0)
    # trained on it: the DROCC radius defaults to the level-compressed one, a given radius wins, and
    # the bundle carries the features it needs
    from kws.bundle import load_bundle
    from kws.train.api import LEVEL_COMPRESSED_RADIUS, TrainOptions, train_keyword

    for given, radius in (({}, LEVEL_COMPRESSED_RADIUS), ({"radius": 20.0}, 20.0)):
        run = tmp_path / f"run{radius}"
        res = train_keyword(TrainOptions(keyword="marvin", data=out, method="drocc-lf", hidden=8, epochs=2,
                                         train_hparams=given, out=run / "m.kws", run_dir=run))
        assert json.loads((run / "state.json").read_text())["hparams"]["radius"] == radius
    assert load_bundle(res.bundle).feature_config == FeatureConfig(level_weight=0.25)
    assert _cli_build_options(monkeypatch, tmp_path, "--level-weight", "0.3").level_weight == 0.3


def test_log_floor_makes_digital_silence_look_like_a_quiet_room(tmp_path, cache, monkeypatch):
    """BuildOptions.log_floor: a floor of 3e-4 gives a zero-padded clip's silent edge and a quiet
    microphone's noise floor nearly the same features, where the default 1e-6 keeps them several log
    units apart; loud sound is untouched. A build featurizes with it, a features dict may set it,
    bad values are a DataError naming it, and --log-floor reaches BuildOptions."""
    rng = np.random.default_rng(0)
    silence = np.zeros(16000, np.float32)
    room = (rng.standard_normal(16000) * 10 ** (-75 / 20)).astype(np.float32)  # a quiet room, -75 dBFS
    gap = {floor: float(np.abs(featurize(room, FeatureConfig(log_floor=floor)).mean(0)
                               - featurize(silence, FeatureConfig(log_floor=floor)).mean(0)).max())
           for floor in (1e-6, 3e-4)}
    assert gap[1e-6] > 2.0 and gap[3e-4] < 0.5, gap
    # the bands that carry a sound at speech level (-23 dBFS) are not touched by the floor
    tone = (0.1 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
    low, high = (featurize(tone, FeatureConfig(log_floor=f)).max(axis=0) for f in (1e-6, 3e-4))
    loud = low > 0.0
    assert loud.sum() >= 2
    np.testing.assert_allclose(high[loud], low[loud], atol=1e-2)
    out = tmp_path / "floor"
    build_dataset(opts(out, cache, log_floor=3e-4))
    d = load_split(out, "val")
    assert d.feature_config == FeatureConfig(log_floor=3e-4)
    np.testing.assert_allclose(d.x[0], featurize(load_audio(out / d.records[0].path), d.feature_config), atol=1e-5)
    assert opts(tmp_path, cache).feature_config() == FeatureConfig()
    assert opts(tmp_path, cache, features={"log_floor": 1e-5}).feature_config().log_floor == 1e-5
    assert B._fingerprint(opts(tmp_path, cache, log_floor=1e-5), {})["features"]["log_floor"] == 1e-5
    with pytest.raises(DataError, match="log_floor"):
        opts(tmp_path, cache, log_floor=0.0)
    assert _cli_build_options(monkeypatch, tmp_path, "--log-floor", "3e-4").log_floor == 3e-4
    assert _cli_build_options(monkeypatch, tmp_path).log_floor == 1e-6


def test_espeak_share_sets_the_voice_mix_of_synthesized_words(tmp_path, cache):
    """espeak_share: the share of synthesized plain-text clips said by espeak-ng voices, the rest by the
    split's other voices (here flite); phoneme strings stay espeak-ng's. Without it (None) the voices
    spread evenly over voice families, and the fingerprint is the one of before."""
    from kws.data import tts

    def engines_by_kind(out: Path, split: str) -> dict[tuple[str, bool], set[str]]:
        got: dict[tuple[str, bool], set[str]] = {}
        for r in read_manifest(out / "manifest.jsonl"):
            if r.split == split and r.source.startswith("tts:"):
                got.setdefault((r.kind, tts.is_phonemes(r.text)), set()).add(r.source.split(":")[1])
        return got

    small = "train_pos=16,train_neg=24,eval_each=6"
    split = B.assign_speaker_splits([v.speaker for v in tts.base_voices(["flite"])], 0, group="flite")
    assert "train" in split.values()  # the train split has flite voices to move clips to
    build_dataset(opts(tmp_path / "n", cache, sizes=small, espeak_share=0.0))
    build_dataset(opts(tmp_path / "a", cache, sizes=small, espeak_share=1.0))
    none, only = engines_by_kind(tmp_path / "n", "train"), engines_by_kind(tmp_path / "a", "train")
    plain_kinds = [k for k in none if not k[1]]
    assert ("positive", False) in plain_kinds and len(plain_kinds) >= 3
    assert all(none[k] == {"flite"} for k in plain_kinds)
    assert all(only[k] == {"espeak-ng"} for k in only if not k[1])
    assert all(v == {"espeak-ng"} for k, v in none.items() if k[1])  # phoneme strings: espeak-ng only
    fp = lambda **kw: B._fingerprint(opts(tmp_path / "x", cache, **kw), B.resolve_sizes("small", small, "disjoint"))
    assert "espeak_share" not in fp() and fp(espeak_share=0.5)["espeak_share"] == 0.5
    with pytest.raises(DataError, match="espeak_share"):
        opts(tmp_path / "y", cache, espeak_share=1.5)


def test_keyword_variants_are_said_as_positives_by_espeak_voices(tmp_path, cache):
    """keyword_variants: other pronunciations (here a phoneme string) become positives beside the
    keyword's text, phoneme strings said by espeak-ng voices only; the fingerprint records them."""
    from kws.data import tts

    out = tmp_path / "v"
    build_dataset(opts(out, cache, sizes="train_pos=16,train_neg=24,eval_each=6", keyword_variants=["[[m'A@vIn]]"]))
    pos = [r for r in read_manifest(out / "manifest.jsonl") if r.kind == "positive" and r.source.startswith("tts:")]
    variant = [r for r in pos if "[[m'A@vIn]]" in r.text]
    assert variant and len(variant) < len(pos) and all(r.label == 1 for r in variant)
    assert all(r.source.split(":")[1] == "espeak-ng" for r in variant)
    assert any("marvin" in r.text for r in pos)
    sizes = B.resolve_sizes("small", "train_pos=16,train_neg=24,eval_each=6", "disjoint")
    assert "keyword_variants" not in B._fingerprint(opts(out, cache), sizes)
    assert tts.is_phonemes("[[m'A@vIn]]")
    with pytest.raises(DataError, match="keyword_variants"):
        opts(out, cache, keyword_variants=[" "])


def test_dictionary_pronunciations_espeak_does_not_say_become_positives(tmp_path, cache):
    """dictionary_variants (on by default): amelia's three-syllable dictionary reading, which no
    espeak-ng accent says, is said as positives beside the text, named in the summary and the
    fingerprint; off, the build is the plain one. Words without such readings keep their fingerprint."""
    from kws.data import confusables

    (variant,) = confusables.dictionary_variants("amelia")
    out = tmp_path / "amelia"
    small = "train_pos=16,train_neg=24,eval_each=6"
    summary = build_dataset(opts(out, cache, keyword="amelia", sizes=small))
    pos = [r for r in read_manifest(out / "manifest.jsonl") if r.kind == "positive" and r.source.startswith("tts:")]
    said = [r for r in pos if variant in r.text]
    assert said and len(said) < len(pos) and any("amelia" in r.text for r in pos)
    assert summary.keyword_variants == [variant] and f"keyword also said as: {variant}" in summary.table()
    sizes = B.resolve_sizes("small", small, "disjoint")
    fp = lambda **kw: B._fingerprint(opts(out, cache, keyword="amelia", **kw), sizes)
    assert fp()["keyword_variants"] == [variant] and "keyword_variants" not in fp(dictionary_variants=False)
    assert fp(keyword_variants=["[[a#m'i:lj@]]"])["keyword_variants"] == ["[[a#m'i:lj@]]", variant]
    assert "keyword_variants" not in B._fingerprint(opts(out, cache), sizes)  # marvin: none


def test_validation_gets_the_real_negatives_of_its_speakers_for_model_selection(tmp_path, cache):
    """BuildOptions.val_real_negatives: the validation split also holds its speakers' other real
    clips (beyond real_negative_share), never a close-negative word; train is untouched."""
    tree = make_sc_tree(tmp_path / "sc", n_speakers=40)
    kw = dict(negatives=[tree], close_negatives=["martin"], sizes="train_pos=10,train_neg=20,eval_each=6")
    build_dataset(opts(tmp_path / "off", cache, val_real_negatives=0, **kw))
    build_dataset(opts(tmp_path / "on", cache, **kw))
    off, on = (read_manifest(tmp_path / d / "manifest.jsonl") for d in ("off", "on"))

    def clips(recs, split):
        return [(r.id, r.kind, r.text, r.source, r.speaker) for r in recs if r.split == split]

    assert clips(on, "train") == clips(off, "train") and clips(on, "test") == clips(off, "test")
    real_val = [r for r in on if r.split == "val" and r.kind == "negative" and r.source == "real:speech_commands"]
    val_speakers = {r.speaker for r in on if r.split == "val" and r.source == "real:speech_commands"}
    train_speakers = {r.speaker for r in on if r.split == "train"}
    # every yes/no clip of the validation speakers (one of each per speaker), each once
    assert {(r.speaker, r.text) for r in real_val} == {(s, w) for s in val_speakers for w in ("yes", "no")}
    assert len(real_val) == 2 * len(val_speakers) > len([r for r in off if r.split == "val" and r.kind == "negative"
                                                         and r.source == "real:speech_commands"])
    assert not val_speakers & train_speakers
    # the clips of the build without them come first, with the same ids
    assert clips(on, "val")[:len(clips(off, "val"))] == clips(off, "val")
    sizes = B.PRESETS["small"]
    assert B._fingerprint(opts(tmp_path / "x", cache, **kw), sizes) != B._fingerprint(
        opts(tmp_path / "x", cache, val_real_negatives=0, **kw), sizes)
    # without real negatives the option changes nothing, fingerprint included
    assert B._fingerprint(opts(tmp_path / "x", cache), sizes) == B._fingerprint(
        opts(tmp_path / "x", cache, val_real_negatives=0), sizes)


def test_feature_settings_reach_the_feature_config_and_bad_ones_are_named(tmp_path, cache):
    fc = opts(tmp_path, cache, features={"hop_length": 320, "frame_length": 480}, level_weight=0.5).feature_config()
    assert (fc.hop_length, fc.frame_length, fc.level_weight, fc.window_frames) == (320, 480, 0.5, 49)
    assert opts(tmp_path, cache).feature_config() == FeatureConfig()
    with pytest.raises(DataError, match="feature settings: unknown feature config keys \\['hop'\\]"):
        opts(tmp_path, cache, features={"hop": 320}).feature_config()


def test_edge_share_gives_clips_of_every_kind_a_recording_edge(tmp_path, cache, built):
    """BuildOptions.edge_share: digital silence before or after the speech of that share of clips,
    keywords and negatives alike (recorded negatives placed off-centre have such edges)."""
    out = tmp_path / "edges"
    build_dataset(opts(out, cache, edge_share=1.0))

    def edge_share_by_kind(folder: Path) -> dict[str, float]:
        got: dict[str, list[bool]] = {}
        for r in read_manifest(folder / "manifest.jsonl"):
            if r.kind == "noise":
                continue
            x = load_audio(folder / r.path)
            got.setdefault(r.kind, []).append(bool((x[:160] == 0).all() or (x[-160:] == 0).all()))
        return {k: float(np.mean(v)) for k, v in got.items()}

    with_edges, without = edge_share_by_kind(out), edge_share_by_kind(built[0])
    assert set(with_edges) == {"positive", "negative", "close_negative"}
    for kind, share in with_edges.items():
        assert share >= 0.6 and share >= without[kind] + 0.3, (kind, share, without[kind])
    assert B._fingerprint(opts(out, cache, edge_share=0.2), B.PRESETS["small"]) != \
        B._fingerprint(opts(out, cache), B.PRESETS["small"])
    with pytest.raises(DataError, match="edge_share"):
        opts(out, cache, edge_share=1.5)


def test_cli_edge_share_reaches_the_build_options(tmp_path, monkeypatch):
    assert _cli_build_options(monkeypatch, tmp_path, "--edge-share", "0.3").edge_share == 0.3
    assert _cli_build_options(monkeypatch, tmp_path).edge_share == 0.0
