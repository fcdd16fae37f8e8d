"""Data augmentation for 1 s keyword clips: time shift, gain, speed and pitch perturbation,
background noise at a sampled SNR and simulated room reverberation.

Every random choice comes from a `numpy.random.Generator` passed in, so a clip rendered with
`default_rng([seed, index])` is identical whichever worker renders it. Room impulse responses are
simulated once (a small bank of pyroomacoustics ShoeBox rooms) and applied by FFT convolution:
simulating a room per clip would dominate the build time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

SAMPLE_RATE = 16000
NOISE_KINDS = ("white", "pink", "brown")
_EXPONENT = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power spectrum ~ 1 / f**exponent


# ---------------------------------------------------------------- single operations
def coloured_noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` samples of white, pink (1/f) or brown (1/f^2) noise, shaped in the frequency domain,
    scaled to unit RMS, float32."""
    if kind not in _EXPONENT:
        raise ValueError(f"noise kind must be one of {NOISE_KINDS}, got {kind!r}")
    if n <= 0:
        return np.zeros(0, dtype=np.float32)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1] if n > 1 else 1.0  # no infinite DC gain
    spec *= f ** (-_EXPONENT[kind] / 2.0)
    spec[0] = 0.0  # zero mean
    y = np.fft.irfft(spec, n)
    rms = np.sqrt(np.mean(y ** 2))
    return (y / rms if rms > 0 else y).astype(np.float32)


def shift(x: np.ndarray, samples: int) -> np.ndarray:
    """Move the audio by `samples` (positive = later), filling with zeros; same length."""
    y = np.zeros_like(x)
    if samples >= 0:
        y[samples:] = x[:x.size - samples] if samples < x.size else 0
    else:
        y[:samples] = x[-samples:]
    return y


def apply_gain(x: np.ndarray, db: float) -> np.ndarray:
    return (x * np.float32(10.0 ** (db / 20.0))).astype(np.float32)


def _ratio(factor: float, max_den: int = 200) -> tuple[int, int]:
    fr = Fraction(factor).limit_denominator(max_den)
    return fr.numerator, fr.denominator


