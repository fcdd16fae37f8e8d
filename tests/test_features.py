"""kws.features: the spec (DESIGN.md section 2) checked against librosa and scipy, the numpy vs torch
vs streaming implementations against each other, and FeatureConfig's JSON round trip/validation.

Tolerances: features are log(mel + 1e-6), so an absolute difference d in the log domain is a relative
difference exp(d) - 1 ~ d of (mel + floor). "Agree to 1e-4 relative" is therefore asserted as
|log-mel difference| <= 1e-4 on every coefficient, which is meaningful for every band (a mel power
relative error is not, for bands near the 1e-6 floor)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading

import numpy as np
import pytest
import scipy.fft
import scipy.signal

from kws.features import (FeatureConfig, agc_constants, StreamingFeaturizer, dct_matrix, featurize, featurize_torch,
                          featurize_window, hann_window, mel_filterbank)

CFG = FeatureConfig()
MFCC = FeatureConfig(kind="mfcc", n_mfcc=13)
REL = 1e-4


@pytest.fixture(scope="module")
def librosa():
    """Import librosa and run it once: its first call JIT-compiles with numba (~15 s), so every
    test here shares that cost instead of paying it in an inner loop."""
    lr = pytest.importorskip("librosa")
    lr.feature.melspectrogram(y=np.zeros(1000), sr=16000, n_fft=512, hop_length=160, win_length=400,
                              center=False, htk=True, norm=None, fmin=20, fmax=8000, n_mels=32)
    return lr


def librosa_logmel(lr, x: np.ndarray, cfg: FeatureConfig = CFG) -> np.ndarray:
    """The spec through librosa, float64. librosa centres the win_length window inside each
    n_fft-long frame, so with center=False its frame t covers samples [hop t + pad, hop t + pad +
    win) with pad = (n_fft - win) / 2; padding the signal by `pad` on both sides makes that exactly
    our frame t (the extra zeros in the FFT buffer only change the phase, not the power)."""
    pad = (cfg.n_fft - cfg.frame_length) // 2
    m = lr.feature.melspectrogram(y=np.pad(x.astype(np.float64), pad), sr=cfg.sample_rate, n_fft=cfg.n_fft,
                                  hop_length=cfg.hop_length, win_length=cfg.frame_length, window="hann",
                                  center=False, power=2.0, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax,
                                  htk=True, norm=None)
    return np.log(m.T + cfg.log_floor)


def signals(rng) -> dict[str, np.ndarray]:
    sr = 16000
    t = np.arange(int(1.3 * sr)) / sr
    chirp = 0.3 * np.sin(2 * np.pi * (200 + 900 * t) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return {
        "speechlike": (chirp + 0.02 * rng.standard_normal(t.size)).astype(np.float32),
        "white": (0.1 * rng.standard_normal(16000)).astype(np.float32),
        "quiet_tone": (1e-3 * np.sin(2 * np.pi * 1234.5 * np.arange(16000) / sr)).astype(np.float32),
        "silence": np.zeros(16000, dtype=np.float32),
        "odd_length": (0.5 * rng.uniform(-1, 1, 777)).astype(np.float32),
    }


# --- FeatureConfig --------------------------------------------------------------------------------

def test_config_defaults_and_frame_counts():
    assert (CFG.n_features, CFG.window_samples, CFG.window_frames) == (32, 16000, 98)
    assert [CFG.n_frames(n) for n in (0, 399, 400, 559, 560, 16000, 16079, 16080)] == [0, 0, 1, 1, 2, 98, 98, 99]
    assert MFCC.n_features == 13
    with pytest.raises(dataclasses.FrozenInstanceError):
        CFG.n_mels = 40  # type: ignore[misc]


def test_config_json_roundtrip():
    for cfg in (CFG, MFCC, FeatureConfig(n_mels=40, fmin=0, fmax=7600.0, hop_length=320)):
        d = json.loads(json.dumps(cfg.to_dict()))
        back = FeatureConfig.from_dict(d)
        assert back == cfg and hash(back) == hash(cfg)
        assert isinstance(back.fmin, float) and isinstance(back.n_mels, int)
    assert FeatureConfig.from_dict({"n_mels": 40}).n_mels == 40  # missing keys take defaults


@pytest.mark.parametrize("bad", [
    {"n_mels": 0}, {"n_mels": 32.5}, {"n_mels": "32"}, {"n_fft": True}, {"hop_length": -160},
    {"kind": "spectrogram"}, {"mel_scale": "slaney"}, {"fmax": 9000.0}, {"fmin": 8000.0},
    {"fmin": -1.0}, {"frame_length": 600}, {"kind": "mfcc", "n_mfcc": 40}, {"log_floor": 0.0},
    {"fmax": float("nan")}, {"window_seconds": 0.01}, {"frame_rate": 100}, {"sample_rate": None},
])
def test_config_from_dict_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        FeatureConfig.from_dict({**CFG.to_dict(), **bad})


def test_config_from_dict_rejects_non_dict():
    with pytest.raises(ValueError):
        FeatureConfig.from_dict([1, 2])  # type: ignore[arg-type]


# --- fixed parts of the spec ----------------------------------------------------------------------

def test_window_is_periodic_hann():
    np.testing.assert_allclose(hann_window(400), scipy.signal.get_window("hann", 400, fftbins=True), atol=1e-7)


def test_filterbank_matches_librosa(librosa):
    fb = mel_filterbank(CFG)
    assert fb.shape == (257, 32) and fb.dtype == np.float32
    ref = librosa.filters.mel(sr=16000, n_fft=512, n_mels=32, fmin=20.0, fmax=8000.0, htk=True, norm=None).T
    np.testing.assert_allclose(fb, ref, atol=1e-6)
    assert fb.max() <= 1.0 + 1e-6 and (fb.sum(axis=0) > 0).all()  # every band sees some bin


def test_dct_matrix_is_orthonormal_dct2(rng):
    d = dct_matrix(32, 32)
    np.testing.assert_allclose(d.T @ d, np.eye(32), atol=1e-5)
    v = rng.standard_normal((5, 32))
    np.testing.assert_allclose(v @ dct_matrix(32, 13), scipy.fft.dct(v, type=2, norm="ortho")[:, :13], atol=1e-5)
    with pytest.raises(ValueError):
        dct_matrix(32, 33)


# --- numpy featurizer vs librosa / scipy ----------------------------------------------------------

def test_numpy_logmel_matches_librosa(librosa, rng):
    for name, x in signals(rng).items():
        ours = featurize(x, CFG)
        ref = librosa_logmel(librosa, x)
        assert ours.shape == ref.shape == (CFG.n_frames(x.size), 32), name
        assert ours.dtype == np.float32
        err = np.abs(ours - ref).max()
        assert err <= REL, f"{name}: max |log-mel diff| {err:.2e} (relative mel error) > {REL}"


def test_numpy_logmel_matches_librosa_other_config(librosa, rng):
    cfg = FeatureConfig(n_mels=40, fmin=0.0, fmax=7600.0, hop_length=320, frame_length=480)
    x = signals(rng)["speechlike"]
    np.testing.assert_allclose(featurize(x, cfg), librosa_logmel(librosa, x, cfg), rtol=0, atol=REL)


def test_mfcc_is_ortho_dct_of_logmel(rng):
    x = signals(rng)["speechlike"]
    logmel = featurize(x, CFG).astype(np.float64)
    for n_mfcc in (13, 32):
        cfg = FeatureConfig(kind="mfcc", n_mfcc=n_mfcc)
        ref = scipy.fft.dct(logmel, type=2, norm="ortho", axis=-1)[:, :n_mfcc]
        ours = featurize(x, cfg)
        assert ours.shape == (logmel.shape[0], n_mfcc)
        # relative to the coefficient scale (c0 is ~ sqrt(32) * mean log-mel, tens)
        np.testing.assert_allclose(ours, ref, rtol=0, atol=REL * np.abs(ref).max())


def test_frame_t_depends_only_on_its_samples(rng):
    # also crosses the internal block boundary (1024 frames) of the batch featurizer
    x = (0.2 * rng.standard_normal(160 * 1100 + 400)).astype(np.float32)
    f = featurize(x)
    assert f.shape == (1101, 32)
    for t in (0, 1, 1023, 1024, 1100):
        np.testing.assert_allclose(f[t], featurize(x[160 * t:160 * t + 400])[0], atol=1e-5)


def test_featurize_edge_cases_and_bad_input():
    assert featurize(np.zeros(399, np.float32)).shape == (0, 32)
    assert featurize(np.zeros(0, np.float32), MFCC).shape == (0, 13)
    f = featurize(np.zeros(400, np.float64))
    np.testing.assert_allclose(f, np.log(1e-6), rtol=1e-6)
    with pytest.raises(ValueError, match="to_float32"):
        featurize(np.zeros(1600, np.int16))
    with pytest.raises(ValueError, match="1-D"):
        featurize(np.zeros((2, 1600), np.float32))
    x = np.zeros(1600, np.float32)
    x[5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        featurize(x)


def test_featurize_thread_safe(rng):
    xs = [(0.1 * rng.standard_normal(16000 * 3)).astype(np.float32) for _ in range(4)]
    expected = [featurize(x) for x in xs]
    got: dict[int, np.ndarray] = {}

    def work(i):
        for _ in range(5):
            got[i] = featurize(xs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for i in range(4):
        np.testing.assert_array_equal(got[i], expected[i])


def test_features_import_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import numpy as np, kws.features as F\n"
            "print(F.featurize(np.zeros(16000, np.float32)).shape)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "(98, 32)"


# --- torch vs numpy vs librosa --------------------------------------------------------------------

def test_torch_batch_matches_numpy_and_librosa(librosa, rng):
    torch = pytest.importorskip("torch")
    sig = signals(rng)
    batch = np.stack([sig["speechlike"][:16000], sig["white"], sig["quiet_tone"], sig["silence"]])
    out = featurize_torch(torch.from_numpy(batch), CFG)
    assert out.shape == (4, 98, 32) and out.dtype == torch.float32
    for i, x in enumerate(batch):
        np.testing.assert_allclose(out[i].numpy(), featurize(x), rtol=0, atol=REL)
        np.testing.assert_allclose(out[i].numpy(), librosa_logmel(librosa, x), rtol=0, atol=REL)
    one = featurize_torch(batch[0])  # 1-D numpy in -> [T, F]
    assert one.shape == (98, 32)
    np.testing.assert_allclose(one.numpy(), out[0].numpy(), atol=1e-5)


def test_torch_mfcc_float64_short_and_grad(rng):
    torch = pytest.importorskip("torch")
    x = signals(rng)["speechlike"]
    m = featurize_torch(torch.from_numpy(x[None].astype(np.float64)), MFCC)
    assert m.dtype == torch.float64 and m.shape == (1, CFG.n_frames(x.size), 13)
    np.testing.assert_allclose(m[0].numpy(), featurize(x, MFCC), rtol=0, atol=REL * float(m.abs().max()))
    assert featurize_torch(torch.zeros(3, 100)).shape == (3, 0, 32)
    a = torch.from_numpy(x[:4000].copy()).requires_grad_(True)
    featurize_torch(a).sum().backward()
    assert a.grad is not None and torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        featurize_torch(torch.zeros(2, 2, 16000))
    with pytest.raises(ValueError):
        featurize_torch(torch.zeros(16000, dtype=torch.int16))


# --- streaming ------------------------------------------------------------------------------------

def stream(sf: StreamingFeaturizer, x: np.ndarray, sizes) -> np.ndarray:
    outs, pos = [], 0
    for n in sizes:
        out = sf.push(x[pos:pos + n])
        assert out.ndim == 2 and out.shape[1] == sf.config.n_features
        outs.append(out)
        pos += n
    assert pos >= x.size
    return np.concatenate(outs)


@pytest.mark.parametrize("cfg,capacity", [(CFG, 8192), (MFCC, 8192), (CFG, 1000)])
def test_streaming_random_chunks_equal_batch(rng, cfg, capacity):
    x = (0.3 * rng.standard_normal(16000 * 9 + 123)).astype(np.float32)
    batch = featurize(x, cfg)
    sf = StreamingFeaturizer(cfg, capacity=capacity)  # a small buffer: many compactions and joins
    for trial in range(3):
        sizes, total = [], 0
        while total < x.size:
            r = rng.random()
            # mostly small/odd chunks, some 0, some up to 2 s (bigger than the internal buffer)
            n = 0 if r < 0.05 else int(rng.integers(1, 200)) if r < 0.5 else int(rng.integers(1, 32001))
            sizes.append(n)
            total += n
        sf.reset()
        got = stream(sf, x, sizes)
        assert got.shape == batch.shape, trial
        np.testing.assert_allclose(got, batch, rtol=0, atol=1e-5)
        assert sf.frames_emitted == batch.shape[0]


def test_streaming_one_sample_at_a_time_and_10ms(rng):
    x = (0.3 * rng.standard_normal(2000)).astype(np.float32)
    batch = featurize(x)
    sf = StreamingFeaturizer()
    got = stream(sf, x, [1] * x.size)
    np.testing.assert_allclose(got, batch, rtol=0, atol=1e-5)
    sf.reset()
    outs = [sf.push(x[i:i + 160]) for i in range(0, 1920, 160)]
    # the first frame needs 400 samples (3rd chunk), then one frame per 10 ms chunk
    assert [o.shape[0] for o in outs] == [0, 0, 1] + [1] * 9
    np.testing.assert_allclose(np.concatenate(outs), featurize(x[:1920]), rtol=0, atol=1e-5)
    assert sf.push(np.zeros(0, np.float32)).shape == (0, 32)


def test_streaming_rejects_bad_chunks():
    sf = StreamingFeaturizer()
    with pytest.raises(ValueError, match="to_float32"):
        sf.push(np.zeros(160, np.int16))
    with pytest.raises(ValueError):
        sf.push(np.zeros((160, 2), np.float32))


# --- running-mean normalization (FeatureConfig.mean_norm_seconds) ---------------------------------

NORM = FeatureConfig(mean_norm_seconds=0.5)


def gated_running_mean_reference(raw: np.ndarray, silent: np.ndarray, k: float) -> np.ndarray:
    """The spec as a plain loop: the n-th sounding frame moves m by max(1/(n+1), k) of the way
    (the first one starts it), silent frames hold it, and before the first sound the output is 0."""
    m, n, out = None, 0, []
    for row, quiet in zip(raw, silent):
        if not quiet:
            m = row.copy() if m is None else m + max(1.0 / (n + 1), k) * (row - m)
            n += 1
        out.append(np.zeros_like(row) if m is None else row - m)
    return np.array(out)


def silent_frames(x: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Frames holding 80 zeros in a row (5 ms), by brute force."""
    def has_run(f: np.ndarray) -> bool:
        return any(not f[i:i + 80].any() for i in range(f.size - 79))
    return np.array([has_run(x[t * cfg.hop_length:t * cfg.hop_length + cfg.frame_length])
                     for t in range(cfg.n_frames(x.size))])


