"""`kws data build`: a speaker-disjoint dataset for one keyword, from speech synthesis plus any
real recordings, negative corpora and noise the user has.

Stages (each resumable; rerunning the same command reuses what exists):
1. plan    `work/plan.json`: every clip (split, kind, text, voice or file, augmentation seed),
           decided from the options and the seed alone; inputs are scanned and unreadable files
           skipped and listed here.
2. speech  synthesize the planned utterances (`kws.data.tts`, cached across builds); a dropped
           utterance is replaced by the next surviving one of its group -> `work/recipes.json`.
3. clips   render `clips/<split>/<id>.wav` (1 s, 16 kHz, `fit_to_window` + augmentation), atomic
           writes, skipped when present, in parallel.
4. features `features/<split>.npy` float32 [N, 98, F] (+ `<split>.ids.json`), atomic per split,
           recomputed only when a clip of the split was (re)rendered.
5. `manifest.jsonl`, `dataset.json`, `summary.txt` (rewritten only when their content changes).

Splits are disjoint by speaker: each TTS voice family (`Voice.speaker`) and each real speaker
belongs to exactly one split (seeded hash ranking, about 70/15/15 per engine / per real corpus
pool), so test voices are never heard in training.

Close negatives (`kws.data.confusables.split_close_negatives`): val/test get the Table 9 words
for marvin/forward/seven/follow (DROCC paper, Appendix E.5), else every other word of the ranked
generated list (up to 15); near-homophones of the keyword are dropped everywhere. The train split
gets, by `close_negatives_in_train`:
- "disjoint" (default): the other generated words (of the first `max_close_negatives`), minus any
  near-homophone of a val/test word, so the test words stay unheard; they take 25% of the train
  negative budget (paper preset: 1500 generic + 500 close), so the split sizes stay as given;
- "none": no close negatives in train (the paper's protocol);
- "all": the val/test words themselves (25% of the budget too).
Val/test are the same clips whichever mode is chosen (same words, voices and seeds).
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import math
import os
import time
import zlib
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kws.data.manifest import SPLITS, ClipRecord
from kws.errors import AudioError, DataError
from kws.util import atomic_path, atomic_write_text, progress

BUILDER_VERSION = 2  # 2: Table 9 eval lists, near-homophone filter, close_negatives_in_train modes
ALIGNS = ("end", "center")
# align="end" (option; "center" measured better for FastGRNN, see below): the sound ends this many
# seconds before the window end (uniform per clip). The
# detector scores a window every 0.1 s, so one window ends 0-0.1 s after the word; the wider range
# also covers a word whose end is followed by a short pause or reverberation tail.
END_TAIL_SECONDS = (0.05, 0.3)
SPLIT_SHARES = (0.70, 0.15, 0.15)
KIND_KEYS = {"pos": "positive", "neg": "negative", "close": "close_negative"}
PRESETS: dict[str, dict[str, int]] = {
    # DROCC paper, Appendix E.5: train 1000 keyword + 2000 other; val/test 600 keyword + 600 other
    # + 600 synthesized close negatives.
    "paper": {"train_pos": 1000, "train_neg": 2000, "train_close": 0,
              "val_pos": 600, "val_neg": 600, "val_close": 600,
              "test_pos": 600, "test_neg": 600, "test_close": 600},
    "small": {"train_pos": 120, "train_neg": 240, "train_close": 0,
              "val_pos": 60, "val_neg": 60, "val_close": 60,
              "test_pos": 60, "test_neg": 60, "test_close": 60},
}
SIZE_KEYS = tuple(PRESETS["paper"])
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
WINDOW = 16000
LONG_FILE_SECONDS = 1.5  # longer files in a plain negatives folder are cut into 1 s pieces
MAX_PIECES_PER_FILE = 60
NOISE_COLOURS = ("white", "pink", "brown")


# ---------------------------------------------------------------- options and sizes
@dataclass
class BuildOptions:
    keyword: str
    out: Path
    preset: str = "paper"
    positives: list[Path] = field(default_factory=list)  # folders of real keyword recordings
    negatives: list[Path] = field(default_factory=list)  # Speech Commands trees or plain folders
    noise: list[Path] = field(default_factory=list)  # background noise folders (default: generated)
    close_negatives: list[str] | None = None  # extra close negatives (words or [[phonemes]])
    replace_close_negatives: bool = False
    sizes: str | dict[str, int] | None = None  # overrides, "train_pos=1000,eval_each=600"
    seed: int = 0
    workers: int | None = None
    close_negatives_in_train: str = "disjoint"  # none | disjoint | all (see the module doc)
    engines: list[str] | None = None  # TTS engines (default: all installed)
    # share of synthesized plain-text clips said by espeak-ng voices; the rest by the split's other
    # voices (flite, festival, piper: recorded or neural voices, closer to real speech than espeak-ng's
    # formant synthesis). None (default): voices spread evenly over the split's speakers, which makes
    # about 90% espeak-ng (72 of 80 voice families). Phoneme strings are espeak-ng's alone either way.
    # Measured with 0.5 on real speech (2 seeds, BENCHMARKS.md text_only_voices_mix): amelia 82.1 -> 74.2%,
    # athena 83.4 -> 85.6% recall at 3% FPR, within seed noise; without espeak-ng altogether
    # (engines flite, festival, piper; text_only_voices) amelia 84.8%, athena 81.6%, left 57.2 -> 51.1%
    espeak_share: float | None = None
    # other pronunciations of the keyword, said by synthesized voices as positives beside its text
    # (each as often as the text): words, or espeak-ng phoneme strings ("[[a#m'i:lj@]]" for a
    # three-syllable "amelia", which espeak-ng's own rules say in four), those by espeak-ng voices only
    keyword_variants: list[str] = field(default_factory=list)
    # also say, as positives, the CMU dictionary's pronunciations of the keyword that no espeak-ng
    # accent says (confusables.dictionary_variants: amelia's three-syllable "uh-MEEL-yuh", where
    # espeak-ng says a-MEE-lee-uh). Each is a keyword variant as above. Measured on real amelia
    # (BENCHMARKS.md text_only_pron, text_only_dict). Most words have none; then nothing changes
    dictionary_variants: bool = True
    tts_cache: Path | None = None  # default kws.data.tts.default_cache_dir()
    utterance_reuse: int = 2  # clips per distinct synthesized utterance (each with other augmentation)
    noise_share: float = 0.05  # share of each split's generic negatives that are pure noise
    real_positive_share: float = 0.5  # at most this share of positives from --positives
    # at most this share of generic negatives from --negatives. Real negatives beside only
    # synthesized keywords teach "recorded audio = not the keyword": on the proxy word "down" (one
    # seed each, real-test AUC) share 0: 0.83, 0.08: 0.82, 0.15: 0.86, 0.25: 0.85, 0.5: 0.85, and
    # recall@3% FPR 23 / 13 / 34 / 22 / 14 %: noisy, 0.15 the best measured
    real_negative_share: float = 0.15
    # real negatives of the validation speakers added to the validation split beyond that share (at
    # most this many real negatives in all; 0 = only the share): model selection (kws.train.trainer
    # picks epochs by recall against the validation's real negatives when it has REAL_SELECTION_MIN
    # of them) then sees real speech. Over 14 trained models of left and 18 of amelia (BENCHMARKS.md
    # selection_signal), recall of the synthesized validation keywords against 540-590 real clips of
    # held-out speakers ranked the models' real test recall (Spearman 0.56 and 0.35); the validation
    # AUC of before hardly did (0.19 and -0.11)
    val_real_negatives: int = 600
    augment: bool = True
    max_close_negatives: int = 60  # generated close-negative words considered (val/test + train)
    # "center" (default): centre each utterance (kws.audio.fit_to_window's rule). "end": trim it and
    # place it so it ends END_TAIL_SECONDS before the window end (positives and every negative kind
    # alike, so position is no cue). Measured on marvin (paper preset, FastGRNN, BCE, 3 seeds):
    # test recall@3% FPR 29.6% centred vs 24.4% end-aligned, so centring stays the default.
    align: str = "center"
    # "standard": speed/pitch/reverb/noise/gain. "realistic": plus formant shifts, microphone and
    # loudspeaker responses, codecs, absolute levels, overload and dither on every clip
    # (kws.data.augment.AugmentConfig.realistic). Measured on real speech (proxy word "down",
    # trained from text, BENCHMARKS.md "recipe"): realistic + carrier phrases 10.3 vs 4.9 recall@3% FPR.
    # "quiet" / "quiet-tail" / "wide": realistic over more speech levels (AugmentConfig.quiet etc.).
    # On real speech (2 seeds, BENCHMARKS.md text_only_quiet): quiet lifts athena 81.1 -> 94.9% (a
    # quarter of its clips are quieter than -42 dBFS) but costs amelia 12.1 and left 8.1 points
    augment_recipe: str = "realistic"
    # share of synthesized positives and generic negatives said inside a carrier phrase ("hey
    # athena", "athena, what time is it"; the same voice says every piece) and cut to a 1 s window
    # around the word, so the window holds other speech as in a stream rather than silence
    carrier_share: float = 0.3
    # share of negatives (generic and close, word alone) put at a random place in the window, up to
    # half cut off, instead of centred: the streaming detector scores a window every 100 ms, so it
    # sees every word at every place; trained only on centred negatives, a model fired on windows
    # holding a word in one half and quiet in the other (most false accepts of athena on real
    # speech). Keywords stay centred: the detector's best window holds the keyword there.
    negative_placement: float = 0.5
    # share of clips of every kind whose window holds the edge of a recording: digital silence before
    # and/or after a random point outside the speech (augment.cut_at_edges). Recorded negatives placed
    # off-centre (negative_placement) have such an edge, keywords never did, so "a noise floor that
    # stops inside the window" meant "not the keyword": real Speech Commands "right" clips whose word
    # starts after 0.5 s, padded with silence like every test clip, were found 17% of the time
    # (52% when padded with faint noise instead; PocketSphinx 86%). Measured with 0.3 (BENCHMARKS.md
    # text_only_edges, 2 seeds): right's pair 72.6 vs 68.7%, athena level, left's pair 60.1 vs 66.2%,
    # amelia 75.3 vs 88.8% (1 seed), so it stays off
    edge_share: float = 0.0
    # a real recording (--positives) may be used this many times (each copy augmented differently),
    # so a handful of recordings is not drowned by a thousand synthesized ones
    real_positive_repeats: int = 20
    # share of clips of every kind left clean (AugmentConfig.p_clean: no channel, noise, codec or
    # dither), so a missing noise floor is no cue. Without it every model of the realistic recipe
    # depended on a floor (DROCC-LF marvin: 14% recall on clean synthesized keywords, 64% over a
    # -70 dBFS floor); with 0.15: 75% clean, flat across floors, stream FRR at 0.5 FA/h 98 -> 68%, and
    # on real speech (six words, 2 seeds each) 65.9% vs 66.0% mean (BENCHMARKS "noise_floor", "text_only_clean")
    clean_share: float = 0.15
    # clips of other words for the auxiliary word-identification task (TrainHparams.word_task) and
    # for hard-negative mining (TrainHparams.mine): up to half real, from the Speech Commands trees in
    # --negatives (training speakers), the rest the same words synthesized by the training voices,
    # train split only, kind "word". They never enter the keyword-vs-rest loss as such; naming the
    # word in real and synthesized voices alike pushes the model's state towards what a word sounds
    # like whoever says it. None (default): as many as the train split's other clips when a Speech
    # Commands tree is among --negatives, else none; 0 = off.
    word_task: int | None = None
    word_task_words: list[str] | None = None  # only these words in the word task (default: every one it can)
    # the featurizer's running-mean normalization (FeatureConfig.mean_norm_seconds; 0 = off): a
    # log-domain AGC that takes the microphone's level and frequency response out of the features.
    # Measured with 0.5 on real speech (BENCHMARKS.md text_only_mean_norm): athena 84.8 -> 72.1%
    # recall at 3% FPR (2 seeds), amelia 76.2 -> 55.2% (1 seed), so it stays off
    mean_norm_seconds: float = 0.0
    # the featurizer's level compression (FeatureConfig.level_weight; 1 = off): how much of each
    # frame's overall level the features keep, so quiet and loud speakers look more alike. Measured
    # with 0.25 (BENCHMARKS.md text_only_level): athena's ensembles 94.6/93.8% vs 87.3%, but amelia
    # 83.3 vs 90.5% (4 seeds) and left 44.6 vs 57.3% (2 seeds), so it stays off
    level_weight: float = 1.0
    # the featurizer's floor under the mel energies, log(mel + log_floor) (FeatureConfig.log_floor).
    # DESIGN.md's 1e-6 sits near white noise at -95 dBFS, so digital silence (log-mel -13.8) reads 2-6
    # units below the quietest frames of most recordings. 3e-4 (about -65 dBFS) makes silence and a
    # quiet room look alike: from text alone, real "right" 67.4/65.7% recall at 3% FPR vs 49.6/56.1%,
    # left 65.4/57.9 vs 61.0/58.8%, amelia up too; but speech recorded below about -60 dBFS sinks under
    # it: real athena 82.2/81.5 vs 93.6% (32% vs 85% of its 121 quietest clips). BENCHMARKS.md
    # text_only_floor. So it stays 1e-6 until the floor can follow the input level.
    log_floor: float = 1e-6
    # the featurizer's input gain control (FeatureConfig.agc_seconds; 0 = off): the mel energies are
    # scaled so the running speech level sits at -30 dBFS before the floor is added, so the floor
    # follows the input level (see kws.features). Measured with 1.0 and log_floor 3e-4 from text alone
    # (BENCHMARKS.md text_only_agc): real athena 95.4/97.1% recall at 3% FPR vs 93.6/82.4% (PocketSphinx
    # 96.3%), right 70.4/75.2 vs 49.6/56.1%, amelia 84.3/79.8 vs 85.7/57.0%, but left 18.0/28.5 vs
    # 61.0/58.8%: DROCC's adversarial loss stalled on a plateau (radius 32 trains it, 55.7/46.9%, but
    # costs athena and right). Off
    agc_seconds: float = 0.0
    # other FeatureConfig fields, e.g. {"hop_length": 320, "frame_length": 480} (default: the paper's)
    features: dict[str, Any] = field(default_factory=dict)

    def feature_config(self) -> Any:  # kws.features.FeatureConfig (imported lazily)
        from kws.features import FeatureConfig

        try:
            return FeatureConfig.from_dict({"log_floor": self.log_floor, "agc_seconds": self.agc_seconds,
                                            **self.features, "mean_norm_seconds": self.mean_norm_seconds,
                                            "level_weight": self.level_weight})
        except ValueError as e:
            raise DataError(f"feature settings: {e}") from None

    def all_keyword_variants(self) -> list[str]:
        """keyword_variants, then the dictionary's other pronunciations (unless dictionary_variants is off)."""
        from kws.data import confusables

        found: tuple[str, ...] = ()
        if self.dictionary_variants:
            try:
                found = confusables.dictionary_variants(self.keyword)
            except ValueError:  # no letters in the keyword: the plan reports it
                pass
        return list(dict.fromkeys(self.keyword_variants + list(found)))

    def __post_init__(self) -> None:
        self.close_negatives_in_train = close_mode(self.close_negatives_in_train)
        if self.align not in ALIGNS:
            raise DataError(f"align must be one of {ALIGNS}, got {self.align!r}")
        if self.augment_recipe not in AUGMENT_RECIPES:
            raise DataError(f"augment_recipe must be one of {AUGMENT_RECIPES}, got {self.augment_recipe!r}")
        self.keyword_variants = [str(v).strip() for v in self.keyword_variants]
        if not all(self.keyword_variants):
            raise DataError("keyword_variants: an empty pronunciation; give words or [[phonemes]]")
        if self.espeak_share is not None and not 0.0 <= self.espeak_share <= 1.0:
            raise DataError(f"espeak_share must be in [0, 1], got {self.espeak_share}")
        if not 0.0 <= self.clean_share <= 1.0:
            raise DataError(f"clean_share must be in [0, 1], got {self.clean_share}")
        if not 0.0 <= self.edge_share <= 1.0:
            raise DataError(f"edge_share must be in [0, 1], got {self.edge_share}")
        if self.word_task is not None and self.word_task < 0:
            raise DataError(f"word_task must be >= 0 clips, got {self.word_task}")
        self.feature_config()  # a bad value fails here, before any work


