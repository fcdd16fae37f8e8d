"""Shared fixtures: small generated audio, never the real corpora (tests that use ../shared/data skip
when it is absent)."""

from __future__ import annotations

import os
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
    build_dataset(BuildOptions(keyword="marvin", out=root / "data", preset="small", seed=0))
    result = train_keyword(TrainOptions(keyword="marvin", data=root / "data", method="bce", model="fastgrnn",
                                        hidden=32, epochs=60, out=root / "marvin.kws", run_dir=root / "run"))
    return result.bundle, "marvin"
