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

HEAD_FRAMES = 16  # embeddings per head window (openWakeWord's default)
PRETRAINED = {"alexa": "alexa_v0.1.onnx", "hey_jarvis": "hey_jarvis_v0.1.onnx",
              "hey_mycroft": "hey_mycroft_v0.1.onnx", "hey_rhasspy": "hey_rhasspy_v0.1.onnx"}
PHRASES = {"alexa": "alexa", "hey_jarvis": "hey jarvis", "hey_mycroft": "hey mycroft", "hey_rhasspy": "hey rhasspy"}
LICENCE = ("openWakeWord code Apache-2.0; its pretrained wake-word models CC BY-NC-SA 4.0 (non-commercial, "
           "benchmark use only); speech-embedding model by Google, Apache-2.0")


def windows(emb: np.ndarray, n_frames: int = HEAD_FRAMES) -> np.ndarray:
    """Every head input [k, n_frames, 96] of an embedding sequence (window i ends at embedding
    i + n_frames - 1)."""
    if len(emb) < n_frames:
        return np.zeros((0, n_frames, emb.shape[1]), dtype=np.float32)
    return np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(emb, n_frames, axis=0).transpose(0, 2, 1))


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


# ---------------------------------------------------------------- a head of openWakeWord's kind
def head_module(n_frames: int = HEAD_FRAMES, layer_dim: int = 32, n_blocks: int = 1):
    """openWakeWord's "dnn" head: flatten -> linear -> layer norm -> ReLU -> n_blocks x (linear ->
    ReLU -> layer norm) -> linear -> sigmoid (its training notebook's default: 32 units, 1 block)."""
    import torch.nn as nn

    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(n_frames * EMB_DIM, layer_dim), nn.LayerNorm(layer_dim), nn.ReLU()]
    for _ in range(n_blocks):
        layers += [nn.Linear(layer_dim, layer_dim), nn.ReLU(), nn.LayerNorm(layer_dim)]
    layers += [nn.Linear(layer_dim, 1), nn.Sigmoid()]
    return nn.Sequential(*layers)


