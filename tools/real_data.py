"""The real-speech corpora the benchmarks test on, read in place from ../shared/data (or the
folder in KWS_SHARED_DATA / a --shared flag); nothing is copied into the repository.

- `speech_commands_v0.02_test/<word>/<speaker>_nohash_<n>.flac`: the Speech Commands v0.02 test
  set. Benchmarks that train on some of it and test on the rest split it by SPEAKER into two
  halves (A: training, B: testing) with `speaker_half`, a stable hash of the speaker id.
- `mycroft_precise_community/{athena,amelia}/en/*.flac`: real wake-word recordings (file names
  are uuids: no speaker ids), `not-wake-words/en/*.flac`: other English speech.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

AUDIO = (".flac", ".wav")
NOT_WORDS = ("_background_noise_", "_silence_")
DEFAULT_SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SC_NAME = "speech_commands_v0.02_test"
MYCROFT_NAME = "mycroft_precise_community"
MYCROFT_KEYWORDS = ("athena", "amelia")
# the ten core words: about 400 clips from 150-170 speakers each, enough for a speaker-disjoint test
SC_CORE_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")


def shared_root(path: str | os.PathLike | None = None) -> Path:
    """The shared-data folder: `path`, else $KWS_SHARED_DATA, else ../shared/data."""
    return Path(path or os.environ.get("KWS_SHARED_DATA") or DEFAULT_SHARED)


@dataclass(frozen=True)
class Corpora:
    root: Path

    @property
    def sc(self) -> Path:
        return self.root / SC_NAME

    @property
    def mycroft(self) -> Path:
        return self.root / MYCROFT_NAME

    def missing(self) -> list[Path]:
        return [p for p in (self.sc, self.mycroft) if not p.is_dir()]


def speaker_of(path: Path) -> str:
    """The Speech Commands speaker id (file name before `_nohash_`)."""
    from kws.data.speech_commands import speaker_of as sc_speaker

    return sc_speaker(path)


def speaker_half(speaker: str) -> str:
    """A stable half assignment independent of the file order: by a hash of the speaker id."""
    return "A" if hashlib.sha1(speaker.encode()).digest()[0] % 2 == 0 else "B"


def audio_files(folder: Path) -> list[Path]:
    return sorted(f for f in Path(folder).iterdir() if f.suffix.lower() in AUDIO)


def sc_words(sc_dir: Path) -> list[str]:
    return sorted(p.name for p in Path(sc_dir).iterdir() if p.is_dir() and p.name not in NOT_WORDS
                  and not p.name.startswith("."))


def sc_word_clips(sc_dir: Path, word: str, half: str | None = None) -> list[Path]:
    """The clips of one word, optionally only those of speaker half "A" or "B"."""
    return [f for f in audio_files(Path(sc_dir) / word) if half is None or speaker_half(speaker_of(f)) == half]


def sc_clips(sc_dir: Path, exclude_words: tuple[str, ...] | list[str] = (), half: str | None = None) -> list[Path]:
    """Every word's clips (noise folders never) except `exclude_words`, optionally one speaker half."""
    skip = {w.lower() for w in exclude_words}
    return [f for w in sc_words(sc_dir) if w.lower() not in skip for f in sc_word_clips(sc_dir, w, half)]


def sc_halves(sc_dir: Path, exclude_word: str | None = None) -> dict[str, list[Path]]:
    return {h: sc_clips(sc_dir, [exclude_word] if exclude_word else [], h) for h in ("A", "B")}


def link_tree(files: list[Path], dest: Path) -> Path:
    """A Speech-Commands-shaped folder of symlinks (word/speaker_nohash_n.flac) for the builder."""
    for f in files:
        target = Path(dest) / f.parent.name / f.name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(f.resolve(), target)
    return Path(dest)


def link_files(files: list[Path], dest: Path) -> Path:
    """A flat folder of symlinks to `files` (names kept, so `<speaker>_nohash_<n>` names still give
    the builder their speakers); links to files not listed are removed, so the folder holds exactly
    `files`."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    names = {f.name for f in files}
    for p in dest.iterdir():
        if p.name not in names:
            p.unlink()
    for f in files:
        target = dest / f.name
        if not target.exists():
            os.symlink(Path(f).resolve(), target)
    return dest


def mycroft_keyword_clips(mycroft_dir: Path, keyword: str) -> list[Path]:
    return audio_files(Path(mycroft_dir) / keyword / "en")


def mycroft_not_wake_words(mycroft_dir: Path) -> list[Path]:
    return audio_files(Path(mycroft_dir) / "not-wake-words" / "en")
