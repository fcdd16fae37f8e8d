"""`kws record`: a few real recordings of the keyword from the microphone, for `kws train --positives`.

Each take is checked before it is kept (`check_level`): too quiet, clipped, no speech above the
background, or the word cut off at either end of the take all lead to a re-take with a message that
says what to change. A kept take is trimmed to the speech plus a margin and written atomically as
OUT/<keyword>-NNN.wav (16 kHz mono 16-bit). Rerunning resumes: the takes already in OUT count, and
`n` is the number of takes OUT should hold in the end.

The microphone is the one `kws listen` uses (`kws.live.open_input`). The stream runs for the whole
session and the blocks that arrive while waiting for the user are dropped, so no take pays a
stream's start-up delay.
"""

from __future__ import annotations

import math
import queue
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from kws.audio import SAMPLE_RATE, resample, save_wav, to_float32
from kws.errors import DeviceError, KwsError

FRAME = SAMPLE_RATE // 100  # 10 ms analysis frames, as kws.audio.trim_silence
QUIET_DB = -42.0  # loudest 10 ms frame (RMS, dBFS) below this: too quiet to be a usable take
SILENT_DB = -80.0  # ... below this: no signal at all (muted or wrong device)
CLIP_LEVEL = 0.99  # samples at or above this fraction of full scale count as clipped ...
MAX_CLIPPED = 3  # ... and this many of them make a take clipped
MIN_SNR_DB = 15.0  # speech must stand this far above the background (10th-percentile frame)
ACTIVE_DB = 40.0  # speech frames: within 40 dB of the loudest (the trim_silence rule) ...
ACTIVE_OVER_FLOOR_DB = 10.0  # ... and this far above the background
MIN_SPEECH_SECONDS = 0.15  # a shorter loud stretch is a click or a cough, not the word
EDGE_SECONDS = 0.05  # speech reaching this close to a take's edge was cut off
MARGIN_SECONDS = 0.1  # kept around the speech when trimming (soft onsets, release)
FIRST_AUDIO_TIMEOUT = 5.0  # a device that delivers nothing for this long is broken


@dataclass(frozen=True)
class LevelReport:
    """The level check of one take. `problem` is None for a good take, else one of "quiet",
    "clipped", "no_speech", "cut_off"; `message` says what to do. Levels in dBFS; `speech` is the
    (start, end) sample span of the speech (None when none was found)."""

    problem: str | None
    message: str
    peak_db: float
    loudest_db: float  # the loudest 10 ms frame's RMS
    floor_db: float  # the background: 10th-percentile frame RMS
    clipped: int  # samples at or above CLIP_LEVEL
    speech: tuple[int, int] | None

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def snr_db(self) -> float:
        return self.loudest_db - self.floor_db


def _db(power: np.ndarray | float) -> np.ndarray | float:
    return 10.0 * np.log10(np.maximum(power, 1e-12))  # -120 dBFS: below any 16-bit signal


