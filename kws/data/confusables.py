"""Close negatives: words and sounds a detector must NOT fire on because they sound like the keyword.

Four sources, each tagged in `Confusable.how`:
- `table9`: the DROCC paper's Table 9 lists (marvin, forward, seven, follow).
- `subword`: parts of the keyword: its leading / trailing syllables, the keyword without its first
  consonant(s) and/or its final consonant(s) ("mar", "vin", "arvin", "marvi"). Syllables come from the
  CMU pronouncing dictionary (maximal-onset split); a part is spoken as a real word when the
  dictionary has a word pronounced exactly so, else as an espeak-ng phoneme string `[[...]]`.
- `dictionary`: real words within a small phoneme edit distance of the keyword, or sharing its
  first syllable or its rhyme (CMU dictionary, offline). The keyword, its homophones and words that
  contain the whole keyword are excluded (saying "marvins" *does* say "marvin").
- `phoneme_edit`: the keyword's own espeak-ng phonemes (`espeak-ng -q -x`) with one phoneme
  substituted by a near neighbour or deleted (first consonant, stressed vowel, last consonant...),
  spoken directly by espeak-ng. Only espeak-ng can say these; other engines skip them.
Words missing from the CMU dictionary ("zorblax") get their phonemes from espeak-ng instead.
`user`: lists given by the user (`extra=`; with `replace=True` they are the whole list).

Ranking is deterministic: user words, then Table 9, then the generated kinds interleaved
(subword, dictionary, phoneme_edit, each in its own ranked order) until `max_words`.

Near-homophones (`sound_distance`, `near_homophone`): a weighted phoneme edit distance on ARPAbet
(CMU and/or espeak-ng's reading, the smaller distance counts). A change costs 1, except
- an unstressed vowel for another unstressed vowel: 0.25 (reduced vowels are barely told apart:
  "marvin"/"marveen"/"marven"),
- a vowel for its long/short or tense/lax partner in the same vowel class (IY/IH, UW/UH, EY/EH,
  AA/AO/AH stressed): 0.5,
- a nasal for a nasal (m/n/ng: "narvin", "marvim") or a voicing pair (p/b, t/d, f/v, s/z...): 0.5,
- leaving out a final t or d after a consonant: 0.5 (speakers drop it: "leff" is how many say
  "left", so it is the keyword, not a close negative of it).
Two sounds at distance <= 0.5 are near-homophones: a listener (and a detector) may hear one as the
other, so such a "close negative" of the keyword is dropped (it is the keyword, not a miss), and
a training close negative that is near a val/test close negative is dropped (it would leak the test
word into training). `split_close_negatives` applies both rules.
"""

from __future__ import annotations

import functools
import itertools
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Iterable, Sequence

TABLE9: dict[str, list[str]] = {
    "marvin": ["mar", "marlin", "arvin", "marvik", "arvi"],
    "forward": ["for", "fervor", "ward", "reward", "onward"],
    "seven": ["one", "eleven", "heaven", "when", "devon"],
    "follow": ["fall", "fellow", "low", "hollow", "wallow"],
}
KINDS = ("table9", "subword", "dictionary", "phoneme_edit", "user")
DEFAULT_MAX_WORDS = 30


@dataclass(frozen=True)
class Confusable:
    text: str  # what is synthesized; "[[...]]" = espeak-ng phonemes
    how: str  # one of KINDS
    note: str = ""  # e.g. "leading syllable", "edit distance 1", "first consonant m->b"

    @property
    def is_phonemes(self) -> bool:
        return self.text.startswith("[[")


