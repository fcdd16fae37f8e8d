"""Augmentation: lengths, seeded determinism, achieved SNR, gain range, pitch/tempo actually change
what they claim, reverb changes the sound but keeps the level, coloured noise has the right slope."""

from __future__ import annotations

import numpy as np
import pytest

from kws.data.augment import (AugmentConfig, Augmenter, active_power, apply_channel, apply_gain, change_speed,
                              channel_response, coloured_noise, formant_shift, hard_clip, make_rir_bank, mix_at_snr,
                              mu_law_codec, pitch_shift, reverberate, shift, time_stretch)

SR = 16000


@pytest.fixture(scope="module")
def rirs():
    return make_rir_bank(n=4, seed=7)


def tone(freq: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_freq(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / SR)[np.argmax(spec)])


def windowed(speechlike: np.ndarray) -> np.ndarray:
    out = np.zeros(SR, np.float32)  # a word centred in silence, like a fitted TTS clip
    out[2000:2000 + 12000] = speechlike[:12000]
    return out


def test_apply_keeps_length_and_is_seeded(speechlike, rirs):
    x = windowed(speechlike)
    aug = Augmenter(seed=1, rirs=rirs)
    outs = [aug.apply(x, np.random.default_rng([5, i])) for i in range(12)]
    again = [aug.apply(x, np.random.default_rng([5, i])) for i in range(12)]
    for a, b in zip(outs, again):
        assert a.shape == x.shape and a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
        assert np.max(np.abs(a)) <= 0.99 + 1e-6
    # different seeds give different clips, and the clip is actually changed
    assert not np.allclose(outs[0], outs[1])
    assert all(not np.allclose(o, x) for o in outs)
    # other input lengths are kept too
    assert aug.apply(speechlike, np.random.default_rng(0)).shape == speechlike.shape


def test_mix_at_snr_is_within_half_db(speechlike, rng):
    x = windowed(speechlike)
    for snr in (0.0, 5.0, 17.5, 30.0):
        for kind in ("white", "pink", "brown"):
            y, n = mix_at_snr(x, coloured_noise(kind, x.size, rng), snr)
            np.testing.assert_allclose(y - x, n, atol=1e-6)
            achieved = 10 * np.log10(active_power(x) / np.mean(n.astype(np.float64) ** 2))
            assert abs(achieved - snr) < 0.5


def test_augmenter_noise_snr_range_from_given_clips(speechlike):
    x = windowed(speechlike)
    noise_clip = coloured_noise("pink", 3 * SR, np.random.default_rng(2))
    cfg = AugmentConfig.none()
    cfg = AugmentConfig(**{**cfg.__dict__, "p_noise": 1.0, "snr_db": (10.0, 20.0), "peak": 10.0})
    aug = Augmenter(noise=[noise_clip], seed=0, config=cfg)
    for i in range(10):
        y = aug.apply(x, np.random.default_rng(i))
        snr = 10 * np.log10(active_power(x) / np.mean((y - x).astype(np.float64) ** 2))
        assert 10.0 - 0.5 <= snr <= 20.0 + 0.5


def test_gain_within_range(speechlike):
    x = 0.05 * windowed(speechlike)  # quiet enough that the limiter never engages
    cfg = AugmentConfig(**{**AugmentConfig.none().__dict__, "p_gain": 1.0, "gain_db": (-6.0, 3.0)})
    aug = Augmenter(seed=0, config=cfg)
    gains = []
    for i in range(30):
        y = aug.apply(x, np.random.default_rng(i))
        g = 20 * np.log10(np.linalg.norm(y) / np.linalg.norm(x))
        assert -6.0 - 1e-3 <= g <= 3.0 + 1e-3
        np.testing.assert_allclose(y, apply_gain(x, g), atol=1e-6)
        gains.append(g)
    assert max(gains) - min(gains) > 4.0  # actually sampled over the range


def test_limiter_keeps_peak(speechlike):
    y = Augmenter(seed=0, config=AugmentConfig(**{**AugmentConfig.none().__dict__, "p_gain": 1.0,
                                                   "gain_db": (20.0, 20.0)})).apply(windowed(speechlike),
                                                                                   np.random.default_rng(0))
    assert abs(np.max(np.abs(y)) - 0.99) < 1e-5


