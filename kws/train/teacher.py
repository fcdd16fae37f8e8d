"""A teacher for distillation: openWakeWord's frozen speech embedding (Google's speech_embedding
model, Apache-2.0, shipped as ONNX in the `openwakeword==0.5.1` wheel together with its
melspectrogram front end), run with onnxruntime, never shipped in a bundle.

Why: a head on this embedding trained on exactly our synthesized clips reaches 94% recall at 3% FPR
on real "athena" recordings where our log-mel FastGRNN trained on the same clips reaches 65-89%
(BENCHMARKS.md "peers", "text_only"): the embedding was learned from a large amount of real
speech and carries the word across the synthetic-to-real shift; our 7 KB model does not. Feature
distillation (`kws.train.trainer`, TrainHparams.distill) asks the student's recurrent state to
linearly predict this embedding at the same moments of each training clip, real and synthesized
alike, so the student's state is pushed towards what the embedding encodes. Only training uses it.
Measured so far (BENCHMARKS.md "text_only_distill", DROCC-LF, 1 seed): no gain beyond seed spread
(athena 81.7% vs 89.0 / 82.2% without, left 32.5% vs 35.5 / 21.1%); opt-in, off by default.

Feature path (as openwakeword.utils.AudioFeatures): 16 kHz audio as int16-scaled float32 ->
melspectrogram.onnx (32 mel bands, 10 ms hop; transformed x / 10 + 2) -> one 96-d embedding per
8 mel frames (80 ms) from the last 76 frames (0.76 s).

    fe = FrontEnd()
    e = fe.embeddings(audio)                 # [N, 96], N = embedding_count(len(audio))
    targets = teacher_targets(data_dir)      # the train split's embeddings, cached in data_dir
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from kws.errors import DataError, KwsError
from kws.util import atomic_path, progress

INSTALL_HINT = ("install the optional teacher with `make peers` (or `pip install --no-deps "
                "openwakeword==0.5.1`; its ONNX models are all that is used)")
SAMPLE_RATE = 16000
MEL_HOP = 160  # samples per mel frame
MEL_CONTEXT = 480  # extra samples a chunk needs: n samples give n / 160 - 3 mel frames
EMB_WINDOW = 76  # mel frames per embedding
EMB_STEP = 8  # mel frames between embeddings (80 ms)
EMB_DIM = 96
HOP_SAMPLES = EMB_STEP * MEL_HOP  # 1280: the peer's stream hop
# openWakeWord's live loop takes an embedding of the latest 76 mel frames whenever an 80 ms chunk
# completes; the first chunk yields 5 frames, later ones 8, so its embeddings start at mel frames
# 1, 9, 17, ... and embedding k ends exactly at a chunk end. The bulk path uses the same grid.
EMB_FIRST_FRAME = 1
MEL_FRAME_SAMPLES = MEL_HOP + MEL_CONTEXT  # mel frame i covers samples [160 i, 160 i + 640)
EMB_START0 = EMB_FIRST_FRAME * MEL_HOP  # first sample embedding 0 hears
EMB_END0 = (EMB_FIRST_FRAME + EMB_WINDOW - 1) * MEL_HOP + MEL_FRAME_SAMPLES  # 12800: its end (10 chunks)


def models_dir() -> Path:
    """The wheel's resources/models folder (the ONNX models ship inside openwakeword 0.5.1)."""
    import importlib.util

    # found without importing the package: its __init__ pulls in scikit-learn and tflite helpers we never use
    spec = importlib.util.find_spec("openwakeword")
    if spec is None or not spec.submodule_search_locations:
        raise KwsError(f"openwakeword is not installed; {INSTALL_HINT}.")
    d = Path(list(spec.submodule_search_locations)[0]).resolve() / "resources" / "models"
    if not (d / "melspectrogram.onnx").is_file() or not (d / "embedding_model.onnx").is_file():
        raise KwsError(f"{d}: no melspectrogram.onnx / embedding_model.onnx; openwakeword 0.6+ ships no models: "
                       f"{INSTALL_HINT}.")
    return d


