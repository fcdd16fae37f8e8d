"""LSTM and GRU baselines (the paper's: one layer, linear head on the last hidden state).

`forward` runs the fused torch.nn.LSTM / GRU; `step` applies the same weights with the
LSTMCell / GRUCell equations, so both give the same logits (tested to 1e-6 in float32, exactly
up to rounding in float64).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from kws.models import normalize_hparams
from kws.models.base import KwsModel


class RecurrentKws(KwsModel):
    def __init__(self, kind: str, n_features: int, **hparams: Any) -> None:
        super().__init__()
        if kind not in ("lstm", "gru"):
            raise ValueError(f"RecurrentKws kind must be lstm or gru, got {kind!r}")
        self.kind = kind
        self.hparams = normalize_hparams(kind, hparams)
        self.n_features = int(n_features)
        h = self.hparams["hidden"]
        cls = nn.LSTM if kind == "lstm" else nn.GRU
        # The attribute name is the kind so state_dict keys read "lstm.weight_ih_l0" / "gru...".
        setattr(self, kind, cls(self.n_features, h, num_layers=1, batch_first=True))
        if kind == "lstm":
            # forget-gate bias 1 (Jozefowicz et al. 2015): the cell keeps what it saw instead of
            # halving it every frame at the start of training; PyTorch orders gates i, f, g, o and
            # adds bias_ih + bias_hh, so each forget slice is set to 0.5
            with torch.no_grad():
                self.lstm.bias_ih_l0[h:2 * h].fill_(0.5)
                self.lstm.bias_hh_l0[h:2 * h].fill_(0.5)
        self.head = nn.Linear(h, 1)

    @property
    def rnn(self) -> nn.Module:
        return getattr(self, self.kind)

    def init_state(self, batch: int) -> tuple[torch.Tensor, ...]:
        return self._zeros_state(batch, 2 if self.kind == "lstm" else 1)

    def step(self, frame: torch.Tensor, state: tuple[torch.Tensor, ...]
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        r = self.rnn
        gi = frame @ r.weight_ih_l0.t() + r.bias_ih_l0
        gh = state[0] @ r.weight_hh_l0.t() + r.bias_hh_l0
        if self.kind == "lstm":
            h, c = state
            i, f, g, o = (gi + gh).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            return self._head(h), (h, c)
        (h,) = state
        ir, iz, in_ = gi.chunk(3, dim=-1)
        hr, hz, hn = gh.chunk(3, dim=-1)
        rg = torch.sigmoid(ir + hr)
        zg = torch.sigmoid(iz + hz)
        n = torch.tanh(in_ + rg * hn)
        h = (1.0 - zg) * n + zg * h
        return self._head(h), (h,)

    def _states(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return out

    def matrices(self) -> list[str]:
        return [f"{self.kind}.weight_ih_l0", f"{self.kind}.weight_hh_l0", "head.weight"]

    def sparsifiable(self) -> dict[str, list[str]]:
        return {"W": [f"{self.kind}.weight_ih_l0"], "U": [f"{self.kind}.weight_hh_l0"]}