def test_shift_moves_with_zero_fill():
    x = np.arange(1, 11, dtype=np.float32)
    np.testing.assert_array_equal(shift(x, 3), [0, 0, 0, 1, 2, 3, 4, 5, 6, 7])
    np.testing.assert_array_equal(shift(x, -2), [3, 4, 5, 6, 7, 8, 9, 10, 0, 0])


def test_speed_pitch_and_stretch_change_what_they_claim():
    x = tone(440.0)
    fast = change_speed(x, 1.1)
    assert abs(fast.size - SR / 1.1) <= 2 and abs(peak_freq(fast) - 484.0) < 6
    for rate in (0.8, 1.25):
        y = time_stretch(x, rate)
        assert y.size == round(SR / rate) and abs(peak_freq(y) - 440.0) < 3
    up = pitch_shift(x, 2.0)
    assert up.size == x.size and abs(peak_freq(up) - 440.0 * 2 ** (2 / 12)) < 4
    assert abs(peak_freq(pitch_shift(x, -3.0)) - 440.0 * 2 ** (-3 / 12)) < 4


def test_reverb_changes_signal_keeps_energy(speechlike, rirs):
    x = windowed(speechlike)
    assert len(rirs) == 4 and all(r.ndim == 1 and r.size > 1000 for r in rirs)
    for rir in rirs:
        y = reverberate(x, rir)
        assert y.shape == x.shape
        ratio = np.sum(y.astype(np.float64) ** 2) / np.sum(x.astype(np.float64) ** 2)
        assert abs(ratio - 1.0) < 1e-3
        corr = np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y))
        assert corr < 0.99  # changed
        # aligned on the direct path: for white input the correlation with the dry signal is the
        # direct path's share of the RIR's amplitude
        w = np.random.default_rng(0).standard_normal(SR).astype(np.float32)
        yw = reverberate(w, rir)
        cw = np.dot(w, yw) / (np.linalg.norm(w) * np.linalg.norm(yw))
        assert abs(cw - np.max(np.abs(rir)) / np.linalg.norm(rir)) < 0.05
        # the tail rings on into the silence after the word
        assert np.sum(y[14500:] ** 2) > 10 * np.sum(x[14500:] ** 2) + 1e-9
    again = make_rir_bank(n=4, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(rirs, again))


@pytest.mark.parametrize("kind,slope", [("white", 0.0), ("pink", -1.0), ("brown", -2.0)])
def test_coloured_noise_spectrum_slope(kind, slope, rng):
    n = coloured_noise(kind, 1 << 16, rng)
    assert n.dtype == np.float32 and abs(np.sqrt(np.mean(n.astype(np.float64) ** 2)) - 1.0) < 1e-4
    p = np.abs(np.fft.rfft(n)) ** 2
    f = np.fft.rfftfreq(n.size, 1 / SR)
    band = (f > 100) & (f < 6000)
    fit = np.polyfit(np.log10(f[band]), np.log10(p[band] + 1e-30), 1)[0]
    assert abs(fit - slope) < 0.15
    with pytest.raises(ValueError):
        coloured_noise("purple", 10, rng)


def test_noise_segment_uses_given_clips_or_generates(rng):
    clip = np.linspace(-0.5, 0.5, 4000, dtype=np.float32)
    aug = Augmenter(noise=[clip], seed=0)
    seg = aug.noise_segment(16000, rng)  # shorter clip is tiled
    assert seg.size == 16000 and set(np.round(seg, 5)) <= set(np.round(clip, 5))
    gen = Augmenter(noise=[], seed=0).noise_segment(16000, rng)
    assert gen.size == 16000 and abs(gen.std() - 1.0) < 0.05