def test_mean_norm_is_the_running_mean_recursion(rng):
    """Each coefficient minus m_t = m_{t-1} + k (x_t - m_{t-1}), m_0 = x_0, k from the time constant;
    logmel and MFCC alike (the DCT is linear, so normalizing either side of it is the same).
    Digital silence (a zero lead, a gap) holds the mean."""
    x = signals(rng)["speechlike"]
    x = np.concatenate([np.zeros(5000, np.float32), x[:9000], np.zeros(4000, np.float32), x[9000:]])
    for cfg in (NORM, dataclasses.replace(MFCC, mean_norm_seconds=0.3)):
        raw = featurize(x, dataclasses.replace(cfg, mean_norm_seconds=0.0)).astype(np.float64)
        k = 1.0 - np.exp(-cfg.hop_length / (cfg.mean_norm_seconds * cfg.sample_rate))
        assert cfg.mean_norm_rate == pytest.approx(k, rel=1e-12)
        silent = silent_frames(x, cfg)
        assert silent[:20].all() and silent[90:108].all() and (~silent).sum() > 80  # lead and gap
        got = featurize(x, cfg)
        np.testing.assert_allclose(got, gated_running_mean_reference(raw, silent, k), rtol=0, atol=1e-5)
        assert np.all(got[:20] == 0) and np.abs(got[40:]).max() > 1.0  # the level is gone, changes stay
        assert np.all(got[90:108] == got[90])  # the gap: the floor minus the held mean
        if cfg.kind == "logmel":
            assert got[90].max() < -3.0


