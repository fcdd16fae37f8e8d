"""Speech synthesis: real engine runs (each skipped when its command is missing)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from kws.data import tts
from kws.errors import DataError

ENGINE_VOICES = {
    "espeak-ng": tts.Voice("espeak-ng", "en-us+f3", 1.07, 1.08),
    "flite": tts.Voice("flite", "slt", 0.93, 1.08),
    "festival": tts.Voice("festival", "kal_diphone", 1.07, 0.93),
    "piper": tts.Voice("piper", "en_US-joe-medium", 1.07, 1.08),
}
BINARY = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "text2wave", "piper": "espeak-ng"}
RANDOM_PROSODY = {"piper"}  # VITS samples its prosody: the cache, not the engine, makes a clip repeatable


def need(engine: str) -> None:
    if not shutil.which(BINARY[engine]) or engine not in tts.available_engines():
        pytest.skip(f"{engine} is not installed")


def frame_rms(x: np.ndarray, frame: int = 160) -> np.ndarray:
    n = x.size // frame
    return np.sqrt(np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1))


@pytest.mark.parametrize("engine", list(ENGINE_VOICES))
def test_real_synthesis_is_16k_trimmed_deterministic_and_cached(engine, tmp_path):
    need(engine)
    voice = ENGINE_VOICES[engine]
    tts.reset_stats()
    a = tts.synthesize("marvin", voice, tmp_path / "c1")
    assert a is not None and a.dtype == np.float32 and a.ndim == 1
    # a spoken two-syllable word at 16 kHz lasts roughly 0.3-1.5 s
    assert 0.3 * 16000 < a.size < 1.5 * 16000
    rms = frame_rms(a)
    loud = np.flatnonzero(rms > rms.max() * 0.01)
    # trimmed: speech starts and ends within ~50 ms of the clip edges (30 ms margin kept)
    assert loud[0] <= 5 and loud[-1] >= rms.size - 6
    assert np.all(np.abs(a) <= 1.0)
    assert tts.stats()["engine_runs"] == 1

    # a second cache dir forces a fresh engine run: identical samples (deterministic engines)
    b = tts.synthesize("marvin", voice, tmp_path / "c2")
    assert np.array_equal(a, b) or (engine in RANDOM_PROSODY and abs(a.size - b.size) < 0.3 * a.size)
    assert tts.stats()["engine_runs"] == 2

    # rerun on the first cache: answered from disk, no engine process
    c = tts.synthesize("marvin", voice, tmp_path / "c1")
    assert np.array_equal(a, c)
    s = tts.stats()
    assert s["engine_runs"] == 2 and s["cache_hits"] == 1


@pytest.mark.parametrize("engine", list(ENGINE_VOICES))
def test_rate_changes_duration(engine, tmp_path):
    need(engine)
    v = ENGINE_VOICES[engine]
    slow = tts.synthesize("seven", v.with_(rate=0.8), tmp_path)
    fast = tts.synthesize("seven", v.with_(rate=1.25), tmp_path)
    # piper's durations are sampled (seen: 0.8 -> 7200-7520 samples, 1.25 -> 5440-6240)
    assert slow.size > fast.size * (1.05 if engine in RANDOM_PROSODY else 1.2)


def median_f0(x: np.ndarray, sr: int = 16000) -> float:
    """Autocorrelation pitch of the loud 40 ms frames (60-400 Hz)."""
    vals = []
    for i in range(0, x.size - 640, 320):
        s = x[i:i + 640] - x[i:i + 640].mean()
        if np.sqrt(np.mean(s ** 2)) < 0.05 * np.abs(x).max():
            continue
        ac = np.correlate(s, s, "full")[639:]
        k = sr // 400 + int(np.argmax(ac[sr // 400: sr // 60]))
        if ac[k] > 0.4 * ac[0]:
            vals.append(sr / k)
    return float(np.median(vals))


@pytest.mark.parametrize("engine", list(ENGINE_VOICES))
def test_pitch_changes_f0(engine, tmp_path):
    need(engine)
    v = ENGINE_VOICES[engine]
    runs = 5 if engine in RANDOM_PROSODY else 1  # sampled prosody: the median of fresh syntheses
    low, mid, high = (np.median([median_f0(tts.synthesize("hello there", v.with_(pitch=p), tmp_path / str(i)))
                                 for i in range(runs)]) for p in (0.85, 1.0, 1.18))
    assert low < mid < high


def test_espeak_phoneme_input_and_other_engines_skip_it(tmp_path):
    need("espeak-ng")
    v = ENGINE_VOICES["espeak-ng"]
    word = tts.synthesize("marvin", v, tmp_path)
    # espeak-ng's own phonemes for "marvin" spoken directly: same sound, so about the same length
    phon = tts.synthesize("[[m'A@vIn]]", v, tmp_path)
    edited = tts.synthesize("[[b'A@vIn]]", v, tmp_path)
    assert phon is not None and edited is not None
    assert abs(phon.size - word.size) < 0.25 * word.size
    assert not (phon.size == edited.size and np.array_equal(phon, edited))
    res = tts.synthesize_many([("[[m'A@vIn]]", tts.Voice("flite", "slt")),
                               ("[[m'A@vIn]]", v)], tmp_path, workers=2)
    assert res.audio[0] is None and res.audio[1] is not None
    assert res.unsupported == 1 and res.dropped == 0


def test_near_silent_output_is_dropped_and_the_drop_cached(tmp_path):
    need("espeak-ng")
    v = ENGINE_VOICES["espeak-ng"]
    tts.reset_stats()
    res = tts.synthesize_many([(" . , ", v), ("hello", v)], tmp_path, workers=2)
    assert res.audio[0] is None and res.audio[1] is not None
    assert res.dropped == 1 and res.synthesized == 2
    again = tts.synthesize_many([(" . , ", v), ("hello", v)], tmp_path, workers=2)
    assert again.cached == 2 and again.dropped == 1 and again.synthesized == 0
    assert tts.stats()["engine_runs"] == 2


def test_postprocess_rules():
    sr = 22050
    t = np.arange(int(0.4 * sr)) / sr
    tone = 0.5 * np.sin(2 * np.pi * 220 * t)
    x = np.concatenate([np.zeros(sr // 2), tone, np.zeros(sr)]).astype(np.float32)
    y, why = tts.postprocess(x, sr)
    assert why == "" and y is not None
    # 0.4 s of tone plus about 30 ms on each side, resampled to 16 kHz
    assert abs(y.size - (0.4 + 0.06) * 16000) <= 2 * 160
    assert np.array_equal(y, np.round(y * 32768) / 32768)  # on the int16 grid
    assert tts.postprocess(np.zeros(0, np.float32), sr) == (None, "empty")
    assert tts.postprocess(1e-4 * np.ones(sr, np.float32), sr) == (None, "silent")
    blip = np.zeros(sr, np.float32)
    blip[1000:1400] = 0.5
    assert tts.postprocess(blip, sr) == (None, "too_short")
    stereo = np.stack([x, x], axis=1)
    assert np.array_equal(tts.postprocess(stereo, sr)[0], y)


def test_voice_configs_distinct_deterministic_and_speaker_balanced():
    need("espeak-ng")
    a = tts.voice_configs(400, seed=7)
    assert len(set(a)) == 400
    assert a == tts.voice_configs(400, seed=7)
    assert a != tts.voice_configs(400, seed=8)
    assert tts.count_configs() >= 300
    # round robin over speakers: every speaker gets the same share, give or take one
    counts = {}
    for v in a:
        counts[v.speaker] = counts.get(v.speaker, 0) + 1
    n_spk = len(tts.speakers())
    assert len(counts) == min(n_spk, 400)
    assert max(counts.values()) - min(counts.values()) <= 1
    # accents, rates and pitches vary
    assert len({v.accent for v in a if v.engine == "espeak-ng"}) >= 6
    assert len({v.rate for v in a}) >= 5 and len({v.pitch for v in a}) >= 5


def test_speakers_partition_the_voices():
    need("espeak-ng")
    spk = tts.speakers()
    assert "espeak-ng:+f2" in spk
    # an espeak-ng speaker is the variant, shared by every accent
    f2 = [v for v in tts.base_voices(["espeak-ng"]) if v.speaker == "espeak-ng:+f2"]
    assert len({v.accent for v in f2}) == len(tts.ESPEAK_ACCENTS)
    test_spk, train_spk = spk[::5], [s for i, s in enumerate(spk) if i % 5]
    test = tts.voice_configs(60, 1, speakers=test_spk)
    train = tts.voice_configs(300, 1, speakers=train_spk)
    assert {v.speaker for v in test} <= set(test_spk)
    assert {v.speaker for v in train} <= set(train_spk)
    assert not {v.speaker for v in test} & {v.speaker for v in train}
    # variants sharing a vocal tract (identical formants) are one speaker
    if tts._espeak_inventory()[2].get("iven3") == "iven":
        assert tts.Voice("espeak-ng", "en-us+iven3").speaker == tts.Voice("espeak-ng", "en-gb+iven").speaker
        assert tts.Voice("espeak-ng", "en-us+robosoft2").speaker == tts.Voice("espeak-ng", "en-us+m8").speaker
        assert len(spk) < len(tts._espeak_inventory()[1]) + 7
    # rate and pitch keep the speaker
    v = tts.Voice("espeak-ng", "en-gb-scotland+m3")
    assert v.with_(rate=1.25, pitch=0.75).speaker == v.speaker == "espeak-ng:+m3"
    assert tts.Voice("flite", "awb", 0.8).speaker == "flite:awb"


def test_too_many_configs_and_unknown_engine_are_clear_errors():
    need("espeak-ng")
    n = tts.count_configs(speakers=["espeak-ng:+f2", "flite:rms"])
    assert n == len(tts.ESPEAK_ACCENTS) * len(tts.RATES) * len(tts.PITCHES) + len(tts.RATES) * (
        "flite" in tts.available_engines())
    every = tts.voice_configs(n, 0, speakers=["espeak-ng:+f2", "flite:rms"])
    assert len(set(every)) == n
    with pytest.raises(DataError, match="distinct voice configurations"):
        tts.voice_configs(n + 1, 0, speakers=["espeak-ng:+f2", "flite:rms"])
    with pytest.raises(DataError, match="unknown speech engine"):
        tts.base_voices(["sapi"])
    with pytest.raises(ValueError):
        tts.Voice("sapi", "x")


def test_cache_key_covers_every_setting():
    v = tts.Voice("espeak-ng", "en-us+f3")
    keys = {tts.cache_key("marvin", v), tts.cache_key("marvin", v.with_(rate=1.07)),
            tts.cache_key("marvin", v.with_(pitch=1.08)), tts.cache_key("marvins", v),
            tts.cache_key("marvin", tts.Voice("espeak-ng", "en-gb+f3"))}
    assert len(keys) == 5


def test_voices_report_lists_engines():
    need("espeak-ng")
    text = tts.voices_report()
    assert "espeak-ng" in text and "configurations" in text
    assert str(tts.count_configs(["espeak-ng"])) in text
    assert "flite" not in tts.voices_report(engines=["espeak-ng"]).split("\n", 2)[2].split("total")[0]


def test_unknown_voice_is_refused_not_silently_replaced(tmp_path):
    need("espeak-ng")
    with pytest.raises(DataError, match="not available"):
        tts.synthesize("marvin", tts.Voice("espeak-ng", "en-us+nosuchvariant"), tmp_path)
    with pytest.raises(DataError, match="not available"):
        tts.synthesize("marvin", tts.Voice("espeak-ng", "xx-zz+f2"), tmp_path)
    with pytest.raises(DataError, match="kws voices"):
        tts.synthesize("marvin", tts.Voice("flite", "nobody"), tmp_path)
    assert not list(tmp_path.rglob("*.wav"))


def test_damaged_cache_entry_is_resynthesized_and_unwritable_cache_is_a_clear_error(tmp_path):
    need("espeak-ng")
    v = ENGINE_VOICES["espeak-ng"]
    a = tts.synthesize("yes", v, tmp_path / "c")
    (entry,) = list((tmp_path / "c").rglob("*.wav"))
    entry.write_bytes(b"RIFF\x00garbage")
    tts.reset_stats()
    b = tts.synthesize("yes", v, tmp_path / "c")
    assert np.array_equal(a, b) and tts.stats()["engine_runs"] == 1
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError, match="KWS_CACHE"):
        tts.synthesize("yes", v, blocker / "cache")


def test_festival_batch_matches_single_runs(tmp_path):
    """Several festival clips share one process; settings must not leak from one clip to the next."""
    need("festival")
    voices = [tts.Voice("festival", n, r, p) for n, r, p in (
        ("kal_diphone", 0.8, 1.3), ("cmu_us_slt_arctic_hts", 1.25, 1.0), ("kal_diphone", 1.0, 1.0),
        ("ked_diphone", 1.15, 0.75), ("cmu_us_slt_arctic_hts", 1.0, 1.0), ("ked_diphone", 1.0, 1.0))
        if n in tts._festival_voices()]
    jobs = [("follow", v) for v in voices] + [(" . , ", voices[0])]
    tts.reset_stats()
    res = tts.synthesize_many(jobs, tmp_path / "batch", workers=1)
    assert tts.stats()["engine_runs"] == 1  # one festival process for all of them
    assert res.dropped == 1 and res.audio[-1] is None
    for (text, v), a in zip(jobs[:-1], res.audio):
        single = tts.synthesize(text, v, tmp_path / "single")
        assert single is not None and np.array_equal(a, single), v.id