# ---------------------------------------------------------------- CMU dictionary (ARPAbet)
VOWELS = {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"}
CONSONANTS = ["B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG", "P", "R", "S", "SH",
              "T", "TH", "V", "W", "Y", "Z", "ZH"]
PHONES = sorted(VOWELS) + CONSONANTS
# legal English onsets for the maximal-onset syllable split
ONSETS = {(c,) for c in CONSONANTS if c != "NG"} | {tuple(o.split()) for o in (
    "P R", "P L", "B R", "B L", "T R", "D R", "K R", "K L", "G R", "G L", "F R", "F L", "TH R", "SH R",
    "S P", "S T", "S K", "S M", "S N", "S L", "S W", "S F", "S P R", "S T R", "S K R", "S P L", "S K W",
    "T W", "D W", "K W", "G W", "TH W", "P Y", "B Y", "F Y", "M Y", "K Y", "V Y", "HH Y", "S K Y")}


def _strip(phones: Sequence[str]) -> tuple[str, ...]:
    return tuple(re.sub(r"\d", "", p) for p in phones)


@functools.lru_cache(maxsize=1)
def _cmu() -> tuple[dict[str, list[tuple[str, ...]]], dict[tuple[str, ...], list[str]]]:
    """(word -> pronunciations with stress, stress-free pronunciation -> words). Only plain
    alphabetic words: no possessives, abbreviations with dots or numbered variants."""
    import pronouncing

    pronouncing.init_cmu()
    by_word: dict[str, list[tuple[str, ...]]] = {}
    by_pron: dict[tuple[str, ...], list[str]] = {}
    for word, phones in pronouncing.pronunciations:
        if not word.isalpha():
            continue
        p = tuple(phones.split())
        by_word.setdefault(word, []).append(p)
        by_pron.setdefault(_strip(p), []).append(word)
    return by_word, by_pron


def cmu_phones(text: str) -> tuple[str, ...] | None:
    """First CMU pronunciation of a word or phrase (with stress digits); None if a word is missing."""
    by_word = _cmu()[0]
    out: list[str] = []
    for w in _words(text):
        if w not in by_word:
            return None
        out += by_word[w][0]
    return tuple(out) or None


def phone_sequence(text: str) -> tuple[str, ...]:
    """Stress-free ARPAbet phones of a word or phrase: CMU's first pronunciation, else espeak-ng's
    reading (names and made-up words); () when neither knows it."""
    phones = cmu_phones(text)
    if phones is None:
        phones = espeak_to_arpa(espeak_tokens(text))
    return tuple(p for p in _strip(phones) if p in PHONES)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def syllables(phones: Sequence[str]) -> list[tuple[str, ...]]:
    """Maximal-onset split of an ARPAbet pronunciation into syllables."""
    phones = list(phones)
    nuclei = [i for i, p in enumerate(phones) if _strip([p])[0] in VOWELS]
    if not nuclei:
        return [tuple(phones)] if phones else []
    bounds = [0]
    for a, b in zip(nuclei, nuclei[1:]):
        cluster = _strip(phones[a + 1: b])
        split = b  # everything between the vowels goes to the next syllable if it is a legal onset
        for k in range(len(cluster), -1, -1):
            if k == 0 or cluster[len(cluster) - k:] in ONSETS:
                split = b - k
                break
        bounds.append(split)
    bounds.append(len(phones))
    return [tuple(phones[s:e]) for s, e in zip(bounds, bounds[1:])]


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def _neighbours(p: tuple[str, ...]) -> set[tuple[str, ...]]:
    """Every sequence one phoneme substitution, insertion or deletion away."""
    out = set()
    for i in range(len(p) + 1):
        for q in PHONES:
            out.add(p[:i] + (q,) + p[i:])
            if i < len(p) and q != p[i]:
                out.add(p[:i] + (q,) + p[i + 1:])
        if i < len(p):
            out.add(p[:i] + p[i + 1:])
    out.discard(p)
    return out


def _contains(big: tuple[str, ...], small: tuple[str, ...]) -> bool:
    n = len(small)
    return any(big[i:i + n] == small for i in range(len(big) - n + 1))


@functools.lru_cache(maxsize=4096)
def _familiarity(word: str) -> int:
    """Deterministic tie-break favouring ordinary words over rare names: 2 = in the project's
    common-word list, 1 = the dictionary also has an inflected form (walls, walled, walling)."""
    if word in _common_set():
        return 2
    by_word = _cmu()[0]
    return int(any(word + s in by_word for s in ("s", "es", "ed", "ing", "er", "ly")))


@functools.lru_cache(maxsize=1)
def _common_set() -> frozenset[str]:
    from kws.data.words import common_words, speech_commands_words

    return frozenset(common_words()) | frozenset(speech_commands_words())


def spelled(phones: Sequence[str]) -> str | None:
    """A dictionary word pronounced exactly `phones` (stress ignored), most familiar first."""
    words = _cmu()[1].get(_strip(phones), [])
    if not words:
        return None
    return sorted(words, key=lambda w: (-_familiarity(w), len(w), w))[0]


# ---------------------------------------------------------------- espeak-ng phonemes
ESPEAK_VOWELS = {"a", "a#", "aa", "A:", "A@", "A#", "aI", "aI@", "aI3", "aU", "aU@", "@", "@2", "@5", "@L",
                 "3", "3:", "e", "E", "e@", "eI", "i", "i:", "I", "I#", "I2", "i@", "i@3", "I@", "0", "O",
                 "O:", "O2", "O@", "o@", "OI", "oU", "@U", "u", "u:", "U", "U@", "V", "o"}
ARPA_TO_ESPEAK = {"AA": "A:", "AE": "a", "AO": "O:", "AW": "aU", "AY": "aI", "EH": "E", "EY": "eI",
                  "IH": "I", "IY": "i:", "OW": "oU", "OY": "OI", "UH": "U", "UW": "u:",
                  "B": "b", "CH": "tS", "D": "d", "DH": "D", "F": "f", "G": "g", "HH": "h", "JH": "dZ",
                  "K": "k", "L": "l", "M": "m", "N": "n", "NG": "N", "P": "p", "R": "r", "S": "s",
                  "SH": "S", "T": "t", "TH": "T", "V": "v", "W": "w", "Y": "j", "Z": "z", "ZH": "Z"}
RHOTIC = {"AA": "A@", "AO": "O@", "EH": "e@", "IH": "i@", "IY": "i@", "UH": "U@"}
ESPEAK_TO_ARPA = {"A:": "AA", "A@": "AA R", "A#": "AE", "a": "AE", "aa": "AE", "a#": "AH", "aI": "AY",
                  "aI@": "AY ER", "aI3": "AY ER", "aU": "AW", "aU@": "AW ER", "@": "AH", "@2": "AH",
                  "@5": "AH", "@L": "AH L", "3": "ER", "3:": "ER", "e": "EH", "E": "EH", "e@": "EH R",
                  "eI": "EY", "i": "IY", "i:": "IY", "I": "IH", "I#": "IH", "I2": "IH", "i@": "IY AH",
                  "i@3": "IH R", "I@": "IH R", "0": "AA", "O": "AO", "O:": "AO", "O2": "AO", "O@": "AO R",
                  "o@": "AO R", "OI": "OY", "oU": "OW", "@U": "OW", "o": "OW", "u": "UW", "u:": "UW", "U": "UH",
                  "U@": "UH R", "V": "AH",
                  "tS": "CH", "dZ": "JH", "D": "DH", "T": "TH", "S": "SH", "Z": "ZH", "N": "NG", "j": "Y",
                  "h": "HH", "r-": "R", "t#": "T", "d#": "D", "n-": "N", "l-": "L", "m-": "M", "x": "K"}
# near neighbours for a one-phoneme edit: similar place or manner for consonants, adjacent vowels
NEAR = {"m": ["b", "n"], "n": ["m", "d"], "N": ["n", "m"], "b": ["p", "m", "d"], "p": ["b", "t"],
        "d": ["t", "b", "g"], "t": ["d", "p", "k"], "t#": ["d", "k"], "g": ["k", "d"], "k": ["g", "t"],
        "f": ["v", "T", "s"], "v": ["f", "b", "D"], "s": ["z", "S", "f"], "z": ["s", "Z"], "S": ["s", "tS"],
        "Z": ["dZ", "S"], "tS": ["S", "dZ", "t"], "dZ": ["tS", "Z", "d"], "l": ["r", "w"], "r": ["l", "w"],
        "r-": ["l"], "w": ["r", "v"], "j": ["w", "dZ"], "h": ["f", "k"], "T": ["f", "s"], "D": ["v", "d"],
        "A@": ["O@", "3:"], "A:": ["a", "O:"], "a": ["E", "A:"], "aa": ["E", "A:"], "E": ["a", "I"],
        "e": ["a", "I"], "I": ["E", "i:"], "i": ["I", "eI"], "i:": ["I", "eI"], "eI": ["E", "aI"],
        "aI": ["eI", "OI"], "0": ["O:", "V"], "O:": ["0", "oU"], "O@": ["A@", "3:"], "o@": ["A@", "3:"],
        "oU": ["O:", "u:"], "u:": ["U", "oU"], "U": ["u:", "V"], "V": ["a", "0"], "3:": ["e@", "A@"],
        "3": ["@", "I"], "@": ["I", "V"], "@L": ["I", "oU"], "aU": ["aI", "oU"], "e@": ["i@", "3:"],
        "i@": ["e@", "I"], "OI": ["aI", "oU"], "U@": ["O@"], "a#": ["I", "E"], "I2": ["E", "i:"]}


def _espeak_run(args: list[str], text: str, voice: str = "en-us") -> str:
    try:
        p = subprocess.run(["espeak-ng", "-v", voice, "-q", "-x", "--sep=_", *args], input=text,
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    return p.stdout if p.returncode == 0 else ""


def _split_tokens(line: str) -> list[list[str]]:
    """espeak-ng `-x --sep=_` output -> words -> phoneme tokens (stress marks kept on the token)."""
    words = []
    for w in line.split():
        toks = [t for t in w.split("_") if t and t not in (";", "#", "||", "|")]
        if toks:
            words.append(toks)
    return words


@functools.lru_cache(maxsize=1024)
def espeak_tokens(text: str, voice: str = "en-us") -> tuple[tuple[str, ...], ...]:
    """espeak-ng's phonemes of `text` in `voice` (an accent), per word; () when espeak-ng is missing."""
    if not shutil.which("espeak-ng"):
        return ()
    out = _espeak_run([], text.replace("\n", " "), voice)
    return tuple(tuple(w) for w in _split_tokens(" ".join(out.split())))


def _base(tok: str) -> str:
    return tok.lstrip("',")


def _is_vowel(tok: str) -> bool:
    return _base(tok) in ESPEAK_VOWELS


def espeak_to_arpa(words: Sequence[Sequence[str]]) -> tuple[str, ...]:
    """Approximate ARPAbet (stress 1 on espeak's stressed vowels, 0 elsewhere) for dictionary look-ups."""
    out: list[str] = []
    for w in words:
        for i, tok in enumerate(w):
            b = _base(tok)
            nxt = _base(w[i + 1]) if i + 1 < len(w) else ""
            # i@ is the vowel of "near" before r (r-coloured), of "idea" elsewhere (two vowels)
            mapped = ("IH" if b == "i@" and nxt == "r" else ESPEAK_TO_ARPA.get(b, b.upper())).split()
            stressed = tok.startswith("'")
            for m in mapped:
                if m in VOWELS:
                    m += "1" if stressed else "0"
                    stressed = False
                if m == "R" and out and (out[-1] == "R" or out[-1].startswith("ER")):
                    continue  # an r after an r-coloured vowel ("3_r" in garage) is one r
                if re.sub(r"\d", "", m) in PHONES:
                    out.append(m)
    return tuple(out)


def arpa_to_espeak(phones: Sequence[str]) -> str:
    """ARPAbet -> an espeak-ng phoneme string (stress marks before stressed vowels, r-coloured
    vowels merged the way espeak-ng writes them)."""
    out, i = [], 0
    phones = list(phones)
    while i < len(phones):
        p = phones[i]
        base, stress = re.sub(r"\d", "", p), re.sub(r"\D", "", p)
        mark = "'" if stress == "1" else "," if stress == "2" else ""
        nxt = phones[i + 1] if i + 1 < len(phones) else None
        after = phones[i + 2] if i + 2 < len(phones) else None
        if base in RHOTIC and nxt == "R" and (after is None or re.sub(r"\d", "", after) not in VOWELS):
            out.append(mark + RHOTIC[base])
            i += 2
            continue
        if base == "ER":
            out.append(mark + ("3:" if stress in ("1", "2") else "3"))
        elif base == "AH":
            out.append(mark + ("V" if stress in ("1", "2") else "@"))
        else:
            out.append(mark + ARPA_TO_ESPEAK.get(base, base.lower()))
        i += 1
    return "".join(out)


def _phonemes_valid(candidates: list[str]) -> set[str]:
    """The `[[...]]` strings espeak-ng reads back as the phonemes we meant (a substitution can glue
    two tokens into another one, e.g. a + I -> aI)."""
    if not candidates or not shutil.which("espeak-ng"):
        return set()
    out = _espeak_run([], "\n".join(candidates) + "\n")
    lines = [ln for ln in out.splitlines() if ln.strip()]
    if len(lines) != len(candidates):  # one line per input line expected; otherwise check singly
        return {c for c in candidates if _phonemes_valid_one(c)}
    return {c for c, ln in zip(candidates, lines) if _same_tokens(c, ln)}


def _phonemes_valid_one(c: str) -> bool:
    return _same_tokens(c, _espeak_run([], c))


def _same_tokens(candidate: str, line: str) -> bool:
    got = [_base(t) for w in _split_tokens(line) for t in w]
    want = _intended.get(candidate)
    return want is not None and got == want


_intended: dict[str, list[str]] = {}


def _phoneme_text(words: Sequence[Sequence[str]]) -> str:
    text = "[[" + " ".join("".join(w) for w in words) + "]]"
    _intended[text] = [_base(t) for w in words for t in w]
    return text


# ---------------------------------------------------------------- generators
def _subwords(keyword: str, phones: tuple[str, ...] | None) -> list[Confusable]:
    if phones is None:
        return []
    syl = syllables(phones)
    key = _strip(phones)
    parts: list[tuple[tuple[str, ...], str]] = []
    for k in range(1, len(syl)):
        parts.append((sum(syl[:k], ()), "leading syllable" + ("s" if k > 1 else "")))
        parts.append((sum(syl[len(syl) - k:], ()), "trailing syllable" + ("s" if k > 1 else "")))
    vowels = [i for i, p in enumerate(phones) if _strip([p])[0] in VOWELS]
    if vowels:
        head, tail = vowels[0], len(phones) - 1 - vowels[-1]
        if head:
            parts.append((phones[head:], "without first consonant" + ("s" if head > 1 else "")))
        if tail:
            parts.append((phones[:len(phones) - tail], "without final consonant" + ("s" if tail > 1 else "")))
        if head and tail:
            parts.append((phones[head:len(phones) - tail], "without first and final consonants"))
    # parts that sound like one word of a phrase are already there as that word
    out, seen = [], {key} | {_strip(p) for w in _words(keyword) if (p := cmu_phones(w))}
    for part, note in parts:
        if len(part) < 2 or _strip(part) in seen or not any(_strip([p])[0] in VOWELS for p in part):
            continue
        seen.add(_strip(part))
        word = spelled(part)
        # one- and two-letter spellings ("a", "le") are read unpredictably by the engines
        if word and word not in _words(keyword) and (len(word) >= 3 or _familiarity(word) == 2):
            out.append(Confusable(word, "subword", note))
        elif shutil.which("espeak-ng"):
            text = "[[" + arpa_to_espeak(part) + "]]"
            out.append(Confusable(text, "subword", note + " (phonemes)"))
    # leading parts first: the onset is what a streaming detector hears first
    order = {"leading": 0, "without": 1, "trailing": 2}
    return sorted(out, key=lambda c: order[c.note.split()[0]])


def _dictionary(keyword: str, phones: tuple[str, ...] | None) -> list[Confusable]:
    if phones is None:
        return []
    by_word, by_pron = _cmu()
    key = _strip(phones)
    own = set(_words(keyword))
    homophones = set(by_pron.get(key, []))
    # how far is still "close": one edit for short words, more for long ones
    max_d = 1 if len(key) <= 4 else 2 if len(key) <= 7 else 3
    cand: dict[str, int] = {}
    ring1 = _neighbours(key)
    for q in ring1:
        for w in by_pron.get(q, []):
            cand[w] = min(cand.get(w, 9), 1)
    if max_d >= 2:
        for q1 in ring1:
            for q in _neighbours(q1):
                if q in by_pron and q != key:
                    for w in by_pron[q]:
                        cand.setdefault(w, 2)
    syl = [_strip(s) for s in syllables(phones)]
    if len(syl) >= 2:  # same first syllable or same rhyme, same syllable count: one more edit allowed
        first = syl[0]
        last_v = max(i for i, p in enumerate(syl[-1]) if p in VOWELS)
        rhyme = syl[-1][last_v:]
        n_syl = len(syl)
        for q, words in by_pron.items():
            if (q[:len(first)] == first or q[-len(rhyme):] == rhyme) and abs(len(q) - len(key)) <= 2 \
                    and sum(p in VOWELS for p in q) == n_syl:
                d = edit_distance(q, key)
                if d <= max_d + 1:
                    for w in words:
                        cand.setdefault(w, d)
    out = []
    for w, d in cand.items():
        if w in own or w in homophones or len(w) < 2:
            continue
        prons = [_strip(p) for p in by_word[w]]
        if any(p == key or _contains(p, key) for p in prons):
            continue
        fam = _familiarity(w)
        # an ordinary word two edits away ranks with a rare name one edit away
        out.append((d + (fam == 0), d, -fam, int(prons[0][:1] != key[:1]), abs(len(prons[0]) - len(key)), w))
    out.sort()
    return [Confusable(r[-1], "dictionary", f"edit distance {r[1]}") for r in out]


def _phoneme_edits(words: tuple[tuple[str, ...], ...]) -> list[Confusable]:
    flat = [(wi, ti, t) for wi, w in enumerate(words) for ti, t in enumerate(w)]
    if not flat:
        return []
    vowels = [x for x in flat if _is_vowel(x[2])]
    cons = [x for x in flat if not _is_vowel(x[2])]
    stressed = [x for x in vowels if x[2].startswith("'")] or vowels[:1]
    unstressed = [x for x in vowels if x not in stressed]
    slots: list[tuple[tuple[int, int, str], str]] = []
    if cons and cons[0][1] == 0 and cons[0][0] == 0:
        slots.append((cons[0], "first consonant"))
    if stressed:
        slots.append((stressed[0], "stressed vowel"))
    if cons and (not slots or cons[-1] != slots[0][0]):
        slots.append((cons[-1], "last consonant"))
    if unstressed:
        slots.append((unstressed[-1], "unstressed vowel"))
    edits: list[tuple[list[list[str]], str]] = []
    for round_ in range(3):  # first neighbour of every slot, then deletions, then second neighbours
        for (wi, ti, tok), where in slots:
            mark = tok[: len(tok) - len(_base(tok))]
            if round_ == 1:
                if where in ("first consonant", "last consonant"):
                    w = [list(x) for x in words]
                    del w[wi][ti]
                    if any(_is_vowel(t) for t in w[wi]):
                        edits.append((w, f"{where} {_base(tok)} deleted"))
                continue
            near = NEAR.get(_base(tok), [])
            k = 0 if round_ == 0 else 1
            if k < len(near):
                w = [list(x) for x in words]
                w[wi][ti] = mark + near[k]
                edits.append((w, f"{where} {_base(tok)}->{near[k]}"))
    out, seen = [], {tuple(_base(t) for w in words for t in w)}
    texts = []
    for w, note in edits:
        sig = tuple(_base(t) for x in w for t in x)
        if sig in seen:
            continue
        seen.add(sig)
        texts.append((_phoneme_text(w), note))
    valid = _phonemes_valid([t for t, _ in texts])
    for t, note in texts:
        if t in valid:
            out.append(Confusable(t, "phoneme_edit", note))
    return out


def _interleave(lists: Sequence[list[Confusable]]) -> list[Confusable]:
    out, i = [], 0
    while any(i < len(lst) for lst in lists):
        out += [lst[i] for lst in lists if i < len(lst)]
        i += 1
    return out


@functools.lru_cache(maxsize=256)
def _generated(keyword: str) -> tuple[Confusable, ...]:
    phones = _phones(keyword)
    tokens = espeak_tokens(keyword)
    parts = keyword.split()
    if len(parts) == 1:
        return tuple(_interleave([_subwords(keyword, phones), _dictionary(keyword, phones),
                                  _phoneme_edits(tokens)]))
    # a phrase ("hey computer"): each of its words said alone is the closest miss; dictionary
    # neighbours replace one word at a time ("hey commuter", "hay computer")
    alone = [Confusable(w, "subword", "word of the phrase") for w in sorted(set(parts), key=parts.index)]
    swapped = []
    for i, w in enumerate(parts):
        near = _dictionary(w, _phones(w))[:8]
        swapped.append([Confusable(" ".join(parts[:i] + [c.text] + parts[i + 1:]), "dictionary",
                                   f"{w}->{c.text}, {c.note}") for c in near])
    return tuple(_interleave([alone + _subwords(keyword, phones), _interleave(swapped),
                              _phoneme_edits(tokens)]))


def _phones(text: str) -> tuple[str, ...] | None:
    """CMU phonemes, or espeak-ng's converted to ARPAbet for words the dictionary lacks."""
    phones = cmu_phones(text)
    if phones is None:
        tokens = espeak_tokens(text)
        phones = espeak_to_arpa(tokens) or None if tokens else None
    return phones


def normalize_keyword(keyword: str) -> str:
    kw = " ".join(_words(keyword))
    if not kw:
        raise ValueError(f"keyword {keyword!r} has no letters")
    return kw


def close_negatives(keyword: str, extra: Iterable[str] = (), replace: bool = False,
                    max_words: int = DEFAULT_MAX_WORDS) -> list[Confusable]:
    """Close negatives for `keyword` (see module doc). `extra` adds the user's own words (always
    kept); `replace=True` uses only them. The generated part is capped so the total is at most
    `max_words` (Table 9 and user words are never cut)."""
    kw = normalize_keyword(keyword)
    kw_pron = cmu_phones(kw)
    out: list[Confusable] = []
    seen = {kw}

    def add(c: Confusable) -> None:
        t = c.text.strip().lower() if not c.is_phonemes else c.text.strip()
        if not t or t in seen:
            return
        if not c.is_phonemes and kw_pron is not None and cmu_phones(t) is not None \
                and _strip(cmu_phones(t)) == _strip(kw_pron) and c.how != "user":
            return  # homophone of the keyword: it IS the keyword to a listener
        seen.add(t)
        out.append(Confusable(t, c.how, c.note))

    for e in extra:
        add(Confusable(e, "user"))
    if replace:
        return out
    for w in TABLE9.get(kw, []):
        add(Confusable(w, "table9", "DROCC paper Table 9"))
    for c in _generated(kw):
        if len(out) >= max_words:
            break
        add(c)
    return out


# ---------------------------------------------------------------- near-homophones and splits
VOWEL_CLASSES = [{"IY", "IH"}, {"UW", "UH"}, {"EY", "EH"}, {"AA", "AO", "AH"}]
NASALS = {"M", "N", "NG"}
VOICING = [{"P", "B"}, {"T", "D"}, {"K", "G"}, {"F", "V"}, {"S", "Z"}, {"SH", "ZH"}, {"CH", "JH"}, {"TH", "DH"}]
NEAR_HOMOPHONE = 0.5
FINAL_DROPPABLE = {"T", "D"}  # final cluster reduction (_gap_costs)


def _sub_cost(a: str, b: str) -> float:
    ba, bb = _strip([a])[0], _strip([b])[0]
    if ba == bb:
        return 0.0
    va, vb = ba in VOWELS, bb in VOWELS
    if va and vb:
        if a[-1:] in ("0", "") and b[-1:] in ("0", ""):
            return 0.25  # both unstressed (or stress unknown)
        return 0.5 if any(ba in c and bb in c for c in VOWEL_CLASSES) else 1.0
    if va or vb:
        return 1.0
    if (ba in NASALS and bb in NASALS) or any(ba in c and bb in c for c in VOICING):
        return 0.5
    return 1.0


def _gap_costs(seq: Sequence[str]) -> list[float]:
    """What leaving out each phone of `seq` costs: 1, except a final T or D after a consonant (0.5),
    which speakers drop in the final cluster ("lef'" for left, "han'" for hand)."""
    costs = [1.0] * len(seq)
    base = _strip(seq)
    if len(base) >= 2 and base[-1] in FINAL_DROPPABLE and base[-2] not in VOWELS:
        costs[-1] = 0.5
    return costs


def weighted_distance(a: Sequence[str], b: Sequence[str]) -> float:
    """Edit distance between two ARPAbet sequences with the costs of the module doc."""
    gap_a, gap_b = _gap_costs(a), _gap_costs(b)
    prev = [0.0]
    for j in range(len(b)):
        prev.append(prev[-1] + gap_b[j])
    for i, x in enumerate(a, 1):
        cur = [prev[0] + gap_a[i - 1]]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + gap_a[i - 1], cur[j - 1] + gap_b[j - 1], prev[j - 1] + _sub_cost(x, y)))
        prev = cur
    return prev[-1]


