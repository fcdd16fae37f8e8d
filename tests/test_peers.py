"""The peer systems of tools/peer_benchmark.py (optional `peers` extra: skipped when not installed)."""

from __future__ import annotations

import numpy as np
import pytest

from kws.errors import DataError

OTHER_WORDS = ["seven", "window", "happy", "table"]


def _need_openwakeword() -> None:
    """Skip unless openWakeWord (`make peers`) is installed; found without importing it (the peer
    reads its ONNX models; only its library import needs scikit-learn)."""
    import importlib.util

    if importlib.util.find_spec("openwakeword") is None:
        pytest.skip("openwakeword not installed (optional: `make peers`)")


def _voices():
    from kws.data import tts

    engines = tts.available_engines()
    voices = [v for v in (tts.Voice("flite", "slt"), tts.Voice("espeak-ng", "en-us+m3")) if v.engine in engines]
    if not voices:
        pytest.skip("no speech-synthesis engine (flite / espeak-ng) installed")
    return voices


def test_pocketsphinx_ranks_the_keyword_above_other_words(tmp_path):
    pytest.importorskip("pocketsphinx")
    from kws.data import tts
    from tools.peers.pocketsphinx_kws import floor_score, keyphrase_scores

    for voice in _voices():
        clips = [tts.synthesize(w, voice, tmp_path) for w in ["athena"] + OTHER_WORDS]
        s = keyphrase_scores(clips, "athena")
        assert s.shape == (1 + len(OTHER_WORDS),) and np.isfinite(s).all()
        assert s[0] > floor_score(), voice.id  # the keyword is detected...
        assert s[0] > s[1:].max(), (voice.id, s)  # ...and scores above every other word


def test_pocketsphinx_inputs_agree_and_words_outside_its_dictionary_are_refused(tmp_path):
    pytest.importorskip("pocketsphinx")
    from kws.audio import save_wav
    from kws.data import tts
    from tools.peers.pocketsphinx_kws import keyphrase_scores

    x = tts.synthesize("athena", _voices()[0], tmp_path)
    save_wav(tmp_path / "a.wav", x)
    pcm = np.round(x * 32767).astype(np.int16)
    s = keyphrase_scores([x, tmp_path / "a.wav", pcm], "athena")
    assert np.allclose(s, s[0], atol=1e-3)  # float, file and int16 inputs are the same audio
    with pytest.raises(DataError, match="zzqxv"):
        keyphrase_scores([x], "hey zzqxv")


def test_pocketsphinx_stream_trace_peaks_at_the_keyword(tmp_path):
    pytest.importorskip("pocketsphinx")
    from kws.data import tts
    from tools.peers.pocketsphinx_kws import floor_score, stream_trace

    voice = _voices()[0]
    gap = np.zeros(8000, np.float32)
    parts, span = [], None
    for w in ["seven", "window", "athena", "happy", "table"]:
        x = tts.synthesize(w, voice, tmp_path)
        start = sum(len(p) for p in parts) + len(gap)
        parts += [gap, x]
        if w == "athena":
            span = (start / 16000, (start + len(x)) / 16000)
    times, scores = stream_trace(np.concatenate(parts + [gap]), "athena")
    assert times.shape == scores.shape and np.allclose(np.diff(times), 0.1)
    best = times[int(np.argmax(scores))]
    assert scores.max() > floor_score()
    assert span[0] < best <= span[1] + 0.3, (best, span)  # reported at the end of the spoken keyword


