"""The peer systems of tools/peer_benchmark.py (optional `peers` extra: skipped when not installed)."""

from __future__ import annotations

import numpy as np
import pytest

from kws.errors import DataError

OTHER_WORDS = ["seven", "window", "happy", "table"]


def _voices():
    from kws.data import tts

    engines = tts.available_engines()
    voices = [v for v in (tts.Voice("flite", "slt"), tts.Voice("espeak-ng", "en-us+m3")) if v.engine in engines]
    if not voices:
        pytest.skip("no speech-synthesis engine (flite / espeak-ng) installed")
    return voices


def test_pocketsphinx_ranks_the_keyword_above_other_words(tmp_path):
    pytest.importorskip("pocketsphinx")
    from kws.data import tts
    from tools.peers.pocketsphinx_kws import floor_score, keyphrase_scores

    for voice in _voices():
        clips = [tts.synthesize(w, voice, tmp_path) for w in ["athena"] + OTHER_WORDS]
        s = keyphrase_scores(clips, "athena")
        assert s.shape == (1 + len(OTHER_WORDS),) and np.isfinite(s).all()
        assert s[0] > floor_score(), voice.id  # the keyword is detected...
        assert s[0] > s[1:].max(), (voice.id, s)  # ...and scores above every other word


def test_pocketsphinx_inputs_agree_and_words_outside_its_dictionary_are_refused(tmp_path):
    pytest.importorskip("pocketsphinx")
    from kws.audio import save_wav
    from kws.data import tts
    from tools.peers.pocketsphinx_kws import keyphrase_scores

    x = tts.synthesize("athena", _voices()[0], tmp_path)
    save_wav(tmp_path / "a.wav", x)
    pcm = np.round(x * 32767).astype(np.int16)
    s = keyphrase_scores([x, tmp_path / "a.wav", pcm], "athena")
    assert np.allclose(s, s[0], atol=1e-3)  # float, file and int16 inputs are the same audio
    with pytest.raises(DataError, match="zzqxv"):
        keyphrase_scores([x], "hey zzqxv")