def test_mean_norm_zero_padding_leaves_the_sound_as_it_was(rng):
    """Zero padding before a sound (a whole number of hops) gives zeros, then exactly the features
    of the sound alone: the frames that straddle the padding's edge do not start the mean."""
    x = signals(rng)["speechlike"]
    padded = featurize(np.concatenate([np.zeros(8000, np.float32), x]), NORM)
    assert np.all(padded[:50] == 0)
    np.testing.assert_array_equal(padded[50:], featurize(x, NORM))


def test_featurize_window_starts_the_mean_on_the_windows_noise_floor(rng):
    """A window that opens loud (a word cut by the window's start) then falls to its noise floor:
    inside a stream whose past is that floor, its features are far from the window featurized
    alone, and close to featurize_window's (history = its quietest 0.1 s). Off, it is featurize."""
    sr = 16000
    floor = (0.003 * rng.standard_normal(3 * sr)).astype(np.float32)
    word = signals(rng)["speechlike"][:6000]
    window = floor[2 * sr:3 * sr].copy()
    window[:6000] += word
    stream = featurize(np.concatenate([floor[:2 * sr], window]), NORM)[200:]
    alone, hist = featurize(window, NORM), featurize_window(window, NORM)
    assert hist.shape == alone.shape == (98, 32)
    assert np.abs(hist - stream).mean() < 0.5 * np.abs(alone - stream).mean()
    assert np.array_equal(featurize_window(window, CFG), featurize(window, CFG))


