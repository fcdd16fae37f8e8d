"""Shared fixtures: small generated audio, never the real corpora (tests that use ../shared/data skip
when it is absent)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KWS_NO_PROGRESS", "1")

SHARED_DATA = Path(os.environ.get("KWS_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def speechlike(rng) -> np.ndarray:
    """1.3 s of a chirp plus noise: broadband, non-stationary, deterministic."""
    sr = 16000
    t = np.arange(int(1.3 * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * (200 + 900 * t) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    x += 0.02 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def shared_data(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test when that corpus is not on this machine."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"optional real-speech corpus not present: {p}")
    return p


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory) -> tuple[Path, str]:
    """A real detector for 'marvin', trained once per session on a small synthesized dataset
    (preset small, BCE, FastGRNN hidden 32, 60 epochs: about 10 s): weak but genuinely trained, for end-to-end tests of the
    live and streaming paths. Returns (bundle_path, keyword)."""
    from kws.data.builder import BuildOptions, build_dataset
    from kws.train.api import TrainOptions, train_keyword

    root = tmp_path_factory.mktemp("trained")
    # the standard recipe: this fixture tests the plumbing with a model that separates synthesized
    # clips clearly; the realistic recipe (the default) makes the tiny synthetic task harder
    build_dataset(BuildOptions(keyword="marvin", out=root / "data", preset="small", seed=0,
                               augment_recipe="standard", carrier_share=0.0, clean_share=0.0))
    result = train_keyword(TrainOptions(keyword="marvin", data=root / "data", method="bce", model="fastgrnn",
                                        hidden=32, epochs=60, out=root / "marvin.kws", run_dir=root / "run"))
    return result.bundle, "marvin"


@pytest.fixture(scope="session")
def pulse(tmp_path_factory):
    """Environment variables of a running PulseAudio null-sink microphone (scripts/pulse_null_sink.sh,
    shared by the `mic` tests of kws listen and kws record); stopped at the end."""
    missing = [b for b in ("pulseaudio", "pactl", "parec", "paplay") if shutil.which(b) is None]
    if missing:
        pytest.skip(f"PulseAudio binaries missing ({', '.join(missing)}); `make apt` installs them")
    state = tmp_path_factory.mktemp("pulse")
    script = Path(__file__).resolve().parents[1] / "scripts" / "pulse_null_sink.sh"
    res = subprocess.run(["bash", str(script), "start", str(state)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, f"pulse_null_sink.sh start failed:\n{res.stdout}\n{res.stderr}"
    env = dict(os.environ, KWS_NO_PROGRESS="1")
    for key, value in re.findall(r"(\w+)=(\S+)", res.stdout.strip().splitlines()[-1]):
        env[key] = value
    assert env["PULSE_SERVER"].startswith("unix:")
    yield env
    subprocess.run(["bash", str(script), "stop", str(state)], capture_output=True, timeout=60)
    pid_files = list(Path(state).glob("*.pid")) if Path(state).exists() else []
    assert not pid_files, "stop left processes behind"
