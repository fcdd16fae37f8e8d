"""`kws record`: the level check on generated arrays, resuming, the `kws train --positives` plumbing,
and the microphone path for real: `kws record --yes` runs as a subprocess on the PulseAudio
null-sink microphone (tests/conftest.py `pulse`) while `paplay` says a synthesized keyword into it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from kws.audio import load_audio, save_wav
from kws.errors import KwsError
from kws.record import (MARGIN_SECONDS, check_level, existing_takes, keyword_stem, record_keyword,
                        trim_take)

SR = 16000


def in_take(sound: np.ndarray, start_s: float, total_s: float, noise_db: float = -60.0, seed: int = 0) -> np.ndarray:
    """`sound` placed at `start_s` in a `total_s` take of white background noise at `noise_db` dBFS RMS."""
    rng = np.random.default_rng(seed)
    x = (10 ** (noise_db / 20) * rng.standard_normal(int(total_s * SR))).astype(np.float32)
    a = int(start_s * SR)
    x[a:a + sound.size] += sound[:max(0, x.size - a)]
    return x


# ---------------------------------------------------------------- the level check, no microphone
def test_a_good_take_passes_and_is_trimmed_to_the_speech_plus_a_margin(speechlike):
    x = in_take(speechlike, 0.6, 2.5)
    rep = check_level(x)
    assert rep.ok and rep.problem is None, rep.message
    # the speech is where it was put (the chirp's quietest edge frames may fall outside by a frame)
    assert abs(rep.speech[0] - 0.6 * SR) <= 160 and abs(rep.speech[1] - (0.6 + 1.3) * SR) <= 320
    assert rep.loudest_db > -15 and rep.floor_db < -55 and rep.snr_db > 40
    y = trim_take(x, rep)
    m = int(MARGIN_SECONDS * SR)
    assert y.size == rep.speech[1] - rep.speech[0] + 2 * m
    np.testing.assert_array_equal(y, x[rep.speech[0] - m:rep.speech[1] + m])
    # the same take as int16 PCM (what the microphone delivers) gives the same verdict and span
    rep16 = check_level(np.round(x * 32767).astype(np.int16))
    assert rep16.ok and rep16.speech == rep.speech


def test_too_quiet_and_silent_takes_say_what_to_do(speechlike):
    quiet = check_level(in_take(0.003 * speechlike, 0.6, 2.5, noise_db=-90))
    assert quiet.problem == "quiet" and quiet.loudest_db < -42
    assert "speak louder" in quiet.message and "closer" in quiet.message and "--device" in quiet.message
    silent = check_level(np.zeros(2 * SR, np.int16))
    assert silent.problem == "quiet" and "no signal" in silent.message and "kws devices" in silent.message


def test_clipping_is_caught_but_one_loud_peak_is_not(speechlike):
    clipped = check_level(in_take(np.clip(10 * speechlike, -1, 1), 0.6, 2.5))
    assert clipped.problem == "clipped" and clipped.clipped > 100
    assert "lower the microphone's input gain" in clipped.message
    x = in_take(0.5 * speechlike, 0.6, 2.5)
    x[SR] = 0.995  # a single sample near full scale is a peak, not clipping
    assert check_level(x).ok
    assert check_level(np.clip(np.round(x * 32768 * 8), -32768, 32767).astype(np.int16)).problem == "clipped"


def test_noise_and_clicks_are_not_speech(speechlike):
    rng = np.random.default_rng(3)
    hiss = check_level((0.1 * rng.standard_normal(2 * SR)).astype(np.float32))  # -20 dBFS, no word in it
    assert hiss.problem == "no_speech" and hiss.snr_db < 15 and "no speech detected" in hiss.message
    click = check_level(in_take(0.5 * np.ones(80, np.float32), 1.0, 2.0))  # 5 ms
    assert click.problem == "no_speech"


def test_a_word_cut_off_at_either_end_is_retaken(speechlike):
    early = check_level(in_take(speechlike, 0.0, 2.5))
    assert early.problem == "cut_off" and "wait until the take starts" in early.message
    late = check_level(in_take(speechlike, 1.0, 2.0))  # the last 0.3 s of the word is missing
    assert late.problem == "cut_off" and "--seconds" in late.message


# ---------------------------------------------------------------- takes on disk, resuming
def test_existing_takes_are_numbered_by_keyword(tmp_path):
    assert keyword_stem("Hey  Athena!") == "hey-athena"
    with pytest.raises(KwsError, match="letter or digit"):
        keyword_stem("  ?! ")
    for name in ("hey-athena-002.wav", "hey-athena-010.wav", "hey-athena-001.wav", "athena-003.wav",
                 "hey-athena-x.wav", "notes.wav"):
        save_wav(tmp_path / name, np.zeros(160, np.float32))
    assert [p.name for p in existing_takes(tmp_path, "hey athena")] == [
        "hey-athena-001.wav", "hey-athena-002.wav", "hey-athena-010.wav"]
    assert existing_takes(tmp_path / "missing", "athena") == []


def test_a_complete_folder_needs_no_microphone(tmp_path, monkeypatch):
    # no audio server at all: a folder that already holds n takes must not even open the input
    monkeypatch.setenv("PULSE_SERVER", "unix:/nonexistent/native")
    for i in (1, 2, 3):
        save_wav(tmp_path / f"athena-{i:03d}.wav", np.zeros(160, np.float32))
    said: list[str] = []
    res = record_keyword("athena", tmp_path, n=3, prompt=said.append)
    assert res.new == [] and len(res.takes) == 3 and "nothing to record" in said[0]
    with pytest.raises(KwsError, match="at least 1"):
        record_keyword("athena", tmp_path, n=0, prompt=said.append)
    with pytest.raises(KwsError, match="--seconds"):
        record_keyword("athena", tmp_path, n=5, seconds=0.1, prompt=said.append)


# ---------------------------------------------------------------- kws train --positives
def test_train_passes_recordings_to_the_dataset_it_builds(tmp_path, monkeypatch):
    """The CLI -> TrainOptions -> BuildOptions plumbing: the build is intercepted (its own tests
    cover what it does with the folders), so no dataset is made here."""
    import kws.data.builder as builder
    from kws import cli

    seen = []

    def capture(opts):
        seen.append(opts)
        raise KwsError("stopped after the options were built")

    monkeypatch.setattr(builder, "build_dataset", capture)
    rc = cli.main(["train", "--keyword", "athena", "--preset", "small", "--run-dir", str(tmp_path / "run"),
                   "--positives", str(tmp_path / "me"), "--positives", str(tmp_path / "friend"),
                   "--negatives", str(tmp_path / "office")])
    assert rc == 2 and len(seen) == 1
    opts = seen[0]
    assert opts.keyword == "athena" and opts.preset == "small" and opts.out == tmp_path / "run" / "data"
    assert opts.positives == [tmp_path / "me", tmp_path / "friend"] and opts.negatives == [tmp_path / "office"]


def test_train_refuses_recordings_with_an_already_built_dataset(tmp_path, capsys):
    from kws import cli

    rc = cli.main(["train", "--keyword", "athena", "--data", str(tmp_path), "--positives", str(tmp_path / "me")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "kws: error:" in err and "already built" in err
    assert "kws data build --keyword athena" in err and "--positives" in err and "leave out --data" in err


# ---------------------------------------------------------------- no microphone
def test_record_without_a_microphone_is_a_clear_error(tmp_path):
    env = dict(os.environ, PULSE_SERVER="unix:/nonexistent/native", KWS_NO_PROGRESS="1")
    for extra in ([], ["--device", "no-such-mic"]):
        res = subprocess.run([sys.executable, "-m", "kws.cli", "record", "--keyword", "athena", "-n", "2", "--yes",
                              "--out", str(tmp_path / "rec"), *extra], env=env, capture_output=True, text=True,
                             timeout=60)
        assert res.returncode == 2, res.stderr
        assert "Traceback" not in res.stderr and "PortAudioError" not in res.stderr
        assert "kws: error:" in res.stderr and "input device" in res.stderr
        assert ("kws devices" in res.stderr) if not extra else ("'no-such-mic' matches no" in res.stderr)
        assert not (tmp_path / "rec").exists() or not list((tmp_path / "rec").iterdir())


# ---------------------------------------------------------------- the microphone, for real
@pytest.fixture(scope="module")
def sounds(tmp_path_factory):
    """A synthesized 'athena', a clipped copy and a very quiet copy, as WAV files to play."""
    from kws.data import tts

    voices = tts.base_voices()
    if not voices:
        pytest.skip("no speech-synthesis engine installed (`make apt` installs them)")
    kw = next((a for v in voices[:20] if (a := tts.synthesize("athena", v, cache_dir=None)) is not None), None)
    assert kw is not None, "no voice could synthesize 'athena'"
    d = tmp_path_factory.mktemp("sounds")
    files = {"kw": d / "kw.wav", "clipped": d / "clipped.wav", "quiet": d / "quiet.wav"}
    save_wav(files["kw"], kw)
    save_wav(files["clipped"], np.clip(30 * kw, -1, 1))
    save_wav(files["quiet"], 0.002 * kw)
    return kw, files


def record_cli(env: dict, out: Path, args: list[str], plays: list[Path | None], lead: float = 0.3,
               keys: str | None = None) -> tuple[int, str, str]:
    """Run `kws record --keyword athena --yes --countdown 0` (with `keys`: without --yes, typing
    them) and, each time a take starts ("... now"), play the next of `plays` into the null sink
    `lead` s later (None: stay silent)."""
    mode = ["--yes", "--countdown", "0"] if keys is None else []
    cmd = [sys.executable, "-m", "kws.cli", "record", "--keyword", "athena", "--out", str(out), *mode, *args]
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL if keys is None else subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if keys is not None:
        proc.stdin.write(keys)
        proc.stdin.close()
    queue = list(plays)
    out_lines: list[str] = []
    players: list[threading.Thread] = []

    def play(wav: Path) -> None:
        time.sleep(lead)
        subprocess.run(["paplay", str(wav)], env=env, check=True, timeout=30)

    for line in proc.stdout:
        out_lines.append(line)
        if "recording - say" in line:
            assert queue, f"more takes than sounds to play:\n{''.join(out_lines)}"
            wav = queue.pop(0)
            if wav is not None:
                players.append(threading.Thread(target=play, args=(wav,), daemon=True))
                players[-1].start()
    proc.wait(timeout=60)
    for t in players:
        t.join(timeout=30)
    return proc.returncode, "".join(out_lines), proc.stderr.read()


def loudest_frame_db(x: np.ndarray) -> float:
    n = x.size // 160
    return float(10 * np.log10(np.max(np.mean(np.square(x[:n * 160].reshape(n, 160), dtype=np.float64), axis=1))))


@pytest.mark.mic
def test_record_saves_trimmed_16k_mono_takes_of_the_played_word(pulse, sounds, tmp_path):
    kw, files = sounds
    out = tmp_path / "rec"
    rc, stdout, err = record_cli(pulse, out, ["-n", "2", "--seconds", "2"], [files["kw"], files["kw"]])
    assert rc == 0, stdout + err
    takes = existing_takes(out, "athena")
    assert [p.name for p in takes] == ["athena-001.wav", "athena-002.wav"]
    assert f"--positives {out}" in stdout
    for p in takes:
        info = sf.info(str(p))
        assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
        y = load_audio(p)
        # trimmed: the word plus the margins, not the 2 s take (10 ms frames of slack either side)
        assert abs(y.size - (kw.size + 2 * MARGIN_SECONDS * SR)) <= 0.05 * SR, y.size / SR
        rep = check_level(y)
        assert rep.ok, rep.message
        assert abs(rep.speech[0] - MARGIN_SECONDS * SR) <= 0.03 * SR  # speech begins after the margin
        # the word's energy arrived (the null sink passes it at unity gain) and it is the same sound
        assert abs(loudest_frame_db(y) - loudest_frame_db(kw)) < 2.0
        c = np.correlate(y, kw, mode="valid")
        assert c.max() / (np.linalg.norm(kw) * np.sqrt(np.convolve(y * y, np.ones(kw.size), "valid").max())) > 0.8


@pytest.mark.mic
def test_record_resumes_the_numbering(pulse, sounds, tmp_path):
    kw, files = sounds
    out = tmp_path / "rec"
    save_wav(out / "athena-001.wav", kw)
    save_wav(out / "athena-004.wav", kw)  # a gap: numbering continues after the highest
    save_wav(out / "other.wav", kw)
    rc, stdout, err = record_cli(pulse, out, ["-n", "3"], [files["kw"]])
    assert rc == 0, stdout + err
    assert "(2 there already)" in stdout
    assert [p.name for p in existing_takes(out, "athena")] == ["athena-001.wav", "athena-004.wav", "athena-005.wav"]
    assert check_level(load_audio(out / "athena-005.wav")).ok
    rc, stdout, err = record_cli(pulse, out, ["-n", "3"], [])
    assert rc == 0 and "nothing to record" in stdout, stdout + err


@pytest.mark.mic
def test_record_retakes_a_clipped_take(pulse, sounds, tmp_path):
    _, files = sounds
    out = tmp_path / "rec"
    rc, stdout, err = record_cli(pulse, out, ["-n", "1"], [files["clipped"], files["kw"]])
    assert rc == 0, stdout + err
    assert "Take 1/1 rejected: clipped" in stdout and "lower the microphone's input gain" in stdout
    assert [p.name for p in existing_takes(out, "athena")] == ["athena-001.wav"]
    assert check_level(load_audio(out / "athena-001.wav")).ok


@pytest.mark.mic
def test_record_gives_up_on_a_silent_microphone(pulse, sounds, tmp_path):
    _, files = sounds
    out = tmp_path / "rec"
    rc, stdout, err = record_cli(pulse, out, ["-n", "2", "--seconds", "1", "--retakes", "2"],
                                 [files["quiet"], None])
    assert rc == 2, stdout + err
    assert "rejected: too quiet" in stdout and "speak louder or move closer" in stdout
    assert "Traceback" not in err and "kws: error: Take 1/2: 2 takes in a row were rejected" in err
    assert "no signal at all" in err and "--device" in err
    assert existing_takes(out, "athena") == []


@pytest.mark.mic
def test_record_waits_for_enter_and_q_stops(pulse, sounds, tmp_path):
    _, files = sounds
    out = tmp_path / "rec"
    rc, stdout, err = record_cli(pulse, out, ["-n", "3"], [files["kw"]], keys="\nq\n")
    assert rc == 0, stdout + err
    assert "Take 1/3: press Enter" in stdout and "Take 2/3: press Enter" in stdout
    assert "Stopped; 1 take(s)" in stdout and "Rerun the same command" in stdout
    assert [p.name for p in existing_takes(out, "athena")] == ["athena-001.wav"]


@pytest.mark.mic
def test_record_without_yes_needs_a_keyboard(pulse, tmp_path):
    res = subprocess.run([sys.executable, "-m", "kws.cli", "record", "--keyword", "athena", "-n", "1", "--out",
                          str(tmp_path / "rec")], env=pulse, stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "kws: error:" in res.stderr and "pass --yes" in res.stderr