CLOSE_MODES = ("none", "disjoint", "all")
FEW_RECORDINGS = 12  # fewer positive speakers than this: all but one recording go to train
TRAIN_CLOSE_SHARE = 0.25  # share of the train negative budget given to close negatives


def close_mode(value: str | bool) -> str:
    """"none" | "disjoint" | "all"; the old boolean means "all" (True) or "none" (False)."""
    if isinstance(value, bool):
        return "all" if value else "none"
    v = str(value).strip().lower()
    if v not in CLOSE_MODES:
        raise DataError(f"close_negatives_in_train: {value!r} is not one of {', '.join(CLOSE_MODES)}")
    return v


def parse_sizes(spec: str | dict[str, int] | None) -> dict[str, int]:
    """`train_pos=1000,train_neg=2000,eval_each=600` -> dict. Keys: {train,val,test}_{pos,neg,close},
    eval_{pos,neg,close} (val and test), eval_each (all of val and test)."""
    if spec is None or spec == "":
        return {}
    if isinstance(spec, dict):
        items = list(spec.items())
    else:
        items = []
        for part in str(spec).split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise DataError(f"--sizes: expected KEY=N, got {part.strip()!r} (e.g. train_pos=1000,eval_each=600)")
            k, v = part.split("=", 1)
            items.append((k.strip(), v.strip()))
    out: dict[str, int] = {}
    valid = set(SIZE_KEYS) | {"eval_pos", "eval_neg", "eval_close", "eval_each"}
    for k, v in items:
        if k not in valid:
            raise DataError(f"--sizes: unknown key {k!r}; use {', '.join(sorted(valid))}")
        try:
            n = int(v)
        except (TypeError, ValueError):
            raise DataError(f"--sizes: {k} must be a whole number, got {v!r}") from None
        if n < 0:
            raise DataError(f"--sizes: {k} must be >= 0, got {n}")
        if k == "eval_each":
            out.update({f"{s}_{c}": n for s in ("val", "test") for c in KIND_KEYS})
        elif k.startswith("eval_"):
            out.update({f"{s}_{k[5:]}": n for s in ("val", "test")})
        else:
            out[k] = n
    return out


