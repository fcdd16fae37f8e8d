"""The training loop shared by all methods: epochs of mini-batches, validation-only model selection
and early stopping, an atomic checkpoint every epoch (rerun resumes), a training-curve plot.

Checkpoint = `run_dir/checkpoint.safetensors`: current weights ("model.*"), optimizer tensors
("optim.*"), the best weights so far ("best.*"), sparsity masks ("mask.*") and the JSON state in
the file's metadata. One file, replaced atomically, so an interrupt can never leave weights and
state from different epochs. `state.json` beside it is a readable copy. Nothing is unpickled.
Every random draw of epoch e comes from generators seeded by (seed, e), so a resumed run takes
exactly the same steps as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kws.errors import KwsError
from kws.train.losses import METHODS, distill_loss, input_gradient_sigma, lf_weights, logit_distill_loss, method_loss
from kws.util import atomic_path, atomic_write_text, progress

CHECKPOINT = "checkpoint.safetensors"
STATE = "state.json"
CURVE = "training_curve.png"
STATE_VERSION = 1
MINE_SELECT = ("auc", "always")
LR_SCHEDULES = ("constant", "cosine")
COSINE_FLOOR = 0.01  # the cosine schedule ends at this fraction of lr, not at 0 (the last epochs still move)
# TrainHparams fields added after STATE_VERSION 1, with their defaults
NEWER_HPARAMS = {"lr_schedule": "constant", "distill": 0.0, "word_task": 0.0, "mine": 0, "mine_epochs": 20,
                 "mine_select": "auc", "kd": 0.0, "kd_temperature": 2.0, "phone_task": 0.0}
log = logging.getLogger("kws.train")


@dataclass
class TrainHparams:
    """Training hyper-parameters (defaults tuned for 98 x 32 normalized log-mel inputs, d = 3136).

    epochs: passes over the training split. batch_size: examples per step.
    lr: Adam learning rate. The paper (Table 14) uses Adam at 1e-3; on our synthesized datasets
        FastGRNN and LSTM still improve slowly after 30 epochs at 1e-3, so we use 3e-3 (measured on
        marvin, see BENCHMARKS.md). weight_decay: Adam L2 term.
    lr_schedule: "constant", or "cosine": per step from lr down to COSINE_FLOOR * lr over `epochs`
        (half a cosine), so the last epochs settle instead of jumping around a minimum; a run
        resumed with more epochs follows the longer schedule from where it is.
    clip_norm: gradient-norm clipping (RNNs on long sequences; 0 = off).
    warmup_epochs: CE-only epochs before the adversarial term starts (Algorithm 2's n_0).
    radius, gamma: the annulus r <= ||h|| <= gamma r. A N(0, I) start in d = 98 x 32 = 3136 has
        norm ~56. With the paper's Marvin radius (Table 14: r = 32) and gamma = 2 that start lies
        inside [32, 64] and a few ascent steps rarely leave it, so the projection never acts and
        DROCC-LF degenerates to DROCC-OE (measured: identical losses). r = 16 (Table 13, Audio
        Commands) with gamma = 2 keeps the projection active, which is where the two differ.
    mu: weight of the adversarial loss (Table 14: 1).
    ascent_steps: normalized gradient-ascent steps per batch (EdgeML uses 50; 5 keeps CPU training
        fast and already moves h well: see tests). ascent_step_size: Euclidean length of each step.
    lf_metric / sigma_floor: the DROCC-LF norm, see kws.train.losses.lf_weights.
    patience: stop after this many epochs without a better validation score, but not before half
        of `epochs` (0 = never stop early).
    select_after_warmup: for the DROCC methods, pick the best epoch among those with the
        adversarial term (otherwise a CE-only warm-up epoch could be "DROCC's" model).
    sparsity: FastGRNN kept fraction of W and U; < 1 runs the three-stage schedule (dense, IHT,
        retrain on a fixed support), each a third of the epochs.
    time_mask, freq_mask: SpecAugment-style masking of each training batch (`spec_mask`; 0 = off;
        kws.train.api turns it on for FastGRNN). ema: weight averaging per step (0 = off).
    distill: weight of the feature-distillation term (`losses.distill_loss`: the share of a
        teacher's embedding the student's states cannot predict linearly, at aligned moments of
        every training clip); needs `Arrays.teacher` (kws.train.teacher). 0 = off.
    word_task: weight of the auxiliary word-identification loss (cross-entropy of a training-only
        linear head on the last state over the words of `fit(words=...)`: real and synthesized
        clips of other words, see BuildOptions.word_task). The head is dropped after training, so
        the model and its cost are unchanged. 0 = off.
    phone_task: weight of the auxiliary phone-recognition loss: CTC of a training-only linear head
        on every frame's state against the word-task clips' phones (ARPAbet, `Arrays.phones`), so
        the state learns the sounds that real speakers make in other words, the keyword's sounds
        among them. Dropped after training like the word head. 0 = off.
    mine, mine_epochs: hard-negative mining, done by `kws.train.api.train_keyword` after the main
        run: the `mine` word-task clips the trained model scores highest (other words it takes for
        the keyword) join the training negatives for `mine_epochs` more epochs. 0 = off.
    mine_select: which model a mining run ships: "auc" (the mined stage's best, unless the first
        stage's best has a clearly higher validation AUC; `kws.train.api.mining_helped`) or
        "always" (the mined stage's best).
    kd, kd_temperature: weight and temperature of logit distillation (`losses.logit_distill_loss`)
        from a teacher MODEL given to `fit` (typically an ensemble of seeds, kws.models.ensemble):
        the student learns the teacher's score of every training batch and of the word-task clips,
        on the same masked inputs the teacher sees. 0 = off.
    """

    epochs: int = 40
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.0
    clip_norm: float = 5.0
    warmup_epochs: int = 5
    radius: float = 16.0
    gamma: float = 2.0
    mu: float = 1.0
    ascent_steps: int = 5
    ascent_step_size: float = 4.0
    lf_metric: str = "paper"
    sigma_floor: float = 0.05
    patience: int = 10
    select_after_warmup: bool = True
    sparsity: float = 1.0
    time_mask: int = 0
    freq_mask: int = 0
    ema: float = 0.0
    distill: float = 0.0
    word_task: float = 0.0
    mine: int = 0
    mine_epochs: int = 20
    mine_select: str = "auc"
    kd: float = 0.0
    kd_temperature: float = 2.0
    phone_task: float = 0.0
    lr_schedule: str = "constant"

    def __post_init__(self) -> None:
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")
        if self.time_mask < 0 or self.freq_mask < 0:
            raise ValueError("time_mask and freq_mask must be >= 0")
        if self.mine < 0 or self.mine_epochs < 1:
            raise ValueError(f"mine must be >= 0 and mine_epochs >= 1, got {self.mine} and {self.mine_epochs}")
        if self.mine_select not in MINE_SELECT:
            raise ValueError(f"mine_select must be one of {', '.join(MINE_SELECT)}, got {self.mine_select!r}")
        if self.kd < 0 or self.kd_temperature <= 0:
            raise ValueError(f"kd must be >= 0 and kd_temperature > 0, got {self.kd} and {self.kd_temperature}")
        if self.distill < 0 or self.word_task < 0 or self.phone_task < 0:
            raise ValueError(f"distill, word_task and phone_task must be >= 0, got {self.distill}, "
                             f"{self.word_task} and {self.phone_task}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainHparams":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown training hyper-parameter(s): {', '.join(sorted(unknown))}")
        return cls(**d)


@dataclass
class Arrays:
    """One split as the trainer sees it: x [N, T, F] float32 (already normalized), y [N] 0/1,
    kinds [N] (positive | negative | close_negative | noise) or None; for distillation, teacher
    [N, K, D] embeddings compared with the student's state after frames `teacher_frames` [K]; for
    logit distillation from a fixed teacher, `teacher_logit` [N], its score of each clip
    (kws.train.oww_head); for the phone task, `phones` [N, L] each clip's phone ids (1..len(PHONES),
    0-padded; kws.train.api.phone_targets)."""

    x: np.ndarray
    y: np.ndarray
    kinds: np.ndarray | None = None
    teacher: np.ndarray | None = None
    teacher_frames: np.ndarray | None = None
    teacher_logit: np.ndarray | None = None
    phones: np.ndarray | None = None
    real: np.ndarray | None = None  # bool [N]: recorded speech (source real:...), for model selection

    def __post_init__(self) -> None:
        self.x = np.ascontiguousarray(self.x, dtype=np.float32)
        if self.phones is not None:
            self.phones = np.asarray(self.phones, dtype=np.int64)
            if self.phones.ndim != 2 or len(self.phones) != len(self.y) or (self.phones < 0).any():
                raise ValueError(f"phones must be [N, L] non-negative ids with N = {len(self.y)}, "
                                 f"got {self.phones.shape}")
        self.y = np.asarray(self.y).astype(np.int64).ravel()
        if self.x.ndim != 3 or self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"x must be [N, T, F] with N = len(y); got {self.x.shape} and {self.y.shape}")
        if self.teacher is not None:
            self.teacher = np.asarray(self.teacher, dtype=np.float32)
            self.teacher_frames = np.asarray(self.teacher_frames, dtype=np.int64).ravel()
            if (self.teacher.ndim != 3 or len(self.teacher) != len(self.y)
                    or self.teacher.shape[1] != len(self.teacher_frames)
                    or not ((self.teacher_frames >= 0) & (self.teacher_frames < self.x.shape[1])).all()):
                raise ValueError(f"teacher must be [N, K, D] with N = {len(self.y)} and K = len(teacher_frames) "
                                 f"frames in [0, {self.x.shape[1]}); got {self.teacher.shape}")
        if self.teacher_logit is not None:
            self.teacher_logit = np.asarray(self.teacher_logit, dtype=np.float32).ravel()
            if len(self.teacher_logit) != len(self.y) or not np.isfinite(self.teacher_logit).all():
                raise ValueError(f"teacher_logit must be [N] finite logits with N = {len(self.y)}; "
                                 f"got {self.teacher_logit.shape}")


def scheduled_lr(hp: TrainHparams, progress: float) -> float:
    """The learning rate at `progress` (finished fraction of hp.epochs, 0..1) under hp.lr_schedule."""
    if hp.lr_schedule == "constant":
        return hp.lr
    t = min(max(progress, 0.0), 1.0)
    return hp.lr * (COSINE_FLOOR + (1.0 - COSINE_FLOOR) * 0.5 * (1.0 + math.cos(math.pi * t)))


def teacher_logits(teacher: torch.nn.Module | None, fixed: np.ndarray | None, xb: torch.Tensor,
                   idx: np.ndarray | torch.Tensor) -> torch.Tensor:
    """The distillation target of a batch: the mean logit of the teachers there are, a model that
    scores the (masked) batch and/or fixed per-clip logits (rows `idx` of `fixed`)."""
    parts = []
    if teacher is not None:
        with torch.no_grad():
            parts.append(teacher(xb))
    if fixed is not None:
        parts.append(torch.from_numpy(fixed[np.asarray(idx)]))
    return parts[0] if len(parts) == 1 else torch.stack(parts).mean(0)


@dataclass
class FitResult:
    model: torch.nn.Module
    history: list[dict[str, float]]
    best_epoch: int
    best: dict[str, float]
    run_dir: Path
    train_seconds: float
    resumed_from: int = 0
    stopped_early: bool = False
    curve: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def spec_mask(x: torch.Tensor, time_mask: int, freq_mask: int, gen: torch.Generator) -> torch.Tensor:
    """SpecAugment-style masking of a normalized batch [B, T, F]: per example one span of
    0..time_mask frames and one band of 0..freq_mask coefficients set to 0 (the training mean)."""
    b, t, f = x.shape
    keep = torch.ones(b, t, f, dtype=torch.bool)
    for width, size, dim in ((time_mask, t, 1), (freq_mask, f, 2)):
        if width <= 0:
            continue
        w = torch.randint(0, width + 1, (b,), generator=gen)
        start = (torch.rand(b, generator=gen) * (size - w + 1).float()).long()
        pos = torch.arange(size)
        m = (pos[None, :] >= start[:, None]) & (pos[None, :] < (start + w)[:, None])  # [B, size]
        keep &= ~(m[:, :, None] if dim == 1 else m[:, None, :])
    return x * keep


# ---------------------------------------------------------------- scoring
@torch.no_grad()
def predict_scores(model: torch.nn.Module, x: np.ndarray | torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """sigmoid(logit) for every example, in batches."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(x), batch_size):
        xb = torch.as_tensor(np.asarray(x[start:start + batch_size], dtype=np.float32))
        out.append(torch.sigmoid(model(xb)).double().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0)


# Real negatives a validation split needs before they, not the whole split, pick the epoch: at 3%
# FPR, 150 clips put the threshold between the 4th and 5th highest, so one clip moves it little.
REAL_SELECTION_MIN = 150


def validation_metrics(scores: np.ndarray, y: np.ndarray, real: np.ndarray | None = None) -> dict[str, float]:
    """Recall at 3% / 5% FPR and AUC (kws.metrics definitions) of scores against labels; with a
    mask of recorded clips holding REAL_SELECTION_MIN real negatives, also the keyword clips'
    recall at 3% FPR and AUC against those alone (val_real_recall_3, val_real_auc)."""
    from kws.metrics import auc, recall_at_fpr

    pos, neg = scores[y == 1], scores[y == 0]
    if pos.size == 0 or neg.size == 0:
        raise KwsError("the validation split needs both keyword and non-keyword clips")
    r3, _ = recall_at_fpr(pos, neg, 0.03)
    r5, _ = recall_at_fpr(pos, neg, 0.05)
    out = {"val_recall_3": r3, "val_recall_5": r5, "val_auc": auc(pos, neg)}
    if real is not None:
        real_neg = scores[(y == 0) & real]
        if real_neg.size >= REAL_SELECTION_MIN:
            out["val_real_recall_3"] = recall_at_fpr(pos, real_neg, 0.03)[0]
            out["val_real_auc"] = auc(pos, real_neg)
    return out


def selection_key(row: dict[str, float]) -> tuple[float, float]:
    """What picks the best epoch (higher is better): against the validation's real negatives when it
    has enough of them, else against all its negatives. Synthesized validation keywords against
    synthesized and close negatives hardly ranked models by their recall on real speech (Spearman
    0.19 over 14 models of left, -0.11 over 18 of amelia); against 540-590 real negatives of held-out
    speakers they did better (0.56 and 0.35; BENCHMARKS.md selection_signal)."""
    if "val_real_recall_3" in row:
        return (row["val_real_recall_3"], row["val_real_auc"])
    return (row["val_recall_3"], row["val_auc"])


# ---------------------------------------------------------------- checkpoints
def _optimizer_split(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state_dict -> (tensors for safetensors, JSON-able rest)."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{pid}.{k}"] = v.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(pid), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_load(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, v in tensors.items():
        _, pid, k = name.split(".", 2)
        state.setdefault(int(pid), {})[k] = v
    for pid, d in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(d)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _save_checkpoint(run_dir: Path, model: torch.nn.Module, opt: torch.optim.Optimizer,
                     best_weights: dict[str, torch.Tensor], state: dict[str, Any],
                     ema_weights: dict[str, torch.Tensor] | None = None,
                     aux: dict[str, torch.Tensor] | None = None) -> None:
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    tensors.update({f"best.{k}": v.contiguous().clone() for k, v in best_weights.items()})
    if ema_weights is not None:
        tensors.update({f"ema.{k}": v.contiguous().clone() for k, v in ema_weights.items()})
    if aux is not None:  # training-only modules (the word head)
        tensors.update({f"aux.{k}": v.detach().contiguous().clone() for k, v in aux.items()})
    opt_tensors, opt_meta = _optimizer_split(opt)
    tensors.update(opt_tensors)
    if hasattr(model, "sparsity_state"):
        tensors.update({f"mask.{k}": v.to(torch.uint8) for k, v in model.sparsity_state().items()})
    state = {**state, "optimizer": opt_meta}
    with atomic_path(run_dir / CHECKPOINT) as tmp:
        save_file(tensors, str(tmp), metadata={"state": json.dumps(state)})
    readable = {k: v for k, v in state.items() if k != "optimizer"}
    atomic_write_text(run_dir / STATE, json.dumps(readable, indent=1) + "\n")


def _load_checkpoint(path: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    from safetensors import safe_open

    groups: dict[str, dict[str, torch.Tensor]] = {"model": {}, "best": {}, "optim": {}, "mask": {}, "ema": {}, "aux": {}}
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            for name in f.keys():
                prefix, rest = name.split(".", 1)
                if prefix == "optim":
                    groups["optim"][name] = f.get_tensor(name)
                else:
                    groups[prefix][rest] = f.get_tensor(name)
        state = json.loads(meta["state"])
    except Exception as e:  # corrupt / truncated / foreign file
        raise KwsError(f"training checkpoint {path} is unreadable ({e}); delete the run folder "
                       f"{path.parent} (or pass another --run-dir) to start over") from e
    return groups, state


def _plot_curve(history: list[dict[str, float]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.plot(ep, [h["loss"] for h in history], label="total loss")
    a.plot(ep, [h["ce"] for h in history], label="CE")
    if any(h["adv"] for h in history):
        a.plot(ep, [h["adv"] for h in history], label="adversarial")
    if any(h.get("distill") for h in history):
        a.plot(ep, [h.get("distill", 0.0) for h in history], label="distillation")
    if any(h.get("kd") for h in history):
        a.plot(ep, [h.get("kd", 0.0) for h in history], label="teacher's scores (KD)")
    if any(h.get("word") for h in history):
        a.plot(ep, [h.get("word", 0.0) for h in history], label="word task")
    a.set_xlabel("epoch")
    a.set_ylabel("training loss")
    a.legend(fontsize=8)
    a.grid(alpha=0.3)
    b.plot(ep, [h["val_recall_3"] for h in history], label="val recall @3% FPR")
    b.plot(ep, [h["val_recall_5"] for h in history], label="val recall @5% FPR")
    b.plot(ep, [h["val_auc"] for h in history], label="val AUC")
    if any("val_real_recall_3" in h for h in history):  # what picks the epoch (selection_key)
        b.plot(ep, [h.get("val_real_recall_3", np.nan) for h in history],
               label="val recall @3% FPR on real negatives (picks the epoch)")
    b.set_xlabel("epoch")
    b.set_ylim(0, 1.01)
    b.legend(fontsize=8)
    b.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


# ---------------------------------------------------------------- the loop
def training_threads() -> int:
    """Torch intra-op threads for training: KWS_TORCH_THREADS, else 1.

    The recurrent models run ~100 tiny ops per window; intra-op threads cannot speed those up, and
    when other processes compete for the cores OpenMP's spinning threads make it far worse
    (measured on the shared 2-core box: 3 DROCC-OE batches 0.43 s with 1 thread, 7-27 s with 2)."""
    try:
        return max(1, int(os.environ.get("KWS_TORCH_THREADS", "1")))
    except ValueError:
        return 1


def without_mining(hp: TrainHparams) -> TrainHparams:
    """hp with the mining settings at their defaults: what the main run (mining's first stage) and
    each mining stage itself are trained with, so their checkpoints match a run without mining."""
    return dataclasses.replace(hp, **{k: NEWER_HPARAMS[k] for k in ("mine", "mine_epochs", "mine_select")})


def _word_head(model: torch.nn.Module, words: Arrays | None, seed: int) -> torch.nn.Module:
    """The word task's training-only head: last state -> one logit per word (seeded init)."""
    if words is None or len(words.y) == 0:
        raise KwsError("word_task > 0 needs word-task clips: build the dataset with a word task "
                       "(--word-task N, with a Speech Commands tree in --negatives)")
    hidden = int(model.hidden_states(torch.from_numpy(words.x[:1])).shape[-1])
    with torch.random.fork_rng():
        torch.manual_seed(int(seed) + 7)
        return torch.nn.Linear(hidden, int(words.y.max()) + 1)


def _phone_head(model: torch.nn.Module, words: Arrays | None, seed: int) -> torch.nn.Module:
    """The phone task's training-only head: each frame's state -> blank + one logit per phone."""
    from kws.data.confusables import PHONES

    if words is None or words.phones is None or len(words.y) == 0:
        raise KwsError("phone_task > 0 needs word-task clips with their phones: build the dataset with a "
                       "word task (--word-task N, with a Speech Commands tree in --negatives)")
    if int(words.phones.max(initial=0)) > len(PHONES):
        raise KwsError(f"phone ids must be 1..{len(PHONES)} (kws.train.api.phone_targets)")
    hidden = int(model.hidden_states(torch.from_numpy(words.x[:1])).shape[-1])
    with torch.random.fork_rng():
        torch.manual_seed(int(seed) + 11)
        return torch.nn.Linear(hidden, len(PHONES) + 1)


def _phone_loss(states: torch.Tensor, head: torch.nn.Module, phones: np.ndarray) -> torch.Tensor | None:
    """CTC (blank 0) of the frame states [B, T, H] against 0-padded phone ids [B, L]; None when no
    clip of the batch has phones."""
    targets = torch.from_numpy(phones)
    lengths = (targets > 0).sum(1)
    keep = lengths > 0
    if not bool(keep.any()):
        return None
    log_probs = torch.log_softmax(head(states[keep]), dim=-1).transpose(0, 1)  # [T, B, C]
    frames = torch.full((int(keep.sum()),), log_probs.shape[0], dtype=torch.long)
    return torch.nn.functional.ctc_loss(log_probs, targets[keep], frames, lengths[keep], blank=0,
                                        zero_infinity=True)


def _word_loss(model: torch.nn.Module, head: torch.nn.Module | None, words: Arrays, hp: TrainHparams,
               rng: np.random.Generator, gen: torch.Generator, teacher: torch.nn.Module | None = None,
               fixed: np.ndarray | None = None, phone_head: torch.nn.Module | None = None,
               ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """On a random batch of word-task clips: the cross-entropy of naming each clip's word from the
    last state (None without a word head), the phone CTC over every frame's state (None without a
    phone head) and, with a teacher model and/or fixed per-clip teacher logits, the logit
    distillation term (these clips are real speech of other words: where a teacher's soft scores
    say most)."""
    idx = rng.integers(0, len(words.y), size=min(hp.batch_size, len(words.y)))
    xb = torch.from_numpy(words.x[idx])
    if hp.time_mask or hp.freq_mask:
        xb = spec_mask(xb, hp.time_mask, hp.freq_mask, gen)
    states = model.hidden_states(xb)
    last = states[:, -1]
    word = None if head is None else \
        torch.nn.functional.cross_entropy(head(last), torch.from_numpy(words.y[idx]))
    phone = None if phone_head is None else _phone_loss(states, phone_head, words.phones[idx])
    kd = None
    if teacher is not None or fixed is not None:
        kd = logit_distill_loss(model._head(last), teacher_logits(teacher, fixed, xb, idx),
                                hp.kd_temperature)
    return word, phone, kd


def _aux_state(word_head: torch.nn.Module | None, phone_head: torch.nn.Module | None
               ) -> dict[str, torch.Tensor] | None:
    """The training-only heads' weights for the checkpoint: the word head's under their own names
    (as before the phone task existed, so older runs resume), the phone head's under "phone."."""
    if word_head is None and phone_head is None:
        return None
    out = dict(word_head.state_dict()) if word_head is not None else {}
    if phone_head is not None:
        out.update({f"phone.{k}": v for k, v in phone_head.state_dict().items()})
    return out


def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch) * 7919) % (2 ** 63 - 1)


def fit(model: torch.nn.Module, train: Arrays, val: Arrays, method: str,
        hparams: TrainHparams | dict[str, Any] | None, run_dir: str | os.PathLike, seed: int = 0,
        desc: str | None = None, words: Arrays | None = None,
        teacher: torch.nn.Module | None = None) -> FitResult:
    """Train `model` in place with `method` and return it holding the best-on-validation weights.

    `words`: the auxiliary word task's clips (y = word index), used when hparams.word_task > 0.
    `teacher`: a frozen model on the same normalized features, distilled when hparams.kd > 0; with
    `train.teacher_logit` (and `words.teacher_logit`) too, the target is the two teachers' mean logit.

    Rerunning with the same run_dir resumes after the last finished epoch (a larger `epochs`
    continues a finished run). Other changed hyper-parameters are refused.
    """
    if method not in METHODS:
        raise KwsError(f"unknown training method {method!r}; choose one of {', '.join(METHODS)}")
    hp = hparams if isinstance(hparams, TrainHparams) else TrainHparams.from_dict(dict(hparams or {}))
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(training_threads())

    x_tr, y_tr, t_tr = train.x, train.y, train.teacher
    if hp.distill > 0 and t_tr is None:
        raise KwsError("distill > 0 needs teacher targets for the training split (kws.train.teacher)")
    kd_on = hp.kd > 0
    fixed = train.teacher_logit if kd_on else None
    if kd_on and teacher is None and fixed is None:
        raise KwsError("kd > 0 needs a teacher to distil (kws train --teacher BUNDLE or openwakeword-head)")
    if fixed is not None and words is not None and len(words.y) and words.teacher_logit is None:
        raise KwsError("the training clips have teacher logits but the word-task clips do not")
    teacher = teacher.eval() if kd_on and teacher is not None else None
    if method == "drocc":  # one-class: the given negatives are not used at all
        keep = y_tr == 1
        x_tr, y_tr = x_tr[keep], y_tr[keep]
        t_tr = t_tr[keep] if t_tr is not None else None
        fixed = fixed[keep] if fixed is not None else None
    if (y_tr == 1).sum() == 0:
        raise KwsError("the training split has no keyword clips")
    if method in ("bce", "drocc-oe", "drocc-lf") and (y_tr == 0).sum() == 0:
        raise KwsError(f"method {method} needs non-keyword clips in the training split")
    x_tr_t = torch.from_numpy(x_tr)
    y_tr_t = torch.from_numpy(y_tr)
    x_pos_t = x_tr_t[y_tr_t == 1]
    adversarial_method = method != "bce"
    distilling = hp.distill > 0
    if distilling:
        t_tr_t = torch.from_numpy(np.ascontiguousarray(t_tr, dtype=np.float32))
        t_frames = torch.from_numpy(train.teacher_frames)

    word_head = _word_head(model, words, seed) if hp.word_task > 0 else None
    phone_head = _phone_head(model, words, seed) if hp.phone_task > 0 else None
    params = list(model.parameters()) + [p for h in (word_head, phone_head) if h is not None
                                         for p in h.parameters()]
    opt = torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay)
    schedule = None
    if hp.sparsity < 1.0:
        if not hasattr(model, "sparsifiable"):
            raise KwsError("sparsity < 1 needs a model with sparsity support (FastGRNN)")
        from kws.models.sparsity import IHTSchedule

        schedule = IHTSchedule({k: hp.sparsity for k in model.sparsifiable()})

    identity = {"version": STATE_VERSION, "method": method, "seed": int(seed),
                # a field added later is left out at its default, so older runs still resume
                "hparams": {k: v for k, v in hp.to_dict().items()
                            if k != "epochs" and not (k in NEWER_HPARAMS and v == NEWER_HPARAMS[k])},
                "model": {"kind": getattr(model, "kind", type(model).__name__),
                          "hparams": getattr(model, "hparams", {})},
                "n_train": int(len(y_tr)), "n_val": int(len(val.y))}
    history: list[dict[str, float]] = []
    best_key: tuple[float, float] | None = None
    best_epoch, start_epoch, stopped_early, since_best = 0, 0, False, 0
    best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    elapsed_before = 0.0
    # exponential moving average of the weights (hp.ema per step): validated, selected and returned
    # instead of the raw weights, which at lr 1e-2 jump between epochs (val recall +-10 points)
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()} \
        if hp.ema > 0 and schedule is None else None

    ckpt = run_dir / CHECKPOINT
    if ckpt.exists():
        groups, state = _load_checkpoint(ckpt)
        old = {k: state.get(k) for k in identity}
        if json.loads(json.dumps(old)) != json.loads(json.dumps(identity)):
            diff = [k for k in identity if json.dumps(old[k]) != json.dumps(identity[k])]
            raise KwsError(f"{run_dir} holds a run with different settings ({', '.join(diff)}); "
                           f"pass another run folder or delete this one to start over")
        model.load_state_dict(groups["model"])
        if word_head is not None:
            word_head.load_state_dict({k: v for k, v in groups["aux"].items() if not k.startswith("phone.")})
        if phone_head is not None:
            phone_head.load_state_dict({k[len("phone."):]: v for k, v in groups["aux"].items()
                                        if k.startswith("phone.")})
        best_weights = groups["best"]
        if ema is not None:
            ema = groups["ema"]
        _optimizer_load(opt, groups["optim"], state["optimizer"])
        if groups["mask"] and hasattr(model, "load_sparsity_state"):
            model.load_sparsity_state({k: v.bool() for k, v in groups["mask"].items()})
        history = state["history"]
        start_epoch = int(state["epoch"])
        best_epoch = int(state["best_epoch"])
        best_key = tuple(state["best_key"]) if state["best_key"] is not None else None
        since_best = int(state["since_best"])
        stopped_early = bool(state["stopped_early"])
        elapsed_before = float(state.get("train_seconds", 0.0))
        if schedule is not None and start_epoch / hp.epochs >= schedule.dense_fraction + schedule.sparsify_fraction:
            schedule._support_fixed = bool(groups["mask"])
    resumed_from = start_epoch

    t0 = time.time()
    epochs = range(start_epoch, hp.epochs) if not stopped_early else range(0)
    bar = progress(epochs, desc=desc or f"train {method}", total=len(epochs))
    for epoch in bar:
        model.train()
        adversarial = adversarial_method and epoch >= hp.warmup_epochs
        weights = None
        if adversarial and method == "drocc-lf":
            # sigma from the current model, once per epoch (Algorithm 2 / Section 4)
            weights = lf_weights(input_gradient_sigma(model, x_pos_t), hp.lf_metric, hp.sigma_floor)
        rng = np.random.default_rng(_epoch_seed(seed, epoch))
        gen = torch.Generator().manual_seed(_epoch_seed(seed, epoch) + 1)
        perm = torch.from_numpy(rng.permutation(len(y_tr_t)))
        n_batches = max(1, math.ceil(len(perm) / hp.batch_size))
        sums = {"loss": 0.0, "ce": 0.0, "adv": 0.0, "distill": 0.0}
        if word_head is not None:
            sums["word"] = 0.0
        if phone_head is not None:
            sums["phone"] = 0.0
        if kd_on:
            sums["kd"] = 0.0
        for bi in range(n_batches):
            idx = perm[bi * hp.batch_size:(bi + 1) * hp.batch_size]
            for group in opt.param_groups:
                group["lr"] = scheduled_lr(hp, (epoch + bi / n_batches) / hp.epochs)
            xb = x_tr_t[idx]
            if hp.time_mask or hp.freq_mask:
                xb = spec_mask(xb, hp.time_mask, hp.freq_mask, gen)
            logits = model(xb) if kd_on else None  # the CE's and the KD's: one forward
            loss, parts = method_loss(method, model, xb, y_tr_t[idx], adversarial=adversarial,
                                      radius=hp.radius, gamma=hp.gamma, mu=hp.mu, steps=hp.ascent_steps,
                                      step_size=hp.ascent_step_size, weights=weights, generator=gen,
                                      logits=logits)
            if distilling:
                states = model.hidden_states(xb)[:, t_frames]  # [B, K, H] at the teacher's moments
                d = distill_loss(states.reshape(-1, states.shape[-1]), t_tr_t[idx].reshape(-1, t_tr_t.shape[-1]))
                loss = loss + hp.distill * d
                sums["distill"] += float(d.detach())
            if kd_on:
                kd = logit_distill_loss(logits, teacher_logits(teacher, fixed, xb, idx), hp.kd_temperature)
                loss = loss + hp.kd * kd
                sums["kd"] += float(kd.detach())
            if word_head is not None or phone_head is not None or (kd_on and words is not None and len(words.y)):
                wl, pl, wkd = _word_loss(model, word_head, words, hp, rng, gen, teacher,
                                         words.teacher_logit if fixed is not None else None, phone_head)
                if wl is not None:
                    loss = loss + hp.word_task * wl
                    sums["word"] += float(wl.detach())
                if pl is not None:
                    loss = loss + hp.phone_task * pl
                    sums["phone"] += float(pl.detach())
                if wkd is not None:
                    loss = loss + hp.kd * wkd
                    sums["kd"] += float(wkd.detach())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if hp.clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, hp.clip_norm)
            opt.step()
            if ema is not None:
                with torch.no_grad():
                    for k, v in model.state_dict().items():
                        ema[k].mul_(hp.ema).add_(v.detach(), alpha=1.0 - hp.ema)
            if schedule is not None:
                schedule.after_step(model, (epoch + (bi + 1) / n_batches) / hp.epochs)
            sums["loss"] += float(loss.detach())
            sums["ce"] += parts["ce"]
            sums["adv"] += parts["adv"]
        if not all(math.isfinite(v) for v in sums.values()):
            raise KwsError(f"training diverged at epoch {epoch + 1} (loss is not finite); "
                           f"try a smaller learning rate")
        row = {"epoch": epoch + 1, **{k: v / n_batches for k, v in sums.items()}}
        if ema is not None:
            raw = {k: v.detach().clone() for k, v in model.state_dict().items()}
            model.load_state_dict(ema)
        row.update(validation_metrics(predict_scores(model, val.x), val.y, val.real))
        if ema is not None:
            model.load_state_dict(raw)
        history.append(row)
        selectable = not (adversarial_method and hp.select_after_warmup and hp.epochs > hp.warmup_epochs
                          and epoch < hp.warmup_epochs)
        # sparse runs: only models on the final support qualify
        if schedule is not None and schedule.stage((epoch + 1) / hp.epochs) != "retrain" and epoch + 1 < hp.epochs:
            selectable = False
        key = selection_key(row)
        if selectable and (best_key is None or key > best_key):
            best_key, best_epoch, since_best = key, epoch + 1, 0
            best_weights = {k: v.detach().clone() for k, v in (ema or model.state_dict()).items()}
        elif selectable:
            since_best += 1
        # never before half the epochs: RNNs often sit on a plateau for a while before they learn
        if hp.patience and since_best >= hp.patience and epoch + 1 >= hp.epochs // 2:
            stopped_early = True
        real_part = (f", vs real negatives @3% {row['val_real_recall_3']:.3f} AUC {row['val_real_auc']:.4f}"
                     if "val_real_recall_3" in row else "")
        log.info("%s epoch %d/%d: loss %.4f (ce %.4f, adv %.4f), val recall@3%% %.3f @5%% %.3f AUC %.4f%s%s",
                 desc or method, epoch + 1, hp.epochs, row["loss"], row["ce"], row["adv"], row["val_recall_3"],
                 row["val_recall_5"], row["val_auc"], real_part, " *" if best_epoch == epoch + 1 else "")
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{row['loss']:.3f}", val_r3=f"{row['val_recall_3']:.3f}",
                            best=best_epoch)
        state = {**identity, "epoch": epoch + 1, "epochs_requested": hp.epochs, "history": history,
                 "best_epoch": best_epoch, "best_key": list(best_key) if best_key else None,
                 "since_best": since_best, "stopped_early": stopped_early,
                 "train_seconds": elapsed_before + time.time() - t0}
        _save_checkpoint(run_dir, model, opt, best_weights, state, ema, _aux_state(word_head, phone_head))
        if stopped_early:
            break

    model.load_state_dict(best_weights)
    curve = _plot_curve(history, run_dir / CURVE, desc or method) if history else None
    best = next((h for h in history if h["epoch"] == best_epoch), history[-1] if history else {})
    return FitResult(model=model, history=history, best_epoch=best_epoch, best=dict(best), run_dir=run_dir,
                     train_seconds=elapsed_before + time.time() - t0, resumed_from=resumed_from,
                     stopped_early=stopped_early, curve=curve)