@functools.lru_cache(maxsize=8192)
def sounds(text: str, use_espeak: bool = True) -> tuple[tuple[str, ...], ...]:
    """The ARPAbet readings of `text` (CMU pronunciations and espeak-ng's); () when unknown."""
    out: list[tuple[str, ...]] = []
    if not text.startswith("[["):
        by_word = _cmu()[0]
        ws = _words(text)
        if ws and all(w in by_word for w in ws):
            if len(ws) == 1:
                out += by_word[ws[0]]
            else:
                out.append(tuple(p for w in ws for p in by_word[w][0]))
    if use_espeak:
        tok = espeak_tokens(text)
        if tok:
            out.append(espeak_to_arpa(tok))
    return tuple(dict.fromkeys(o for o in out if o))


def sound_distance(a: str, b: str, use_espeak: bool = True) -> float:
    """Smallest weighted distance between any readings of `a` and `b` (inf when one is unknown);
    `use_espeak=False` reads `a` from the CMU dictionary only (fast, for long word lists)."""
    sa, sb = sounds(a, use_espeak), sounds(b, True)
    best = float("inf")
    for x in sa:
        for y in sb:
            if abs(len(x) - len(y)) <= 1 + int(best > 1):  # a longer gap costs more than "near"
                best = min(best, weighted_distance(x, y))
    return best