def resolve_sizes(preset: str, sizes: str | dict[str, int] | None, close_in_train: str | bool) -> dict[str, int]:
    if preset not in PRESETS:
        raise DataError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    s = dict(PRESETS[preset])
    override = parse_sizes(sizes)
    s.update(override)
    in_train = close_mode(close_in_train) != "none"
    if in_train and "train_close" not in override:
        # keep the train split's "other" words (the paper's 2000): a quarter become close negatives
        s["train_close"] = int(s["train_neg"] * TRAIN_CLOSE_SHARE)
        s["train_neg"] -= s["train_close"]
    if s["train_close"] and not in_train:
        raise DataError("--sizes gives train_close but --close-negatives-in-train is none; "
                        "pass --close-negatives-in-train disjoint (or all)")
    return s


# ---------------------------------------------------------------- speakers and splits
def _hash01(*parts: Any) -> float:
    h = hashlib.sha1(":".join(str(p) for p in parts).encode("utf-8")).hexdigest()
    return int(h[:15], 16) / float(1 << 60)


def assign_speaker_splits(speakers: list[str], seed: int, group: str = "") -> dict[str, str]:
    """Speaker -> split: rank the speakers by a seeded hash and give the first 70% to train, the
    next 15% to val and the rest to test (rank (i + 0.5) / n against the cumulative shares). A
    speaker's split depends only on its rank, so it is stable and never shared by two splits."""
    ranked = sorted(set(speakers), key=lambda s: (_hash01(seed, group, s), s))
    n = len(ranked)
    out = {}
    for i, s in enumerate(ranked):
        q = (i + 0.5) / n
        out[s] = "train" if q < SPLIT_SHARES[0] else "val" if q < SPLIT_SHARES[0] + SPLIT_SHARES[1] else "test"
    return out


# ---------------------------------------------------------------- scanning real inputs
def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def real_speaker(path: Path, root: Path, by_folder: bool = True) -> str:
    """Speaker of a recording in a user folder: the file-name prefix before `_nohash_` (Speech
    Commands naming), else (`by_folder`) the first sub-folder under `root`, else the file itself:
    with no speaker information each file counts as its own speaker."""
    if "_nohash_" in path.name:
        return path.name.split("_nohash_", 1)[0]
    rel = path.relative_to(root)
    return rel.parts[0] if by_folder and len(rel.parts) > 1 else path.stem


def _folders_are_speakers(files: list[Path], root: Path) -> bool:
    """Sub-folders name speakers only when the files are spread over two or more of them
    (`people/alice/*.wav`, `people/bob/*.wav`); a single one is a grouping like `athena/en/`."""
    return len({p.relative_to(root).parts[0] for p in files if len(p.relative_to(root).parts) > 1}) >= 2


def _source_name(root: Path, is_sc: bool) -> str:
    return "real:speech_commands" if is_sc else f"real:{root.resolve().name or 'folder'}"


@dataclass
class _Candidate:
    path: str
    start: float | None  # seconds, for pieces of long files
    speaker: str
    text: str
    source: str
    kind: str  # positive | negative | close_negative


def _scan_positives(folders: list[Path], keyword: str) -> list[_Candidate]:
    out = []
    for root in folders:
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"--positives {root}: no such folder; pass a folder of recordings of '{keyword}'.")
        from kws.data.speech_commands import is_speech_commands_tree

        is_sc = is_speech_commands_tree(root)
        if is_sc:  # a Speech Commands tree: only the keyword's own folder holds positives
            if not (root / keyword).is_dir():
                raise DataError(f"--positives {root}: a Speech Commands tree without a '{keyword}' folder; pass a "
                                f"folder of recordings of '{keyword}' instead.")
            files, base = _audio_files(root / keyword), root / keyword
        else:
            files, base = _audio_files(root), root
        if not files:
            raise DataError(f"--positives {root}: no audio files ({', '.join(AUDIO_SUFFIXES)}) found in it.")
        src = _source_name(root, is_sc)
        by_folder = _folders_are_speakers(files, base)
        out += [_Candidate(str(p), None, f"real:{real_speaker(p, base, by_folder)}", keyword, src, "positive")
                for p in files]
    return out


def _scan_negatives(folders: list[Path], keyword: str, close_texts: set[str],
                    skipped: list[tuple[str, str]]) -> list[_Candidate]:
    """Speech Commands trees: every word folder except the keyword's (words that are close
    negatives become close negatives). Plain folders: every file, long files cut into 1 s pieces."""
    import soundfile as sf

    from kws.data.speech_commands import SpeechCommands, is_speech_commands_tree

    out = []
    kw = keyword.strip().lower()
    for root in folders:
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"--negatives {root}: no such folder; pass a Speech Commands tree or a folder of audio.")
        if is_speech_commands_tree(root):
            sc = SpeechCommands(root)
            for c in sc.clips():
                if c.word.lower() == kw:
                    continue
                kind = "close_negative" if c.word.lower() in close_texts else "negative"
                out.append(_Candidate(str(c.path), None, f"real:{c.speaker}", c.word, "real:speech_commands", kind))
            continue
        src = _source_name(root, False)
        files = _audio_files(root)
        if not files:
            raise DataError(f"--negatives {root}: no audio files ({', '.join(AUDIO_SUFFIXES)}) found in it.")
        by_folder = _folders_are_speakers(files, root)
        for p in files:
            try:
                info = sf.info(str(p))
                seconds = info.frames / info.samplerate if info.samplerate > 0 else 0.0
            except Exception as e:  # unreadable header: skipped and listed, never a crash
                why = str(e).strip().splitlines()[-1][:120] if str(e).strip() else type(e).__name__
                skipped.append((str(p), f"unreadable audio ({why})"))
                continue
            if seconds <= 0:
                skipped.append((str(p), "empty audio file"))
                continue
            spk = f"real:{real_speaker(p, root, by_folder)}"
            if seconds <= LONG_FILE_SECONDS:
                out.append(_Candidate(str(p), None, spk, "", src, "negative"))
            else:
                pieces = min(int(seconds), MAX_PIECES_PER_FILE)
                out += [_Candidate(str(p), float(i), spk, "", src, "negative") for i in range(pieces)]
    return out


def _scan_noise(folders: list[Path]) -> list[Path]:
    from kws.data.speech_commands import SpeechCommands, is_speech_commands_tree

    files: list[Path] = []
    for root in folders:
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"--noise {root}: no such folder; pass a folder of background-noise recordings.")
        found = SpeechCommands(root).noise_files() if is_speech_commands_tree(root) else _audio_files(root)
        if not found:
            raise DataError(f"--noise {root}: no audio files found in it (for a Speech Commands tree: "
                            "no _background_noise_ folder).")
        files += found
    return files


def _read_second(path: str, start: float) -> np.ndarray:
    """One second of a long file from `start` s, read without loading the rest of the file."""
    import soundfile as sf

    from kws.audio import SAMPLE_RATE, resample

    try:
        info = sf.info(path)
        x, sr = sf.read(path, start=int(start * info.samplerate), frames=int(info.samplerate),
                        dtype="float32", always_2d=True)
    except Exception as e:  # libsndfile errors on a damaged body
        raise AudioError(f"{path}: unreadable audio ({str(e).strip()[:120] or type(e).__name__})") from None
    x = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    if not np.isfinite(x).all():
        raise AudioError(f"{path}: contains NaN or infinite samples")
    return np.clip(resample(x, sr, SAMPLE_RATE), -1.0, 1.0)


def _load_piece(path: str, start: float | None, place=None) -> np.ndarray:
    """A real clip (whole file, placed by `place`, default centring) or a 1 s piece of a long file
    (kept as cut: continuous speech has no word end to align)."""
    from kws.audio import fit_to_window, load_audio

    x = load_audio(path) if start is None else _read_second(path, start)
    if x.size == 0 or not np.any(x):
        if start is not None:
            raise _SilentPiece(path)
        raise AudioError(f"{path}: silent (all samples are zero)")
    if start is None and place is not None:
        return place(x)
    return fit_to_window(x, WINDOW)