# ---------------------------------------------------------------- openWakeWord
def test_openwakeword_embeddings_have_the_documented_shape_and_stream_equals_bulk(rng):
    _need_openwakeword()
    from tools.peers import openwakeword_peer as ow

    fe = ow.FrontEnd()
    for seconds in (0.5, 1.0, 2.37):
        x = (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
        e = fe.embeddings(x)
        assert e.shape == (ow.embedding_count(len(x)), ow.EMB_DIM) and np.isfinite(e).all()
    assert ow.embedding_count(ow.EMB_END0) == 1 and ow.embedding_count(ow.EMB_END0 - 1) == 0
    # one embedding per 80 ms: each hop of audio adds exactly one
    assert ow.embedding_count(ow.EMB_END0 + 5 * ow.HOP_SAMPLES) == 6

    # the live loop (80 ms chunks, fed in odd-sized pieces) gives the bulk path's window scores
    head = ow.PretrainedHead("alexa")
    x = (0.05 * rng.standard_normal(3 * 16000)).astype(np.float32)
    _, bulk = ow.stream_trace(fe, head, x)
    live = ow.Streamer(fe, head)
    got = [s for i in range(0, len(x), 1000) for s in live.step(x[i:i + 1000])]
    assert len(got) == len(bulk) > 0
    assert np.allclose(got, bulk, atol=1e-4)


def test_openwakeword_clip_windows_hold_the_whole_clip():
    _need_openwakeword()
    from tools.peers import openwakeword_peer as ow

    fe = ow.FrontEnd()
    clip = np.zeros(16000, np.float32)
    w = ow.clip_windows(fe, clip)
    span = ow.HOP_SAMPLES * (ow.HEAD_FRAMES - 1) + ow.EMB_END0 - ow.EMB_START0  # audio one window hears
    # windows start every 80 ms; those starting before the clip and ending after it
    lead, n = int(ow.TRAIN_LEAD * 16000), 16000
    starts = np.arange(64) * ow.HOP_SAMPLES + ow.EMB_START0
    expected = int(((starts <= lead) & (starts + span >= lead + n)
                    & (starts + span <= lead + n + int(ow.TRAIN_TAIL * 16000))).sum())
    assert w.shape == (expected, ow.HEAD_FRAMES, ow.EMB_DIM) and expected >= 3


def test_openwakeword_pretrained_model_and_a_trained_head_find_their_words(tmp_path):
    _need_openwakeword()
    from kws.data import tts
    from tools.peers import openwakeword_peer as ow

    fe = ow.FrontEnd()
    voice = _voices()[0]
    others = [tts.synthesize(w, voice, tmp_path) for w in OTHER_WORDS]
    s = ow.clip_scores(fe, ow.PretrainedHead("alexa"), [tts.synthesize("alexa", voice, tmp_path)] + others)
    assert s[0] > 0.5 > s[1:].max(), s

    # a head of openWakeWord's kind, trained on a handful of clips, separates them (and survives save/load)
    from kws.audio import fit_to_window
    from kws.data.tts import voice_configs

    voices = voice_configs(8, seed=0, engines=[voice.engine])
    clips, labels = [], []
    for v in voices:
        for w, y in (("marvin", 1), ("seven", 0), ("window", 0)):
            a = tts.synthesize(w, v, tmp_path)
            if a is not None:
                clips.append(fit_to_window(a, 16000))  # 1 s, as a dataset's clips
                labels.append(y)
    wins = [ow.clip_windows(fe, c) for c in clips]
    x = np.concatenate(wins)
    y = np.concatenate([np.full(len(w), lab) for w, lab in zip(wins, labels)])
    idx = np.concatenate([np.full(len(w), i) for i, w in enumerate(wins)])
    head = ow.train_head((x, y, idx), (x, y, idx), epochs=15, seed=0)
    clip_s = ow.clip_max(head.window_scores(x), idx)
    lab = ow.clip_labels(y, idx)
    assert clip_s[lab == 1].min() > clip_s[lab == 0].max()
    loaded = ow.TrainedHead.load(head.save(tmp_path / "head.safetensors"))
    assert np.allclose(loaded.window_scores(x[:5]), head.window_scores(x[:5]))
    # exported in openWakeWord's ONNX layout, it scores the same without torch
    onnx_head = ow.OnnxHead(head.export_onnx(tmp_path / "head.onnx"))
    assert onnx_head.n_frames == ow.HEAD_FRAMES
    assert np.allclose(onnx_head.window_scores(x[:5]), head.window_scores(x[:5]), atol=1e-5)
    assert head.params == 16 * 96 * 32 + 32 + 2 * 32 + 32 * 32 + 32 + 2 * 32 + 33


# ---------------------------------------------------------------- the benchmark's assembly
def test_benchmark_tables_and_verdicts_from_scores(tmp_path):
    import argparse

    from tools import peer_benchmark as pb

    kinds = np.array(["positive"] * 4 + ["negative"] * 30 + ["close_negative"] * 10)
    good = np.concatenate([[0.9, 0.8, 0.95, 0.7], np.linspace(0.0, 0.5, 30), np.linspace(0.1, 0.75, 10)])
    bad = np.concatenate([[0.1, 0.2, 0.9, 0.3], np.linspace(0.0, 0.5, 30), np.linspace(0.4, 0.95, 10)])
    r = pb.Results(tmp_path / "results.json")
    r.tests["kw-real"] = {"title": "kw: real", "n": {"positive": 4, "negative": 30, "close_negative": 10},
                          "sources": {"positive": "real"}, "speakers": {"positive": 3, "negative": 12},
                          "close_words": ["kiwi"]}
    r.clip["kw-real"] = {"ours FastGRNN BCE float": pb.summarize(good, kinds), "PocketSphinx": pb.summarize(bad, kinds)}
    m = r.clip["kw-real"]["ours FastGRNN BCE float"]
    assert m["recall_0.03"] == m["recall_all_0.03"] == 1.0 and m["auc"] == 1.0  # every positive above every negative
    # 30 negatives at 3% FPR: none may pass; the threshold is the lowest keyword/negative score above the top
    # negative 0.5 (recall_at_fpr), here 0.7: of the close negatives only 0.75 passes
    assert m["close_fpr_0.03"] == 0.1
    ps = r.clip["kw-real"]["PocketSphinx"]
    # the threshold is 0.9: one keyword clip and the close negative 0.95 pass
    assert ps["recall_0.03"] == 0.25 and ps["close_fpr_0.03"] == 0.1
    # all 40 non-keyword clips: one may pass (0.95); the threshold is above the next (0.889)
    assert ps["recall_all_0.03"] == 0.25
    r.cost = {"ours FastGRNN (hidden 32) float (numpy)": {"params": 1000, "model_bytes": 4000, "cpu_per_audio_s": 0.002,
                                                          "peak_rss_mb": 50.0, "load_cpu_s": 0.1, "audio_s": 60.0},
              "openWakeWord: front end + head of our clips (onnxruntime)":
                  {"params": 10 ** 6, "model_bytes": 4 * 10 ** 6, "cpu_per_audio_s": 0.03, "peak_rss_mb": 150.0,
                   "load_cpu_s": 0.5, "audio_s": 60.0}}
    r.save()
    r2 = pb.Results(tmp_path / "results.json")  # resumable: what was saved is what is reported
    assert r2.clip == r.clip and r2.cost == r.cost
    assert pb.verdicts(r2) == ["- `kw-real`: ours FastGRNN BCE float wins against PocketSphinx at 3% FPR "
                               "(100.0% vs 25.0% recall; AUC 1.000 vs 0.550)."]  # (6 + 12 + 30 + 18) / 120
    ratio = pb.cost_ratio_lines(r2)
    assert ratio[0] == ("- openWakeWord needs 15.0x the CPU, 3.0x the peak RSS, 1000x the model bytes of "
                        "ours FastGRNN (hidden 32) float (numpy): the 10x goal is NOT met here.")
    assert len(ratio) == 2 and ratio[1].startswith("- Reading:")  # a miss comes with its reading
    md = pb.report(r2, argparse.Namespace(note=[]), [])
    assert "| `kw-real` | 4 pos / 3 spk, 30 neg / 12 spk, 10 close | ours FastGRNN BCE float | 100.0% | 100.0% | 10.0% |" in md
    assert "| PocketSphinx | 25.0% |" in md


def test_embedding_cache_round_trip(tmp_path, rng):
    from tools import peer_benchmark as pb

    c = pb.EmbeddingCache(tmp_path / "emb.npz")
    c.emb = {f"real:a/{i}.flac": rng.standard_normal((20 + i, 96)).astype(np.float32) for i in range(3)}
    c.save()
    back = pb.EmbeddingCache(tmp_path / "emb.npz")
    assert list(back.emb) == list(c.emb)
    for k in c.emb:
        assert np.array_equal(back.emb[k], c.emb[k])