def change_speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Play `factor` times faster (pitch and tempo together, like tape): length ~ len(x) / factor.
    Polyphase resampling with the ratio rounded to a fraction with denominator <= 200."""
    from scipy.signal import resample_poly

    if abs(factor - 1.0) < 1e-6:
        return x.astype(np.float32, copy=True)
    num, den = _ratio(factor)
    return resample_poly(x, den, num).astype(np.float32)


def time_stretch(x: np.ndarray, rate: float, frame: int = 512, tolerance: int = 128) -> np.ndarray:
    """Change the tempo by `rate` (>1 faster) keeping the pitch: WSOLA (waveform-similarity
    overlap-add), Hann frames of 32 ms at 50% overlap. Output length round(len(x) / rate)."""
    x = np.asarray(x, dtype=np.float32)
    n_out = int(round(x.size / rate))
    if abs(rate - 1.0) < 1e-6 or x.size == 0:
        return x.copy()
    hop = frame // 2
    win = np.hanning(frame + 1)[:-1].astype(np.float32)  # periodic: 50% overlaps sum to 1
    pad = frame + tolerance
    xp = np.concatenate([np.zeros(pad, np.float32), x, np.zeros(pad + frame + int(rate * hop) + 2, np.float32)])
    n_frames = n_out // hop + 2
    y = np.zeros(n_frames * hop + frame, dtype=np.float32)
    wsum = np.zeros_like(y)
    prev = pad  # analysis position of the previous frame (in xp)
    for k in range(n_frames):
        nominal = pad + int(round(k * hop * rate))
        if k == 0:
            pos = nominal
        else:
            # pick the analysis frame near `nominal` most similar to the natural continuation
            template = xp[prev + hop: prev + hop + frame]
            lo = max(nominal - tolerance, 0)
            region = xp[lo: nominal + tolerance + frame]
            if region.size < frame + 1 or not np.any(template):
                pos = nominal
            else:
                corr = np.correlate(region, template, mode="valid")
                pos = lo + int(np.argmax(corr))
        y[k * hop: k * hop + frame] += win * xp[pos: pos + frame]
        wsum[k * hop: k * hop + frame] += win
        prev = pos
    # the output is aligned so that output time 0 maps to input time 0 (both offset by `pad`)
    y = y / np.maximum(wsum, 1e-3)
    return y[:n_out].astype(np.float32)


def pitch_shift(x: np.ndarray, semitones: float) -> np.ndarray:
    """Shift the pitch by `semitones` keeping the duration: resample (pitch and tempo) then
    time-stretch back to the original length."""
    if abs(semitones) < 1e-6:
        return x.astype(np.float32, copy=True)
    f = 2.0 ** (semitones / 12.0)
    y = change_speed(x, f)  # higher and shorter
    y = time_stretch(y, y.size / max(x.size, 1))
    if y.size != x.size:  # rounding: +-1 sample
        y = np.pad(y, (0, max(0, x.size - y.size)))[:x.size]
    return y.astype(np.float32)


def _keep_level(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """`y` (float64, changed in place) scaled to the RMS level of `x`; a silent `y` stays as it is."""
    rms_in, rms_out = np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)), np.sqrt(np.mean(y ** 2))
    if rms_out > 0:
        y *= rms_in / rms_out
    return y


def _stft(x: np.ndarray, n_fft: int, hop: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Hann-windowed frames' rfft (frames x bins), the window, and the padded length."""
    win = np.hanning(n_fft + 1)[:-1]
    pad = n_fft
    xp = np.pad(np.asarray(x, dtype=np.float64), (pad, pad + hop))
    n_frames = 1 + (xp.size - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    return np.fft.rfft(xp[idx] * win, axis=1), win, xp.size


def _istft(spec: np.ndarray, win: np.ndarray, hop: int, length: int, n_out: int) -> np.ndarray:
    frames = np.fft.irfft(spec, n=win.size, axis=1) * win
    y = np.zeros(length)
    wsum = np.zeros(length)
    for k in range(frames.shape[0]):  # ~130 frames per second: the loop is not the cost
        y[k * hop: k * hop + win.size] += frames[k]
        wsum[k * hop: k * hop + win.size] += win ** 2
    y = y / np.maximum(wsum, 1e-8)
    pad = win.size
    return y[pad: pad + n_out]


def formant_shift(x: np.ndarray, ratio: float, n_fft: int = 512, hop: int = 128, lifter: int = 36) -> np.ndarray:
    """Move the spectral envelope (formants, i.e. vocal-tract length) by `ratio` keeping the pitch,
    the timing and the level: per STFT frame, the cepstrally smoothed log envelope is warped along
    frequency and the fine (harmonic) structure is kept. ratio > 1 sounds like a shorter vocal tract.
    A speaker transformation no TTS voice list gives for free; independent of `pitch_shift`."""
    x = np.asarray(x, dtype=np.float32)
    if abs(ratio - 1.0) < 1e-6 or x.size == 0:
        return x.copy()
    spec, win, length = _stft(x, n_fft, hop)
    log_mag = np.log(np.abs(spec) + 1e-9)
    cep = np.fft.irfft(log_mag, n=n_fft, axis=1)
    cep[:, lifter:n_fft - lifter + 1] = 0.0  # keep the low quefrencies: the envelope
    env = np.fft.rfft(cep, axis=1).real
    bins = np.arange(env.shape[1], dtype=np.float64)
    src = np.clip(bins / ratio, 0, env.shape[1] - 1)  # new envelope at f = old envelope at f / ratio
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, env.shape[1] - 1)
    frac = src - lo
    warped = env[:, lo] * (1 - frac) + env[:, hi] * frac
    y = _istft(spec * np.exp(warped - env), win, hop, length, x.size)
    return _keep_level(y, x).astype(np.float32)


