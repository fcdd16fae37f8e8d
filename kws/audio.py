"""Audio I/O: load any WAV/FLAC/OGG as 16 kHz mono float32, resample, fit clips to the model window,
and write 16-bit WAVs atomically.

Every problem with an input file is reported as a `kws.errors.AudioError` that names the file,
says what is wrong and how to fix it; nothing here lets a soundfile/libsndfile traceback escape.

Clips versus the model window (the documented rule, see `fit_to_window`):
  - shorter than the window: zero-pad on both sides so the clip sits in the centre;
  - longer than the window: keep the window-long stretch with the most energy, searched on a
    10 ms grid (ties go to the earliest stretch).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from kws.errors import AudioError
from kws.util import atomic_path

SAMPLE_RATE = 16000
MAX_SECONDS = 4 * 3600  # longer inputs are refused as "absurdly long" before any sample is read

_CONVERT_HINT = ("convert it to a 16-bit WAV, e.g. `sox INPUT out.wav` or "
                 "`ffmpeg -i INPUT -ac 1 -ar 16000 out.wav`")


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE,
               max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """Read a WAV/FLAC/OGG (anything libsndfile reads) as mono float32 in [-1, 1] at `sample_rate`.

    Channels are averaged; other rates go through a polyphase resampler. The length is checked
    from the file header before reading, so a file longer than `max_seconds` is refused without
    being loaded. Raises `AudioError` (naming the file) for a missing, empty, unreadable,
    non-audio or too long file.
    """
    import soundfile as sf

    p = Path(path)
    if not p.exists():
        raise AudioError(f"{p}: no such audio file; check the path (and that the file was not moved).")
    if p.is_dir():
        raise AudioError(f"{p}: is a folder, not an audio file; pass a WAV/FLAC/OGG file inside it.")
    try:
        size = p.stat().st_size
    except OSError as e:
        raise AudioError(f"{p}: cannot be read ({e.strerror}); check its permissions.") from None
    if not os.access(p, os.R_OK):
        raise AudioError(f"{p}: permission denied; make the file readable (e.g. `chmod a+r {p}`).")
    if size == 0:
        raise AudioError(f"{p}: the file is empty (0 bytes); re-record or re-export it.")
    try:
        info = sf.info(str(p))
    except Exception as e:  # libsndfile says "Format not recognised", "Error opening", ...
        raise AudioError(f"{p}: not a readable audio file ({_short(e)}); {_CONVERT_HINT.replace('INPUT', str(p))}.") from None
    if info.frames <= 0 or info.samplerate <= 0 or info.channels <= 0:
        raise AudioError(f"{p}: holds no audio samples (zero-length {info.format} file); "
                         "re-record or re-export it.")
    seconds = info.frames / info.samplerate
    if seconds > max_seconds:
        raise AudioError(f"{p}: is {seconds / 3600:.1f} h long, over the {max_seconds / 3600:g} h limit "
                         f"({max_seconds:g} s); split it into shorter files, e.g. "
                         f"`sox {p} part.wav trim 0 3600 : newfile : restart`.")
    try:
        x, sr = _read_mono(sf, p, info.channels, info.frames)
    except Exception as e:  # a valid header followed by a truncated or corrupt body
        raise AudioError(f"{p}: the audio data is corrupt or truncated ({_short(e)}); "
                         f"{_CONVERT_HINT.replace('INPUT', str(p))}, or re-export it.") from None
    if x.shape[0] == 0:
        raise AudioError(f"{p}: holds no audio samples; re-record or re-export it.")
    if not np.isfinite(x).all():
        raise AudioError(f"{p}: contains NaN or infinite samples (a broken float file); re-export it.")
    if sr != sample_rate:
        x = resample(x, sr, sample_rate)
    # Float files may exceed full scale and resampling can overshoot slightly: clip to the
    # contract's range rather than hand the featurizer out-of-range samples.
    return np.clip(x, -1.0, 1.0, out=np.ascontiguousarray(x, dtype=np.float32))


def _read_mono(sf, p: Path, channels: int, frames: int) -> tuple[np.ndarray, int]:
    """Read as mono float32. Multichannel files are mixed block by block, so the peak memory is
    the mono result, not all channels at once (a 4 h stereo 48 kHz file would be 5.5 GB)."""
    if channels == 1:
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)
        return data[:, 0], sr
    with sf.SoundFile(str(p)) as f:
        out = np.empty(frames, dtype=np.float32)
        pos = 0
        for block in f.blocks(blocksize=1 << 18, dtype="float32", always_2d=True):
            n = block.shape[0]
            if pos + n > out.shape[0]:  # the header under-counted: grow rather than fail
                out = np.concatenate((out[:pos], np.empty(max(n, pos), dtype=np.float32)))
            np.mean(block, axis=1, dtype=np.float32, out=out[pos:pos + n])
            pos += n
        return out[:pos], f.samplerate


def _short(e: Exception) -> str:
    msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
    return msg[:200]


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling (scipy.signal.resample_poly, Kaiser-windowed FIR) to float32.

    Output length is ceil(len(x) * sr_out / sr_in)."""
    from scipy.signal import resample_poly

    if int(sr_in) != sr_in or int(sr_out) != sr_out or sr_in <= 0 or sr_out <= 0:
        raise ValueError(f"sample rates must be positive integers, got {sr_in} -> {sr_out}")
    x = np.asarray(x, dtype=np.float32)
    if sr_in == sr_out or x.size == 0:
        return x.copy()
    g = math.gcd(int(sr_in), int(sr_out))
    y = resample_poly(x, int(sr_out) // g, int(sr_in) // g, axis=0)
    return np.ascontiguousarray(y, dtype=np.float32)


def to_float32(chunk: np.ndarray) -> np.ndarray:
    """Convert an audio chunk to float32: int16 is scaled by 1/32768 (int32 by 1/2**31, uint8 is
    offset-binary), float is cast. A [n, channels] chunk (as microphones deliver) is averaged to
    mono. Raises `AudioError` for other dtypes or shapes."""
    a = np.asarray(chunk)
    if a.ndim not in (1, 2):
        raise AudioError(f"audio chunk must be 1-D samples or [n, channels], got shape {a.shape}")
    if a.dtype == np.int16:
        f = a.astype(np.float32) * np.float32(1.0 / 32768.0)
    elif a.dtype == np.int32:
        f = (a.astype(np.float64) * (1.0 / 2 ** 31)).astype(np.float32)
    elif a.dtype == np.uint8:
        f = (a.astype(np.float32) - 128.0) * np.float32(1.0 / 128.0)
    elif np.issubdtype(a.dtype, np.floating):
        f = a.astype(np.float32, copy=False)
    else:
        raise AudioError(f"audio chunk has unsupported dtype {a.dtype}; pass int16 PCM or float samples in [-1, 1]")
    if f.ndim == 2:  # scale first, then mix, so integer channels are not averaged as integers
        f = f[:, 0] if f.shape[1] == 1 else f.mean(axis=1, dtype=np.float32)
    return f


def trim_silence(x: np.ndarray, top_db: float = 40.0, frame: int = SAMPLE_RATE // 100) -> np.ndarray:
    """The stretch from the first to the last 10 ms frame whose mean power is within `top_db` of the
    loudest frame (leading/trailing near-silence removed); an all-zero clip is returned unchanged."""
    x = np.asarray(x, dtype=np.float32)
    n = x.shape[0] // frame
    if n == 0:
        return x.copy()
    p = np.mean(np.square(x[:n * frame].reshape(n, frame), dtype=np.float64), axis=1)
    if p.max() <= 0:
        return x.copy()
    on = np.flatnonzero(p >= p.max() * 10.0 ** (-top_db / 10.0))
    return x[on[0] * frame:min(x.shape[0], (on[-1] + 1) * frame)].copy()


def fit_to_window(x: np.ndarray, n_samples: int = SAMPLE_RATE, align: str = "center",
                  tail_samples: int = 0) -> np.ndarray:
    """Make a clip exactly `n_samples` long (the documented rule for clips vs the model window).

    align="center" (the documented default rule): shorter: zero-pad symmetrically so the clip is
    centred (the odd extra zero goes at the end). Longer: keep the `n_samples` stretch with the
    largest energy sum(x**2), candidates every 10 ms (160 samples) plus the stretch ending at the
    last sample; ties go to the earliest.

    align="end": trim leading/trailing near-silence (`trim_silence`), keep the loudest
    `n_samples - tail_samples` stretch if still longer (same rule as above), and place the sound so it
    ends `tail_samples` before the window end (zeros before and after). The streaming detector
    scores a window every 100 ms, so a window ending just after the word is always among those
    scored; a recurrent model reads its last state, which then still remembers the word.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected 1-D audio, got shape {x.shape}")
    if align == "end":
        if not 0 <= tail_samples < n_samples:
            raise ValueError(f"tail_samples must be in [0, {n_samples}), got {tail_samples}")
        body = n_samples - int(tail_samples)
        y = trim_silence(x)
        if y.shape[0] > body:
            y = fit_to_window(y, body)
        out = np.zeros(n_samples, dtype=np.float32)
        out[body - y.shape[0]:body] = y
        return out
    if align != "center":
        raise ValueError(f"align must be 'center' or 'end', got {align!r}")
    n = x.shape[0]
    if n == n_samples:
        return x.copy()
    if n < n_samples:
        left = (n_samples - n) // 2
        out = np.zeros(n_samples, dtype=np.float32)
        out[left:left + n] = x
        return out
    hop = SAMPLE_RATE // 100
    starts = np.arange(0, n - n_samples + 1, hop)
    if starts[-1] != n - n_samples:
        starts = np.append(starts, n - n_samples)
    # float64 cumulative energy keeps the window sums exact enough to compare for long clips
    c = np.concatenate(([0.0], np.cumsum(np.square(x, dtype=np.float64))))
    energy = c[starts + n_samples] - c[starts]
    s = int(starts[int(np.argmax(energy))])
    return x[s:s + n_samples].copy()


def save_wav(path: str | os.PathLike, x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write mono 16-bit PCM WAV atomically (temp file + rename). Samples are clipped to [-1, 1]
    and scaled by 32768 (the inverse of `to_float32`), so int16-grid audio round-trips exactly."""
    import soundfile as sf

    p = Path(path)
    a = np.asarray(x)
    if a.ndim != 1:
        raise AudioError(f"{p}: can only write mono audio (1-D samples), got shape {a.shape}")
    if a.dtype != np.int16:
        a = a.astype(np.float64)
        if not np.isfinite(a).all():
            raise AudioError(f"{p}: refusing to write audio containing NaN or infinite samples")
        a = np.clip(np.round(a * 32768.0), -32768, 32767).astype(np.int16)
    with atomic_path(p) as tmp:
        # the temp name has no .wav suffix, so the format is given explicitly
        sf.write(str(tmp), a, int(sample_rate), subtype="PCM_16", format="WAV")