class _SilentPiece(Exception):
    """A digitally silent second inside a long file: not a negative, but the file is fine."""


def _take_valid(cands: list[_Candidate], n: int, rng: np.random.Generator,
                skipped: list[tuple[str, str]], bad: set[str]) -> list[_Candidate]:
    """Up to `n` candidates, each checked by loading it (unreadable ones are skipped and listed,
    once per file). The corpora (sources) take turns, each in a seeded order, so a small specific
    folder is not drowned by a large corpus given next to it."""
    by_source: dict[str, list[_Candidate]] = defaultdict(list)
    for c in cands:
        by_source[c.source].append(c)
    queues = [[group[int(i)] for i in rng.permutation(len(group))] for _, group in sorted(by_source.items())]
    pos = [0] * len(queues)
    out: list[_Candidate] = []
    while len(out) < n and any(p < len(q) for p, q in zip(pos, queues)):
        for k, q in enumerate(queues):
            if len(out) >= n:
                break
            while pos[k] < len(q):
                c = q[pos[k]]
                pos[k] += 1
                if c.path in bad:
                    continue
                try:
                    _load_piece(c.path, c.start)
                except _SilentPiece:
                    continue
                except AudioError as e:
                    bad.add(c.path)
                    skipped.append((c.path, str(e).split(": ", 1)[-1][:160]))
                    continue
                out.append(c)
                break
    return out


# ---------------------------------------------------------------- stage 1: the plan
def _voice_dict(v) -> list:
    return [v.engine, v.name, v.rate, v.pitch, v.speaker]


def _voice(d: list):
    from kws.data.tts import Voice

    return Voice(d[0], d[1], d[2], d[3], d[4])


AUGMENT_RECIPES = ("standard", "realistic", "quiet", "quiet-tail", "wide")


def _augment_config(align: str, recipe: str = "standard", clean_share: float = 0.0):
    from dataclasses import replace

    from kws.data.augment import AugmentConfig

    config = {"realistic": AugmentConfig.realistic, "quiet": AugmentConfig.quiet,
              "quiet-tail": AugmentConfig.quiet_tail, "wide": AugmentConfig.wide}.get(recipe, AugmentConfig)()
    config = replace(config, p_clean=clean_share)
    # end-aligned clips already get a random placement (END_TAIL_SECONDS); a further time shift
    # could push the word's end out of the window
    return replace(config, p_shift=0.0) if align == "end" else config


# AugmentConfig fields added with the "realistic" recipe: left out of standard builds' fingerprints
# so datasets built before they existed are still recognised as finished.
_REALISTIC_FIELDS = ("p_formant", "formant_ratio", "p_channel", "channel_db", "p_codec", "p_clip",
                     "clip_drive_db", "dither_db", "level_dbfs")


def _augment_fingerprint(opts: "BuildOptions") -> dict[str, Any]:
    d = asdict(_augment_config(opts.align, opts.augment_recipe, opts.clean_share))
    if opts.augment_recipe == "standard":
        d = {k: v for k, v in d.items() if k not in _REALISTIC_FIELDS}
    if not d.get("quiet_share"):  # added later, like the three below
        d.pop("quiet_dbfs", None)
    for late in ("p_clean", "p_saturate", "dither_headroom_db", "quiet_share"):  # added later: datasets built
        if not d.get(late):                                           # before keep their fingerprint
            d.pop(late, None)
    return d


def _fingerprint(opts: BuildOptions, sizes: dict[str, int]) -> dict[str, Any]:
    from kws.data.augment import AugmentConfig

    fp = {
        "builder_version": BUILDER_VERSION, "keyword": opts.keyword, "seed": opts.seed, "sizes": sizes,
        "positives": [str(Path(p).resolve()) for p in opts.positives],
        "negatives": [str(Path(p).resolve()) for p in opts.negatives],
        "noise": [str(Path(p).resolve()) for p in opts.noise],
        "close_negatives": list(opts.close_negatives or []), "replace_close_negatives": opts.replace_close_negatives,
        "close_negatives_in_train": opts.close_negatives_in_train, "engines": opts.engines,
        "utterance_reuse": opts.utterance_reuse, "noise_share": opts.noise_share,
        "real_positive_share": opts.real_positive_share, "real_negative_share": opts.real_negative_share,
        "augment": _augment_fingerprint(opts) if opts.augment else None,
        "max_close_negatives": opts.max_close_negatives,
        "features": opts.feature_config().to_dict(),
    }
    if opts.align != "center":  # centred builds keep the fingerprint (and folders) of before
        fp["align"] = opts.align
    if opts.carrier_share:  # likewise builds without carrier phrases
        fp["carrier_share"] = opts.carrier_share
    if opts.negative_placement:
        fp["negative_placement"] = opts.negative_placement
    if opts.negatives and opts.val_real_negatives:  # builds without real negatives keep theirs
        fp["val_real_negatives"] = opts.val_real_negatives
    if opts.edge_share:  # builds without edges keep the fingerprint of before
        fp["edge_share"] = opts.edge_share
    if opts.espeak_share is not None:  # builds with an even spread keep the fingerprint of before
        fp["espeak_share"] = opts.espeak_share
    variants = opts.all_keyword_variants()
    if variants:  # builds of words without variants keep the fingerprint of before
        fp["keyword_variants"] = variants
    if opts.positives:
        fp["real_positive_repeats"] = opts.real_positive_repeats
    n_word = word_task_clips(opts, sizes)
    if n_word:
        fp["word_task"] = n_word
        if opts.word_task_words is not None:
            fp["word_task_words"] = sorted({w.strip().lower() for w in opts.word_task_words})
    return json.loads(json.dumps(fp))  # the form it has after a round trip through plan.json


