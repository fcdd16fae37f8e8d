"""`make demo` end to end in its quick form: dataset, training, both exports and streaming detection
all run and leave their artifacts; a rerun resumes instead of redoing the work."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kws.demo import KEYWORD, run_demo


@pytest.mark.slow
def test_quick_demo_runs_end_to_end_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a relative work folder, as `make demo` uses (the C build runs elsewhere)
    work = Path("demo")
    assert run_demo(work, quick=True) == 0
    out = capsys.readouterr().out
    for step in ("1/4", "2/4", "3/4", "4/4"):
        assert step in out
    tmp_path = tmp_path / work
    bundle = tmp_path / f"{KEYWORD}.kws"
    assert bundle.is_file()
    assert (tmp_path / "onnx" / "model_window_int8.onnx").is_file()
    export = json.loads((tmp_path / "onnx" / "export.json").read_text())
    assert export["keyword"] == KEYWORD
    assert (tmp_path / "c" / "kws.h").is_file() and "host harness" in out and "PASS" in out
    assert (tmp_path / "demo_stream.wav").is_file() and "detections of 'marvin'" in out
    verdict = re.search(r"found (\d) of (\d) 'marvin' .*, (\d+) false alarm", out)
    assert verdict and int(verdict.group(1)) <= int(verdict.group(2)) == 6

    clips = sorted(p.stat().st_mtime_ns for p in (tmp_path / "data" / "clips").rglob("*.wav"))
    assert run_demo(work, quick=True) == 0  # resumes: the dataset is reused, not rebuilt
    assert sorted(p.stat().st_mtime_ns for p in (tmp_path / "data" / "clips").rglob("*.wav")) == clips
