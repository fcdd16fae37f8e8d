"""Loading a dataset folder made by `kws data build` (see kws.data.builder): one split at a time,
features memory-mapped so a large split costs no RAM until the trainer touches it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kws.data.manifest import SPLITS, ClipRecord, read_manifest
from kws.errors import DataError



@dataclass
class SplitData:
    x: np.ndarray  # memmap float32 [N, T, F], raw log-mel (no normalization)
    y: np.ndarray  # int64 [N], 1 = keyword
    kinds: np.ndarray  # str [N]: positive | negative | close_negative | noise
    records: list[ClipRecord]
    feature_config: Any  # kws.features.FeatureConfig

    def __len__(self) -> int:
        return len(self.records)

    @property
    def speakers(self) -> np.ndarray:
        return np.array([r.speaker for r in self.records])


def _fix(data_dir: Path) -> str:
    return f"rerun `kws data build` with --out {data_dir} to finish or rebuild it"


def dataset_info(data_dir: str | os.PathLike) -> dict[str, Any]:
    """The dataset's `dataset.json` (keyword, sizes, feature config, counts, skipped inputs...)."""
    d = Path(data_dir)
    p = d / "dataset.json"
    if not p.is_file():
        raise DataError(f"{d}: not a dataset folder (no dataset.json); build one with "
                        f"`kws data build --keyword WORD --out {d}`.")
    try:
        info = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{p}: unreadable or corrupt ({e}); {_fix(d)}.") from None
    if not isinstance(info, dict) or info.get("format") != "kws-dataset":
        raise DataError(f"{p}: not a kws dataset description; {_fix(d)}.")
    return info


def load_split(data_dir: str | os.PathLike, split: str) -> SplitData:
    """Features (memory-mapped), labels, kinds and records of one split, rows in manifest order."""
    from kws.features import FeatureConfig

    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    d = Path(data_dir)
    info = dataset_info(d)
    try:
        cfg = FeatureConfig.from_dict(info["features"])
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{d / 'dataset.json'}: bad feature config ({e}); {_fix(d)}.") from None
    records = [r for r in read_manifest(d / "manifest.jsonl") if r.split == split]
    npy = d / "features" / f"{split}.npy"
    if not npy.is_file():
        raise DataError(f"{npy}: missing (the build did not finish); {_fix(d)}.")
    try:
        x = np.load(npy, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise DataError(f"{npy}: unreadable or truncated ({e}); delete it and {_fix(d)}.") from None
    want = (len(records), cfg.window_frames, cfg.n_features)
    if x.dtype != np.float32 or tuple(x.shape) != want:
        raise DataError(f"{npy}: holds {x.dtype} {tuple(x.shape)} but the manifest needs float32 {want}; "
                        f"delete it and {_fix(d)}.")
    y = np.array([r.label for r in records], dtype=np.int64)
    kinds = np.array([r.kind for r in records], dtype=str)
    return SplitData(x=x, y=y, kinds=kinds, records=records, feature_config=cfg)
