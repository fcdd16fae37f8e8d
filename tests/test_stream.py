"""The streaming detector: chunking invariance, agreement with the numpy reference model, the
rising-edge/refractory rule, thresholds, resampling, `kws detect` on files (good and bad), and
running without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from kws.audio import save_wav
from kws.bundle import load_bundle, random_bundle
from kws.cli import main as kws_main
from kws.features import FeatureConfig, featurize
from kws.stream import (Detector, StreamingResampler, detect_file, resolve_threshold, rising_edges)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    d = tmp_path_factory.mktemp("bundles")
    return {
        "fastgrnn": random_bundle(d / "fg.kws", seed=3, hidden=16),
        "fastgrnn_lr_pwl": random_bundle(d / "fglr.kws", seed=4, hidden=16, w_rank=8, u_rank=6, nonlinearity="pwl"),
        "lstm": random_bundle(d / "lstm.kws", kind="lstm", seed=5, hidden=12),
        "gru": random_bundle(d / "gru.kws", kind="gru", seed=6, hidden=12),
        # features minus their running mean: the featurizer carries state from chunk to chunk
        "fastgrnn_mean_norm": random_bundle(d / "fgmn.kws", seed=7, hidden=16,
                                            feature_config=FeatureConfig(mean_norm_seconds=0.5)),
        # the input gain control: a gain carried from chunk to chunk, set by the bursts
        "fastgrnn_agc": random_bundle(d / "fgagc.kws", seed=8, hidden=16,
                                      feature_config=FeatureConfig(agc_seconds=1.0, log_floor=3e-4)),
    }


def bursty(rng: np.random.Generator, seconds: float = 7.0) -> np.ndarray:
    """Quiet noise with a few loud broadband bursts and a chirp: the score moves up and down."""
    n = int(seconds * 16000)
    x = 0.005 * rng.standard_normal(n)
    for s in (1.2, 3.9, 5.6):
        a, b = min(int(s * 16000), n), min(int((s + 0.6) * 16000), n)
        x[a:b] += 0.3 * rng.standard_normal(b - a)
    t = np.arange(8000) / 16000
    a = int(max(0.0, min(2.5, seconds - 0.5)) * 16000)
    chirp = 0.4 * np.sin(2 * np.pi * (300 + 2000 * t) * t)
    x[a:a + 8000] += chirp[:len(x[a:a + 8000])]
    return np.clip(x, -1, 1).astype(np.float32)


def run_chunks(det: Detector, x: np.ndarray, sizes) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    det.reset()
    parts, dets, i = [], [], 0
    for n in sizes:
        if i >= len(x):
            break
        hs = det.step(x[i:i + n])
        parts.append(hs)
        dets += hs.detections
        i += n
    assert i >= len(x)
    cat = lambda k: np.concatenate([getattr(p, k) for p in parts])  # noqa: E731
    return cat("times"), cat("raw"), cat("smoothed"), dets


def median_threshold(det: Detector, x: np.ndarray) -> float:
    det.reset()
    return float(np.median(det.step(x).smoothed))


@pytest.mark.parametrize("kind", ["fastgrnn", "fastgrnn_lr_pwl", "lstm", "gru", "fastgrnn_mean_norm", "fastgrnn_agc"])
def test_any_chunking_gives_identical_scores_and_detections(bundles, kind, rng):
    x = bursty(rng)
    det = Detector(bundles[kind], threshold=0.5, refractory_seconds=0.5)
    det.threshold = median_threshold(det, x)  # a threshold the trace crosses several times
    ref = run_chunks(det, x, [len(x)])
    assert len(ref[3]) >= 2, "the test signal should produce several detections"
    for sizes in ([1600] * 100, [1] * 500 + [7, 160, 399, 401] * 300 + [10 ** 6],
                  list(rng.integers(1, 4000, size=400))):
        got = run_chunks(det, x, sizes)
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])  # bit-identical, not just close
        np.testing.assert_array_equal(got[2], ref[2])
        assert got[3] == ref[3]
    # int16 input is the float input scaled by 1/32768
    q = np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)
    a = run_chunks(det, q, [len(q)])
    b = run_chunks(det, q.astype(np.float32) / 32768, [len(q)])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("kind", ["fastgrnn", "fastgrnn_lr_pwl", "lstm", "gru", "fastgrnn_mean_norm", "fastgrnn_agc"])
def test_window_scores_match_the_reference_model(bundles, kind, rng):
    x = bursty(rng, 3.0)
    b = load_bundle(bundles[kind])
    det = Detector(b, threshold=0.5, smoothing=1)
    hs = det.step(x)
    # the window ending at frame e covers frames [e - 98, e); windows every 10 frames from 98
    feats = b.normalize(featurize(x, b.feature_config))
    ref = b.reference_model()
    ends = 98 + 10 * np.arange(len(hs.raw))
    expected = np.array([ref.score(feats[e - 98:e]) for e in ends])
    np.testing.assert_allclose(hs.raw, expected, atol=2e-5)
    np.testing.assert_array_equal(hs.smoothed, hs.raw)
    np.testing.assert_allclose(hs.times, ((ends - 1) * 160 + 400) / 16000)
    assert 0.0 < hs.raw.std()  # the model reacts to the signal


@pytest.mark.parametrize("kind", ["fastgrnn", "fastgrnn_lr_pwl", "lstm", "gru"])
@pytest.mark.parametrize("hop_seconds", [0.1, 0.07, 0.25])
def test_staggered_windows_equal_scoring_every_window_from_scratch(bundles, kind, hop_seconds, rng):
    """The numpy detector advances the windows in flight one frame at a time; with the stepwise
    path switched off it re-runs each whole window. Both must give the same bits."""
    x = bursty(rng, 4.0)
    fast = Detector(bundles[kind], threshold=0.5, hop_seconds=hop_seconds)
    assert fast._slots is not None and fast._n_slots == -(-98 // fast.hop_frames)
    slow = Detector(bundles[kind], threshold=0.5, hop_seconds=hop_seconds)
    slow._slots = None  # the from-scratch path every other backend takes
    a = run_chunks(fast, x, list(rng.integers(1, 3000, size=200)))
    slow.reset()
    slow._slots = None
    b = run_chunks(slow, x, [len(x)])
    assert len(a[1]) == len(b[1]) > 10
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[3] == b[3]


def test_smoothing_is_a_moving_average(bundles, rng):
    x = bursty(rng, 3.0)
    raw = Detector(bundles["fastgrnn"], threshold=0.5, smoothing=1).step(x).raw
    sm = Detector(bundles["fastgrnn"], threshold=0.5, smoothing=3).step(x).smoothed
    expected = [np.mean(raw[max(0, i - 2):i + 1]) for i in range(len(raw))]
    np.testing.assert_allclose(sm, expected, rtol=0, atol=1e-12)


def test_rising_edges_with_refractory():
    t = np.arange(20) * 0.1
    s = np.array([0, .6, .7, .2, .8, .1, .1, .1, .1, .1, .1, .1, .1, .1, .1, .1, .1, .9, .9, .1])
    # rising edges at 0.1, 0.4 (inside the 1 s refractory of 0.1 -> dropped), 1.7
    assert rising_edges(t, s, 0.5, refractory_seconds=1.0) == [1, 17]
    assert rising_edges(t, s, 0.5, refractory_seconds=0.0) == [1, 4, 17]
    assert rising_edges(t, s, 0.95) == []
    # continuing a stream: above threshold at the previous hop means no edge at index 0
    assert rising_edges(t[:3], s[1:4], 0.5, prev_score=0.9) == []
    assert rising_edges(t[:3], s[1:4], 0.5, last_fire=-0.5, refractory_seconds=1.0) == []


def test_predict_and_reset(bundles, rng):
    x = bursty(rng, 2.0)
    det = Detector(bundles["fastgrnn"], threshold=0.5)
    out = det.predict(x[:8000])
    assert out == {"random": 0.0}  # no full window yet
    out = det.predict(x[8000:])
    full = det.step(np.zeros(0, np.float32))
    assert set(out) == {"random"} and 0.0 < out["random"] < 1.0 and full.times.size == 0
    first = Detector(bundles["fastgrnn"], threshold=0.5).step(x).smoothed[-1]
    assert out["random"] == first
    det.reset()
    assert det.predict(x)["random"] == first


def test_thresholds_from_fpr_sensitivity_and_explicit(tmp_path):
    from kws.bundle import save_bundle

    rb = load_bundle(random_bundle(tmp_path / "r.kws"))
    p = save_bundle(tmp_path / "t.kws", rb.model_kind, rb.hparams, rb.weights, rb.feature_config, rb.mean,
                    rb.std, "word", {0.03: 0.8, 0.05: 0.6})
    b = load_bundle(p)
    assert resolve_threshold(b) == 0.8
    assert resolve_threshold(b, fpr=0.05) == 0.6
    assert resolve_threshold(b, threshold=0.3, fpr=0.05) == 0.3
    assert resolve_threshold(b, sensitivity=0.5) == pytest.approx(0.8)
    assert resolve_threshold(b, sensitivity=1.0) == pytest.approx(0.6)
    ts = [resolve_threshold(b, sensitivity=s) for s in np.linspace(0, 1, 11)]
    assert all(a > c for a, c in zip(ts, ts[1:])) and ts[0] < 1.0
    assert Detector(p, sensitivity=1.0).threshold == pytest.approx(0.6)
    from kws.errors import KwsError

    with pytest.raises(KwsError, match="sensitivity"):
        resolve_threshold(b, sensitivity=1.5)
    with pytest.raises(KwsError, match="threshold"):
        resolve_threshold(b, threshold=-0.1)
    with pytest.raises(KwsError, match="0.1"):
        resolve_threshold(b, fpr=0.1)


@pytest.mark.parametrize("sr", [8000, 44100, 48000])
def test_streaming_resampler_equals_resample_poly_for_any_chunking(sr, rng):
    from scipy.signal import resample_poly

    x = rng.standard_normal(sr).astype(np.float32)
    r = StreamingResampler(sr, 16000)
    ref = resample_poly(x.astype(np.float64), r.up, r.down)
    outs, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, 2000))
        outs.append(r.push(x[i:i + n]))
        i += n
    outs.append(r.flush())
    y = np.concatenate(outs)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, atol=1e-5)
    r.reset()
    np.testing.assert_array_equal(np.concatenate([r.push(x), r.flush()]), y)


def test_detector_at_another_input_rate_tracks_the_16k_scores(bundles, rng):
    from scipy.signal import resample_poly

    x = bursty(rng, 4.0)
    x44 = resample_poly(x, 441, 160).astype(np.float32)
    a = Detector(bundles["fastgrnn"], threshold=0.5).step(x)
    d = Detector(bundles["fastgrnn"], threshold=0.5, input_rate=44100)
    b = d.step(x44)
    n = len(b.raw)
    assert n >= len(a.raw) - 1
    np.testing.assert_allclose(b.raw[:n], a.raw[:n], atol=0.02)


# ---------------------------------------------------------------- files and the CLI
def test_detect_cli_text_json_and_bad_files(bundles, rng, tmp_path, capsys):
    x = bursty(rng)
    good = tmp_path / "good.wav"
    save_wav(good, x)
    det = Detector(bundles["fastgrnn"], threshold=0.5)
    thr = median_threshold(det, x)
    det.threshold = thr
    expected = detect_file(det, good)["detections"]
    assert len(expected) >= 2
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00not really a wave file" * 10)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    missing = tmp_path / "missing.wav"

    rc = kws_main(["detect", str(bundles["fastgrnn"]), str(bad), str(good), str(missing), str(empty),
                   "--threshold", repr(thr), "--json"])
    out, err = capsys.readouterr()
    assert rc == 2
    lines = [json.loads(line) for line in out.splitlines()]
    assert [Path(o["file"]).name for o in lines] == ["bad.wav", "good.wav", "missing.wav", "empty.wav"]
    ok = lines[1]
    assert "error" not in ok and ok["keyword"] == "random" and ok["duration_s"] == pytest.approx(7.0)
    assert ok["detections"] == expected and ok["threshold"] == pytest.approx(thr)
    for o, word in ((lines[0], "not a readable audio file"), (lines[2], "no such audio file"), (lines[3], "empty")):
        assert word in o["error"] and o["file"] in o["error"]
    assert "Traceback" not in err and err.count("kws: error:") == 3 and str(bad) in err

    rc = kws_main(["detect", str(bundles["fastgrnn"]), str(good), "--threshold", repr(thr)])
    out, _ = capsys.readouterr()
    assert rc == 0 and "good.wav" in out and " s  score " in out


def test_long_stereo_file_at_44k_is_streamed_in_blocks(bundles, rng, tmp_path):
    from scipy.signal import resample_poly

    x = bursty(rng, 6.0)
    x44 = resample_poly(x, 441, 160).astype(np.float32)
    path = tmp_path / "stereo44.flac"
    sf.write(str(path), np.stack([x44, x44], axis=1), 44100, subtype="PCM_24")
    det = Detector(bundles["fastgrnn"], threshold=0.5)
    one = detect_file(det, path, block_seconds=100.0, trace=True)
    small = detect_file(det, path, block_seconds=0.37, trace=True)
    for k in ("times", "raw", "smoothed"):
        np.testing.assert_array_equal(small["trace"][k], one["trace"][k])
    ref = Detector(bundles["fastgrnn"], threshold=0.5).step(x)
    n = len(ref.raw)
    np.testing.assert_allclose(one["trace"]["raw"][:n], ref.raw, atol=0.02)
    # the flush scores windows reaching 0.5 s past the end so a final keyword is not lost
    assert one["trace"]["times"][-1] > 6.0 + 0.3


def test_detector_runs_without_torch(bundles, rng, tmp_path):
    x = bursty(rng, 3.0)
    wav = tmp_path / "a.wav"
    save_wav(wav, x)
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import json, kws.stream\n"
        f"d = kws.stream.Detector({str(bundles['fastgrnn'])!r}, threshold=0.5)\n"
        f"r = kws.stream.detect_file(d, {str(wav)!r}, trace=True)\n"
        "print(json.dumps({'n': len(r['trace']['raw']), 'mods': [m for m in sys.modules if m.startswith('torch')"
        " and sys.modules[m] is not None], 'scorer': d.scorer.name}))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["n"] > 20 and out["mods"] == [] and out["scorer"] == "numpy"


def test_torch_backend_agrees_with_numpy(bundles, rng):
    pytest.importorskip("torch")
    x = bursty(rng, 3.0)
    for kind in ("fastgrnn", "lstm"):
        a = Detector(bundles[kind], threshold=0.5, backend="numpy").step(x).raw
        b = Detector(bundles[kind], threshold=0.5, backend="torch").step(x).raw
        np.testing.assert_allclose(a, b, atol=2e-5)


def test_onnx_export_beside_the_bundle_is_used_and_agrees(tmp_path, rng):
    pytest.importorskip("torch")
    from kws.export import export_bundle

    x = bursty(rng, 3.0)
    bundle = random_bundle(tmp_path / "m.kws", seed=9, hidden=8)
    other = random_bundle(tmp_path / "other" / "m.kws", seed=10, hidden=8)
    export_bundle(bundle, fmt="onnx", out=tmp_path / "onnx")
    ref = Detector(bundle, threshold=0.5, backend="numpy").step(x).raw
    auto = Detector(bundle, threshold=0.5)  # picks up tmp_path/onnx/model_window.onnx
    assert auto.scorer.name == "onnx"
    np.testing.assert_allclose(auto.step(x).raw, ref, atol=1e-5)
    # an export of another model is not taken for this one's
    (tmp_path / "other" / "onnx").symlink_to(tmp_path / "onnx")
    assert Detector(other, threshold=0.5).scorer.name == "numpy"
    # the CLI's --onnx takes a model file; a step model is refused with a clear message
    explicit = Detector(other, threshold=0.5, onnx_model=tmp_path / "onnx" / "model_window.onnx")
    assert explicit.scorer.name == "onnx"
    from kws.errors import BundleError

    with pytest.raises(BundleError, match="window model"):
        Detector(bundle, threshold=0.5, onnx_model=tmp_path / "onnx" / "model_step.onnx")


def test_a_clip_shorter_than_the_window_is_scored_once(bundles, rng, tmp_path):
    x = bursty(rng, 0.3)
    wav = tmp_path / "short.wav"
    save_wav(wav, x)
    res = detect_file(Detector(bundles["fastgrnn"], threshold=0.0), wav, trace=True)
    assert len(res["trace"]["raw"]) == 1 and res["duration_s"] == pytest.approx(0.3)
    assert [d["time_s"] for d in res["detections"]] == [0.3]  # clamped to the file's end


def test_demo_stream_places_test_split_keywords_at_the_reported_times(tmp_path, rng):
    from kws.audio import load_audio
    from kws.data.manifest import ClipRecord, write_manifest
    from kws.stream import demo_stream

    recs = []
    for i in range(8):
        kind = "positive" if i < 3 else "negative"
        split = "test" if i % 4 != 3 else "train"
        n = int(rng.integers(6000, 12000))
        x = np.zeros(16000, np.float32)
        x[2000:2000 + n] = (0.5 if kind == "positive" else 0.2) * np.sin(np.arange(n) * (0.3 if kind == "positive" else 0.05))
        save_wav(tmp_path / "clips" / f"c{i}.wav", x)
        recs.append(ClipRecord(f"c{i}", f"clips/c{i}.wav", int(kind == "positive"), kind, "w", "tts:x", f"s{i}", split))
    write_manifest(tmp_path / "manifest.jsonl", recs)
    wav, spans = demo_stream(None, tmp_path, tmp_path / "demo.wav", n_keywords=6, seed=1)
    starts = [a for a, _ in spans]
    assert all(0.3 < b - a < 0.8 for a, b in spans)  # the trimmed tone bursts: 6000-12000 samples
    y = load_audio(wav)
    test_pos = [r for r in recs if r.kind == "positive" and r.split == "test"]
    assert len(starts) == len(test_pos) == 3 and starts == sorted(starts)
    for s in starts:  # each reported start holds the keyword's tone (0.3 rad/sample), trimmed of its padding
        seg = y[int(s * 16000):int(s * 16000) + 4000]
        spec = np.abs(np.fft.rfft(seg))
        assert np.argmax(spec) == pytest.approx(0.3 / (2 * np.pi) * 4000, abs=3)


def test_match_detections_finds_keywords_up_to_half_a_second_after_they_end():
    from kws.stream import match_detections

    spans = [(1.0, 1.6), (5.0, 5.8), (9.0, 9.5)]
    found, hit = match_detections([0.9, 1.5, 2.05, 5.9, 6.0, 6.4, 12.0], spans)
    assert found.tolist() == [True, True, False]
    # before any keyword, inside the first, 0.45 s after it, two within the second's 0.5 s, 0.6 s late, far
    assert hit.tolist() == [False, True, True, True, True, False, False]
    found, hit = match_detections([], spans)
    assert found.tolist() == [False] * 3 and hit.size == 0
    assert match_detections([3.0], [])[1].tolist() == [False]