def near_homophone(a: str, b: str, use_espeak: bool = True) -> bool:
    return sound_distance(a, b, use_espeak) <= NEAR_HOMOPHONE


# ---------------------------------------------------------------- the keyword's other pronunciations
MAX_VARIANTS = 4


@functools.lru_cache(maxsize=256)
def dictionary_variants(keyword: str) -> tuple[str, ...]:
    """The CMU dictionary's pronunciations of `keyword` that no English espeak-ng accent says, as
    espeak-ng phoneme strings: amelia -> ("[[@m'i:lj@]]",), three syllables, where espeak-ng says
    a#m'i:li@ in every accent; data -> ("[[d'at@]]",). espeak-ng voices say about 90% of the
    synthesized positives, so without these a detector trained from text knows one reading of its
    word, and misses the people who say it the other way (BENCHMARKS.md text_only_dict).

    A pronunciation counts as said when it is a near-homophone (`weighted_distance` <= 0.5) of some
    accent's reading. Only dictionary words: for names the dictionary lacks, a second letter-to-sound
    guess is no evidence of how people say them. A phrase combines its words' pronunciations (at most
    MAX_VARIANTS). () when espeak-ng or the dictionary does not know the words."""
    from kws.data.tts import ESPEAK_ACCENTS

    kw = normalize_keyword(keyword)
    by_word = _cmu()[0]
    ws = kw.split()
    if not all(w in by_word for w in ws) or not espeak_tokens(kw):
        return ()
    said = [espeak_to_arpa(espeak_tokens(kw, accent)) for accent in ESPEAK_ACCENTS]
    said = [r for r in said if r]
    out: list[str] = []
    chosen: list[tuple[str, ...]] = []
    for combo in itertools.islice(itertools.product(*(by_word[w] for w in ws)), 16):
        flat = tuple(p for pron in combo for p in pron)
        if any(weighted_distance(flat, r) <= NEAR_HOMOPHONE for r in said + chosen):
            continue
        text = "[[" + " ".join(arpa_to_espeak(pron) for pron in combo) + "]]"
        # espeak-ng must read the string back as the dictionary's phonemes (a glued pair of symbols
        # can make another phoneme)
        if weighted_distance(espeak_to_arpa(espeak_tokens(text)), flat) > NEAR_HOMOPHONE:
            continue
        out.append(text)
        chosen.append(flat)
        if len(out) >= MAX_VARIANTS:
            break
    return tuple(out)


