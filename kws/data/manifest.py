"""The clip manifest: one JSON object per line, one `ClipRecord` per clip of a dataset.

Paths are relative to the dataset folder so a dataset can be moved or copied as a whole.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterable

from kws.errors import DataError
from kws.util import atomic_write_text

KINDS = ("positive", "negative", "close_negative", "noise", "word")  # word: the auxiliary word task only
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ClipRecord:
    id: str
    path: str  # relative to the dataset folder
    label: int  # 1 keyword, 0 not
    kind: str  # positive | negative | close_negative | noise
    text: str
    source: str  # e.g. tts:espeak-ng:en-gb-scotland+f2, real:speech_commands, noise:pink
    speaker: str
    split: str  # train | val | test

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.label not in (0, 1):
            raise ValueError(f"label must be 0 or 1, got {self.label!r}")
        if (self.label == 1) != (self.kind == "positive"):
            raise ValueError(f"label {self.label} does not agree with kind {self.kind!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=False)


_FIELDS = tuple(f.name for f in fields(ClipRecord))


def write_manifest(path: str | os.PathLike, records: Iterable[ClipRecord]) -> None:
    """Write the records as JSON Lines, atomically."""
    atomic_write_text(path, "".join(r.to_json() + "\n" for r in records))


def read_manifest(path: str | os.PathLike) -> list[ClipRecord]:
    """Read a manifest; a missing file or a malformed line is a `DataError` naming the line."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no manifest here; build the dataset with `kws data build --keyword WORD --out DIR`.")
    out = []
    with open(p, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                if not isinstance(d, dict) or set(d) != set(_FIELDS):
                    raise ValueError(f"expected the fields {', '.join(_FIELDS)}")
                out.append(ClipRecord(**{k: d[k] for k in _FIELDS}))
            except (ValueError, TypeError) as e:
                raise DataError(f"{p}:{n}: malformed manifest line ({e}); rebuild the dataset "
                                "(rerun `kws data build` with the same --out).") from None
    return out