def channel_response(n: int, rng: np.random.Generator, max_db: float = 8.0,
                     lowpass_hz: tuple[float, float] = (3400.0, 8000.0),
                     highpass_hz: tuple[float, float] = (50.0, 400.0)) -> np.ndarray:
    """A random microphone/loudspeaker magnitude response on `n // 2 + 1` rfft bins: a smooth EQ
    curve (+-max_db at 8 log-spaced frequencies, interpolated in log frequency) times a band limit
    (a 4th-order-like roll-off above a random low-pass and below a random high-pass corner)."""
    f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    knots = np.geomspace(60.0, 7900.0, 8)
    gains_db = rng.uniform(-max_db, max_db, knots.size)
    eq_db = np.interp(np.log(np.maximum(f, 1.0)), np.log(knots), gains_db)
    lp = float(rng.uniform(*lowpass_hz))
    hp = float(rng.uniform(*highpass_hz))
    band = 1.0 / np.sqrt(1.0 + (f / lp) ** 8) / np.sqrt(1.0 + (hp / np.maximum(f, 1e-3)) ** 4)
    return (10.0 ** (eq_db / 20.0) * band).astype(np.float64)


def apply_channel(x: np.ndarray, response: np.ndarray) -> np.ndarray:
    """Filter by a magnitude response (zero phase, FFT of the whole clip), keeping the RMS level."""
    x64 = np.asarray(x, dtype=np.float64)
    return _keep_level(np.fft.irfft(np.fft.rfft(x64) * response, n=x64.size), x64).astype(np.float32)


def mu_law_codec(x: np.ndarray, bits: int = 8, mu: float = 255.0) -> np.ndarray:
    """Round trip through a mu-law codec of `bits` bits (telephone-grade quantization noise)."""
    x = np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0)
    c = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    levels = 2 ** (bits - 1)
    c = np.round(c * levels) / levels
    return (np.sign(c) * np.expm1(np.abs(c) * np.log1p(mu)) / mu).astype(np.float32)


def hard_clip(x: np.ndarray, drive_db: float) -> np.ndarray:
    """Overdrive by `drive_db` into a +-1 hard clip, then bring the level back: an overloaded input."""
    g = 10.0 ** (drive_db / 20.0)
    return (np.clip(np.asarray(x, dtype=np.float32) * g, -1.0, 1.0) / g).astype(np.float32)


