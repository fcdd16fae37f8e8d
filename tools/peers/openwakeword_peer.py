"""openWakeWord as a peer: its frozen feature path (melspectrogram + Google speech-embedding ONNX
models shipped in the `openwakeword==0.5.1` wheel), its pretrained wake-word heads, and a head of its
kind trained on OUR dataset's training clips (`train_head`), all run with onnxruntime (no tflite).

Licences: openWakeWord's code is Apache-2.0; its pretrained wake-word models (alexa, hey_jarvis,
hey_mycroft, hey_rhasspy, ...) are CC BY-NC-SA 4.0 (non-commercial): we only run them in a benchmark
and never ship them. The speech-embedding model is Google's (Apache-2.0, via TF Hub).

Feature path (as openwakeword.utils.AudioFeatures): 16 kHz audio as int16-scaled float32 ->
melspectrogram.onnx (32 mel bands, 10 ms hop; transformed x / 10 + 2) -> one 96-d embedding per
8 mel frames (80 ms) from the last 76 frames (0.76 s) -> a head over the last `HEAD_FRAMES`
embeddings (16 = 1.28 s of embeddings, about 2 s of audio) -> score in [0, 1]. A stream is scored
every 80 ms, its native hop (a finer grid than our 100 ms, so the peer is not handicapped).
Computing the whole clip at once equals openWakeWord's own 80 ms streaming (checked: the mel frames
of a chunk plus its 480-sample context are identical), so clip and stream scores are what the
deployed system would output, after its buffers are filled.

    fe = FrontEnd()
    e = fe.embeddings(audio)                 # [N, 96], N = embedding_count(len(audio))
    head = PretrainedHead("hey_jarvis")      # or train_head(...) on our clips
    s = head.window_scores(windows(e, head.n_frames))
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from kws.errors import DataError

# the frozen front end is the library's distillation teacher (kws.train.teacher); re-exported here
from kws.train.teacher import (EMB_DIM, EMB_END0, EMB_START0, EMB_WINDOW, HOP_SAMPLES,  # noqa: F401
                               MEL_CONTEXT, SAMPLE_RATE, FrontEnd, embedding_count, embedding_end_seconds,
                               models_dir)
from kws.train.teacher import onnx_session as _session
# a head of openWakeWord's kind is also the library's score teacher (kws.train.oww_head)
from kws.train.oww_head import (HEAD_FRAMES, TRAIN_LEAD, TRAIN_TAIL, TrainedHead, clip_labels,  # noqa: F401
                                clip_max, clip_windows, head_module, train_head, windows)

PRETRAINED = {"alexa": "alexa_v0.1.onnx", "hey_jarvis": "hey_jarvis_v0.1.onnx",
              "hey_mycroft": "hey_mycroft_v0.1.onnx", "hey_rhasspy": "hey_rhasspy_v0.1.onnx"}
PHRASES = {"alexa": "alexa", "hey_jarvis": "hey jarvis", "hey_mycroft": "hey mycroft", "hey_rhasspy": "hey rhasspy"}
LICENCE = ("openWakeWord code Apache-2.0; its pretrained wake-word models CC BY-NC-SA 4.0 (non-commercial, "
           "benchmark use only); speech-embedding model by Google, Apache-2.0")


class OnnxHead:
    """A head in openWakeWord's ONNX layout (input [1, n, 96] -> score [1, 1]), run by onnxruntime:
    its pretrained models, or ours exported by `TrainedHead.export_onnx`."""

    def __init__(self, path: str | os.PathLike, threads: int = 1) -> None:
        self.path = Path(path)
        self.name = self.path.stem
        self.session = _session(self.path, threads)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.n_frames = int(inp.shape[1])
        self.model_bytes = self.path.stat().st_size

    @property
    def params(self) -> int:
        import onnx

        return int(sum(np.prod(t.dims) for t in onnx.load(str(self.path)).graph.initializer))

    def window_scores(self, x: np.ndarray) -> np.ndarray:
        # openWakeWord's exported graphs have a fixed batch of 1
        return np.array([float(self.session.run(None, {self.input_name: np.asarray(w[None], np.float32)})[0].reshape(-1)[0])
                         for w in x], dtype=np.float64)


class PretrainedHead(OnnxHead):
    """One of openWakeWord's pretrained single-phrase models (CC BY-NC-SA: benchmark use only)."""

    def __init__(self, name: str, threads: int = 1) -> None:
        if name not in PRETRAINED:
            raise DataError(f"no pretrained openWakeWord model {name!r}; one of {', '.join(PRETRAINED)}")
        super().__init__(models_dir() / PRETRAINED[name], threads)
        self.name = name


