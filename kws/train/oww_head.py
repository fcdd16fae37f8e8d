"""A score teacher: a small head on openWakeWord's frozen speech embedding (kws.train.teacher's
FrontEnd), trained on a dataset's own training clips; the student learns its score of every
training clip (logit distillation, TrainHparams.kd). Only training uses it; the bundle does not
change. Needs the optional `openwakeword==0.5.1` wheel (`make peers`).

Why: the embedding was learned from a large amount of real speech, so a head on it trained on our
synthesized clips can carry the word to real voices better than our 7 KB model (athena: 98.1% recall
at 3% FPR on real clips, text only). Measured (BENCHMARKS.md "text_only_oww"): the students do not
inherit that. Taught by the head, one model moved by -5.6 to +12.2 points against the same seed
untaught (athena -0.6, stop +4.4 on average): within the seed spread, well short of the ensemble
teacher (`kws train --ensemble 4 --distill`). Nor does the head's weakness transfer: it reaches 51.5%
on real "stop" while its students reach 77.6-90.7%. Opt-in; kept as a measured option.

Head windows (as openWakeWord's "dnn" head): 16 embeddings (1.28 s of embeddings, about 2 s of
audio). A 1 s training clip sits after TRAIN_LEAD seconds of silence and before TRAIN_TAIL; every
window that holds the whole clip is one example (7 per clip), so the word's position in the window
is no cue; a clip's score is the max over its windows.

    logits = head_teacher_logits(data_dir)   # [N] one logit per train-split clip, manifest order
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from kws.errors import DataError
from kws.train.teacher import (EMB_DIM, EMB_END0, EMB_START0, HOP_SAMPLES, SAMPLE_RATE, FrontEnd,
                               cached_clip_parts, manifest_digest)
from kws.util import atomic_path

HEAD_FRAMES = 16  # embeddings per head window (openWakeWord's default)
TRAIN_LEAD = 1.0
TRAIN_TAIL = 0.5
HEAD_EPOCHS = 30
CACHE_VERSION = 1


def windows(emb: np.ndarray, n_frames: int = HEAD_FRAMES) -> np.ndarray:
    """Every head input [k, n_frames, 96] of an embedding sequence (window i ends at embedding
    i + n_frames - 1)."""
    if len(emb) < n_frames:
        return np.zeros((0, n_frames, emb.shape[1]), dtype=np.float32)
    return np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(emb, n_frames, axis=0).transpose(0, 2, 1))


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

    def _run(self, module: Any, x: np.ndarray) -> np.ndarray:
        import torch

        module.eval()
        with torch.no_grad():
            out = [module(torch.from_numpy(np.ascontiguousarray(x[i:i + 4096], dtype=np.float32))).reshape(-1)
                   for i in range(0, len(x), 4096)]
        return torch.cat(out).double().numpy() if out else np.zeros(0)

    def window_scores(self, x: np.ndarray) -> np.ndarray:
        return self._run(self.module, x)

    def window_logits(self, x: np.ndarray) -> np.ndarray:
        """The score before its sigmoid (no saturation at 0 or 1: what distillation needs)."""
        return self._run(self.module[:-1], x)

    def save(self, path: str | os.PathLike) -> Path:
        """safetensors weights + the structure in the metadata (loadable without pickle)."""
        from safetensors.torch import save_file

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

        path = Path(path)
        self.module.eval()
        with atomic_path(path) as tmp:
            _export(self.module, (torch.zeros(1, self.n_frames, EMB_DIM),), tmp, ["x"], ["score"])
        return path


def padded_embeddings(fe: FrontEnd, clip: np.ndarray, lead: float = TRAIN_LEAD, tail: float = TRAIN_TAIL) -> np.ndarray:
    """The embeddings [E, 96] of a clip between `lead` and `tail` seconds of silence."""
    x = np.concatenate([np.zeros(int(lead * SAMPLE_RATE), np.float32), np.asarray(clip, np.float32),
                        np.zeros(int(tail * SAMPLE_RATE), np.float32)])
    return fe.embeddings(x)


def whole_clip_windows(emb: np.ndarray, clip_samples: int, n_frames: int = HEAD_FRAMES,
                       lead: float = TRAIN_LEAD) -> np.ndarray:
    """The head windows [k, n_frames, 96] of `padded_embeddings` that contain the whole clip."""
    a = int(lead * SAMPLE_RATE)
    w = windows(emb, n_frames)
    starts = np.arange(len(w)) * HOP_SAMPLES + EMB_START0  # window i: embeddings i .. i + n - 1
    ends = starts - EMB_START0 + HOP_SAMPLES * (n_frames - 1) + EMB_END0
    keep = (starts <= a) & (ends >= a + clip_samples)
    if not keep.any():
        raise DataError(f"a {clip_samples / SAMPLE_RATE:.2f} s clip does not fit in one openWakeWord window "
                        f"(about {(ends[0] - starts[0]) / SAMPLE_RATE:.2f} s with the padding); cut it to 1 s "
                        "(kws.audio.fit_to_window) as the dataset's clips are")
    return w[keep]


def clip_windows(fe: FrontEnd, clip: np.ndarray, n_frames: int = HEAD_FRAMES, lead: float = TRAIN_LEAD,
                 tail: float = TRAIN_TAIL) -> np.ndarray:
    """The head windows [k, n_frames, 96] of a padded clip that contain the whole clip."""
    return whole_clip_windows(padded_embeddings(fe, clip, lead, tail), len(clip), n_frames, lead)


def train_head(train: tuple[np.ndarray, np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray, np.ndarray],
               epochs: int = HEAD_EPOCHS, layer_dim: int = 32, n_blocks: int = 1, lr: float = 1e-3,
               batch_size: int = 256, seed: int = 0,
               on_epoch: Callable[[int, dict], None] | None = None) -> TrainedHead:
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


# ---------------------------------------------------------------- the teacher of a dataset
def split_windows(data_dir: str | os.PathLike, split: str, fe: FrontEnd | None = None, limit: int | None = None,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(windows, labels, clip index) of every clip of a dataset split, manifest order (`limit`: a
    seeded subset of clips, for quick runs); the clips' embeddings are cached under
    DATA_DIR/teacher/ (resumable, recomputed for a rebuilt dataset)."""
    from kws.data.dataset import load_split

    data_dir = Path(data_dir)
    sp = load_split(data_dir, split)
    cfg = sp.feature_config
    if cfg.sample_rate != SAMPLE_RATE:
        raise DataError(f"{data_dir}: the openWakeWord teacher needs {SAMPLE_RATE} Hz clips, this dataset is "
                        f"{cfg.sample_rate} Hz; train without --teacher openwakeword-head")
    rows = np.arange(len(sp.records))
    if limit is not None and limit < len(rows):
        rows = np.sort(np.random.default_rng(seed).choice(len(rows), limit, replace=False))
    paths = [sp.records[i].path for i in rows]
    meta = {"version": CACHE_VERSION, "lead": TRAIN_LEAD, "tail": TRAIN_TAIL, "n": len(paths)}
    parts = cached_clip_parts(data_dir / "teacher" / f"oww-padded-{split}-{manifest_digest(paths)}", meta,
                              [data_dir / p for p in paths], lambda clip, f: padded_embeddings(f, clip),
                              f"openWakeWord embeddings ({split})", fe)
    emb = np.concatenate(parts)
    w = [whole_clip_windows(e, cfg.window_samples) for e in emb]
    k = len(w[0])
    return (np.concatenate(w), np.repeat(sp.y[rows], k), np.repeat(np.arange(len(emb)), k))