def test_mean_norm_takes_the_level_out(rng):
    """A gain is a constant offset of every log-mel, and the running mean moves with it: the same
    sound 20 dB quieter gives the same features (while the floor stays far below it)."""
    x = signals(rng)["speechlike"]
    loud, quiet = featurize(x, NORM), featurize(x * np.float32(0.1), NORM)
    np.testing.assert_allclose(quiet, loud, rtol=0, atol=0.05)  # the weakest bands near the floor
    assert np.median(np.abs(quiet - loud)) < 1e-3
    assert np.abs(featurize(x * np.float32(0.1)) - featurize(x)).min() > 4.0  # without it: 4.6 apart


def assert_stateful_features_agree(x: np.ndarray, cfg: FeatureConfig, rng, max_chunk: int, n_chunks: int) -> None:
    """Features that carry state across frames: streamed in random chunks (twice, reset between)
    they equal the batch featurizer bit for bit, and torch in float64 matches it to 1e-5."""
    import torch

    batch = featurize(x, cfg)
    sf = StreamingFeaturizer(cfg, capacity=1000)
    for trial in range(2):
        sizes = [int(rng.integers(0, max_chunk)) for _ in range(n_chunks)] + [x.size]
        sf.reset()  # the state starts again
        assert np.array_equal(stream(sf, x, sizes), batch), trial
    np.testing.assert_allclose(featurize_torch(torch.from_numpy(x.astype(np.float64)), cfg).numpy(), batch,
                               rtol=0, atol=1e-5)


