"""Small shared helpers: atomic writes and progress bars."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds,
    so an interrupted job never leaves a half-written file under the final name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def progress_enabled() -> bool:
    return os.environ.get("KWS_NO_PROGRESS", "") not in ("1", "true") and sys.stderr.isatty()


def progress(items: Iterable[T], desc: str, total: int | None = None, **kw) -> Iterable[T]:
    """A tqdm bar on stderr when interactive; plain iteration otherwise (CI logs stay readable)."""
    from tqdm import tqdm

    return tqdm(items, desc=desc, total=total, disable=not progress_enabled(), file=sys.stderr,
                dynamic_ncols=True, **kw)