EVAL_WORDS = 15  # val/test close-negative words for keywords outside Table 9
TRAIN_POOL = 60  # generated words considered for the train side


@dataclass(frozen=True)
class CloseNegativeSplit:
    """Which close negatives go where: `eval` in val/test, `train` (word-disjoint from `eval`,
    no near-homophone of an `eval` word) for the train split, `dropped` (text, reason)."""
    eval: list[Confusable]
    train: list[Confusable]
    dropped: list[tuple[str, str]]


def split_close_negatives(keyword: str, extra: Iterable[str] = (), replace: bool = False,
                          eval_words: int = EVAL_WORDS, pool: int = TRAIN_POOL,
                          variants: Sequence[str] = ()) -> CloseNegativeSplit:
    """The paper's protocol plus word-disjoint training close negatives.

    val/test (`eval`): user words (`extra`) always; then for a Table 9 keyword exactly its Table 9
    words (DROCC paper, Appendix E.5); otherwise every other word of the ranked generated list (so
    val/test and train each get every kind: subword, dictionary, phoneme_edit) up to `eval_words`.
    train (`train`): the other generated words of the first `pool`, minus any near-homophone of an
    `eval` word. Generated words that are near-homophones of the keyword are dropped everywhere.
    The eval list does not depend on `pool`, so "none" and "disjoint" builds share val/test.
    `variants` (other pronunciations of the keyword, said as positives) count as the keyword."""
    kw = normalize_keyword(keyword)
    extra = list(extra)
    # a prefix of one long ranking: the eval words never depend on `pool`
    ranked = close_negatives(kw, extra=extra, replace=replace, max_words=2 * max(pool, 2 * eval_words) + len(extra) + 5)
    dropped: list[tuple[str, str]] = []
    kept: list[Confusable] = []
    for c in ranked:
        same = next((k for k in (kw, *variants) if near_homophone(c.text, k)), None)
        if c.how in ("generated", "subword", "dictionary", "phoneme_edit") and same is not None:
            dropped.append((c.text, f"near-homophone of {same!r} ({c.note})"))
        else:
            kept.append(c)
    user = [c for c in kept if c.how == "user"]
    table = [c for c in kept if c.how == "table9"]
    gen_all = [c for c in kept if c.how not in ("user", "table9")]
    gen = gen_all[:pool]
    if replace:
        return CloseNegativeSplit(user, [], dropped)
    if table:
        ev, rest = user + table, gen
    else:
        picked = gen_all[0::2][:eval_words]
        ev, rest = user + picked, [c for c in gen if c not in picked]
    train = []
    for c in rest:
        near = next((e.text for e in ev if near_homophone(c.text, e.text)), None)
        if near is not None:
            dropped.append((c.text, f"near-homophone of val/test word {near!r}"))
        else:
            train.append(c)
    return CloseNegativeSplit(ev, train, dropped)


def summary(items: Sequence[Confusable]) -> str:
    """One line per kind: how many and which (for the dataset summary)."""
    lines = []
    for kind in KINDS:
        texts = [c.text for c in items if c.how == kind]
        if texts:
            lines.append(f"{kind} ({len(texts)}): {', '.join(texts)}")
    return "\n".join(lines)