def test_mean_norm_streams_bit_identically_and_matches_torch(rng):
    import torch

    x = (0.3 * rng.standard_normal(16000 * 3 + 77)).astype(np.float32)
    x[:3000] = x[20000:26000] = 0.0  # digital silence before the sound and in it
    assert_stateful_features_agree(x, NORM, rng, 5000, 60)
    two = featurize_torch(torch.from_numpy(np.stack([x[:16000], x[1000:17000]])), NORM).numpy()
    np.testing.assert_allclose(two[1], featurize(x[1000:17000], NORM), rtol=0, atol=1e-4)


def test_mean_norm_config_round_trip_and_old_dicts():
    """Off (the default) it is left out of to_dict, so bundles and datasets of before keep their
    config; on, it round-trips; negative or non-numbers are refused."""
    assert "mean_norm_seconds" not in CFG.to_dict()
    assert FeatureConfig.from_dict(CFG.to_dict()) == CFG
    d = json.loads(json.dumps(NORM.to_dict()))
    assert d["mean_norm_seconds"] == 0.5 and FeatureConfig.from_dict(d) == NORM
    for bad in (-0.1, float("inf"), "0.5", True):
        with pytest.raises(ValueError, match="mean_norm_seconds"):
            FeatureConfig(mean_norm_seconds=bad)


