"""Close negatives and word lists."""

from __future__ import annotations

import shutil

import pytest

from kws.data import confusables as cf
from kws.data import words

needs_espeak = pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng is not installed")


def test_table9_is_built_in_and_comes_first():
    assert cf.TABLE9["marvin"] == ["mar", "marlin", "arvin", "marvik", "arvi"]
    assert cf.TABLE9["forward"] == ["for", "fervor", "ward", "reward", "onward"]
    assert cf.TABLE9["seven"] == ["one", "eleven", "heaven", "when", "devon"]
    assert cf.TABLE9["follow"] == ["fall", "fellow", "low", "hollow", "wallow"]
    for kw, table in cf.TABLE9.items():
        got = cf.close_negatives(kw)
        assert [c.text for c in got[:5]] == table and all(c.how == "table9" for c in got[:5])


@needs_espeak
def test_marvin_has_every_generated_kind_and_never_the_keyword():
    got = cf.close_negatives("Marvin", max_words=30)
    assert 20 <= len(got) <= 30
    kinds = {c.how for c in got}
    assert {"table9", "subword", "dictionary", "phoneme_edit"} <= kinds
    texts = [c.text for c in got]
    assert len(set(texts)) == len(texts)
    assert "marvin" not in texts
    key = cf._strip(cf.cmu_phones("marvin"))
    for c in got:
        if c.how == "dictionary":
            # a real word, near in sound, not a homophone and not containing "marvin"
            prons = [cf._strip(p) for p in cf._cmu()[0][c.text]]
            assert all(p != key and not cf._contains(p, key) for p in prons)
            assert min(cf.edit_distance(p, key) for p in prons) <= 3
        if c.how == "phoneme_edit":
            assert c.is_phonemes and c.text != "[[m'A@vIn]]"
    # the first consonant and the stressed vowel are edited; words sharing "mar-" are found
    assert "[[b'A@vIn]]" in texts
    assert any(c.how == "dictionary" and c.text.startswith("mar") for c in got)
    assert "vin" in texts  # trailing syllable spoken as a real word
    # deterministic
    assert got == cf.close_negatives("marvin", max_words=30)


def test_syllables_and_edit_distance():
    assert cf.syllables(["M", "AA1", "R", "V", "IH0", "N"]) == [("M", "AA1", "R"), ("V", "IH0", "N")]
    assert cf.syllables(["EH0", "K", "S", "T", "R", "AH0"]) == [("EH0", "K"), ("S", "T", "R", "AH0")]
    assert cf.edit_distance(["M", "AA", "R"], ["B", "AA", "R", "N"]) == 2
    assert cf.arpa_to_espeak(["M", "AA1", "R", "V", "IH0", "N"]) == "m'A@vIn"


def test_cap_and_user_lists():
    got = cf.close_negatives("marvin", max_words=12)
    assert len(got) == 12
    got = cf.close_negatives("marvin", extra=["Harvey", "marvin", "starving"], max_words=12)
    user = [c.text for c in got if c.how == "user"]
    assert user == ["harvey", "starving"]  # the keyword itself is never a negative
    assert len(got) == 12 and got[0].text == "harvey"
    only = cf.close_negatives("marvin", extra=["harvey", "carving"], replace=True)
    assert [(c.text, c.how) for c in only] == [("harvey", "user"), ("carving", "user")]
    with pytest.raises(ValueError):
        cf.close_negatives("  123 ")


@needs_espeak
def test_word_missing_from_the_dictionary_falls_back_to_espeak():
    assert cf.cmu_phones("zorblax") is None
    got = cf.close_negatives("zorblax")
    kinds = {c.how for c in got}
    assert {"subword", "phoneme_edit"} <= kinds
    edits = [c.text for c in got if c.how == "phoneme_edit"]
    assert all(t.startswith("[[") and "bl" in t for t in edits)
    assert any(c.how == "dictionary" for c in got)  # e.g. words rhyming on "-ax"
    assert "zorblax" not in [c.text for c in got]


@needs_espeak
def test_phoneme_edits_are_read_back_by_espeak_as_intended():
    got = [c for c in cf.close_negatives("seven") if c.how == "phoneme_edit"]
    assert len(got) >= 4
    for c in got:
        back = [cf._base(t) for w in cf._split_tokens(cf._espeak_run([], c.text)) for t in w]
        assert back == cf._intended[c.text]


def test_word_lists():
    sc = words.speech_commands_words()
    assert len(sc) == 35 and len(set(sc)) == 35
    assert {"marvin", "sheila", "visual", "backward", "learn", "follow", "forward"} <= set(sc)
    common = words.common_words()
    assert 300 <= len(common) <= 600 and len(set(common)) == len(common)
    assert all(w.isalpha() and w == w.lower() for w in common)


@needs_espeak
def test_generic_negatives_exclude_keyword_homophones_and_close_negatives():
    neg = words.generic_negative_words("four")
    assert "four" not in neg and "for" not in neg  # homophone
    close = {c.text for c in cf.close_negatives("four")}
    assert not close & set(neg)
    assert "marvin" in neg and "house" in neg
    neg = words.generic_negative_words("marvin", exclude=["house"])
    assert "marvin" not in neg and "house" not in neg and "dog" in neg


@needs_espeak
def test_phrase_keywords_use_each_word_and_swap_one_word():
    got = cf.close_negatives("hey computer")
    texts = [c.text for c in got]
    assert "hey computer" not in texts
    assert {"hey", "computer"} <= set(texts)
    assert "hay" not in texts  # sounds exactly like "hey", already present
    swaps = [c.text for c in got if c.how == "dictionary"]
    assert swaps and all(len(t.split()) == 2 for t in swaps)
    assert any(t.startswith("hey ") for t in swaps) and any(t.endswith(" computer") for t in swaps)
    assert any(c.how == "phoneme_edit" for c in got)