@dataclass
class TrainedHead:
    """A head trained by `train_head`; scores windows with torch (one thread)."""

    module: Any
    n_frames: int
    history: list[dict[str, float]]
    best_epoch: int

    @property
    def params(self) -> int:
        return int(sum(p.numel() for p in self.module.parameters()))

    @property
    def model_bytes(self) -> int:  # float32 weights
        return 4 * self.params

    def window_scores(self, x: np.ndarray) -> np.ndarray:
        import torch

        self.module.eval()
        with torch.no_grad():
            out = [self.module(torch.from_numpy(np.ascontiguousarray(x[i:i + 4096], dtype=np.float32))).reshape(-1)
                   for i in range(0, len(x), 4096)]
        return torch.cat(out).double().numpy() if out else np.zeros(0)

    def save(self, path: str | os.PathLike) -> Path:
        """safetensors weights + the structure in the metadata (loadable without pickle)."""
        from safetensors.torch import save_file

        from kws.util import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp:
            save_file({k: v.contiguous() for k, v in self.module.state_dict().items()}, str(tmp),
                      metadata={"n_frames": str(self.n_frames), "best_epoch": str(self.best_epoch),
                                "layer_dim": str(self.module[1].out_features),
                                "n_blocks": str((len(self.module) - 6) // 3)})
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TrainedHead":
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
        m = head_module(int(meta["n_frames"]), int(meta["layer_dim"]), int(meta["n_blocks"]))
        m.load_state_dict(load_file(str(path)))
        return cls(m, int(meta["n_frames"]), [], int(meta["best_epoch"]))

    def export_onnx(self, path: str | os.PathLike) -> Path:
        """The head as ONNX with openWakeWord's input layout [1, n_frames, 96] (so
        `openwakeword.Model(wakeword_models=[path], inference_framework="onnx")` can run it)."""
        import torch

        from kws.export.onnx_export import _export  # kws's exporter settings (opset, tracer, warnings)
        from kws.util import atomic_path

        path = Path(path)
        self.module.eval()
        with atomic_path(path) as tmp:
            _export(self.module, (torch.zeros(1, self.n_frames, EMB_DIM),), tmp, ["x"], ["score"])
        return path


# Training windows per clip: the clip (1 s, from the dataset) sits after TRAIN_LEAD seconds of
# silence and before TRAIN_TAIL; every head window that holds the whole clip is one example (7 for
# a 1 s clip), positives and negatives alike, so the word's position in the window is no cue.
TRAIN_LEAD = 1.0
TRAIN_TAIL = 0.5


def clip_windows(fe: FrontEnd, clip: np.ndarray, n_frames: int = HEAD_FRAMES, lead: float = TRAIN_LEAD,
                 tail: float = TRAIN_TAIL) -> np.ndarray:
    """The head windows [k, n_frames, 96] of a padded clip that contain the whole clip."""
    a = int(lead * SAMPLE_RATE)
    x = np.concatenate([np.zeros(a, np.float32), np.asarray(clip, np.float32), np.zeros(int(tail * SAMPLE_RATE), np.float32)])
    w = windows(fe.embeddings(x), n_frames)
    starts = np.arange(len(w)) * HOP_SAMPLES + EMB_START0  # window i: embeddings i .. i + n - 1
    ends = starts - EMB_START0 + HOP_SAMPLES * (n_frames - 1) + EMB_END0
    keep = (starts <= a) & (ends >= a + len(clip))
    if not keep.any():
        raise DataError(f"a {len(clip) / SAMPLE_RATE:.2f} s clip does not fit in one openWakeWord window "
                        f"(about {(ends[0] - starts[0]) / SAMPLE_RATE:.2f} s with the padding); cut it to 1 s "
                        "(kws.audio.fit_to_window) as the dataset's clips are")
    return w[keep]


def train_head(train: tuple[np.ndarray, np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray, np.ndarray],
               epochs: int = 30, layer_dim: int = 32, n_blocks: int = 1, lr: float = 1e-3, batch_size: int = 256,
               seed: int = 0, on_epoch: Callable[[int, dict], None] | None = None) -> TrainedHead:
    """Train an openWakeWord-style head with BCE and Adam on (windows [N, n, 96], labels [N],
    clip index [N]) and keep the epoch with the best validation recall at 3% FPR (clip score = max
    over its windows, AUC breaks ties): the same selection rule our trainer uses."""
    import torch

    from kws.metrics import auc, recall_at_fpr

    x, y, _ = train
    if len(x) == 0 or y.min() == y.max():
        raise DataError("the openWakeWord head needs keyword and non-keyword training windows")
    torch.manual_seed(seed)
    n_frames = x.shape[1]
    model = head_module(n_frames, layer_dim, n_blocks)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt, yt = torch.from_numpy(np.ascontiguousarray(x, np.float32)), torch.from_numpy(y.astype(np.float32))
    # balance the classes in the loss (openWakeWord weights its negatives the other way, but it
    # trains on thousands of hours of negatives; here both come from the same small dataset)
    w_pos = float((y == 0).sum()) / max(1.0, float((y == 1).sum()))
    gen = torch.Generator().manual_seed(seed)
    head = TrainedHead(model, n_frames, [], -1)
    best, best_state = (-1.0, -1.0), None
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(perm), batch_size):
            b = perm[i:i + batch_size]
            p = model(xt[b]).reshape(-1).clamp(1e-7, 1 - 1e-7)
            wts = torch.where(yt[b] > 0.5, torch.tensor(w_pos), torch.tensor(1.0))
            loss = torch.nn.functional.binary_cross_entropy(p, yt[b], weight=wts)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        vs = clip_max(head.window_scores(val[0]), val[2])
        vy = clip_labels(val[1], val[2])
        rec, _ = recall_at_fpr(vs[vy == 1], vs[vy == 0], 0.03)
        a = auc(vs[vy == 1], vs[vy == 0])
        rec_row = {"epoch": epoch, "loss": total / len(perm), "val_recall_0.03": rec, "val_auc": a}
        head.history.append(rec_row)
        if on_epoch:
            on_epoch(epoch, rec_row)
        if (rec, a) > best:
            best, head.best_epoch = (rec, a), epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return head


def clip_max(window_scores: np.ndarray, clip_index: np.ndarray) -> np.ndarray:
    """Per clip (clip_index 0..K-1), the max of its windows' scores."""
    k = int(clip_index.max()) + 1 if len(clip_index) else 0
    out = np.full(k, -np.inf)
    np.maximum.at(out, clip_index, window_scores)
    return out


def clip_labels(window_labels: np.ndarray, clip_index: np.ndarray) -> np.ndarray:
    k = int(clip_index.max()) + 1 if len(clip_index) else 0
    out = np.zeros(k, dtype=int)
    out[clip_index] = window_labels
    return out


def dataset_windows(fe: FrontEnd, data_dir: str | os.PathLike, split: str, limit: int | None = None,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(windows, labels, clip index) of a kws dataset split, from its clip WAVs (the exact audio our
    models train on; `limit` draws a seeded subset of clips, for quick runs)."""
    from kws.audio import load_audio
    from kws.data.manifest import read_manifest
    from kws.util import progress

    d = Path(data_dir)
    recs = [r for r in read_manifest(d / "manifest.jsonl") if r.split == split]
    if limit is not None and limit < len(recs):
        idx = np.sort(np.random.default_rng(seed).choice(len(recs), limit, replace=False))
        recs = [recs[i] for i in idx]
    xs, ys, cs = [], [], []
    for i, r in enumerate(progress(recs, desc=f"openWakeWord embeddings ({split})")):
        w = clip_windows(fe, load_audio(d / r.path))
        xs.append(w)
        ys.append(np.full(len(w), r.label))
        cs.append(np.full(len(w), i))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(cs)


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