# --- level compression (FeatureConfig.level_weight) -----------------------------------------------

def test_level_weight_scales_how_far_a_gain_moves_the_features(rng):
    """A gain of g moves every raw log-mel by ln(g^2); with level_weight w the features move by
    w ln(g^2) (log-mel: every band alike; MFCC: c0 only) and the spectral shape is unchanged."""
    x = (0.05 * rng.standard_normal(16000)).astype(np.float32)
    shift = np.log(10.0 ** 2)  # a 20 dB gain
    for w in (0.0, 0.25, 1.0):
        lm = FeatureConfig(level_weight=w)
        d = featurize(10 * x, lm).astype(np.float64) - featurize(x, lm)
        np.testing.assert_allclose(d, w * shift, atol=2e-4)
        raw = featurize(x, CFG).astype(np.float64)
        got = featurize(x, lm).astype(np.float64)
        np.testing.assert_allclose(got, raw - (1 - w) * raw.mean(1, keepdims=True), atol=2e-5)
        mf = dataclasses.replace(MFCC, level_weight=w)
        d = featurize(10 * x, mf).astype(np.float64) - featurize(x, mf)
        np.testing.assert_allclose(d[:, 0], w * shift * np.sqrt(MFCC.n_mels), atol=2e-3)
        np.testing.assert_allclose(d[:, 1:], 0.0, atol=2e-4)


def test_level_weight_streams_bit_identically_matches_torch_and_round_trips(rng):
    import torch

    x = (0.1 * rng.standard_normal(12345)).astype(np.float32)
    for cfg in (FeatureConfig(level_weight=0.3), dataclasses.replace(MFCC, level_weight=0.0)):
        ref = featurize(x, cfg)
        s = StreamingFeaturizer(cfg)
        cuts = np.sort(rng.choice(len(x), 7, replace=False))
        got = np.concatenate([s.push(c) for c in np.split(x, cuts)])
        assert np.array_equal(got, ref)
        t = featurize_torch(torch.from_numpy(x).double(), cfg).numpy()
        np.testing.assert_allclose(t, ref, atol=1e-4)
        d = json.loads(json.dumps(cfg.to_dict()))
        assert d["level_weight"] == cfg.level_weight and FeatureConfig.from_dict(d) == cfg
    assert "level_weight" not in CFG.to_dict() and FeatureConfig.from_dict(CFG.to_dict()) == CFG
    for bad in (-0.1, 1.5, float("nan"), "0.5", True):
        with pytest.raises(ValueError, match="level_weight"):
            FeatureConfig(level_weight=bad)


