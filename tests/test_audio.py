"""kws.audio: loading every supported container/rate/layout, the refusal of bad files (with the
file named in the message), resampling quality, the window rule and atomic WAV writing."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import soundfile as sf

from kws import audio
from kws.audio import fit_to_window, load_audio, resample, save_wav, to_float32
from kws.errors import AudioError, KwsError


def tone(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(sr * seconds))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float64)


def dominant_freq(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spec) * sr / x.size)


# --- loading good files ---------------------------------------------------------------------------

@pytest.mark.parametrize("fmt,subtype,ext", [
    ("WAV", "PCM_16", "wav"), ("WAV", "FLOAT", "wav"), ("FLAC", "PCM_16", "flac"), ("OGG", "VORBIS", "ogg"),
])
def test_load_formats_16k_mono(tmp_path, fmt, subtype, ext):
    x = tone(440, 16000, 0.5)
    p = tmp_path / f"a.{ext}"
    sf.write(p, x, 16000, format=fmt, subtype=subtype)
    y = load_audio(p)
    assert y.dtype == np.float32 and y.ndim == 1
    assert y.size == x.size
    if fmt == "OGG":  # lossy: compare the spectrum, not the samples
        assert abs(dominant_freq(y, 16000) - 440) < 5
        assert 0.4 < np.abs(y).max() < 0.6
    else:
        np.testing.assert_allclose(y, x, atol=1 / 32768 + 1e-7)


def test_int16_samples_are_scaled_to_unit_range(tmp_path):
    p = tmp_path / "full.wav"
    sf.write(p, np.array([-32768, 0, 16384, 32767] * 100, dtype=np.int16), 16000, subtype="PCM_16")
    y = load_audio(p)
    np.testing.assert_array_equal(y[:4], np.array([-1.0, 0.0, 0.5, 32767 / 32768], dtype=np.float32))


def test_stereo_is_mixed_to_mono(tmp_path):
    left, right = tone(300, 16000, 0.25, 0.4), tone(300, 16000, 0.25, -0.2)
    p = tmp_path / "st.wav"
    sf.write(p, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    y = load_audio(p)
    np.testing.assert_allclose(y, (left + right) / 2, atol=1e-6)


def test_multichannel_mixed_across_read_blocks(tmp_path, rng):
    # 3 channels, 20 s: longer than one internal read block (2**18 frames), so block mixing is used
    x = rng.uniform(-0.5, 0.5, size=(16000 * 20, 3))
    p = tmp_path / "three.flac"
    sf.write(p, x, 16000, format="FLAC", subtype="PCM_16")
    ref = sf.read(str(p), dtype="float64")[0].mean(axis=1)
    y = load_audio(p)
    assert y.shape == (16000 * 20,)
    np.testing.assert_allclose(y, ref, atol=1e-6)


@pytest.mark.parametrize("sr_in,subtype", [(8000, "PCM_16"), (44100, "FLOAT"), (22050, "PCM_16")])
def test_resampled_to_16k_keeps_pitch_and_length(tmp_path, sr_in, subtype):
    x = tone(1000, sr_in, 1.0)
    p = tmp_path / f"r{sr_in}.wav"
    sf.write(p, x, sr_in, subtype=subtype)
    y = load_audio(p)
    assert y.size == 16000
    assert abs(dominant_freq(y, 16000) - 1000) <= 2
    # polyphase (anti-aliased, not naive) keeps the amplitude in the interior of the clip
    np.testing.assert_allclose(np.abs(y[1000:-1000]).max(), 0.5, atol=0.01)


def test_load_to_other_rate_and_clip(tmp_path):
    p = tmp_path / "loud.wav"
    sf.write(p, tone(200, 16000, 0.2, amp=3.0), 16000, subtype="FLOAT")
    y = load_audio(p, sample_rate=8000)
    assert y.size == 1600
    assert np.abs(y).max() <= 1.0 and np.abs(y).max() == 1.0


def test_resample_is_antialiased():
    # 7 kHz at 44.1 kHz must vanish when going to 8 kHz (Nyquist 4 kHz); naive decimation would
    # alias it to 1 kHz at full amplitude.
    x = tone(7000, 44100, 1.0).astype(np.float32)
    y = resample(x, 44100, 8000)
    assert y.dtype == np.float32 and y.size == 8000
    assert np.sqrt(np.mean(y[500:-500] ** 2)) < 0.01 * np.sqrt(np.mean(x ** 2))
    z = resample(tone(1000, 44100, 1.0), 44100, 8000)
    assert np.sqrt(np.mean(z[500:-500] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_resample_identity_and_bad_rates():
    x = np.arange(10, dtype=np.float32)
    y = resample(x, 16000, 16000)
    np.testing.assert_array_equal(x, y)
    assert y is not x
    with pytest.raises(ValueError):
        resample(x, 0, 16000)
    with pytest.raises(ValueError):
        resample(x, 16000.5, 16000)


# --- refusing bad files ---------------------------------------------------------------------------

def assert_audio_error(path, match: str, **kw):
    with pytest.raises(AudioError) as ei:
        load_audio(path, **kw)
    msg = str(ei.value)
    assert str(path) in msg, msg
    assert match in msg, msg
    assert isinstance(ei.value, KwsError)
    return msg


def test_missing_file(tmp_path):
    assert_audio_error(tmp_path / "nope.wav", "no such audio file")


def test_folder_is_not_a_file(tmp_path):
    assert_audio_error(tmp_path, "is a folder")


def test_unreadable_permissions(tmp_path, monkeypatch):
    p = tmp_path / "locked.wav"
    sf.write(p, tone(440, 16000, 0.1), 16000)
    # (tests may run as root, which ignores chmod: simulate the denied access check)
    monkeypatch.setattr(audio.os, "access", lambda path, mode: False)
    assert "chmod" in assert_audio_error(p, "permission denied")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    assert_audio_error(p, "empty")


def test_zero_frame_wav(tmp_path):
    p = tmp_path / "zero.wav"
    sf.write(p, np.zeros(0, dtype=np.int16), 16000, subtype="PCM_16")
    assert p.stat().st_size > 0  # a valid header with no samples
    assert_audio_error(p, "no audio samples")


def test_text_renamed_wav(tmp_path):
    p = tmp_path / "notes.wav"
    p.write_text("this is not audio\n" * 20)
    msg = assert_audio_error(p, "not a readable audio file")
    assert "sox" in msg or "ffmpeg" in msg  # says how to fix it


def test_truncated_flac_body(tmp_path):
    p = tmp_path / "cut.flac"
    sf.write(p, tone(440, 16000, 2.0), 16000, format="FLAC")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    # libsndfile either refuses it or returns fewer samples; it must never crash with its own error
    try:
        y = load_audio(p)
    except AudioError as e:
        assert str(p) in str(e)
    else:
        assert y.dtype == np.float32 and 0 < y.size <= 32000


def test_nan_float_wav(tmp_path):
    p = tmp_path / "nan.wav"
    x = tone(440, 16000, 0.1)
    x[10] = np.nan
    sf.write(p, x, 16000, subtype="FLOAT")
    assert_audio_error(p, "NaN")


def write_sparse_long_wav(path, seconds: float, sr: int = 8000) -> None:
    """A genuine 8-bit WAV of `seconds` whose body is a sparse hole: huge by header and length,
    a few bytes on disk."""
    n = int(seconds * sr)
    header = (b"RIFF" + struct.pack("<I", 36 + n) + b"WAVE" + b"fmt " +
              struct.pack("<IHHIIHH", 16, 1, 1, sr, sr, 1, 8) + b"data" + struct.pack("<I", n))
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(len(header) + n)


def test_absurdly_long_file_refused_without_reading(tmp_path, monkeypatch):
    p = tmp_path / "day.wav"
    write_sparse_long_wav(p, audio.MAX_SECONDS + 600)
    assert sf.info(str(p)).duration > audio.MAX_SECONDS

    def no_read(*a, **k):
        raise AssertionError("load_audio read a file it should have refused from its header")

    monkeypatch.setattr(sf, "read", no_read)
    msg = assert_audio_error(p, "over the 4 h limit")
    assert "split" in msg


def test_max_seconds_parameter(tmp_path):
    p = tmp_path / "three.wav"
    sf.write(p, tone(440, 16000, 3.0), 16000)
    assert_audio_error(p, "limit", max_seconds=2.0)
    assert load_audio(p, max_seconds=3.0).size == 48000


# --- to_float32 -----------------------------------------------------------------------------------

def test_to_float32_int16_and_float():
    i = np.array([-32768, -16384, 0, 16384, 32767], dtype=np.int16)
    f = to_float32(i)
    assert f.dtype == np.float32
    np.testing.assert_array_equal(f, i.astype(np.float64) / 32768)
    d = np.array([0.25, -0.5], dtype=np.float64)
    np.testing.assert_array_equal(to_float32(d), d.astype(np.float32))
    assert to_float32(d).dtype == np.float32
    st = np.array([[16384, 0], [0, -16384]], dtype=np.int16)  # [n, channels] from a microphone
    np.testing.assert_array_equal(to_float32(st), [0.25, -0.25])
    np.testing.assert_array_equal(to_float32(np.array([[0.5], [0.25]], np.float32)), [0.5, 0.25])
    assert to_float32(np.zeros(0, np.int16)).shape == (0,)


def test_to_float32_rejects_bad_chunks():
    with pytest.raises(AudioError, match="dtype"):
        to_float32(np.array(["a", "b"]))
    with pytest.raises(AudioError, match="shape"):
        to_float32(np.zeros((2, 2, 2), np.float32))


# --- fit_to_window --------------------------------------------------------------------------------

def test_fit_short_clip_is_centred():
    x = np.ones(1001, dtype=np.float32)
    y = fit_to_window(x, 16000)
    assert y.shape == (16000,) and y.dtype == np.float32
    left = (16000 - 1001) // 2
    assert y[:left].sum() == 0 and y[left + 1001:].sum() == 0
    assert y[left:left + 1001].sum() == 1001


def test_fit_long_clip_keeps_loudest_second(rng):
    x = 0.01 * rng.standard_normal(48000).astype(np.float32)
    x[30000:38000] += 0.5  # a loud event in the third second
    y = fit_to_window(x, 16000)
    assert y.shape == (16000,)
    # the chosen window contains the whole event and lies on the 10 ms grid or at the end
    start = int(np.flatnonzero(np.isin(x, y[:1]))[0])
    np.testing.assert_array_equal(y, x[start:start + 16000])
    assert start <= 30000 and start + 16000 >= 38000
    assert start % 160 == 0 or start == 32000


def test_fit_long_clip_end_candidate_and_exact():
    x = np.zeros(16100, dtype=np.float32)
    x[-1] = 1.0  # only the stretch ending at the last sample holds the energy
    y = fit_to_window(x, 16000)
    assert y[-1] == 1.0
    z = np.arange(16000, dtype=np.float32)
    np.testing.assert_array_equal(fit_to_window(z, 16000), z)


def test_fit_end_aligned_trims_and_ends_before_tail(rng):
    x = np.zeros(12000, dtype=np.float32)
    x[3000:8000] = 0.3 * rng.standard_normal(5000).astype(np.float32)  # 0.31 s of sound in silence
    y = fit_to_window(x, 16000, align="end", tail_samples=1600)
    assert y.shape == (16000,) and y.dtype == np.float32
    nz = np.flatnonzero(y)
    # leading/trailing silence trimmed (10 ms grid): the sound ends exactly at 16000 - 1600
    assert nz[-1] == 14399 and y[14400:].sum() == 0
    np.testing.assert_array_equal(y[nz[0]:nz[-1] + 1], x[3000:8000])
    # a sound longer than the window minus the tail keeps its loudest stretch, still ending there
    long = 0.01 * rng.standard_normal(40000).astype(np.float32)
    long[20000:26000] += 0.5
    z = fit_to_window(long, 16000, align="end", tail_samples=4000)
    assert z[12000:].sum() == 0 and np.all(z[:12000] != 0)
    i = int(np.flatnonzero(long == z[0])[0])
    np.testing.assert_array_equal(z[:12000], long[i:i + 12000])
    assert i <= 20000 and i + 12000 >= 26000
    # the documented centring rule stays the default
    np.testing.assert_array_equal(fit_to_window(x, 16000), fit_to_window(x, 16000, align="center"))
    with pytest.raises(ValueError, match="align"):
        fit_to_window(x, 16000, align="left")
    with pytest.raises(ValueError, match="tail_samples"):
        fit_to_window(x, 16000, align="end", tail_samples=16000)


# --- save_wav -------------------------------------------------------------------------------------

def test_save_wav_roundtrip_and_atomic(tmp_path):
    x = np.round(tone(440, 16000, 0.3) * 32768) / 32768  # on the int16 grid
    p = tmp_path / "sub" / "out.wav"
    save_wav(p, x)
    info = sf.info(str(p))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    np.testing.assert_array_equal(load_audio(p), x.astype(np.float32))
    assert [q.name for q in p.parent.iterdir()] == ["out.wav"]  # no temp file left behind
    save_wav(p, np.array([2.0, -2.0, 0.0]))  # clipped, overwrites
    np.testing.assert_array_equal(sf.read(str(p), dtype="int16")[0], [32767, -32768, 0])


def test_save_wav_refuses_bad_input_and_keeps_old_file(tmp_path):
    p = tmp_path / "keep.wav"
    save_wav(p, np.zeros(10))
    before = p.read_bytes()
    with pytest.raises(AudioError, match="keep.wav"):
        save_wav(p, np.array([0.0, np.inf]))
    with pytest.raises(AudioError, match="mono"):
        save_wav(p, np.zeros((10, 2)))
    assert p.read_bytes() == before
