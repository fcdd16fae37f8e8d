"""Google Speech Commands (Warden 2018): download, verify and unpack the official archive, and read
a tree in the official layout.

Layout: `<word>/<speaker>_nohash_<n>.wav` (or .flac), `_background_noise_/` (long noise recordings),
optionally `_silence_/` (one-second noise cuts), `validation_list.txt` and `testing_list.txt`
(paths like `right/bb05582b_nohash_0.wav`). Clips not named in either list are training clips.
When the lists are absent, clips are split by a hash of the speaker like the official
`which_set` (10% validation, 10% test), so a speaker never straddles two splits.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import sys
import tarfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

from kws.errors import DataError

URLS = {
    "0.01": "http://download.tensorflow.org/data/speech_commands_v0.01.tar.gz",
    "0.02": "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz",
}
# SHA-256 of the official archives as published in torchaudio's SPEECHCOMMANDS dataset (_CHECKSUMS).
# We could not recompute them here (this machine has no network); a mismatch is reported, never
# ignored. The gzip CRC and tar structure are also checked while unpacking.
SHA256 = {
    "0.01": "743935421bb51cccdb6bdd152e04c5c70274e935c82119ad7faeec31780d811d",
    "0.02": "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58",
}
COMPLETE_MARKER = ".kws-complete"
HASH_DIVIDER = "_nohash_"
NOISE_DIR = "_background_noise_"
SILENCE_DIR = "_silence_"
AUDIO_SUFFIXES = (".wav", ".flac")
_MAX_NUM_WAVS_PER_CLASS = 2 ** 27 - 1  # from the official input_data.which_set


# ---------------------------------------------------------------- reading a tree
@dataclass(frozen=True)
class SCClip:
    path: Path
    word: str
    speaker: str
    split: str  # train | val | test


def speaker_of(path: str | os.PathLike) -> str:
    """The speaker id: the file name before `_nohash_` (the whole stem if there is none)."""
    stem = Path(path).stem
    return stem.split(HASH_DIVIDER, 1)[0]


def which_set(speaker: str, validation_percentage: float = 10.0, testing_percentage: float = 10.0) -> str:
    """The official Speech Commands split rule (SHA-1 of the speaker id), returning train|val|test.
    Stable across machines and runs, and keeps every clip of a speaker in one split."""
    h = int(hashlib.sha1(speaker.encode("utf-8")).hexdigest(), 16)
    percentage = (h % (_MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / _MAX_NUM_WAVS_PER_CLASS)
    if percentage < validation_percentage:
        return "val"
    if percentage < validation_percentage + testing_percentage:
        return "test"
    return "train"


def _audio_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def is_speech_commands_tree(root: str | os.PathLike) -> bool:
    """True for a folder in the official layout: the split lists or `_background_noise_`, or word
    folders holding `<speaker>_nohash_<n>` clips."""
    root = Path(root)
    if not root.is_dir():
        return False
    if (root / "validation_list.txt").is_file() or (root / "testing_list.txt").is_file() or (root / NOISE_DIR).is_dir():
        return True
    for d in root.iterdir():
        if d.is_dir() and not d.name.startswith("_"):
            if any(HASH_DIVIDER in p.name for p in _audio_files(d)[:20]):
                return True
    return False


class SpeechCommands:
    """Reader for a Speech Commands tree (the official one, the FLAC test copy, or any folder in that
    layout). `assign_split(speaker) -> train|val|test` overrides the split of every clip (the lists
    and the hash rule are then ignored)."""

    def __init__(self, root: str | os.PathLike, assign_split: Callable[[str], str] | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: no such Speech Commands folder; get one with "
                            f"`kws data speech-commands --dest {self.root}`.")
        self.assign_split = assign_split
        self._lists: dict[str, str] | None = None

    def words(self) -> list[str]:
        """Word folders (every folder not starting with `_` that holds audio), sorted."""
        return sorted(d.name for d in self.root.iterdir()
                      if d.is_dir() and not d.name.startswith("_") and not d.name.startswith(".")
                      and _audio_files(d))

    def _split_lists(self) -> dict[str, str]:
        """Map 'word/stem' -> val|test from the official lists (stems, so .flac trees match .wav lists)."""
        if self._lists is None:
            lists: dict[str, str] = {}
            for name, split in (("validation_list.txt", "val"), ("testing_list.txt", "test")):
                f = self.root / name
                if f.is_file():
                    for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
                        line = line.strip()
                        if line:
                            p = PurePosixPath(line)
                            lists[f"{p.parent.as_posix()}/{p.stem}"] = split
            self._lists = lists
        return self._lists

    @property
    def has_split_lists(self) -> bool:
        return (self.root / "validation_list.txt").is_file() or (self.root / "testing_list.txt").is_file()

    def split_of(self, word: str, path: Path, speaker: str) -> str:
        if self.assign_split is not None:
            return self.assign_split(speaker)
        if self.has_split_lists:
            return self._split_lists().get(f"{word}/{path.stem}", "train")
        return which_set(speaker)

    def clips(self, word: str | None = None) -> list[SCClip]:
        """Every clip (of one word, or of all words), sorted by word then file name."""
        words = [word] if word is not None else self.words()
        out = []
        for w in words:
            for p in _audio_files(self.root / w):
                spk = speaker_of(p)
                out.append(SCClip(path=p, word=w, speaker=spk, split=self.split_of(w, p, spk)))
        return out

    def noise_files(self, include_silence: bool = True) -> list[Path]:
        """`_background_noise_` recordings, then the `_silence_` cuts if present."""
        files = _audio_files(self.root / NOISE_DIR)
        if include_silence:
            files += _audio_files(self.root / SILENCE_DIR)
        return files


# ---------------------------------------------------------------- download and unpack
def prepare(dest: str | os.PathLike, version: str = "0.02", archive: str | os.PathLike | None = None,
            url: str | None = None, expected_sha256: str | None = None) -> Path:
    """Download (resumable), verify and unpack Speech Commands into `dest`; return `dest`.

    Already complete (marker present) -> returns at once. The archive is unpacked into
    `dest.partial` and renamed to `dest` only when every member is out, then a marker is written,
    so an interrupted unpack never looks complete. `archive` uses a local .tar.gz instead of
    downloading; `url`/`expected_sha256` override the official ones (mirrors, tests).
    """
    if version not in URLS:
        raise DataError(f"unknown Speech Commands version {version!r}; use one of {', '.join(URLS)}.")
    dest = Path(dest)
    if (dest / COMPLETE_MARKER).is_file():
        return dest
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DataError(f"{dest}: exists and is not a complete Speech Commands unpack (no {COMPLETE_MARKER}); "
                        "remove it or choose another --dest.")
    expected = expected_sha256 if expected_sha256 is not None else (None if url else SHA256[version])
    if archive is not None:
        archive = Path(archive)
        if not archive.is_file():
            raise DataError(f"{archive}: no such archive file; check the --archive path.")
        _verify(archive, expected, downloaded=False)
    else:
        archive = dest.parent / f"speech_commands_v{version}.tar.gz"
        if not archive.is_file():
            download(url or URLS[version], archive)
        _verify(archive, expected, downloaded=True)
    _unpack(archive, dest)
    return dest


def download(url: str, target: Path, chunk: int = 1 << 20, timeout: float = 30.0) -> Path:
    """Download `url` to `target` via `target.part`, resuming a partial file with an HTTP Range
    request; the final name appears only when the transfer completed."""
    from kws.util import progress_enabled
    from tqdm import tqdm

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the partial file already holds everything
            os.replace(part, target)
            return target
        raise DataError(f"cannot download {url}: HTTP {e.code} {e.reason}; try again later, or download "
                        "the archive elsewhere and pass it with --archive FILE.") from None
    except (urllib.error.URLError, socket.timeout, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DataError(f"cannot download {url}: no network connection ({reason}). Download the archive on "
                        f"a connected machine and run `kws data speech-commands --archive FILE --dest DIR`.") from None
    with resp:
        resumed = have and resp.status == 206
        if not resumed:
            have = 0  # server ignored the Range header: start over
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        with open(part, "ab" if resumed else "wb") as f, \
                tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=f"download {target.name}",
                     disable=not progress_enabled(), file=sys.stderr) as bar:
            try:
                while True:
                    block = resp.read(chunk)
                    if not block:
                        break
                    f.write(block)
                    bar.update(len(block))
            except (OSError, socket.timeout) as e:
                raise DataError(f"download of {url} interrupted ({e}); rerun the same command to resume.") from None
    if total is not None and part.stat().st_size != total:
        raise DataError(f"download of {url} ended early ({part.stat().st_size} of {total} bytes); "
                        "rerun the same command to resume.")
    os.replace(part, target)
    return target


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def _verify(archive: Path, expected: str | None, downloaded: bool) -> None:
    if expected is None:
        return  # a custom mirror without a checksum: tar/gzip integrity is still checked on unpack
    got = sha256_of(archive)
    if got != expected.lower():
        if downloaded:
            bad = archive.with_name(archive.name + ".corrupt")
            os.replace(archive, bad)
            raise DataError(f"{archive}: SHA-256 {got} does not match the official {expected}; the download is "
                            f"corrupt (moved to {bad}). Rerun to download it again.")
        raise DataError(f"{archive}: SHA-256 {got} does not match the official archive ({expected}); the file is "
                        "corrupt, truncated or a different version. Download it again.")


def _safe_member(member: tarfile.TarInfo) -> str | None:
    """Reason to refuse a member (path traversal, links, devices), or None when it is safe."""
    name = member.name
    p = PurePosixPath(name)
    if p.is_absolute() or name.startswith(("/", "\\")) or ".." in p.parts or re.match(r"^[A-Za-z]:", name):
        return "its path leaves the destination folder"
    if member.issym() or member.islnk():
        return "it is a link"
    if not (member.isfile() or member.isdir()):
        return "it is a device or other special file"
    return None


def _unpack(archive: Path, dest: Path) -> None:
    """Extract into `dest.partial` (member by member, each checked), then rename to `dest`."""
    from kws.util import progress

    partial = dest.with_name(dest.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)  # a previous unpack was interrupted: its files are not trustworthy
    partial.mkdir(parents=True)
    root = partial.resolve()
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in progress(tar, desc=f"unpack {archive.name}", unit="file"):
                why = _safe_member(member)
                if why is not None:
                    raise DataError(f"{archive}: refusing to unpack member {member.name!r}: {why}. The archive is "
                                    "not a genuine Speech Commands archive; download it again.")
                target = (partial / member.name).resolve()
                if target != root and root not in target.parents:
                    raise DataError(f"{archive}: refusing to unpack member {member.name!r}: its path leaves the "
                                    "destination folder. Download the archive again.")
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                assert src is not None
                with src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error) as e:
        shutil.rmtree(partial, ignore_errors=True)
        raise DataError(f"{archive}: not a valid .tar.gz or truncated ({e}); download it again.") from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    # the marker goes in before the rename, so `dest` appears complete in one atomic step
    (partial / COMPLETE_MARKER).write_text(f"unpacked from {archive.name}\n")
    if dest.exists():
        dest.rmdir()  # checked empty in prepare()
    os.replace(partial, dest)