# --- real speech (optional corpus; skipped when absent) -------------------------------------------

def test_real_speech_numpy_torch_librosa_streaming(librosa):
    """Real recordings have bands 60-90 dB below the frame's strongest ones, where float32 round-off
    shows: numpy (float64 FFT) and torch float64 must still agree with librosa to 1e-4; torch float32
    is held to 1e-3 there (it meets 1e-4 on the synthetic signals above)."""
    from conftest import shared_data
    from kws.audio import load_audio

    torch = pytest.importorskip("torch")
    root = shared_data("speech_commands_v0.02_test")
    files = sorted(root.glob("*/*.flac"))[::400][:12] + sorted(root.glob("_background_noise_/*.flac"))[:2]
    assert files
    rng = np.random.default_rng(7)
    for f in files:
        x = load_audio(f)[: 16000 * 5]
        ours = featurize(x)
        np.testing.assert_allclose(ours, librosa_logmel(librosa, x), rtol=0, atol=REL, err_msg=str(f))
        t64 = featurize_torch(torch.from_numpy(x.astype(np.float64))).numpy()
        np.testing.assert_allclose(t64, ours, rtol=0, atol=REL, err_msg=str(f))
        t32 = featurize_torch(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(t32, ours, rtol=0, atol=1e-3, err_msg=str(f))
        sizes = rng.integers(1, 4000, size=x.size // 1000 + 10)
        got = stream(StreamingFeaturizer(), x, sizes)
        np.testing.assert_allclose(got, ours, rtol=0, atol=1e-5, err_msg=str(f))


# --- input gain control (FeatureConfig.agc_seconds) -----------------------------------------------

AGC = FeatureConfig(agc_seconds=1.0, log_floor=3e-4)


def quiet_room_then_speech(rng, lead: float = 0.8) -> np.ndarray:
    """Room noise at about -70 dBFS, then the speech-like chirp at about -17 dBFS over it."""
    n_lead = int(lead * 16000)
    speech = signals(rng)["speechlike"]
    room = (3e-4 * rng.standard_normal(n_lead + speech.size)).astype(np.float32)
    room[n_lead:] += speech
    return room


def gain_control_reference(x: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """The spec as a plain loop over frames on the mel energies of the featurizer without it."""
    c = agc_constants(cfg)
    plain = dataclasses.replace(cfg, agc_seconds=0.0, log_floor=1e-30)
    mel = np.exp(featurize(x, plain).astype(np.float64))
    noise, speech, weight, out = None, c["start_level"], c["prior_weight"], []
    for row, quiet in zip(mel, silent_frames(x, cfg)):
        if not quiet:
            level = np.log(row.sum()) - c["calibration"]
            noise = level if noise is None else min(level, noise + c["noise_rise"])
            w = float(np.clip((level - noise - c["speech_start"]) / c["speech_span"], 0, 1))
            weight += w
            speech += w * max(1 / weight, c["rate"]) * (level - speech)
        gain = np.clip(c["target"] - speech, c["gain_min"], c["gain_max"])
        out.append(np.log(row * np.exp(gain) + cfg.log_floor))
    return np.array(out)


def test_agc_is_the_gain_control_recursion(rng):
    """Noise floor, speech weight, speech level and gain as the module doc says; a zero lead and a
    gap of digital silence hold them."""
    x = quiet_room_then_speech(rng)
    x = np.concatenate([np.zeros(3000, np.float32), x[:20000], np.zeros(4000, np.float32), x[20000:]])
    np.testing.assert_allclose(featurize(x, AGC), gain_control_reference(x, AGC), rtol=0, atol=1e-4)
    c = agc_constants(AGC)
    assert c["target"] == pytest.approx(-30 * np.log(10) / 10) and c["rate"] == pytest.approx(AGC.agc_rate)


def test_agc_calibration_reads_white_noise_in_dbfs(rng):
    """A frame's level is its power in dBFS: white noise of RMS 0.01 (-40 dBFS) reads -40 dB."""
    c = agc_constants(AGC)
    x = (0.01 * rng.standard_normal(16000 * 4)).astype(np.float32)
    mel = np.exp(featurize(x, dataclasses.replace(CFG, log_floor=1e-30)).astype(np.float64))
    levels_db = (np.log(mel.sum(axis=1)) - c["calibration"]) * 10 / np.log(10)
    assert abs(np.mean(levels_db) + 40.0) < 0.5


def test_agc_takes_the_level_out_of_speech_and_never_amplifies_a_quiet_room(rng):
    """The same room and speech 30 dB quieter: once the speech has started, the features are the
    same (the floor follows the level; without the gain control they sit 6.9 lower, or on the
    floor). Before anyone speaks the gain is AGC_START_GAIN_DB (-20 dB): the room is featurized
    as it would be 20 dB quieter, not amplified."""
    x = quiet_room_then_speech(rng)
    lead = AGC.n_frames(int(0.8 * 16000)) - 2
    loud, quiet = featurize(x, AGC), featurize(x * np.float32(10 ** -1.5), AGC)
    speech = slice(lead + 20, None)
    assert np.median(np.abs(quiet[speech] - loud[speech])) < 0.01
    assert np.abs(quiet[speech] - loud[speech]).mean() < 0.05
    plain = dataclasses.replace(AGC, agc_seconds=0.0)
    assert np.abs(featurize(x * np.float32(10 ** -1.5), plain)[speech] - featurize(x, plain)[speech]).mean() > 2.0
    start = np.float32(10 ** (AGC.agc_start_gain_db / 20))
    np.testing.assert_allclose(loud[:lead], featurize(x * start, plain)[:lead], rtol=0, atol=1e-4)
    room_only = x[:int(0.8 * 16000)]
    np.testing.assert_allclose(featurize(room_only, AGC), featurize(room_only * start, plain), rtol=0, atol=1e-4)
    assert (featurize(room_only, plain) - featurize(room_only, AGC)).mean() > 0.2  # lower, nearer the floor


def test_agc_streams_bit_identically_and_matches_torch(rng):
    import torch

    x = np.concatenate([np.zeros(2000, np.float32), quiet_room_then_speech(rng) * np.float32(0.05)])
    x[25000:27000] = 0.0
    for cfg in (AGC, dataclasses.replace(MFCC, agc_seconds=0.3, mean_norm_seconds=0.5)):
        assert_stateful_features_agree(x, cfg, rng, 4000, 40)
    two = featurize_torch(torch.from_numpy(np.stack([x[:20000], x[3000:23000]])), AGC).numpy()
    np.testing.assert_allclose(two[1], featurize(x[3000:23000], AGC), rtol=0, atol=1e-3)


def test_agc_config_round_trip_and_old_dicts():
    """Off (the default) neither field is in to_dict, so bundles and datasets of before keep their
    config; on, they round-trip; bad values are refused."""
    d = CFG.to_dict()
    assert "agc_seconds" not in d and "agc_target_dbfs" not in d
    d = json.loads(json.dumps(AGC.to_dict()))
    assert d["agc_seconds"] == 1.0 and d["agc_target_dbfs"] == -30.0 and d["agc_start_gain_db"] == -20.0
    assert FeatureConfig.from_dict(d) == AGC and "agc_start_gain_db" not in CFG.to_dict()
    assert AGC.uses_history and not CFG.uses_history
    for bad in (-0.1, float("nan"), "1", True):
        with pytest.raises(ValueError, match="agc_seconds"):
            FeatureConfig(agc_seconds=bad)
    for bad in (5.0, -100.0, None):
        with pytest.raises(ValueError, match="agc_target_dbfs"):
            FeatureConfig(agc_seconds=1.0, agc_target_dbfs=bad)
    for bad in (-21.0, 51.0, "0"):
        with pytest.raises(ValueError, match="agc_start_gain_db"):
            FeatureConfig(agc_seconds=1.0, agc_start_gain_db=bad)