HEAD_FOLDS = 5  # cross-fitting: each training clip is scored by a head that never saw it


def _head_cache(d: Path, seed: int, epochs: int, fold: int = 0, folds: int = 1) -> Path:
    from kws.data.dataset import load_split

    digest = manifest_digest([r.path for s in ("train", "val") for r in load_split(d, s).records])
    part = "" if folds == 1 else f"-fold{fold}of{folds}"
    return d / "teacher" / f"oww-head-seed{seed}-ep{epochs}{part}-{digest}"


def _fold_of_clips(kinds: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold 0..folds-1 of every labelled training clip (-1 for word-task clips, which no head trains
    on when folds > 1): a seeded shuffle, dealt round robin within each kind."""
    fold = np.full(len(kinds), -1)
    rng = np.random.default_rng(seed)
    for kind in sorted(set(kinds) - {"word"}):
        rows = rng.permutation(np.flatnonzero(kinds == kind))
        fold[rows] = np.arange(len(rows)) % folds
    return fold


def trained_head(data_dir: str | os.PathLike, seed: int = 0, epochs: int = HEAD_EPOCHS, fold: int = 0,
                 folds: int = 1, train: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                 val: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> TrainedHead:
    """A teacher head of a dataset, selected on its val split and cached under DATA_DIR/teacher/ with
    its validation history. folds = 1: trained on every train-split clip, word-task clips as
    negatives; folds > 1: on the labelled clips outside fold `fold` (fold = folds: on all of them)."""
    from kws.data.dataset import load_split
    from kws.util import progress

    d = Path(data_dir)
    cache = _head_cache(d, seed, epochs, fold, folds)
    if (cache / "head.safetensors").is_file():
        return TrainedHead.load(cache / "head.safetensors")
    x, y, clip = split_windows(d, "train") if train is None else train
    if folds > 1:
        keep = ~np.isin(_fold_of_clips(load_split(d, "train").kinds, folds, seed), [-1, fold])[clip]
        x, y, clip = x[keep], y[keep], clip[keep]
    val = split_windows(d, "val") if val is None else val
    name = "openWakeWord head (teacher)" + ("" if folds == 1 else " on all folds" if fold >= folds
                                             else f" {fold + 1}/{folds}")
    bar = progress(total=epochs, items=None, desc=name)
    head = train_head((x, y, clip), val, epochs=epochs, seed=seed + fold, on_epoch=lambda e, row: bar.update(1))
    bar.close()
    with atomic_path(cache / "history.json") as tmp:
        tmp.write_text(json.dumps({"best_epoch": head.best_epoch, "history": head.history}, indent=1) + "\n")
    head.save(cache / "head.safetensors")
    return head


def full_head(data_dir: str | os.PathLike, folds: int = HEAD_FOLDS, seed: int = 0,
              epochs: int = HEAD_EPOCHS) -> TrainedHead:
    """The head that stands for the teacher as a detector: with cross-fitting (folds > 1), the one
    trained on every labelled clip; with folds = 1, the one head."""
    return trained_head(data_dir, seed, epochs) if folds == 1 else trained_head(data_dir, seed, epochs, folds, folds)


def head_teacher_logits(data_dir: str | os.PathLike, seed: int = 0, epochs: int = HEAD_EPOCHS,
                        folds: int = HEAD_FOLDS) -> np.ndarray:
    """One teacher logit per train-split clip (manifest order, word-task clips included): the max over
    the clip's windows of a head's logit, cached beside the heads.

    folds > 1 (the default, cross-fitting): each labelled clip is scored by the head trained on the
    other folds, and the word-task clips, which no head trains on, by the mean of the fold heads. A
    head scoring the clips it was fitted to returns little more than their labels; held-out scores
    carry what it would say of a new clip. folds = 1: one head on every clip, scoring its own
    training clips (BENCHMARKS.md "text_only_oww" measured this one)."""
    from kws.data.dataset import load_split

    d = Path(data_dir)
    logit_path = _head_cache(d, seed, epochs, folds, folds) / "train_logits.npy"
    sp = load_split(d, "train")
    if logit_path.is_file():
        out = np.load(logit_path)
        if len(out) == len(sp.records):
            return out
    train = split_windows(d, "train")
    if folds == 1:
        out = clip_max(trained_head(d, seed, epochs, train=train).window_logits(train[0]), train[2])
    else:
        fold = _fold_of_clips(sp.kinds, folds, seed)
        out = np.zeros(len(sp.records))
        words = fold == -1
        val = split_windows(d, "val")  # once for every fold's head
        for k in range(folds):
            scores = clip_max(trained_head(d, seed, epochs, k, folds, train, val).window_logits(train[0]), train[2])
            out[fold == k] = scores[fold == k]
            out[words] += scores[words] / folds
    out = out.astype(np.float32)
    with atomic_path(logit_path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, out)
    return out