def test_place_puts_a_length_changed_clip_back_end_aligned(rng):
    from kws.audio import fit_to_window

    x = np.zeros(16000, dtype=np.float32)
    x[9000:14000] = 0.3 * rng.standard_normal(5000).astype(np.float32)  # ends 0.125 s before the end
    cfg = AugmentConfig.none()
    slow = Augmenter(seed=0, config=AugmentConfig(**{**cfg.__dict__, "p_speed": 1.0, "speed": (0.9, 0.9)}))

    def place(y):
        return fit_to_window(y, 16000, align="end", tail_samples=2000)

    y = slow.apply(x, np.random.default_rng(1), place=place)
    assert y.shape == (16000,)
    nz = np.flatnonzero(np.abs(y) > 1e-3)
    # slowed to ~5555 samples of sound, still ending within 10 ms of 16000 - 2000
    assert 13840 <= nz[-1] < 14000 and 5200 < nz[-1] - nz[0] < 5700
    # without `place` the default centring rule applies
    c = slow.apply(x, np.random.default_rng(1))
    assert np.flatnonzero(np.abs(c) > 1e-3)[-1] > 14500


def harmonic_vowel(f0: float = 140.0, formant: float = 900.0, seconds: float = 1.0) -> np.ndarray:
    """Harmonics of f0 under one resonance at `formant` Hz: a crude vowel."""
    t = np.arange(int(seconds * SR)) / SR
    x = np.zeros_like(t)
    for k in range(1, int(7000 / f0)):
        x += np.sin(2 * np.pi * k * f0 * t) / (1.0 + ((k * f0 - formant) / 300.0) ** 2)
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


def envelope_peak(x: np.ndarray) -> float:
    """Frequency of the strongest smoothed spectral region (the formant, not a harmonic)."""
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    smooth = np.convolve(spec, np.ones(301) / 301, mode="same")
    return float(np.fft.rfftfreq(x.size, 1 / SR)[np.argmax(smooth)])


def test_formant_shift_moves_the_envelope_not_the_pitch():
    x = harmonic_vowel()
    for ratio in (0.85, 1.2):
        y = formant_shift(x, ratio)
        assert y.shape == x.shape and y.dtype == np.float32
        assert abs(envelope_peak(y) / envelope_peak(x) - ratio) < 0.08, (ratio, envelope_peak(y))
        # harmonics stay where they were: the fundamental is unchanged
        spec = np.abs(np.fft.rfft(y[2000:14000] * np.hanning(12000)))
        f = np.fft.rfftfreq(12000, 1 / SR)
        low = (f > 100) & (f < 200)
        assert abs(f[low][np.argmax(spec[low])] - 140.0) < 3.0
        np.testing.assert_allclose(np.sqrt(np.mean(y.astype(np.float64) ** 2)),
                                   np.sqrt(np.mean(x.astype(np.float64) ** 2)), rtol=1e-4)
    np.testing.assert_array_equal(formant_shift(x, 1.0), x)


def test_channel_response_band_limits_and_keeps_level(rng):
    x = coloured_noise("white", SR, rng) * np.float32(0.1)
    h = channel_response(SR, np.random.default_rng(3), lowpass_hz=(4000.0, 4000.0), highpass_hz=(300.0, 300.0))
    y = apply_channel(x, h)
    f = np.fft.rfftfreq(SR, 1 / SR)
    p = np.abs(np.fft.rfft(y.astype(np.float64))) ** 2
    band = p[(f > 500) & (f < 3000)].mean()
    assert p[f > 6000].mean() < band / 100 and p[(f > 20) & (f < 100)].mean() < band / 100
    np.testing.assert_allclose(np.sqrt(np.mean(y.astype(np.float64) ** 2)), 0.1, rtol=1e-3)


def test_codec_and_clip_are_audible_but_bounded(speechlike):
    x = windowed(speechlike)
    y = mu_law_codec(x)
    err = y - x
    assert 0 < np.sqrt(np.mean(err ** 2)) < 0.05 * np.sqrt(np.mean(x ** 2)) + 1e-3  # 8-bit mu-law: ~38 dB SNR
    z = hard_clip(x, 12.0)
    assert np.max(np.abs(z)) <= 10 ** (-12 / 20) + 1e-6 and not np.allclose(z, x)