def _make_plan(opts: BuildOptions, sizes: dict[str, int]) -> dict[str, Any]:
    from kws.data import confusables, tts, words

    keyword = opts.keyword.strip()
    if not keyword:
        raise DataError("--keyword is empty; give the wake word's text, e.g. --keyword marvin")
    seed = opts.seed
    skipped: list[tuple[str, str]] = []
    bad: set[str] = set()

    asked_sizes = sizes
    mode = close_mode(opts.close_negatives_in_train)
    variants = opts.all_keyword_variants()
    split_cn = confusables.split_close_negatives(keyword, extra=opts.close_negatives or (),
                                                 replace=opts.replace_close_negatives, pool=opts.max_close_negatives,
                                                 variants=variants)
    close = split_cn.eval  # val/test
    close_train = split_cn.train if mode == "disjoint" else list(close) if mode == "all" else []
    if not close_train and sizes["train_close"]:  # nothing to put there: the budget goes back
        sizes = dict(sizes, train_neg=sizes["train_neg"] + sizes["train_close"], train_close=0)
    close_texts = {c.text.lower() for c in close + split_cn.train}
    # generic negatives: never a close negative or a dropped near-homophone of the keyword, and
    # never a near-homophone of a val/test close negative ("four" for "for"): that would leak it
    generic = words.generic_negative_words(
        keyword, exclude=[c.text for c in close + split_cn.train] + [t for t, _ in split_cn.dropped])
    generic = [w for w in generic
               if not any(confusables.near_homophone(w, c.text, use_espeak=False) for c in close)]

    # speakers: TTS voice families stratified by engine, real speakers pooled
    bases = tts.base_voices(opts.engines)
    if not bases:
        raise DataError("no speech-synthesis voices on this machine (espeak-ng, flite or festival); install them "
                        f"with: {tts.INSTALL_HINT}")
    tts_split: dict[str, str] = {}
    by_engine: dict[str, list[str]] = defaultdict(list)
    for b in bases:
        by_engine[b.engine].append(b.speaker)
    for engine, spk in sorted(by_engine.items()):
        tts_split.update(assign_speaker_splits(spk, seed, group=engine))
    tts_speakers = {s: sorted(k for k, v in tts_split.items() if v == s) for s in SPLITS}
    espeak_speakers = {s: [k for k in tts_speakers[s] if k.startswith("espeak-ng:")] for s in SPLITS}
    for s in SPLITS:
        if not tts_speakers[s]:
            raise DataError(f"too few synthesis voices to give the {s} split its own speakers "
                            f"({len(tts_split)} voice families); install more engines: {tts.INSTALL_HINT}")

    pos_cands = _scan_positives(opts.positives, keyword)
    neg_cands = _scan_negatives(opts.negatives, keyword, close_texts, skipped)
    real_split = assign_speaker_splits([c.speaker for c in pos_cands + neg_cands], seed, group="real")
    few = sorted({c.speaker for c in pos_cands} - {c.speaker for c in neg_cands})
    if 0 < len(few) < FEW_RECORDINGS:
        # a handful of the user's own recordings: they are worth most in training; one goes to
        # validation (from 3 on) so calibration hears a real take, none to test
        ranked = sorted(few, key=lambda s: (_hash01(seed, "few", s), s))
        real_split.update({s: "val" if i == 0 and len(ranked) >= 3 else "train" for i, s in enumerate(ranked)})
    noise_files = [str(p) for p in _scan_noise(opts.noise)]

    clips: list[dict[str, Any]] = []
    utterances: dict[str, list[list]] = {}
    carriers = carrier_phrases(keyword, close_texts)

    def add_tts_group(split: str, kind: str, n: int, texts: list[str], tag: str) -> None:
        """`n` clips of `kind` from ceil(n / reuse) distinct utterances, texts round robin, voices
        spread over the split's speakers (espeak-ng only for phoneme strings)."""
        if n <= 0 or not texts:
            return
        n_utt = max(1, math.ceil(n / max(1, opts.utterance_reuse)))
        order = [texts[int(i)] for i in np.random.default_rng([seed, zlib.crc32(tag.encode())]).permutation(len(texts))]
        utt_texts = [order[i % len(order)] for i in range(n_utt)]
        plain = [i for i, t in enumerate(utt_texts) if not tts.is_phonemes(t)]
        phon = [i for i, t in enumerate(utt_texts) if tts.is_phonemes(t)]
        groups = [(plain, tts_speakers[split], "plain"), (phon, espeak_speakers[split], "phon")]
        others = sorted(set(tts_speakers[split]) - set(espeak_speakers[split]))
        if opts.espeak_share is not None and others and espeak_speakers[split]:
            # a seeded shuffle of the plain utterances; the first espeak_share of them go to espeak-ng
            mix = np.random.default_rng([seed, zlib.crc32(f"mix:{tag}".encode())]).permutation(len(plain))
            n_esp = int(round(opts.espeak_share * len(plain)))
            groups = [([plain[i] for i in sorted(mix[:n_esp])], espeak_speakers[split], "plain"),
                      ([plain[i] for i in sorted(mix[n_esp:])], others, "plain-other"), groups[1]]
        voices: dict[int, Any] = {}
        for idx, spk, sub in groups:
            if not idx or not spk:
                continue
            vseed = zlib.crc32(f"{seed}:{tag}:{sub}".encode())
            k = len(idx)
            # fewer distinct configurations than utterances (few voices): reuse configurations
            total = tts.count_configs(opts.engines, speakers=spk)
            vs = tts.voice_configs(min(k, total), vseed, engines=opts.engines, speakers=spk)
            vs = [vs[i % len(vs)] for i in range(k)]
            voices.update(zip(idx, vs))
        group = f"{split}/{kind}"
        utterances.setdefault(group, [])
        base = len(utterances[group])
        kept = [i for i in range(n_utt) if i in voices]
        for i in kept:
            utterances[group].append([utt_texts[i], _voice_dict(voices[i])])
        if not kept:
            return
        crng = np.random.default_rng([seed, zlib.crc32(f"carrier:{tag}".encode())])
        with_carrier = kind in ("positive", "negative") and opts.carrier_share > 0 and bool(carriers)
        for j in range(n):
            src = {"type": "tts", "group": group, "utt": base + j % len(kept)}
            if with_carrier and crng.random() < opts.carrier_share:
                src["carrier"] = list(carriers[int(crng.integers(len(carriers)))])
            clips.append({"split": split, "kind": kind, "src": src})

    def add_real(split: str, kind: str, n: int, cands: list[_Candidate], texts: set[str] | None = None,
                 pool_kind: str | None = None, draw: str = "") -> int:
        if n <= 0:
            return 0
        pool = [c for c in cands if c.kind == (pool_kind or kind) and real_split.get(c.speaker) == split
                and (texts is None or c.text.lower() in texts)]
        rng = np.random.default_rng([seed, zlib.crc32(f"real:{split}:{kind}{draw}".encode())])
        chosen = _take_valid(pool, n, rng, skipped, bad)
        if kind == "positive" and chosen and len(chosen) < n:  # few recordings: reuse each, augmented anew
            chosen = [chosen[i % len(chosen)] for i in range(min(n, len(chosen) * max(1, opts.real_positive_repeats)))]
        for c in chosen:
            clips.append({"split": split, "kind": kind, "text": c.text, "source": c.source, "speaker": c.speaker,
                          "src": {"type": "file", "path": c.path, "start": c.start}})
        return len(chosen)

    close_in = {s: (s != "train" or bool(close_train and sizes["train_close"])) for s in SPLITS}
    for split in SPLITS:
        close_list = [c.text for c in (close_train if split == "train" else close)]
        n_pos, n_neg = sizes[f"{split}_pos"], sizes[f"{split}_neg"]
        n_close = sizes[f"{split}_close"] if close_in[split] else 0
        # positives: real recordings first (up to their share), synthesis for the rest
        got = add_real(split, "positive", round(opts.real_positive_share * n_pos) if pos_cands else 0, pos_cands)
        add_tts_group(split, "positive", n_pos - got, [keyword] + variants, f"{split}:positive")
        # generic negatives: a small share of pure noise, real corpora up to their share, synthesis
        n_noise = round(opts.noise_share * n_neg)
        for j in range(n_noise):
            clips.append({"split": split, "kind": "noise", "src": {"type": "noise"}})
        n_generic = n_neg - n_noise
        got = add_real(split, "negative", round(opts.real_negative_share * n_generic) if neg_cands else 0, neg_cands)
        add_tts_group(split, "negative", n_generic - got, generic, f"{split}:negative")
        # close negatives (val/test only unless asked): real corpus words that are close, then synthesis
        n_real = round(opts.real_negative_share * n_close) if neg_cands else 0
        got = add_real(split, "close_negative", n_real, neg_cands, {t.lower() for t in close_list})
        add_tts_group(split, "close_negative", n_close - got, close_list, f"{split}:close_negative")
    if neg_cands and opts.val_real_negatives > 0:
        # more real speech for model selection, drawn from what the validation split does not hold yet
        # and never a close-negative word (of any split), so these stay generic negatives
        val_files = [c for c in clips if c["split"] == "val" and c["src"]["type"] == "file"]
        held = {(c["src"]["path"], c["src"]["start"]) for c in val_files}
        n_held = sum(1 for c in val_files if c["kind"] == "negative")
        spare = [c for c in neg_cands if (c.path, c.start) not in held and c.text.lower() not in close_texts]
        add_real("val", "negative", opts.val_real_negatives - n_held, spare, draw=":selection")
    n_word = word_task_clips(opts, sizes)
    word_task_words = _word_task_words(neg_cands, real_split, generic, opts.word_task_words) if n_word else []
    if word_task_words:
        got = add_real("train", "word", n_word // 2, neg_cands, set(word_task_words), pool_kind="negative")
        add_tts_group("train", "word", n_word - got, word_task_words, "train:word")

    # stable ids: <split>-<kind>-<n> in plan order
    counters: Counter = Counter()
    for c in clips:
        key = (c["split"], c["kind"])
        c["id"] = f"{c['split']}-{c['kind'].replace('_', '-')}-{counters[key]:05d}"
        counters[key] += 1
    return {
        "fingerprint": _fingerprint(opts, asked_sizes),
        "keyword": keyword,
        "keyword_variants": variants,
        "sizes": sizes,
        "close_negatives": [{"text": c.text, "how": c.how, "note": c.note} for c in close],
        "close_negatives_train": [{"text": c.text, "how": c.how, "note": c.note} for c in close_train]
        if close_in["train"] else [],
        "close_negatives_dropped": [list(x) for x in split_cn.dropped],
        "close_negatives_in_train": mode,
        "close_negative_splits": [s for s in SPLITS if close_in[s]],
        "generic_words": len(generic),
        "word_task_words": word_task_words,
        "tts_speakers": tts_speakers,
        "real_candidates": {"positives": len(pos_cands), "negatives": len(neg_cands)},
        "noise_files": noise_files,
        "skipped": skipped,
        "utterances": utterances,
        "clips": clips,
    }


def word_task_clips(opts: BuildOptions, sizes: dict[str, int]) -> int:
    """How many word-task clips a build makes: opts.word_task, or by default as many as the train
    split's keyword-task clips when a Speech Commands tree is among the negatives (its words are
    what the task names), else 0."""
    if opts.word_task is not None:
        return int(opts.word_task)
    from kws.data.speech_commands import is_speech_commands_tree

    if not any(Path(p).is_dir() and is_speech_commands_tree(Path(p)) for p in opts.negatives):
        return 0
    return int(sizes["train_pos"] + sizes["train_neg"] + sizes["train_close"])


def _word_task_words(neg_cands: list[_Candidate], real_split: dict[str, str], generic: list[str],
                     only: list[str] | None = None) -> list[str]:
    """The word task's vocabulary: generic negative words (so never the keyword, a close negative or
    a near-homophone of either) that training speakers of a Speech Commands tree said (and in `only`)."""
    allowed = {w.lower() for w in generic}
    if only is not None:
        allowed &= {w.strip().lower() for w in only}
    said = {c.text.lower() for c in neg_cands if c.kind == "negative" and c.source == "real:speech_commands"
            and real_split.get(c.speaker) == "train"}
    return sorted(allowed & said)


# ---------------------------------------------------------------- carrier phrases
# (before, after) the wake word; a clip gets one of them, said by its own voice
CARRIERS: tuple[tuple[str, str], ...] = (
    ("hey", ""), ("ok", ""), ("hello", ""), ("", "what time is it"), ("", "turn on the lights"),
    ("", "play some music"), ("hey", "what's the weather"), ("okay", "set a timer"), ("so", ""),
    ("", "please"), ("i said", ""), ("", "are you there"),
)


def carrier_phrases(keyword: str, avoid: set[str] = frozenset()) -> list[tuple[str, str]]:
    """CARRIERS without any that contain a word of the keyword or of its close negatives."""
    banned = set(keyword.lower().split()) | {w for t in avoid for w in t.lower().split()}
    return [c for c in CARRIERS if not banned & set(" ".join(c).lower().replace("'", " ").split())]


def _resolve_carriers(recipes: list[dict[str, Any]], cache_dir: Path, workers: int) -> None:
    """Synthesize each carrier piece with its clip's voice; a clip whose piece fails loses its carrier."""
    from kws.data import tts

    jobs = sorted({(t, tuple(c["src"]["voice"])) for c in recipes if c["src"].get("carrier")
                   for t in c["src"]["carrier"] if t})
    if not jobs:
        return
    res = tts.synthesize_many([(t, _voice(list(v))) for t, v in jobs], cache_dir=cache_dir, workers=workers,
                              desc="synthesizing carrier phrases")
    ok = {j for j, a in zip(jobs, res.audio) if a is not None}
    for c in recipes:
        car = c["src"].get("carrier")
        if car and not all((t, tuple(c["src"]["voice"])) in ok for t in car if t):
            del c["src"]["carrier"]
            c["text"] = c["src"]["text"]


def _window_at(y: np.ndarray, start: int) -> np.ndarray:
    """y[start:start + WINDOW], zeros where that runs outside `y` (start may be negative)."""
    out = np.zeros(WINDOW, np.float32)
    a, b = max(start, 0), min(start + WINDOW, y.size)
    if b > a:
        out[a - start:b - start] = y[a:b]
    return out


def _random_place(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The sound (trimmed of leading/trailing near-silence) with its centre at a uniformly random
    point of the window: anywhere from centred to half outside either edge."""
    from kws.audio import fit_to_window, trim_silence

    y = trim_silence(x)
    if y.size >= WINDOW:
        y = fit_to_window(y, WINDOW // 2)  # a long sound: its loudest half second
    return _window_at(y, y.size // 2 - int(rng.integers(0, WINDOW + 1)))


def _carrier_window(word: np.ndarray, before: np.ndarray | None, after: np.ndarray | None,
                    rng: np.random.Generator) -> np.ndarray:
    """[before, pause, word, pause, after] cut to the WINDOW samples centred on the word, as a
    streaming window that holds the word sees it (neighbouring speech instead of silence)."""
    from kws.audio import fit_to_window, trim_silence

    word = trim_silence(word)
    if word.size >= WINDOW:
        return fit_to_window(word, WINDOW)
    parts, start = [], 0
    if before is not None:
        parts += [trim_silence(before), np.zeros(int(rng.uniform(0.02, 0.15) * WINDOW), np.float32)]
        start = sum(p.size for p in parts)
    parts.append(word)
    if after is not None:
        parts += [np.zeros(int(rng.uniform(0.02, 0.15) * WINDOW), np.float32), trim_silence(after)]
    y = np.concatenate(parts).astype(np.float32)
    return _window_at(y, start + word.size // 2 - WINDOW // 2)


# ---------------------------------------------------------------- stage 2: speech
def _resolve(plan: dict[str, Any], cache_dir: Path, workers: int) -> dict[str, Any]:
    """Synthesize every planned utterance; point each TTS clip at a surviving utterance (the next
    one of its group when its own was dropped) and fill in its record fields."""
    from kws.data import tts

    groups = plan["utterances"]
    jobs = [(t, _voice(v)) for g in sorted(groups) for t, v in groups[g]]
    res = tts.synthesize_many(jobs, cache_dir=cache_dir, workers=workers, desc="synthesizing speech")
    ok: dict[str, list[bool]] = {}
    k = 0
    for g in sorted(groups):
        ok[g] = [a is not None for a in res.audio[k:k + len(groups[g])]]
        k += len(groups[g])
    recipes, short = [], Counter()
    for c in plan["clips"]:
        c = dict(c)
        src = c["src"]
        if src["type"] == "tts":
            g, u = src["group"], src["utt"]
            alive = ok[g]
            n = len(alive)
            pick = next((u2 % n for u2 in range(u, u + n) if alive[u2 % n]), None)
            if pick is None:
                short[g] += 1
                continue
            text, vd = groups[g][pick]
            v = _voice(vd)
            new_src = {"type": "tts", "text": text, "voice": vd}
            if src.get("carrier"):
                new_src["carrier"] = src["carrier"]
                text = " ".join(t for t in (src["carrier"][0], text, src["carrier"][1]) if t)
            c.update(text=text, source=f"tts:{v.engine}:{v.name}", speaker=v.speaker, src=new_src)
        elif src["type"] == "noise":
            c.update(text="", source="noise:" + ("recorded" if plan["noise_files"] else "generated"),
                     speaker="none")
        recipes.append(c)
    _resolve_carriers(recipes, cache_dir, workers)
    unique = len(set(jobs))
    return {"clips": recipes, "tts": {"utterances": unique, "dropped": res.dropped, "unsupported": res.unsupported,
                                      "cached": res.cached, "synthesized": res.synthesized,
                                      "reasons": dict(res.reasons), "unfilled": dict(short)}}


# ---------------------------------------------------------------- stage 3/4: workers
_W: dict[str, Any] = {}


def _init_worker(state: dict[str, Any], child: bool = False) -> None:
    if child:
        import signal

        # Ctrl-C is handled by the parent (it cancels the queue); a worker finishes its batch
        # quietly instead of printing a traceback each
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    _W.clear()
    _W.update(state)


def _clip_rng(seed: int, clip_id: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(clip_id.encode())])


def _render_one(c: dict[str, Any]) -> np.ndarray:
    from kws.audio import fit_to_window
    from kws.data import augment, tts

    rng = _clip_rng(_W["seed"], c["id"])
    src = c["src"]
    place = None
    if _W.get("align", "center") == "end" and src["type"] != "noise":
        tail = int(round(rng.uniform(*END_TAIL_SECONDS) * WINDOW))

        def place(y: np.ndarray) -> np.ndarray:
            return fit_to_window(y, WINDOW, align="end", tail_samples=tail)
    if src["type"] == "noise":
        # pure noise at a random level: a stretch of a recording, or generated coloured noise
        if _W["noise"]:
            y = _W["augmenter"].noise_segment(WINDOW, rng)
            rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
            y = y / rms if rms > 0 else y
        else:
            y = augment.coloured_noise(NOISE_COLOURS[int(rng.integers(3))], WINDOW, rng)
        y = y * np.float32(10 ** (rng.uniform(-45.0, -15.0) / 20.0))
        return np.clip(y, -0.99, 0.99).astype(np.float32)
    if (place is None and _W.get("negative_placement", 0.0) > 0 and c.get("kind") in ("negative", "close_negative")
            and not src.get("carrier") and src.get("start") is None and rng.random() < _W["negative_placement"]):
        def place(y: np.ndarray) -> np.ndarray:
            return _random_place(y, rng)
    if src["type"] == "tts":
        x = tts.synthesize(src["text"], _voice(src["voice"]), _W["cache_dir"])
        if x is None:
            raise DataError(f"speech synthesis of {src['text']!r} with {src['voice']} failed now but worked before; "
                            "delete the dataset folder's work/recipes.json and rerun")
        if src.get("carrier") and place is None:
            before, after = (tts.synthesize(t, _voice(src["voice"]), _W["cache_dir"]) if t else None
                             for t in src["carrier"])
            x = _carrier_window(x, before, after, rng)
        else:
            x = fit_to_window(x, WINDOW) if place is None else place(x)
    else:
        x = _load_piece(src["path"], src["start"], place)
    span = augment.speech_span(x) if _W.get("edge_share", 0.0) > 0 else None
    if _W["augment"]:
        x = _W["augmenter"].apply(x, rng, place=place)
    if span is not None and rng.random() < _W["edge_share"]:
        x = augment.cut_at_edges(x, span, rng)
    return x


CLIP_BYTES = 44 + 2 * WINDOW  # a finished clip: canonical 44-byte WAV header + 1 s of int16


def write_clip(path: Path, x: np.ndarray) -> None:
    """16-bit mono WAV, atomically; the same samples `kws.audio.save_wav` writes (clip, round,
    x 32768) but through the stdlib writer: soundfile fsyncs every file, which costs more than
    rendering the clip. A clip cut short by a crash has the wrong size and is rendered again."""
    import wave

    q = np.clip(np.round(np.asarray(x, dtype=np.float64) * 32768.0), -32768, 32767).astype("<i2")
    with atomic_path(path) as tmp:
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(WINDOW)
            w.writeframes(q.tobytes())


def _clip_done(path: Path) -> bool:
    try:
        return path.stat().st_size == CLIP_BYTES
    except OSError:
        return False


def _render_batch(batch: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    """Render and save each clip; (id, error or None). Unreadable real files become errors (the
    clip is dropped and listed), never a crash."""
    out = []
    for c in batch:
        try:
            x = _render_one(c)
        except (AudioError, _SilentPiece) as e:
            out.append((c["id"], str(e)))
            continue
        write_clip(Path(_W["out"]) / c["path"], x)
        out.append((c["id"], None))
    return out


def _featurize_batch(paths: list[str]) -> np.ndarray:
    from kws.audio import load_audio
    from kws.features import featurize_window

    cfg = _W["feature_config"]
    return np.stack([featurize_window(load_audio(Path(_W["out"]) / p), cfg) for p in paths]).astype(np.float32)


def _batches(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _run_parallel(fn, batches: list, state: dict[str, Any], workers: int, desc: str, total: int,
                  on_result) -> None:
    """Call on_result(fn(batch)) for every batch, in order, with a progress bar; inline for one
    worker (no process start-up cost). On an interruption the queued batches are cancelled and the
    running ones finish (their writes are atomic) before the exception goes on."""
    bar = progress(range(total), desc=desc, total=total)
    try:
        if workers <= 1 or len(batches) <= 1:
            _init_worker(state)
            for b in batches:
                on_result(fn(b))
                bar.update(len(b))
            return
        pool = cf.ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(state, True))
        try:
            for b, r in zip(batches, pool.map(fn, batches)):
                on_result(r)
                bar.update(len(b))
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
    finally:
        bar.close()


# ---------------------------------------------------------------- summary
@dataclass
class DatasetSummary:
    keyword: str
    out: Path
    seed: int
    preset: str
    sizes: dict[str, int]
    counts: dict[str, dict[str, dict[str, int]]]  # split -> kind -> source group -> clips
    speakers: dict[str, int]  # split -> distinct speakers (noise clips excluded)
    close_negatives: list[dict[str, str]]  # val/test
    close_negative_splits: list[str]
    skipped: list[tuple[str, str]]
    tts: dict[str, Any]
    feature_shape: dict[str, list[int]]
    seconds: float = 0.0
    rendered: int = 0  # clips rendered by this run (0 = everything reused)
    stage_seconds: dict[str, float] = field(default_factory=dict)  # this run's time per stage
    shared_speakers: int = 0  # speakers found in more than one split (0 by construction; checked)
    close_negatives_in_train: str = "none"
    close_negatives_train: list[dict[str, str]] = field(default_factory=list)
    close_negatives_dropped: list[list[str]] = field(default_factory=list)
    keyword_variants: list[str] = field(default_factory=list)  # other pronunciations said as positives

    def total(self, split: str | None = None) -> int:
        return sum(n for s, kinds in self.counts.items() if split in (None, s)
                   for srcs in kinds.values() for n in srcs.values())

    def table(self) -> str:
        rows = [("split", "kind", "source", "clips")]
        for s in SPLITS:
            for kind in ("positive", "negative", "close_negative", "noise", "word"):
                for src, n in sorted(self.counts.get(s, {}).get(kind, {}).items()):
                    rows.append((s, kind, src, str(n)))
            rows.append((s, "all", "", str(self.total(s))))
        w = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [f"Dataset for '{self.keyword}' in {self.out} (preset {self.preset}, seed {self.seed})", ""]
        for i, r in enumerate(rows):
            lines.append("  ".join([r[0].ljust(w[0]), r[1].ljust(w[1]), r[2].ljust(w[2]), r[3].rjust(w[3])]).rstrip())
            if i == 0:
                lines.append("  ".join("-" * x for x in w))
        lines.append("")
        disjoint = "disjoint" if not self.shared_speakers else f"NOT disjoint: {self.shared_speakers} shared"
        lines.append(f"speakers per split ({disjoint}): "
                     + ", ".join(f"{s} {self.speakers.get(s, 0)}" for s in SPLITS))
        shape = ", ".join(f"{s} {tuple(v)}" for s, v in self.feature_shape.items())
        lines.append(f"features: {shape}")
        if self.keyword_variants:
            lines.append(f"keyword also said as: {', '.join(self.keyword_variants)}")
        cn = ", ".join(f"{c['text']} ({c['how']})" for c in self.close_negatives)
        lines.append(f"close negatives in val/test ({len(self.close_negatives)}): {cn or 'none'}")
        tr = ", ".join(c["text"] for c in self.close_negatives_train)
        how = {"none": "none (paper protocol)", "disjoint": "word-disjoint from val/test",
               "all": "the val/test words"}[self.close_negatives_in_train]
        lines.append(f"close negatives in train: {how}" + (f" ({len(self.close_negatives_train)}): {tr}" if tr else ""))
        if self.close_negatives_dropped:
            lines.append(f"dropped as near-homophones ({len(self.close_negatives_dropped)}): "
                         + ", ".join(f"{t} ({why.split(' (')[0]})" for t, why in self.close_negatives_dropped))
        t = self.tts
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(t.get("reasons", {}).items()))
        lines.append(f"speech synthesis: {t.get('utterances', 0)} distinct utterances, "
                     f"{t.get('cached', 0)} from cache, "
                     f"{t.get('synthesized', 0)} synthesized, {t.get('dropped', 0)} dropped"
                     + (f" ({reasons})" if reasons else "")
                     + (f", {t.get('unsupported', 0)} phoneme strings skipped by non-espeak voices"
                        if t.get("unsupported") else ""))
        if t.get("unfilled"):
            lines.append("WARNING: clips missing because every utterance of their group was dropped: "
                         + ", ".join(f"{g} {n}" for g, n in sorted(t["unfilled"].items())))
        lines.append(f"skipped inputs: {len(self.skipped)}")
        for p, why in self.skipped[:50]:
            lines.append(f"  {p}: {why}")
        if len(self.skipped) > 50:
            lines.append(f"  ... and {len(self.skipped) - 50} more (all listed in dataset.json)")
        return "\n".join(lines)

    def timing(self) -> str:
        """This run's time per stage (not part of the saved summary: a rerun would change it)."""
        st = ", ".join(f"{k} {v:.1f} s" for k, v in self.stage_seconds.items())
        return f"this run: {self.seconds:.1f} s ({st}); {self.rendered} clips rendered"


def _summarize(plan: dict, recipes: dict, records: list[ClipRecord], opts: BuildOptions, sizes: dict[str, int],
               feature_shape: dict[str, list[int]], skipped: list) -> DatasetSummary:
    counts: dict[str, dict[str, dict[str, int]]] = {}
    spk: dict[str, set[str]] = defaultdict(set)
    for r in records:
        group = ":".join(r.source.split(":")[:2])  # tts:espeak-ng, real:speech_commands, noise:generated
        counts.setdefault(r.split, {}).setdefault(r.kind, Counter())[group] += 1
        if r.kind != "noise":
            spk[r.split].add(r.speaker)
    counts = {s: {k: dict(v) for k, v in kinds.items()} for s, kinds in counts.items()}
    shared = len((spk["train"] & spk["val"]) | (spk["train"] & spk["test"]) | (spk["val"] & spk["test"]))
    return DatasetSummary(keyword=plan["keyword"], out=Path(opts.out), seed=opts.seed, preset=opts.preset, sizes=sizes,
                          counts=counts, speakers={s: len(spk[s]) for s in SPLITS},
                          close_negatives=plan["close_negatives"], close_negative_splits=plan["close_negative_splits"],
                          skipped=[tuple(x) for x in skipped], tts=recipes["tts"], feature_shape=feature_shape,
                          shared_speakers=shared, close_negatives_in_train=plan["close_negatives_in_train"],
                          close_negatives_train=plan["close_negatives_train"],
                          close_negatives_dropped=plan["close_negatives_dropped"],
                          keyword_variants=plan.get("keyword_variants", []))


# ---------------------------------------------------------------- the build
def _write_json_if_changed(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=1, sort_keys=False, ensure_ascii=False) + "\n"
    _write_text_if_changed(path, text)


def _write_text_if_changed(path: Path, text: str) -> None:
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return  # a rerun leaves finished files (and their mtimes) alone
    atomic_write_text(path, text)


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _ids_digest(ids: list[str]) -> str:
    return hashlib.sha1("\n".join(ids).encode("utf-8")).hexdigest()


def finished_build_with(data_dir: str | os.PathLike, opts: BuildOptions) -> bool:
    """Whether `data_dir` holds a finished dataset that `opts` would build (the same fingerprint:
    every option that changes its content), so another run can use it instead of building its own."""
    d = Path(data_dir)
    plan = _load_json(d / "work" / "plan.json")
    done = (d / "dataset.json").is_file() and all((d / "features" / f"{s}.npy").is_file() for s in SPLITS)
    return done and plan is not None and plan.get("fingerprint") == _fingerprint(
        opts, resolve_sizes(opts.preset, opts.sizes, opts.close_negatives_in_train))


def build_dataset(opts: BuildOptions) -> DatasetSummary:
    """Build (or resume, or reuse) the dataset folder `opts.out`; see the module doc."""
    out = Path(opts.out)
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out}: is a file; give a folder for the dataset.")
    try:
        out.mkdir(parents=True, exist_ok=True)
        return _build(opts, out)
    except OSError as e:  # disk full, permissions, a folder removed under us: resumable, so say so
        raise DataError(f"{out}: writing the dataset failed ({e.strerror or e}: {e.filename or ''}); fix that "
                        "(free space, permissions) and rerun the same command to resume.") from None


def _build(opts: BuildOptions, out: Path) -> DatasetSummary:
    from kws.data import tts
    from kws.data.augment import Augmenter, make_rir_bank

    t0 = time.time()
    work = out / "work"
    sizes = resolve_sizes(opts.preset, opts.sizes, opts.close_negatives_in_train)
    workers = max(1, opts.workers or os.cpu_count() or 1)
    cache_dir = Path(opts.tts_cache) if opts.tts_cache is not None else tts.default_cache_dir()
    fp = _fingerprint(opts, sizes)

    stage: dict[str, float] = {}
    tick = [time.time()]

    def lap(name: str) -> None:
        now = time.time()
        stage[name] = now - tick[0]
        tick[0] = now

    # 1. plan
    plan_path = work / "plan.json"
    plan = _load_json(plan_path)
    if plan is not None and plan.get("fingerprint") != fp:
        old = plan.get("fingerprint") or {}
        diff = sorted(k for k in set(old) | set(fp) if old.get(k) != fp.get(k))
        raise DataError(f"{out} holds a dataset built with other options ({', '.join(diff)}); use another --out, "
                        "or delete the folder to rebuild it")
    if plan is None:
        plan = _make_plan(opts, sizes)
        _write_json_if_changed(plan_path, plan)
    lap("plan")

    # 2. speech
    recipes_path = work / "recipes.json"
    recipes = _load_json(recipes_path)
    if recipes is None:
        recipes = _resolve(plan, cache_dir, workers)
        _write_json_if_changed(recipes_path, recipes)
    lap("speech")
    skipped = [tuple(x) for x in plan["skipped"]] + [tuple(x) for x in recipes.get("render_skipped", [])]

    clips = recipes["clips"]
    for c in clips:
        c["path"] = f"clips/{c['split']}/{c['id']}.wav"

    # 3. clips
    todo = [c for c in clips if not _clip_done(out / c["path"])]
    state: dict[str, Any] = {"seed": opts.seed, "out": str(out), "cache_dir": str(cache_dir),
                             "feature_config": opts.feature_config(), "noise": False, "augmenter": None, "augment": False}
    rendered_splits: set[str] = set()
    if todo:
        noise_audio = []
        if plan["noise_files"]:
            from kws.audio import load_audio

            for p in plan["noise_files"]:
                try:
                    noise_audio.append(load_audio(p))
                except AudioError as e:
                    skipped.append((p, str(e).split(": ", 1)[-1][:160]))
        state["noise"] = bool(noise_audio)
        # the augmenter also supplies the noise stretches of kind=noise clips, so it exists even
        # without augmentation; the room bank is simulated once here and shipped to the workers
        config = _augment_config(opts.align, opts.augment_recipe, opts.clean_share)
        state["augmenter"] = Augmenter(noise=noise_audio, seed=opts.seed, config=config,
                                       rirs=make_rir_bank(seed=opts.seed) if opts.augment else [])
        state["augment"] = opts.augment
        state["align"] = opts.align
        state["negative_placement"] = opts.negative_placement
        state["edge_share"] = opts.edge_share
        failed: dict[str, str] = {}

        def note(res: list[tuple[str, str | None]]) -> None:
            failed.update((cid, err) for cid, err in res if err is not None)

        _run_parallel(_render_batch, _batches(todo, 16), state, workers, "rendering clips", len(todo), note)
        rendered_splits = {c["split"] for c in todo if c["id"] not in failed}
        if failed:
            bad = [c for c in clips if c["id"] in failed]
            for c in bad:
                skipped.append((c["src"].get("path", c["id"]), failed[c["id"]].split(": ", 1)[-1][:160]))
            recipes["render_skipped"] = recipes.get("render_skipped", []) + \
                [[c["src"].get("path", c["id"]), failed[c["id"]].split(": ", 1)[-1][:160]] for c in bad]
            recipes["clips"] = [c for c in recipes["clips"] if c["id"] not in failed]
            clips = [c for c in clips if c["id"] not in failed]
            _write_json_if_changed(recipes_path, {k: v for k, v in recipes.items()})

    lap("clips")

    # 4. features
    cfg = opts.feature_config()
    feature_shape: dict[str, list[int]] = {}
    for split in SPLITS:
        rows = [c for c in clips if c["split"] == split]
        ids = [c["id"] for c in rows]
        npy, meta_path = out / "features" / f"{split}.npy", out / "features" / f"{split}.ids.json"
        shape = [len(rows), cfg.window_frames, cfg.n_features]
        feature_shape[split] = shape
        meta = _load_json(meta_path)
        fresh = (split not in rendered_splits and npy.is_file() and meta is not None
                 and meta.get("digest") == _ids_digest(ids) and meta.get("shape") == shape
                 and meta.get("features") == cfg.to_dict())
        if fresh:
            try:
                fresh = list(np.load(npy, mmap_mode="r").shape) == shape
            except (OSError, ValueError):
                fresh = False
        if fresh:
            continue
        x = np.zeros(shape, dtype=np.float32)
        state["feature_config"] = cfg
        k = [0]

        def put(feats: np.ndarray) -> None:
            x[k[0]:k[0] + len(feats)] = feats
            k[0] += len(feats)

        _run_parallel(_featurize_batch, _batches([c["path"] for c in rows], 128), state, workers,
                      f"features {split}", len(rows), put)
        with atomic_path(npy) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, x)
        _write_json_if_changed(meta_path, {"digest": _ids_digest(ids), "shape": shape, "features": cfg.to_dict()})

    lap("features")

    # 5. manifest, dataset.json, summary
    records = [ClipRecord(id=c["id"], path=c["path"], label=int(c["kind"] == "positive"), kind=c["kind"],
                          text=c.get("text", ""), source=c["source"], speaker=c["speaker"], split=c["split"])
               for s in SPLITS for c in clips if c["split"] == s]
    manifest_text = "".join(r.to_json() + "\n" for r in records)
    _write_text_if_changed(out / "manifest.jsonl", manifest_text)
    sizes = plan.get("sizes", sizes)  # the plan may hand an unusable train_close back to train_neg
    summary = _summarize(plan, recipes, records, opts, sizes, feature_shape, skipped)
    info = {
        "format": "kws-dataset", "format_version": 1, "keyword": plan["keyword"], "seed": opts.seed,
        "preset": opts.preset, "sizes": sizes, "features": cfg.to_dict(), "feature_shape": feature_shape,
        "counts": summary.counts,
        "speakers": {s: sorted({r.speaker for r in records if r.split == s and r.kind != "noise"}) for s in SPLITS},
        "close_negatives": plan["close_negatives"], "close_negative_splits": plan["close_negative_splits"],
        "close_negatives_in_train": plan["close_negatives_in_train"],
        "close_negatives_train": plan["close_negatives_train"],
        "close_negatives_dropped": plan["close_negatives_dropped"], "skipped": [list(x) for x in skipped],
        "keyword_variants": plan.get("keyword_variants", []),
        "tts": recipes["tts"], "options": fp, "align": opts.align,
    }
    if plan.get("word_task_words"):
        info["word_task_words"] = plan["word_task_words"]
    _write_json_if_changed(out / "dataset.json", info)
    summary.rendered = len(todo)
    _write_text_if_changed(out / "summary.txt", summary.table() + "\n")
    lap("write")
    summary.stage_seconds = stage
    summary.seconds = time.time() - t0
    return summary