def test_a_dropped_final_t_or_d_after_a_consonant_is_near():
    # "lef'" is how many people say "left": half a change, like a voicing pair
    assert cf.weighted_distance(("L", "EH1", "F", "T"), ("L", "EH1", "F")) == 0.5
    assert cf.weighted_distance(("L", "EH1", "F"), ("L", "EH1", "F", "T")) == 0.5
    assert cf.weighted_distance(("HH", "AE1", "N", "D"), ("HH", "AE1", "N")) == 0.5
    # only at the end, only after a consonant: "right" without its t is "rye", another word
    assert cf.weighted_distance(("R", "AY1", "T"), ("R", "AY1")) == 1.0
    assert cf.weighted_distance(("L", "EH1", "F", "T"), ("L", "EH1", "T")) == 1.0
    assert cf.weighted_distance(("T", "R", "IY1"), ("R", "IY1")) == 1.0


@needs_espeak
def test_left_loses_leff_but_keeps_its_real_misses():
    sp = cf.split_close_negatives("left")
    texts = [c.text for c in sp.eval + sp.train]
    assert "leff" not in texts and any(t == "leff" for t, _ in sp.dropped)
    assert "lett" in texts and "[['Eft]]" in texts  # another consonant, no first consonant: misses


@needs_espeak
def test_near_homophones_are_dropped_and_table9_is_the_eval_list():
    # the near-homophones of "marvin" the first lists held: vowel within its class, nasal swaps
    for t in ("[[m'A@vi:n]]", "[[m'A@vIm]]", "[[n'A@vIn]]", "[[m'A@vEn]]", "[[m'O@vIn]]"):
        assert cf.near_homophone(t, "marvin"), t
    # real misses stay: another consonant class, a deleted consonant, another word
    for t in ("[[b'A@vIn]]", "[[m'A@vId]]", "arvin", "martin", "mar", "marlin"):
        assert not cf.near_homophone(t, "marvin"), t
    assert cf.near_homophone("marlen", "marlin") and cf.near_homophone("[['A@vIn]]", "arvin")
    assert cf.weighted_distance(("M", "AA1", "R", "V", "IH0", "N"), ("M", "AA1", "R", "V", "IY0", "N")) == 0.25
    for kw, table in cf.TABLE9.items():
        sp = cf.split_close_negatives(kw)
        assert [c.text for c in sp.eval] == table
        train = [c.text for c in sp.train]
        assert len(train) >= 20 and not set(train) & set(table)
        assert not any(cf.near_homophone(t, e) for t in train for e in table + [kw])
    assert cf.split_close_negatives("marvin") == cf.split_close_negatives("marvin")  # deterministic


@needs_espeak
def test_other_keywords_split_every_other_generated_word():
    sp = cf.split_close_negatives("sheila")
    ev, train = [c.text for c in sp.eval], [c.text for c in sp.train]
    assert len(ev) == cf.EVAL_WORDS and not set(ev) & set(train)
    for part in (ev, train):  # both sides get every generated kind
        kinds = {c.how for c in sp.eval + sp.train if c.text in part}
        assert {"subword", "dictionary", "phoneme_edit"} <= kinds
    assert "[[S'Il@]]" in [t for t, _ in sp.dropped]  # i: -> I: same vowel class
    assert not any(cf.near_homophone(t, e) for t in train for e in ev + ["sheila"])
    # "none" and "disjoint" share the eval list: it does not depend on the train pool
    assert [c.text for c in cf.split_close_negatives("sheila", pool=30).eval] == ev
    user = cf.split_close_negatives("sheila", extra=["shelter"], replace=True)
    assert [c.text for c in user.eval] == ["shelter"] and user.train == []


@needs_espeak
def test_dictionary_variants_are_the_pronunciations_espeak_does_not_say():
    # amelia: espeak-ng says four syllables (a#m'i:li@) in every accent, the dictionary three
    (amelia,) = cf.dictionary_variants("amelia")
    assert amelia.startswith("[[") and "lj" in amelia
    said = cf.espeak_to_arpa(cf.espeak_tokens(amelia))
    assert said == ("AH0", "M", "IY1", "L", "Y", "AH0")  # espeak-ng reads it back as the dictionary's
    assert not cf.near_homophone(amelia, "[[a#m'i:li@]]")
    # the second dictionary reading of "data"; none where espeak-ng already says the dictionary's
    # word (marvin, athena), where an accent covers the other reading (tomato, either), or where
    # the dictionary lacks the word (a second letter-to-sound guess is no evidence)
    assert cf.dictionary_variants("data") == ("[[d'at@]]",)
    for kw in ("marvin", "athena", "left", "sheila", "tomato", "either", "zorblax"):
        assert cf.dictionary_variants(kw) == (), kw
    # a phrase combines its words' readings; no variant here either
    assert cf.dictionary_variants("hey marvin") == ()


@needs_espeak
def test_close_negatives_near_a_variant_are_dropped():
    """A generated close negative that sounds like a variant of the keyword would be a positive."""
    plain = cf.split_close_negatives("sheila")
    variant = next(c.text for c in plain.eval if c.how == "dictionary")  # pretend it is another reading
    near = {c.text for c in plain.eval + plain.train if cf.near_homophone(c.text, variant)}
    with_variant = cf.split_close_negatives("sheila", variants=[variant])
    kept = {c.text for c in with_variant.eval + with_variant.train}
    assert variant in near and not near & kept
    assert next(why for t, why in with_variant.dropped if t == variant).startswith(f"near-homophone of {variant!r}")
    assert len(with_variant.eval) == len(plain.eval)  # the eval list refills from the ranking