def test_realistic_recipe_dithers_every_clip_and_is_seeded(speechlike, rirs):
    x = np.zeros(SR, np.float32)  # digital silence: the cue dither must remove
    x[4000:12000] = speechlike[:8000]
    aug = Augmenter(seed=0, rirs=rirs, config=AugmentConfig.realistic())
    outs = [aug.apply(x, np.random.default_rng([1, i])) for i in range(8)]
    levels = [10 * np.log10(active_power(y)) for y in outs]
    assert all(-43 < v < -11 for v in levels) and np.std(levels) > 2  # absolute level, spread
    for i, y in enumerate(outs):
        assert y.shape == x.shape and np.all(y[:200] != 0) and np.all(y[-200:] != 0)
        np.testing.assert_array_equal(y, aug.apply(x, np.random.default_rng([1, i])))
    # the standard recipe draws the same random numbers as before the realistic fields existed
    std = Augmenter(seed=0, rirs=rirs)
    assert AugmentConfig().p_formant == 0 and AugmentConfig().dither_db is None
    assert np.array_equal(std.apply(x, np.random.default_rng(9)), std.apply(x, np.random.default_rng(9)))


def test_clean_share_leaves_digital_silence_for_some_clips_of_every_kind(speechlike, rirs):
    from dataclasses import replace

    x = np.zeros(SR, np.float32)
    x[4000:12000] = speechlike[:8000]
    base = Augmenter(seed=0, rirs=rirs, config=AugmentConfig.realistic())
    clean_all = Augmenter(seed=0, rirs=rirs, config=replace(AugmentConfig.realistic(), p_clean=1.0))
    half = Augmenter(seed=0, rirs=rirs, config=replace(AugmentConfig.realistic(), p_clean=0.5))
    silent_edges = []
    for i in range(12):
        y = clean_all.apply(x, np.random.default_rng([2, i]))
        # no dither, noise or channel: the silent edges stay digital silence (resampling leaves < -120 dBFS)
        assert np.abs(y[:1500]).max() < 1e-6 and -43 < 10 * np.log10(active_power(y)) < -11
        z = half.apply(x, np.random.default_rng([2, i]))
        silent_edges.append(bool(np.abs(z[:1500]).max() < 1e-6))
        assert np.all(base.apply(x, np.random.default_rng([2, i]))[:200] != 0)
    assert 2 <= sum(silent_edges) <= 10  # about half the clips stay clean
    # p_clean = 0 draws no extra random number: outputs are those of before the field existed
    assert AugmentConfig.realistic().p_clean == 0.0


def test_wide_recipe_reaches_loud_saturated_and_quiet_levels_with_dither_under_the_speech(speechlike, rirs):
    """AugmentConfig.wide: speech levels past realistic's -42..-12 dBFS on both sides, loud clips
    clipped at full scale over many samples (as overloaded real recordings are) rather than scaled
    down, and the dither floor of a quiet clip at least 20 dB under its speech."""
    from dataclasses import replace

    x = np.zeros(SR, np.float32)
    x[4000:12000] = speechlike[:8000]
    # edges hold dither only: no noise, and nothing that smears the word into them
    no_clean = dict(p_clean=0.0, p_clip=0.0, p_codec=0.0, p_noise=0.0, p_reverb=0.0, p_channel=0.0, p_speed=0.0,
                    p_pitch=0.0, p_formant=0.0)
    wide = Augmenter(seed=0, rirs=rirs, config=replace(AugmentConfig.wide(), **no_clean))
    real = Augmenter(seed=0, rirs=rirs, config=replace(AugmentConfig.realistic(), **no_clean))
    no_headroom = Augmenter(seed=0, rirs=rirs, config=replace(AugmentConfig.wide(), dither_headroom_db=None, **no_clean))
    levels, saturated, unlimited = [], 0, []
    for i in range(200):
        y = wide.apply(x, np.random.default_rng([3, i]))
        level = 10 * np.log10(active_power(y))
        levels.append(level)
        assert np.abs(y).max() < 1.0  # the ceiling plus dither (<= -55 dBFS) stays in range
        at_ceiling = int(np.sum(np.abs(y) >= AugmentConfig().peak - 0.01))
        saturated += at_ceiling >= 20
        if level < -45:  # quiet: the edges hold only dither, 20 dB under the speech's active level
            # (the word's mean power, troughs included, reads a few dB lower: 12 dB asserted)
            speech = 10 * np.log10(np.mean(y[5000:11000].astype(np.float64) ** 2))
            edge = 10 * np.log10(np.mean(y[:2000].astype(np.float64) ** 2) + 1e-20)
            assert edge <= speech - 12, (i, speech, edge)
            z = no_headroom.apply(x, np.random.default_rng([3, i]))
            unlimited.append(10 * np.log10(np.mean(z[:2000].astype(np.float64) ** 2)) - speech)
        r = real.apply(x, np.random.default_rng([3, i]))
        assert np.sum(np.abs(r) >= AugmentConfig().peak - 0.01) < 5  # the limiter scales, never clips
    levels = np.array(levels)
    assert levels.min() < -50 and levels.max() > -11.5
    assert saturated >= 3
    assert max(unlimited) > -5  # without the headroom the floor buries some quiet words


