"""Word lists for synthesized negatives, read from data_recipes/words/*.txt (one word a line,
`#` starts a comment)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Iterable

from kws.errors import DataError


def words_dir() -> Path:
    import data_recipes

    return Path(data_recipes.__file__).resolve().parent / "words"


@functools.lru_cache(maxsize=None)
def read_word_list(name: str) -> tuple[str, ...]:
    """The words of data_recipes/words/<name>.txt, lower-cased, in file order, without duplicates."""
    path = words_dir() / f"{name}.txt"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(f"word list {path} is missing or unreadable ({e.strerror}); "
                        "reinstall the package (pip install -e .)") from None
    words = [ln.split("#", 1)[0].strip().lower() for ln in text.splitlines()]
    return tuple(dict.fromkeys(w for w in words if w))


def speech_commands_words() -> list[str]:
    """The 35 words of Speech Commands v0.02."""
    return list(read_word_list("speech_commands"))


def common_words() -> list[str]:
    """About 500 common English words for generic synthesized negatives."""
    return list(read_word_list("common_english"))


def generic_negative_words(keyword: str, exclude: Iterable[str] | None = None) -> list[str]:
    """Speech Commands + common words, minus the keyword, its words, its homophones and its close
    negatives (those go to the close-negative class instead). `exclude` replaces the computed close
    negatives when given (e.g. the exact list a dataset used), and is always removed."""
    from kws.data import confusables as cf

    kw = cf.normalize_keyword(keyword)
    if exclude is None:
        exclude = [c.text for c in cf.close_negatives(kw)]
    drop = {kw, *kw.split(), *(e.strip().lower() for e in exclude)}
    kw_pron = cf.cmu_phones(kw)
    key = cf._strip(kw_pron) if kw_pron else None
    out = []
    for w in dict.fromkeys(speech_commands_words() + common_words()):
        if w in drop:
            continue
        if key is not None:
            prons = [cf._strip(p) for p in cf._cmu()[0].get(w, [])]
            # homophones ("four"/"for") and words that contain the keyword's sound are not negatives
            if any(p == key or cf._contains(p, key) for p in prons):
                continue
        out.append(w)
    return out
