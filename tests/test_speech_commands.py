"""Speech Commands recipe: reader on generated trees (WAV and FLAC, with and without split lists),
prepare() from a local archive (checksum, safe unpack, atomic rename) and the resumable download
against a local HTTP server. The shared real test set is used when present."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import tarfile
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import shared_data
from kws.cli import main
from kws.data.speech_commands import (COMPLETE_MARKER, SpeechCommands, download, is_speech_commands_tree,
                                      prepare, speaker_of, which_set)
from kws.errors import DataError

WORDS = {"yes": ["aa11aa11", "bb22bb22", "cc33cc33"], "marvin": ["aa11aa11", "dd44dd44"], "no": ["ee55ee55"]}


def make_tree(root: Path, fmt: str = "wav", lists: bool = True, silence: bool = False) -> Path:
    rng = np.random.default_rng(0)
    for word, speakers in WORDS.items():
        (root / word).mkdir(parents=True)
        for spk in speakers:
            for n in range(2):
                sf.write(root / word / f"{spk}_nohash_{n}.{fmt}", 0.1 * rng.standard_normal(1600), 16000)
    (root / "_background_noise_").mkdir()
    for name in ("pink", "white"):
        sf.write(root / "_background_noise_" / f"{name}.{fmt}", 0.1 * rng.standard_normal(8000), 16000)
    if silence:
        (root / "_silence_").mkdir()
        sf.write(root / "_silence_" / f"s0.{fmt}", 0.01 * rng.standard_normal(16000), 16000)
    if lists:  # the official lists always name .wav files
        (root / "validation_list.txt").write_text("yes/bb22bb22_nohash_0.wav\nyes/bb22bb22_nohash_1.wav\n")
        (root / "testing_list.txt").write_text("marvin/dd44dd44_nohash_0.wav\nmarvin/dd44dd44_nohash_1.wav\n")
    (root / "README.md").write_text("test tree\n")
    return root


def make_archive(tree: Path, path: Path, extra: list[tarfile.TarInfo] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for p in sorted(tree.rglob("*")):
            tar.add(p, arcname="./" + p.relative_to(tree).as_posix(), recursive=False)
        for info in extra or []:
            data = b"evil" if info.isfile() else b""
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_reader_uses_split_lists_and_matches_flac_stems(tmp_path, fmt):
    sc = SpeechCommands(make_tree(tmp_path / "sc", fmt=fmt))
    assert sc.words() == ["marvin", "no", "yes"]
    clips = sc.clips()
    assert len(clips) == 12 and all(c.path.suffix == f".{fmt}" for c in clips)
    split = {(c.word, c.speaker): c.split for c in clips}
    assert split[("yes", "bb22bb22")] == "val"
    assert split[("marvin", "dd44dd44")] == "test"
    assert split[("yes", "aa11aa11")] == "train" and split[("marvin", "aa11aa11")] == "train"
    marvin = sc.clips("marvin")
    assert {c.speaker for c in marvin} == {"aa11aa11", "dd44dd44"} and all(c.word == "marvin" for c in marvin)
    assert [p.stem for p in sc.noise_files()] == ["pink", "white"]
    assert is_speech_commands_tree(sc.root)


def test_reader_without_lists_splits_by_speaker_hash(tmp_path):
    sc = SpeechCommands(make_tree(tmp_path / "sc", fmt="flac", lists=False, silence=True))
    clips = sc.clips()
    by_speaker: dict[str, set[str]] = {}
    for c in clips:
        by_speaker.setdefault(c.speaker, set()).add(c.split)
        assert c.split == which_set(c.speaker)
    assert all(len(s) == 1 for s in by_speaker.values())  # a speaker never straddles splits
    assert [p.parent.name for p in sc.noise_files()] == ["_background_noise_"] * 2 + ["_silence_"]
    assert len(sc.noise_files(include_silence=False)) == 2
    # a caller-supplied rule wins over lists and hash
    sc2 = SpeechCommands(sc.root, assign_split=lambda spk: "test" if spk.startswith("a") else "train")
    assert {c.split for c in sc2.clips() if c.speaker == "aa11aa11"} == {"test"}
    assert {c.split for c in sc2.clips() if c.speaker != "aa11aa11"} == {"train"}


def test_which_set_is_stable_and_roughly_80_10_10():
    assert speaker_of("right/bb05582b_nohash_0.wav") == "bb05582b"
    rng = np.random.default_rng(3)
    speakers = [f"{rng.integers(1 << 32):08x}" for _ in range(3000)]
    counts = Counter(which_set(s) for s in speakers)
    assert abs(counts["val"] / 3000 - 0.10) < 0.025 and abs(counts["test"] / 3000 - 0.10) < 0.025
    assert [which_set(s) for s in speakers[:50]] == [which_set(s) for s in speakers[:50]]


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="kws data speech-commands"):
        SpeechCommands(tmp_path / "nope")


def test_prepare_from_archive_verifies_unpacks_atomically_and_reuses(tmp_path):
    archive = make_archive(make_tree(tmp_path / "src"), tmp_path / "sc.tar.gz")
    dest = tmp_path / "out" / "sc"
    with pytest.raises(DataError, match="SHA-256"):
        prepare(dest, archive=archive)  # not the official archive's checksum
    assert not dest.exists()
    root = prepare(dest, archive=archive, expected_sha256=sha256(archive))
    assert root == dest and (dest / COMPLETE_MARKER).is_file()
    assert not dest.with_name("sc.partial").exists()
    assert len(SpeechCommands(dest).clips()) == 12
    m = (dest / "yes").stat().st_mtime_ns
    archive.unlink()  # complete: a rerun neither needs nor touches the archive
    assert prepare(dest, archive=archive) == dest and (dest / "yes").stat().st_mtime_ns == m


@pytest.mark.parametrize("bad", ["../evil.txt", "/tmp/kws-evil-abs.txt", "link"])
def test_prepare_rejects_malicious_members(tmp_path, bad):
    if bad == "link":
        info = tarfile.TarInfo("yes/link.wav")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    else:
        info = tarfile.TarInfo(bad)
    archive = make_archive(make_tree(tmp_path / "src"), tmp_path / "sc.tar.gz", extra=[info])
    dest = tmp_path / "out" / "sc"
    with pytest.raises(DataError, match="refusing to unpack member"):
        prepare(dest, archive=archive, expected_sha256=sha256(archive))
    assert not dest.exists() and not dest.with_name("sc.partial").exists()
    assert not (tmp_path / "out" / "evil.txt").exists() and not Path("/tmp/kws-evil-abs.txt").exists()


def test_prepare_truncated_archive_is_a_clear_error(tmp_path):
    archive = make_archive(make_tree(tmp_path / "src"), tmp_path / "sc.tar.gz")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match="not a valid .tar.gz or truncated"):
        prepare(tmp_path / "sc", archive=cut, expected_sha256=sha256(cut))
    assert not (tmp_path / "sc").exists() and not (tmp_path / "sc.partial").exists()


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    payload = b""
    ranges: list[str | None] = []

    def do_GET(self):  # noqa: N802 (http.server API)
        rng = self.headers.get("Range")
        type(self).ranges.append(rng)
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        body = self.payload[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def test_download_resumes_with_range_and_prepare_uses_it(tmp_path):
    archive = make_archive(make_tree(tmp_path / "src"), tmp_path / "sc.tar.gz")
    data = archive.read_bytes()
    _RangeHandler.payload, _RangeHandler.ranges = data, []
    server = http.server.HTTPServer(("127.0.0.1", 0), _RangeHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/speech_commands_v0.02.tar.gz"
        target = tmp_path / "dl" / "a.tar.gz"
        target.parent.mkdir()
        half = len(data) // 2
        target.with_name("a.tar.gz.part").write_bytes(data[:half])  # an interrupted earlier download
        download(url, target)
        assert _RangeHandler.ranges == [f"bytes={half}-"]
        assert target.read_bytes() == data and not target.with_name("a.tar.gz.part").exists()
        root = prepare(tmp_path / "net" / "sc", url=url, expected_sha256=hashlib.sha256(data).hexdigest())
        assert _RangeHandler.ranges[-1] is None and len(SpeechCommands(root).clips()) == 12
    finally:
        server.shutdown()
        server.server_close()


def test_offline_download_says_to_use_archive(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there: the connection is refused like an offline machine's
    with pytest.raises(DataError, match="no network.*--archive"):
        prepare(tmp_path / "sc", url=f"http://127.0.0.1:{port}/x.tar.gz")


def test_cli_reports_checksum_mismatch_without_traceback(tmp_path, capsys):
    archive = make_archive(make_tree(tmp_path / "src"), tmp_path / "sc.tar.gz")
    assert main(["data", "speech-commands", "--dest", str(tmp_path / "sc"), "--archive", str(archive)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kws: error:") and "does not match the official archive" in err


def test_shared_flac_test_set():
    sc = SpeechCommands(shared_data("speech_commands_v0.02_test"))
    words = sc.words()
    assert len(words) == 35 and "marvin" in words and "_silence_" not in words
    marvin = sc.clips("marvin")
    assert len(marvin) == 11 and all(c.path.suffix == ".flac" for c in marvin)
    assert all(len(c.speaker) == 8 and c.speaker in c.path.name for c in marvin)
    noise = sc.noise_files()
    assert sum(p.parent.name == "_background_noise_" for p in noise) == 6
    assert sum(p.parent.name == "_silence_" for p in noise) == 408
    x, sr = sf.read(marvin[0].path)
    assert sr == 16000 and x.ndim == 1