def onnx_session(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def embedding_count(n_samples: int) -> int:
    """Embeddings the front end gives for `n_samples` of audio (0 when shorter than one input)."""
    n_mel = n_samples // MEL_HOP - 3
    return max(0, (n_mel - EMB_FIRST_FRAME - EMB_WINDOW) // EMB_STEP + 1)


def embedding_end_seconds(index: np.ndarray | int) -> np.ndarray:
    """End time (s) of the audio that embedding `index` has heard (stream time, from sample 0)."""
    return (np.asarray(index) * HOP_SAMPLES + EMB_END0) / SAMPLE_RATE


class FrontEnd:
    """openWakeWord's frozen features: melspectrogram.onnx + embedding_model.onnx."""

    def __init__(self, threads: int = 1, chunk_seconds: float = 30.0) -> None:
        d = models_dir()
        self.mel = onnx_session(d / "melspectrogram.onnx", threads)
        self.emb = onnx_session(d / "embedding_model.onnx", threads)
        self.chunk = int(chunk_seconds * SAMPLE_RATE) // HOP_SAMPLES * HOP_SAMPLES
        self.model_bytes = (d / "melspectrogram.onnx").stat().st_size + (d / "embedding_model.onnx").stat().st_size

    def melspectrogram(self, audio: np.ndarray) -> np.ndarray:
        """[n / 160 - 3, 32] mel frames of float audio in [-1, 1], computed in chunks (exactly
        equal to one pass: a chunk starting at a multiple of 160 with 480 samples of context)."""
        x = np.asarray(audio, dtype=np.float32).reshape(-1) * np.float32(32768.0)  # it takes int16 scale
        n_frames = x.size // MEL_HOP - 3
        if n_frames <= 0:
            return np.zeros((0, 32), dtype=np.float32)
        out = []
        for start in range(0, n_frames * MEL_HOP, self.chunk):
            seg = x[start:start + self.chunk + MEL_CONTEXT]
            out.append(np.squeeze(self.mel.run(None, {"input": seg[None]})[0], axis=(1,)).reshape(-1, 32))
        spec = np.concatenate(out)[:n_frames]
        return spec / 10.0 + 2.0  # openWakeWord's transform towards Google's TF front end

    def embeddings(self, audio: np.ndarray, batch: int = 256) -> np.ndarray:
        """[embedding_count(len(audio)), 96] speech embeddings, one per 80 ms."""
        spec = self.melspectrogram(audio)[EMB_FIRST_FRAME:]
        n = max(0, (len(spec) - EMB_WINDOW) // EMB_STEP + 1)
        if n == 0:
            return np.zeros((0, EMB_DIM), dtype=np.float32)
        view = np.lib.stride_tricks.sliding_window_view(spec, EMB_WINDOW, axis=0)[::EMB_STEP][:n]  # [n, 32, 76]
        win = np.ascontiguousarray(view.transpose(0, 2, 1)[..., None], dtype=np.float32)  # [n, 76, 32, 1]
        out = [self.emb.run(None, {"input_1": win[i:i + batch]})[0].reshape(-1, EMB_DIM) for i in range(0, n, batch)]
        return np.concatenate(out).astype(np.float32)




# ---------------------------------------------------------------- distillation targets
TEACHER_LEAD = 0.5  # seconds of silence before a clip, so the first embeddings already hear it
PART_CLIPS = 1000  # clips per cache part: an interrupted run redoes at most one part
CACHE_VERSION = 1


@dataclass
class TeacherTargets:
    """Teacher embeddings of one split: `emb` [N, K, 96] (rows in manifest order) and `frames` [K],
    the student feature frame whose end is the moment embedding k has heard up to (the student's
    state after that frame is compared with it)."""

    emb: np.ndarray
    frames: np.ndarray


def aligned_frames(n_samples: int, frame_length: int, hop_length: int, n_frames: int,
                   lead_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """(embedding indices, student frames) pairing each teacher embedding of a clip padded with
    `lead_samples` of silence with the last student frame that ends no later than the embedding's
    audio (a causal student never waits for audio the teacher has not heard). Embeddings that end
    before the first student frame or after the clip are left out."""
    k = np.arange(embedding_count(lead_samples + n_samples))
    end = k * HOP_SAMPLES + EMB_END0 - lead_samples  # clip samples embedding k has heard
    frame = (end - frame_length) // hop_length
    keep = (frame >= 0) & (frame < n_frames) & (end <= n_samples)
    return k[keep], frame[keep]


def clip_embeddings(fe: FrontEnd, clip: np.ndarray, emb_index: np.ndarray, lead_samples: int) -> np.ndarray:
    """The teacher embeddings `emb_index` [K, 96] of one clip after `lead_samples` of silence."""
    x = np.concatenate([np.zeros(lead_samples, np.float32), np.asarray(clip, np.float32)])
    return fe.embeddings(x)[emb_index]


def manifest_digest(paths: list[str]) -> str:
    return hashlib.sha1("\n".join(paths).encode()).hexdigest()[:16]


def cached_clip_parts(cache: Path, meta: dict, paths: list[Path], compute: Callable[[np.ndarray, FrontEnd], np.ndarray],
                      desc: str, fe: FrontEnd | None = None) -> list[np.ndarray]:
    """`compute(clip, front_end)` of every clip file, stacked per part of `PART_CLIPS` clips and cached
    under `cache` as float16 (.npy parts, each written atomically): an interrupted run resumes at its
    last part; cached parts made with other `meta` (alignment, clip count) are dropped first."""
    from kws.audio import load_audio

    cache.mkdir(parents=True, exist_ok=True)
    meta_path = cache / "meta.json"
    if meta_path.is_file() and json.loads(meta_path.read_text()) != meta:
        for f in cache.glob("part-*.npy"):  # another alignment: the old parts do not apply
            f.unlink()
    with atomic_path(meta_path) as tmp:
        tmp.write_text(json.dumps(meta))
    parts = []
    starts = range(0, len(paths), PART_CLIPS)
    todo = [s for s in starts if not (cache / f"part-{s:07d}.npy").is_file()]
    if todo and fe is None:
        fe = FrontEnd(threads=1)
    bar = progress(total=sum(min(PART_CLIPS, len(paths) - s) for s in todo), items=None, desc=desc) if todo else None
    for s in starts:
        part = cache / f"part-{s:07d}.npy"
        if not part.is_file():
            block = []
            for p in paths[s:s + PART_CLIPS]:
                block.append(compute(load_audio(p), fe))
                bar.update(1)
            with atomic_path(part) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, np.stack(block).astype(np.float16))
        parts.append(np.load(part).astype(np.float32))
    if bar is not None:
        bar.close()
    return parts


def teacher_targets(data_dir: str | Path, split: str = "train", fe: FrontEnd | None = None) -> TeacherTargets:
    """Teacher embeddings for every clip of a dataset split (the clips' WAVs, the very audio the
    student's features were computed from), cached under DATA_DIR/teacher/ in parts of
    `PART_CLIPS` clips: rerunning after an interrupt resumes, a rebuilt dataset is recomputed."""
    from kws.data.dataset import load_split

    d = Path(data_dir)
    sp = load_split(d, split)
    cfg = sp.feature_config
    if cfg.sample_rate != SAMPLE_RATE:
        raise DataError(f"{d}: the openWakeWord teacher needs {SAMPLE_RATE} Hz clips, this dataset is {cfg.sample_rate} Hz; "
                        "train without --teacher")
    lead = int(round(TEACHER_LEAD * SAMPLE_RATE))
    emb_index, frames = aligned_frames(cfg.window_samples, cfg.frame_length, cfg.hop_length, cfg.window_frames, lead)
    if len(frames) == 0:
        raise DataError(f"{d}: a {cfg.window_samples / SAMPLE_RATE:.2f} s window is too short for the teacher "
                        f"(its embeddings hear {EMB_END0 / SAMPLE_RATE:.2f} s)")
    paths = [r.path for r in sp.records]
    meta = {"version": CACHE_VERSION, "lead_samples": lead, "emb_index": emb_index.tolist(), "n": len(paths)}
    parts = cached_clip_parts(d / "teacher" / f"openwakeword-{split}-{manifest_digest(paths)}", meta,
                              [d / p for p in paths], lambda clip, fe: clip_embeddings(fe, clip, emb_index, lead),
                              f"teacher embeddings ({split})", fe)
    emb = np.concatenate(parts) if parts else np.zeros((0, len(frames), EMB_DIM), np.float32)
    return TeacherTargets(emb=emb, frames=frames)
