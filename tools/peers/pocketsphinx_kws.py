"""PocketSphinx keyphrase spotting as a peer: a detector that needs no training at all.

PocketSphinx's KWS search runs the keyphrase's HMM (from its pronunciation in the CMU dictionary)
beside a phone loop and reports a detection when log P(audio | keyphrase) - log P(audio | best phone
sequence) exceeds `kws_threshold`. We decode with a very permissive threshold so nearly every
keyphrase-shaped stretch is reported, and give each clip the best (largest) of those log ratios:
sweeping a threshold over these scores afterwards is the same as re-decoding with `kws_threshold`
set to it. The search is itself streaming, so the max over a clip is what a streaming deployment
would see at its best moment (the rule applied to every system in the benchmark).

    from tools.peers.pocketsphinx_kws import keyphrase_scores
    s = keyphrase_scores(["a.flac", "b.flac"], "athena")   # one float per clip, higher = more keyword-like

Scores are natural-log likelihood ratios (<= 0 in practice). A clip with no detection at all gets
`floor_score(threshold)`, a finite value below every possible detection, so `kws.metrics` accepts it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from kws.errors import DataError, KwsError
from tools.peers import PEERS_INSTALL_HINT

SAMPLE_RATE = 16000  # the bundled en-us acoustic model is 16 kHz
DEFAULT_THRESHOLD = 1e-60  # permissive: almost everything is reported; threshold sweeps happen afterwards

Clip = "np.ndarray | str | os.PathLike"


def _pocketsphinx():
    try:
        import pocketsphinx
    except ImportError:
        raise KwsError(f"pocketsphinx is not installed; {PEERS_INSTALL_HINT}.") from None
    return pocketsphinx


def floor_score(threshold: float = DEFAULT_THRESHOLD) -> float:
    """The score of a clip in which the keyphrase was never detected: below log(threshold), the
    smallest score a detection can have."""
    return math.log(threshold) - 1.0


def pronunciations(keyphrase: str) -> dict[str, str]:
    """{word: phones} from PocketSphinx's bundled CMU dictionary for every word of `keyphrase`.
    Raises DataError naming the missing words (PocketSphinx cannot spot a word it cannot pronounce)."""
    ps = _pocketsphinx()
    words = keyphrase.lower().split()
    if not words:
        raise DataError("empty keyphrase; pass the keyword's text, e.g. 'athena' or 'hey jarvis'.")
    dict_path = Path(ps.get_model_path()) / "en-us" / "cmudict-en-us.dict"
    found: dict[str, str] = {}
    with open(dict_path, encoding="utf-8") as f:
        for line in f:
            w, _, phones = line.strip().partition(" ")
            if w in words and w not in found:  # first entry; "(2)" variants are alternatives
                found[w] = phones.strip()
    missing = [w for w in words if w not in found]
    if missing:
        raise DataError(f"{', '.join(repr(w) for w in missing)} not in PocketSphinx's dictionary ({dict_path}); "
                        "PocketSphinx can only spot dictionary words: pick a spelling it knows (e.g. a common "
                        "word that sounds the same) or leave PocketSphinx out for this keyword.")
    return found


class KeyphraseScorer:
    """One PocketSphinx decoder set up for `keyphrase`, reused across clips (loading the model
    takes about a second; decoding a 1 s clip takes a few milliseconds)."""

    def __init__(self, keyphrase: str, threshold: float = DEFAULT_THRESHOLD):
        ps = _pocketsphinx()
        pronunciations(keyphrase)  # clear error before PocketSphinx logs its own
        self.keyphrase = keyphrase.lower()
        self.threshold = float(threshold)
        # lm=None: the KWS search needs only the acoustic model and dictionary, not the 27 MB LM.
        # kws_delay=1: report a detection one frame after its best score instead of waiting the
        # default 10 frames for a better one; with 10, a keyword ending in the last 100 ms of a clip
        # is never reported (5% of the real "athena" clips scored as "no detection").
        self.decoder = ps.Decoder(keyphrase=self.keyphrase, kws_threshold=self.threshold, kws_delay=1,
                                  lm=None, loglevel="FATAL")
        self._cmn_init = self.decoder.get_cmn()

    def score(self, x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
        """Best keyphrase log ratio over the clip `x` (float in [-1, 1] or int16), or the floor."""
        pcm = _to_int16(x, sample_rate)
        d = self.decoder
        # Fresh front end and cepstral-mean estimate for every clip: otherwise both carry over from
        # the previous clip and a clip's score depends on the order clips are scored in.
        d.reinit_feat()
        d.set_cmn(self._cmn_init)
        d.start_utt()
        d.process_raw(pcm.tobytes(), full_utt=True)
        d.end_utt()
        best = floor_score(self.threshold)
        for seg in d.seg() or ():
            if seg.prob > 0.0:  # the binding returns exp(log ratio); 0 only on underflow
                best = max(best, math.log(seg.prob))
        return best

    def scores(self, clips: Iterable[Clip], sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        from kws.audio import load_audio

        out = []
        for c in clips:
            if isinstance(c, (str, os.PathLike)):
                out.append(self.score(load_audio(c, SAMPLE_RATE), SAMPLE_RATE))
            else:
                out.append(self.score(np.asarray(c), sample_rate))
        return np.asarray(out, dtype=np.float64)


def keyphrase_scores(clips: Sequence[Clip], keyphrase: str, sample_rate: int = SAMPLE_RATE,
                     threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """One score per clip (higher = more keyword-like): the best PocketSphinx keyphrase-detection
    log ratio in the clip, or `floor_score(threshold)` when there is none.

    clips: arrays (mono, at `sample_rate`, float in [-1, 1] or int16) or audio file paths (read and
    resampled to 16 kHz). Raises DataError when a word of `keyphrase` is not in the dictionary,
    KwsError when pocketsphinx is not installed."""
    return KeyphraseScorer(keyphrase, threshold).scores(clips, sample_rate)


def _to_int16(x: np.ndarray, sample_rate: int) -> np.ndarray:
    from kws.audio import resample, to_float32

    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"expected a mono clip (1-D array), got shape {x.shape}")
    f = to_float32(x)
    if sample_rate != SAMPLE_RATE:
        f = resample(f, sample_rate, SAMPLE_RATE)
    # x32768 and round: the inverse of kws.audio's int16 -> float scaling, so audio read from a
    # 16-bit file reaches PocketSphinx bit-exact.
    return np.clip(np.round(f.astype(np.float64) * 32768.0), -32768, 32767).astype("<i2")


def stream_trace(audio: np.ndarray, keyphrase: str, hop_seconds: float = 0.1,
                 threshold: float = DEFAULT_THRESHOLD, block_seconds: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    """(times, scores) of PocketSphinx spotting `keyphrase` in a long 16 kHz stream, on a grid of
    `hop_seconds` (times = hop ends): each hop's score is the best log ratio of the detections that
    end in it, the floor when none does. Decoded as one utterance fed in blocks, the way a live
    deployment runs (cepstral mean and front end adapt over the stream); a threshold swept over the
    trace with the detector's rising-edge rule gives its false accepts per hour."""
    scorer = KeyphraseScorer(keyphrase, threshold)
    d = scorer.decoder
    d.reinit_feat()
    d.set_cmn(scorer._cmn_init)
    pcm = _to_int16(np.asarray(audio), SAMPLE_RATE)
    block = int(block_seconds * SAMPLE_RATE)
    d.start_utt()
    for i in range(0, len(pcm), block):
        d.process_raw(pcm[i:i + block].tobytes(), full_utt=False)
    d.end_utt()
    frame_rate = 100.0  # PocketSphinx frames per second (10 ms)
    n = int(np.ceil(len(pcm) / SAMPLE_RATE / hop_seconds))
    scores = np.full(n, floor_score(threshold))
    for seg in d.seg() or ():
        if seg.prob > 0.0:
            j = min(n - 1, int((seg.end_frame + 1) / frame_rate / hop_seconds))
            scores[j] = max(scores[j], math.log(seg.prob))
    return (np.arange(n) + 1) * hop_seconds, scores
