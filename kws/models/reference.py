"""Numpy reference of every model kind (no torch): the detector runs it on boxes without torch, and
quantization uses it as the float reference.

Weights are a dict of numpy arrays named as the torch state_dict (see kws.models.weight_shapes).
Computation is in float64 by default (a reference, not a speed path; the result matches the
float32 torch model to ~1e-6).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from kws.models import normalize_hparams, weight_shapes

State = tuple[np.ndarray, ...]


def sigmoid(x: np.ndarray) -> np.ndarray:
    # The tanh form never overflows and is one vectorised call (this runs every frame); its error
    # is absolute ~1e-16, which is what gates and scores need.
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x)))


def pwl_sigmoid(x: np.ndarray) -> np.ndarray:
    return np.clip((x + 1.0) * 0.5, 0.0, 1.0)


def pwl_tanh(x: np.ndarray) -> np.ndarray:
    return np.clip(x, -1.0, 1.0)


def _head(w: dict[str, np.ndarray], h: np.ndarray) -> np.ndarray:
    return (h @ w["head.weight"].T + w["head.bias"])[..., 0]


# ---------------------------------------------------------------------- FastGRNN
def fastgrnn_wx(w: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    if "W" in w:
        return x @ w["W"].T
    return (x @ w["W2"].T) @ w["W1"].T


def fastgrnn_uh(w: dict[str, np.ndarray], h: np.ndarray) -> np.ndarray:
    if "U" in w:
        return h @ w["U"].T
    return (h @ w["U2"].T) @ w["U1"].T


def fastgrnn_cell(w: dict[str, np.ndarray], hp: dict[str, Any], wx: np.ndarray, h: np.ndarray) -> np.ndarray:
    """One FastGRNN update given the precomputed input projection wx = W x."""
    sig, tanh = (pwl_sigmoid, pwl_tanh) if hp["nonlinearity"] == "pwl" else (sigmoid, np.tanh)
    pre = wx + fastgrnn_uh(w, h)
    z = sig(pre + w["b_z"])
    c = tanh(pre + w["b_h"])
    zeta = sigmoid(w["zeta"])  # [1] or [H] (per unit): broadcasts either way
    nu = sigmoid(w["nu"])
    return (zeta * (1.0 - z) + nu) * c + z * h


def fastgrnn_step(w: dict[str, np.ndarray], hp: dict[str, Any], frame: np.ndarray, state: State
                  ) -> tuple[np.ndarray, State]:
    h = fastgrnn_cell(w, hp, fastgrnn_wx(w, frame), state[0])
    return _head(w, h), (h,)


# ---------------------------------------------------------------------- LSTM / GRU
def lstm_step(w: dict[str, np.ndarray], hp: dict[str, Any], frame: np.ndarray, state: State
              ) -> tuple[np.ndarray, State]:
    h, c = state
    g = (frame @ w["lstm.weight_ih_l0"].T + w["lstm.bias_ih_l0"]
         + h @ w["lstm.weight_hh_l0"].T + w["lstm.bias_hh_l0"])
    i, f, gg, o = np.split(g, 4, axis=-1)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(gg)
    h = sigmoid(o) * np.tanh(c)
    return _head(w, h), (h, c)


def gru_step(w: dict[str, np.ndarray], hp: dict[str, Any], frame: np.ndarray, state: State
             ) -> tuple[np.ndarray, State]:
    (h,) = state
    gi = frame @ w["gru.weight_ih_l0"].T + w["gru.bias_ih_l0"]
    gh = h @ w["gru.weight_hh_l0"].T + w["gru.bias_hh_l0"]
    ir, iz, in_ = np.split(gi, 3, axis=-1)
    hr, hz, hn = np.split(gh, 3, axis=-1)
    r = sigmoid(ir + hr)
    z = sigmoid(iz + hz)
    n = np.tanh(in_ + r * hn)
    h = (1.0 - z) * n + z * h
    return _head(w, h), (h,)


STEP_FUNCTIONS: dict[str, Callable[..., tuple[np.ndarray, State]]] = {
    "fastgrnn": fastgrnn_step, "lstm": lstm_step, "gru": gru_step,
}


class ReferenceModel:
    """A model kind + hyper-parameters + numpy weights, with the same step/forward as the torch model.

    `step` takes one frame [F] (state [H], returns a float logit) or a batch [B, F] (state [B, H],
    returns logits [B]). `forward` takes x [T, F] (-> float) or [B, T, F] (-> [B])."""

    def __init__(self, kind: str, hparams: dict[str, Any], weights: dict[str, np.ndarray],
                 dtype: type = np.float64) -> None:
        self.kind = kind
        self.hparams = normalize_hparams(kind, hparams)
        self.dtype = np.dtype(dtype)
        n_features = int(np.asarray(weights.get("W", weights.get("W2", weights.get(
            f"{kind}.weight_ih_l0", np.zeros((0, 0)))))).shape[-1])
        expected = weight_shapes(kind, max(n_features, 1), self.hparams)
        got = {k: tuple(np.shape(v)) for k, v in weights.items()}
        if got != expected:
            raise ValueError(f"weights do not match a {kind} model with {self.hparams}: "
                             f"expected {expected}, got {got}")
        self.n_features = n_features
        self.hidden = self.hparams["hidden"]
        self.weights = {k: np.asarray(v, dtype=self.dtype) for k, v in weights.items()}
        self._step = STEP_FUNCTIONS[kind]

    def init_state(self, batch: int | None = None) -> State:
        """Zero state: shapes [H] (batch None) or [B, H]."""
        shape = (self.hidden,) if batch is None else (batch, self.hidden)
        n = 2 if self.kind == "lstm" else 1
        return tuple(np.zeros(shape, dtype=self.dtype) for _ in range(n))

    def step(self, frame: np.ndarray, state: State | None = None) -> tuple[Any, State]:
        frame = np.asarray(frame, dtype=self.dtype)
        if frame.shape[-1] != self.n_features or frame.ndim not in (1, 2):
            raise ValueError(f"expected a frame [{self.n_features}] or [B, {self.n_features}], "
                             f"got {list(frame.shape)}")
        if state is None:
            state = self.init_state(None if frame.ndim == 1 else frame.shape[0])
        logit, state = self._step(self.weights, self.hparams, frame, state)
        if frame.ndim == 1:
            return float(logit), state
        return logit, state

    def forward_all(self, x: np.ndarray, state: State | None = None) -> tuple[np.ndarray, State]:
        """Logits after every frame of x [T, F] (-> [T]) or [B, T, F] (-> [B, T]), and the final state."""
        x = np.asarray(x, dtype=self.dtype)
        if x.ndim not in (2, 3) or x.shape[-1] != self.n_features:
            raise ValueError(f"expected x [T, {self.n_features}] or [B, T, {self.n_features}], "
                             f"got {list(x.shape)}")
        batch = None if x.ndim == 2 else x.shape[0]
        if state is None:
            state = self.init_state(batch)
        t_axis = x.ndim - 2
        logits = []
        if self.kind == "fastgrnn":
            wx = fastgrnn_wx(self.weights, x)  # all frames at once
            h = state[0]
            for t in range(x.shape[t_axis]):
                h = fastgrnn_cell(self.weights, self.hparams, np.take(wx, t, axis=t_axis), h)
                logits.append(_head(self.weights, h))
            state = (h,)
        else:
            for t in range(x.shape[t_axis]):
                logit, state = self._step(self.weights, self.hparams, np.take(x, t, axis=t_axis), state)
                logits.append(logit)
        if not logits:
            empty = np.zeros((0,) if batch is None else (batch, 0), dtype=self.dtype)
            return empty, state
        return np.stack(logits, axis=-1), state

    def forward(self, x: np.ndarray) -> Any:
        """Logit after the last frame (from the zero state)."""
        x = np.asarray(x, dtype=self.dtype)
        if x.ndim in (2, 3) and x.shape[-2] == 0:
            h = self.init_state(None if x.ndim == 2 else x.shape[0])[0]
            out = _head(self.weights, h)
            return float(out) if x.ndim == 2 else out
        logits, _ = self.forward_all(x)
        last = logits[..., -1]
        return float(last) if x.ndim == 2 else last

    def score(self, x: np.ndarray) -> Any:
        """sigmoid(forward(x))."""
        logit = self.forward(x)
        if isinstance(logit, float):
            return float(sigmoid(np.array([logit]))[0])
        return sigmoid(np.asarray(logit, dtype=np.float64))