def check_level(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> LevelReport:
    """Check one take (int16 or float samples): clipping, loudness, speech above the background, and
    that the speech does not touch either end of the take (it started early or ran past the end)."""
    a = to_float32(np.asarray(x))
    if a.size == 0:
        raise ValueError("empty take")
    clipped = int(np.count_nonzero(np.abs(a) >= CLIP_LEVEL))
    peak_db = float(_db(float(np.max(np.abs(a))) ** 2))
    frame = max(1, sample_rate // 100)
    n = max(1, a.size // frame)
    power = np.mean(np.square(np.resize(a, n * frame).reshape(n, frame), dtype=np.float64), axis=1)
    frame_db = _db(power)
    loudest_db = float(frame_db.max())
    floor_db = float(np.percentile(frame_db, 10))
    active = np.flatnonzero(frame_db >= max(loudest_db - ACTIVE_DB, floor_db + ACTIVE_OVER_FLOOR_DB))
    speech = (int(active[0]) * frame, min(a.size, (int(active[-1]) + 1) * frame)) if active.size else None

    def report(problem: str | None, message: str) -> LevelReport:
        return LevelReport(problem, message, peak_db, loudest_db, floor_db, clipped, speech)

    if clipped >= MAX_CLIPPED:
        return report("clipped", f"clipped ({clipped} samples at full scale): lower the microphone's input gain "
                                 "(e.g. `pavucontrol`, `alsamixer`, the system sound settings), or speak a little "
                                 "further from the microphone")
    if loudest_db < SILENT_DB:
        return report("quiet", "no signal at all (digital silence): the input is muted or it is the wrong device; "
                               "check it with `kws devices` and pick one with --device")
    if loudest_db < QUIET_DB:
        return report("quiet", f"too quiet (loudest {loudest_db:.0f} dBFS, needs {QUIET_DB:.0f}): speak louder or "
                               "move closer to the microphone; check that the right input device is selected "
                               "(`kws devices`, --device) and its gain is not turned down")
    span = 0 if speech is None else speech[1] - speech[0]
    if loudest_db - floor_db < MIN_SNR_DB or span < MIN_SPEECH_SECONDS * sample_rate:
        return report("no_speech", f"no speech detected (the loudest sound is {loudest_db - floor_db:.0f} dB over "
                                   f"the background, needs {MIN_SNR_DB:.0f} dB for at least "
                                   f"{MIN_SPEECH_SECONDS:.2f} s): say the word clearly once the take starts, in a "
                                   "quieter room or closer to the microphone")
    edge = int(EDGE_SECONDS * sample_rate)
    if speech[0] < edge:
        return report("cut_off", "the word starts right at the beginning of the take (cut off?): wait until the take "
                                 "starts ('now'), then speak")
    if speech[1] > a.size - edge:
        return report("cut_off", "the word runs to the end of the take (cut off?): start right when the take starts, "
                                 "or record longer takes (--seconds)")
    return report(None, "ok")


def trim_take(x: np.ndarray, report: LevelReport, margin_seconds: float = MARGIN_SECONDS,
              sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The speech of a checked take plus `margin_seconds` of context on each side (float32)."""
    a = to_float32(np.asarray(x))
    if report.speech is None:
        raise ValueError("the take has no speech to keep; check it with check_level first")
    m = int(round(margin_seconds * sample_rate))
    return a[max(0, report.speech[0] - m):min(a.size, report.speech[1] + m)].copy()


def keyword_stem(keyword: str) -> str:
    """File-name stem of a keyword's takes: lower case, runs of other characters as '-'."""
    stem = re.sub(r"[^a-z0-9]+", "-", keyword.strip().lower()).strip("-")
    if not stem:
        raise KwsError(f"--keyword {keyword!r}: needs at least one letter or digit")
    return stem


def existing_takes(out_dir: str | Path, keyword: str) -> list[Path]:
    """The takes already in `out_dir` (OUT/<keyword>-NNN.wav), in number order."""
    pat = re.compile(rf"^{re.escape(keyword_stem(keyword))}-(\d+)\.wav$")
    found = [(int(m.group(1)), p) for p in Path(out_dir).glob("*.wav") if (m := pat.match(p.name))]
    return [p for _, p in sorted(found)]


@dataclass
class RecordResult:
    out_dir: Path
    keyword: str
    takes: list[Path]  # every take in out_dir, old and new
    new: list[Path] = field(default_factory=list)
    retakes: int = 0  # takes rejected by the level check
    stopped: bool = False  # the user stopped before reaching n


class _Takes:
    """The running microphone: blocks queue up in the PortAudio callback; `take()` drops what
    arrived while waiting and returns the next `seconds` of audio as 16 kHz float32."""

    def __init__(self, device: str | int | None):
        from kws.live import open_input

        self.q: queue.Queue = queue.Queue()
        self.overflows = 0
        self.mic = open_input(device, self._callback)

    def _callback(self, indata, frames, time_info, status) -> None:  # PortAudio's thread: copy, count
        if status and getattr(status, "input_overflow", False):
            self.overflows += 1
        self.q.put(indata[:, 0].copy())

    def start(self) -> None:
        self.mic.start()
        try:  # some servers deliver nothing for the first second or two of a new stream
            self.q.get(timeout=FIRST_AUDIO_TIMEOUT)
        except queue.Empty:
            raise DeviceError(f"no audio from {self.mic.name!r} within {FIRST_AUDIO_TIMEOUT:.0f} s of starting; "
                              "check the device with `kws devices` and pick another with --device") from None

    def drop_pending(self) -> None:
        while True:
            try:
                self.q.get_nowait()
            except queue.Empty:
                return

    def take(self, seconds: float) -> tuple[np.ndarray, int]:
        """(16 kHz float32 audio, input overflows during the take)."""
        need = int(math.ceil(seconds * self.mic.rate))
        blocks, got, overflows = [], 0, self.overflows
        while got < need:
            try:
                b = self.q.get(timeout=2.0)
            except queue.Empty:
                raise DeviceError(f"the input {self.mic.name!r} stopped delivering audio; check it with "
                                  "`kws devices` and pick another with --device") from None
            blocks.append(b)
            got += b.shape[0]
        x = to_float32(np.concatenate(blocks)[:need])
        if self.mic.rate != SAMPLE_RATE:
            x = resample(x, self.mic.rate, SAMPLE_RATE)
        return x, self.overflows - overflows

    def close(self) -> None:
        self.mic.close()


def _say(message: str) -> None:
    print(message, flush=True)  # flushed: a pipe (tee, a test) sees each prompt when it is shown


def record_keyword(keyword: str, out_dir: str | Path, n: int = 10, device: str | int | None = None,
                   seconds: float = 2.0, *, wait: bool = True, countdown: float = 3.0, max_retakes: int = 5,
                   margin_seconds: float = MARGIN_SECONDS, beep: bool | None = None,
                   prompt: Callable[[str], None] | None = None, input: Callable[[str], str] = input) -> RecordResult:
    """Record takes of `keyword` until `out_dir` holds `n` (existing takes count; numbering continues).

    wait=True: before each take, `input()` waits for Enter ("q" stops early; the takes so far stay).
    wait=False: takes follow each other after a `countdown` (seconds) each, no keyboard needed.
    Each take is `seconds` long, checked with `check_level`, trimmed (`trim_take`) and saved as
    OUT/<keyword>-NNN.wav; a rejected take is repeated with the check's advice, and `max_retakes`
    rejections in a row raise DeviceError (the microphone, not the speaker, is then the likely cause).
    `prompt` receives every message (default: print to stdout; the one that starts a take says
    "now"); `beep` rings the terminal bell when a take starts (default: when stdout is a terminal).
    """
    prompt = prompt or _say
    stem = keyword_stem(keyword)
    if n < 1:
        raise KwsError(f"-n {n}: the number of takes must be at least 1")
    if max_retakes < 1:
        raise KwsError(f"--retakes {max_retakes}: must be at least 1")
    if not 0.5 <= seconds <= 30:
        raise KwsError(f"--seconds {seconds:g}: a take should be 0.5 to 30 s long (2 s fits one word with a pause)")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise KwsError(f"--out {out}: is a file; pass a folder for the recordings")
    have = existing_takes(out, keyword)
    result = RecordResult(out, keyword, list(have))
    if len(have) >= n:
        prompt(f"{out} already holds {len(have)} takes of '{keyword}' (asked for {n}); nothing to record.")
        return result
    if beep is None:
        beep = sys.stdout.isatty()
    cue = "after the beep" if beep else "when it says 'now'"
    next_no = max((int(p.stem.rsplit("-", 1)[1]) for p in have), default=0) + 1
    mic = _Takes(device)
    try:
        mic.start()
        prompt(f"Recording {n - len(have)} take(s) of '{keyword}' into {out} ({len(have)} there already) from "
               f"{mic.mic.name!r}; {seconds:g} s each.")
        done = len(have)
        while done < n:
            label = f"Take {done + 1}/{n}"
            failures = 0
            while True:
                if wait:
                    try:
                        answer = input(f"{label}: press Enter, then say '{keyword}' {cue} (q + Enter stops) ")
                    except EOFError:
                        raise KwsError("no keyboard input (stdin is closed); pass --yes to record takes back to "
                                       "back with a countdown") from None
                    if answer.strip().lower() in ("q", "quit"):
                        result.stopped = True
                        prompt(f"Stopped; {done} take(s) in {out}. Rerun the same command to record the rest.")
                        return result
                elif countdown > 0:
                    prompt(f"{label}: say '{keyword}' {cue}; recording in {countdown:g} s ...")
                    time.sleep(countdown)
                mic.drop_pending()
                prompt(f"{chr(7) if beep else ''}{label}: recording - say '{keyword}' now")
                x, overflows = mic.take(seconds)
                rep = check_level(x)
                problem = rep.message
                if overflows:  # the driver dropped audio inside the take: it has a hole
                    problem = f"{overflows} block(s) of audio were dropped by the driver (the CPU was too busy)"
                elif rep.ok:
                    break
                failures += 1
                result.retakes += 1
                if failures >= max_retakes:
                    raise DeviceError(f"{label}: {failures} takes in a row were rejected; the last one: {problem}")
                prompt(f"  {label} rejected: {problem}. Once more (try {failures + 1} of {max_retakes}).")
            path = out / f"{stem}-{next_no:03d}.wav"
            y = trim_take(x, rep, margin_seconds)
            save_wav(path, y)
            prompt(f"  saved {path} ({y.size / SAMPLE_RATE:.2f} s; loudest {rep.loudest_db:.0f} dBFS, "
                   f"{rep.snr_db:.0f} dB over the background)")
            result.new.append(path)
            result.takes.append(path)
            next_no += 1
            done += 1
    finally:
        mic.close()
    prompt(f"{out} holds {len(result.takes)} take(s) of '{keyword}'.")
    return result