def clip_scores(fe: FrontEnd, head: Any, clips: Sequence[np.ndarray], lead: float = 1.5, tail: float = 0.5) -> np.ndarray:
    """Per clip, the max head score over the windows a stream would produce: the clip after `lead`
    seconds and before `tail` seconds of digital silence (a longer lead than our 0.5 s because one
    openWakeWord window hears about 2 s; the extra lead is silence, so no window sees more speech)."""
    out = []
    for c in clips:
        x = np.concatenate([np.zeros(int(lead * SAMPLE_RATE), np.float32), np.asarray(c, np.float32),
                            np.zeros(int(tail * SAMPLE_RATE), np.float32)])
        w = windows(fe.embeddings(x), head.n_frames)
        out.append(float(head.window_scores(w).max()) if len(w) else 0.0)
    return np.asarray(out, dtype=np.float64)


def stream_trace(fe: FrontEnd, head: Any, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(times, scores) of the head over a long stream, one score per 80 ms from the first full
    window; times are the window ends in seconds."""
    emb = fe.embeddings(audio)
    w = windows(emb, head.n_frames)
    return embedding_end_seconds(np.arange(len(w)) + head.n_frames - 1), head.window_scores(w)


class Streamer:
    """openWakeWord's live loop, lean: per 80 ms chunk, 8 new mel frames (the chunk plus 480 samples
    of context), one embedding over the last 76 frames, one head score over the last n embeddings.
    Used to measure its cost the way it runs on a device (`FrontEnd` computes the same numbers in
    bulk). Buffers start empty, so the first score comes after about 2 s."""

    def __init__(self, fe: FrontEnd, head: Any) -> None:
        self.fe, self.head = fe, head
        self.audio = np.zeros(0, dtype=np.float32)  # the first hop alone gives 5 frames, as in openWakeWord
        self.mel = np.zeros((0, 32), dtype=np.float32)
        self.emb = np.zeros((0, EMB_DIM), dtype=np.float32)
        self.pending = np.zeros(0, dtype=np.float32)

    def step(self, chunk: np.ndarray) -> list[float]:
        """Feed float samples in [-1, 1]; returns the scores of the 80 ms hops completed."""
        self.pending = np.concatenate([self.pending, np.asarray(chunk, np.float32)])
        out = []
        while len(self.pending) >= HOP_SAMPLES:
            hop, self.pending = self.pending[:HOP_SAMPLES], self.pending[HOP_SAMPLES:]
            seg = np.concatenate([self.audio[-MEL_CONTEXT:], hop])
            self.audio = seg
            self.mel = np.concatenate([self.mel, self.fe.melspectrogram(seg)])[-EMB_WINDOW:]
            if len(self.mel) < EMB_WINDOW:
                continue
            e = self.fe.emb.run(None, {"input_1": self.mel[None, :, :, None].astype(np.float32)})[0].reshape(1, EMB_DIM)
            self.emb = np.concatenate([self.emb, e])[-self.head.n_frames:]
            if len(self.emb) == self.head.n_frames:
                out.append(float(self.head.window_scores(self.emb[None])[0]))
        return out