def test_saturation_and_headroom_off_draw_no_extra_random_numbers(speechlike, rirs):
    """p_saturate = 0 and dither_headroom_db = None (realistic's defaults) leave every clip as it
    was before the fields existed: a realistic dataset keeps its content and fingerprint."""
    from dataclasses import replace

    x = windowed(speechlike)
    cfg = AugmentConfig.realistic()
    assert cfg.p_saturate == 0.0 and cfg.dither_headroom_db is None
    a = Augmenter(seed=0, rirs=rirs, config=cfg)
    # a headroom that never binds changes nothing when drawn without extra numbers
    b = Augmenter(seed=0, rirs=rirs, config=replace(cfg, dither_headroom_db=-200.0))
    for i in range(8):
        np.testing.assert_array_equal(a.apply(x, np.random.default_rng([4, i])), b.apply(x, np.random.default_rng([4, i])))


def test_quiet_tail_puts_a_quarter_of_the_clips_below_realistic_levels(speechlike, rirs):
    """AugmentConfig.quiet_tail: about 25% of clips at -60..-42 dBFS, the rest at realistic's
    -42..-12, so quiet speech is learnt without thinning the usual levels out."""
    from dataclasses import replace

    x = np.zeros(SR, np.float32)
    x[4000:12000] = speechlike[:8000]
    off = dict(p_clean=0.0, p_clip=0.0, p_codec=0.0, p_noise=0.0, dither_db=None)  # the level alone
    aug = Augmenter(seed=0, rirs=rirs, config=replace(AugmentConfig.quiet_tail(), **off))
    levels = np.array([10 * np.log10(active_power(aug.apply(x, np.random.default_rng([6, i])))) for i in range(400)])
    quiet = levels < -42.5
    assert 0.17 < quiet.mean() < 0.33
    assert levels.min() > -61 and levels.max() < -11.5
    assert np.all((levels[~quiet] > -42.5) & (levels[~quiet] < -11.5))


def test_speech_span_and_recording_edges_keep_the_speech():
    from kws.data.augment import cut_at_edges, speech_span

    rng = np.random.default_rng(0)
    x = np.zeros(16000, np.float32)
    x[6000:10000] = 0.3 * rng.standard_normal(4000)
    x += 1e-5 * rng.standard_normal(16000).astype(np.float32)  # a floor far below the speech
    start, end = speech_span(x)
    assert 5840 <= start <= 6000 and 10000 <= end <= 10160
    assert speech_span(np.zeros(800)) == (0, 800)
    sides = set()
    for seed in range(60):
        y = cut_at_edges(x, (start, end), np.random.default_rng(seed))
        assert np.array_equal(y[start:end], x[start:end])  # the speech is never cut
        zero = y == 0.0
        before, after = bool(zero[:start].any()), bool(zero[end:].any())
        assert not (zero[start:end].any())
        if before:  # digital silence from the window's start up to the edge
            k = int(np.argmin(zero[:start])) if not zero[:start].all() else start
            assert zero[:k].all() and not zero[k:start].any()
        sides.add((before, after))
    assert {(True, False), (False, True), (True, True)} <= sides