def frame_powers(x: np.ndarray, frame: int = 160) -> np.ndarray:
    """Mean power of each whole `frame`-sample frame of a clip (empty when it is shorter)."""
    x = np.asarray(x, dtype=np.float64)
    n = (x.size // frame) * frame
    return np.mean(x[:n].reshape(-1, frame) ** 2, axis=1) if n else np.zeros(0)


def active_power(x: np.ndarray, frame: int = 160, floor_db: float = -40.0) -> float:
    """Mean power of the active part of a clip: 10 ms frames within `floor_db` of the loudest
    frame. This is the signal power the SNR refers to, so silence padding around a word does not
    lower it."""
    e = frame_powers(x, frame)
    if e.size == 0:
        x = np.asarray(x, dtype=np.float64)
        return float(np.mean(x ** 2)) if x.size else 0.0
    if e.max() <= 0:
        return 0.0
    return float(e[e >= e.max() * 10.0 ** (floor_db / 10.0)].mean())


def active_level_dbfs(x: np.ndarray) -> float:
    """`active_power` in dB relative to full scale (a silent clip reads -120)."""
    return 10.0 * math.log10(max(active_power(x), 1e-12))


def speech_span(x: np.ndarray, frame: int = 160, below_peak_db: float = 30.0) -> tuple[int, int]:
    """(first, end) sample of the 10 ms frames within `below_peak_db` of the loudest: where the
    speech of a clip lies (its whole length when it is silent)."""
    size = np.asarray(x).size
    e = frame_powers(x, frame)
    if e.size == 0 or e.max() <= 0:
        return 0, size
    on = np.flatnonzero(e >= e.max() * 10.0 ** (-below_peak_db / 10.0))
    return int(on[0] * frame), int(min(size, (on[-1] + 1) * frame))


def cut_at_edges(x: np.ndarray, span: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Digital silence before and/or after a random point outside `span`: the window holds the end
    (or start) of a recording, as when a 1 s clip is padded or a file starts. Recorded negatives
    placed off-centre carry such an edge; given to every kind alike, it is no cue."""
    y = np.array(x, dtype=np.float32)
    start, end = span
    side = int(rng.integers(3))  # 0: before, 1: after, 2: both
    if side in (0, 2) and start > 0:
        y[:int(rng.integers(0, start + 1))] = 0.0
    if side in (1, 2) and end < y.size:
        y[int(rng.integers(end, y.size + 1)):] = 0.0
    return y


def mix_at_snr(x: np.ndarray, noise: np.ndarray, snr_db: float) -> tuple[np.ndarray, np.ndarray]:
    """Return (x + scaled noise, scaled noise) with 10 log10(active_power(x) / mean(noise^2)) =
    snr_db. `noise` must be as long as `x`. A silent `x` gets no noise (its SNR is undefined)."""
    p_sig = active_power(x)
    p_noise = float(np.mean(np.asarray(noise, dtype=np.float64) ** 2))
    if p_sig <= 0 or p_noise <= 0:
        scaled = np.zeros_like(x)
    else:
        scaled = (noise * math.sqrt(p_sig / (p_noise * 10.0 ** (snr_db / 10.0)))).astype(np.float32)
    return (x + scaled).astype(np.float32), scaled


def reverberate(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with a room impulse response, keep the input's length and timing (aligned on the
    direct path, the RIR's peak) and its RMS level, so reverb changes the sound, not the loudness."""
    from scipy.signal import fftconvolve

    d = int(np.argmax(np.abs(rir)))
    return _keep_level(fftconvolve(x.astype(np.float64), rir)[d: d + x.size], x).astype(np.float32)


def make_rir_bank(n: int = 24, seed: int = 0, sample_rate: int = SAMPLE_RATE,
                  rt60: tuple[float, float] = (0.15, 0.8), max_order: int = 40) -> list[np.ndarray]:
    """Simulate `n` room impulse responses (pyroomacoustics image method) in ShoeBox rooms of random
    size (3-10 x 3-8 x 2.4-4 m) and reverberation time, source and microphone at random places.
    The image order is capped at `max_order` to keep this well under a second for 24 rooms."""
    import pyroomacoustics as pra

    rng = np.random.default_rng([seed, 0x5151])
    bank = []
    for _ in range(n):
        dims = rng.uniform([3.0, 3.0, 2.4], [10.0, 8.0, 4.0])
        t60 = rng.uniform(*rt60)
        try:
            e_abs, order = pra.inverse_sabine(t60, dims)
        except ValueError:  # too reverberant for Sabine in a small room: use a fixed absorption
            e_abs, order = 0.3, max_order
        room = pra.ShoeBox(dims, fs=sample_rate, materials=pra.Material(float(e_abs)),
                           max_order=int(min(order, max_order)))
        room.add_source(rng.uniform(0.5, dims - 0.5))
        room.add_microphone(rng.uniform(0.5, dims - 0.5))
        room.compute_rir()
        rir = np.asarray(room.rir[0][0], dtype=np.float32)
        bank.append(rir / np.max(np.abs(rir)))
    return bank


# ---------------------------------------------------------------- the combined augmenter
@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of each augmentation, applied in this order: speaker (speed, pitch,
    formants), room (reverb), channel (microphone/loudspeaker EQ and band limit), shift, noise,
    gain, codec (mu-law), overload (hard clip), a peak limiter, then dither on every clip.

    The channel, codec, overload and dither steps exist so that nothing tells synthesized from
    recorded audio: they apply to positives and every negative alike. Dither matters on its own:
    zero-padded clips (Speech Commands, TTS) otherwise carry digital silence a model can key on."""
    p_speed: float = 0.5
    speed: tuple[float, float] = (0.9, 1.1)
    p_pitch: float = 0.3
    pitch_semitones: float = 2.0
    p_formant: float = 0.0
    formant_ratio: tuple[float, float] = (0.85, 1.18)
    p_reverb: float = 0.3
    p_channel: float = 0.0
    channel_db: float = 8.0
    p_shift: float = 0.8
    max_shift_seconds: float = 0.1
    p_noise: float = 0.8
    snr_db: tuple[float, float] = (5.0, 30.0)
    p_gain: float = 1.0
    gain_db: tuple[float, float] = (-10.0, 6.0)
    # absolute speech level (dBFS of the active part) instead of a relative gain: every kind and
    # source ends up with the same level distribution, so loudness tells nothing; None: use gain_db
    level_dbfs: tuple[float, float] | None = None
    p_codec: float = 0.0
    p_clip: float = 0.0
    clip_drive_db: tuple[float, float] = (3.0, 15.0)
    peak: float = 0.99
    dither_db: tuple[float, float] | None = None  # dither level range in dBFS (RMS); None: off
    # share of clips left CLEAN: no channel, noise, codec, overload or dither (speaker, room and
    # level still vary), for every kind alike. Without it digital silence never occurs in training
    # and a model may read "no noise floor" as "not the keyword" (BENCHMARKS.md "noise_floor")
    p_clean: float = 0.0
    # share of clips whose peak goes over full scale (a loud `level_dbfs`) that are hard-clipped
    # there, as an overloaded microphone input saturates, instead of scaled down by the limiter:
    # real wake-word recordings hold such clips (a third of the Mycroft "amelia" clips are louder
    # than -12 dBFS and clipped over thousands of samples), a limiter never makes one
    p_saturate: float = 0.0
    # dither at least this many dB below the clip's speech level (None: no limit), so a quiet
    # clip keeps its speech above the added floor as a quiet real recording does
    dither_headroom_db: float | None = None
    # share of clips whose speech level is drawn from `quiet_dbfs` instead of `level_dbfs` (drawn
    # only when > 0): quiet speech without thinning the usual levels out
    quiet_share: float = 0.0
    quiet_dbfs: tuple[float, float] = (-60.0, -42.0)

    @classmethod
    def none(cls) -> "AugmentConfig":
        """Everything off (useful to enable one operation at a time)."""
        return cls(p_speed=0, p_pitch=0, p_reverb=0, p_shift=0, p_noise=0, p_gain=0)

    @classmethod
    def realistic(cls) -> "AugmentConfig":
        """Speaker, room and channel variation for text-only training that must work on real
        voices (issue 7): formant shifts, more reverb, random microphone responses, codecs, overload
        and dither on every clip."""
        return cls(p_formant=0.6, p_reverb=0.5, p_channel=0.7, p_codec=0.1, p_clip=0.05,
                   level_dbfs=(-42.0, -12.0), dither_db=(-80.0, -55.0))

    @classmethod
    def wide(cls) -> "AugmentConfig":
        """`realistic` over the levels real recordings have: speech from -60 to -6 dBFS (the Mycroft
        wake-word clips' 5th to 95th percentiles span -70 to -7; realistic stops at -42 and -12),
        loud clips saturating at full scale (never scaled down), dither kept 20 dB under the speech."""
        from dataclasses import replace

        return replace(cls.realistic(), level_dbfs=(-60.0, -6.0), p_saturate=1.0, dither_headroom_db=20.0)

    @classmethod
    def quiet(cls) -> "AugmentConfig":
        """`realistic` reaching down to quiet speech only: -60 to -12 dBFS, dither kept 20 dB under
        the speech. A quarter of the real Mycroft "athena" clips are quieter than -42 dBFS, where a
        realistic-trained model finds 38% of them (BENCHMARKS.md text_only_levels)."""
        from dataclasses import replace

        return replace(cls.realistic(), level_dbfs=(-60.0, -12.0), dither_headroom_db=20.0)

    @classmethod
    def quiet_tail(cls) -> "AugmentConfig":
        """`realistic` with a quarter of the clips at quiet levels (-60 to -42 dBFS), the rest at
        realistic's -42 to -12 (`quiet` spreads every clip over 48 dB instead of 30)."""
        from dataclasses import replace

        return replace(cls.realistic(), quiet_share=0.25, dither_headroom_db=20.0)


@dataclass
class Augmenter:
    """`apply(x, rng)` returns an augmented copy of `x` of the same length.

    `noise`: background recordings to mix in (any lengths; a random stretch of one is used); when
    empty, white/pink/brown noise is generated. `rirs`: a room impulse response bank (default: made
    by `make_rir_bank(seed=seed)` on first use)."""
    noise: list[np.ndarray] = field(default_factory=list)
    seed: int = 0
    config: AugmentConfig = field(default_factory=AugmentConfig)
    rirs: list[np.ndarray] | None = None

    def rir_bank(self) -> list[np.ndarray]:
        if self.rirs is None:
            self.rirs = make_rir_bank(seed=self.seed)
        return self.rirs

    def noise_segment(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """`n` samples of background noise: a random stretch of a random given clip (tiled when
        shorter), or generated coloured noise."""
        usable = [c for c in self.noise if c.size > 0 and np.any(c)]
        if not usable:
            return coloured_noise(NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))], n, rng)
        clip = usable[int(rng.integers(len(usable)))]
        if clip.size < n:
            clip = np.tile(clip, n // clip.size + 1)
        start = int(rng.integers(0, clip.size - n + 1))
        return clip[start:start + n].astype(np.float32)

    def apply(self, x: np.ndarray, rng: np.random.Generator, place=None) -> np.ndarray:
        """`place(y) -> n samples`: how a clip whose length speed/pitch/reverb changed is put back
        into the window (default `fit_to_window(y, n)`, centring; the builder passes its end
        alignment so the word keeps its place)."""
        from kws.audio import fit_to_window

        c = self.config
        x = np.asarray(x, dtype=np.float32)
        n = x.size
        y = x
        if rng.random() < c.p_speed:
            y = change_speed(y, float(rng.uniform(*c.speed)))
        if rng.random() < c.p_pitch:
            y = pitch_shift(y, float(rng.uniform(-c.pitch_semitones, c.pitch_semitones)))
        if c.p_formant and rng.random() < c.p_formant:
            y = formant_shift(y, float(np.exp(rng.uniform(*np.log(c.formant_ratio)))))
        if rng.random() < c.p_reverb:
            bank = self.rir_bank()
            y = reverberate(y, bank[int(rng.integers(len(bank)))])
        if y.size != n:
            y = fit_to_window(y, n) if place is None else place(y)
        # drawn only when enabled, so every other clip's random draws stay as they were
        clean = bool(c.p_clean) and rng.random() < c.p_clean
        if c.p_channel and not clean and rng.random() < c.p_channel:
            y = apply_channel(y, channel_response(n, rng, c.channel_db))
        if rng.random() < c.p_shift:
            m = int(c.max_shift_seconds * SAMPLE_RATE)
            y = shift(y, int(rng.integers(-m, m + 1)))
        if not clean and rng.random() < c.p_noise:
            y, _ = mix_at_snr(y, self.noise_segment(n, rng), float(rng.uniform(*c.snr_db)))
        speech_db = None
        if c.level_dbfs is not None:
            level = active_level_dbfs(y)
            if level > -100.0:  # a silent clip stays silent
                quiet = bool(c.quiet_share) and rng.random() < c.quiet_share
                speech_db = float(rng.uniform(*(c.quiet_dbfs if quiet else c.level_dbfs)))
                y = apply_gain(y, speech_db - level)
        elif rng.random() < c.p_gain:
            y = apply_gain(y, float(rng.uniform(*c.gain_db)))
        if c.p_codec and not clean and rng.random() < c.p_codec:
            y = mu_law_codec(y)
        if c.p_clip and not clean and rng.random() < c.p_clip:
            y = hard_clip(y, float(rng.uniform(*c.clip_drive_db)))
        peak = float(np.max(np.abs(y))) if n else 0.0
        if peak > c.peak:
            # drawn only when enabled, as above
            if c.p_saturate and rng.random() < c.p_saturate:
                y = np.clip(y, -c.peak, c.peak)
            else:  # scale the whole clip down rather than clip: keeps the SNR and spectrum
                y = y * np.float32(c.peak / peak)
        if c.dither_db is not None and not clean:
            dither_db = float(rng.uniform(*c.dither_db))
            if c.dither_headroom_db is not None and speech_db is not None:
                dither_db = min(dither_db, speech_db - c.dither_headroom_db)
            y = y + (rng.standard_normal(n) * 10.0 ** (dither_db / 20.0)).astype(np.float32)
        return np.ascontiguousarray(y, dtype=np.float32)
