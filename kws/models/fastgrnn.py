"""FastGRNN (Kusupati et al., NeurIPS 2018) for keyword spotting.

    pre = W x_t + U h_{t-1}            (W and U shared by gate and candidate)
    z   = sigmoid(pre + b_z)
    h~  = tanh(pre + b_h)
    h_t = (sigmoid(zeta) (1 - z) + sigmoid(nu)) * h~ + z * h_{t-1}
    logit = head(h_T)

Optional low rank W = W1 W2, U = U1 U2. nonlinearity="pwl" uses the paper's piecewise-linear
forms (sigmoid -> clip((x+1)/2, 0, 1), tanh -> clip(x, -1, 1)) so an integer export matches exactly;
zeta and nu are constants at inference and always go through the true sigmoid.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from kws.models import normalize_hparams
from kws.models.base import KwsModel


def pwl_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp((x + 1.0) * 0.5, 0.0, 1.0)


def pwl_tanh(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(x, -1.0, 1.0)


class FastGRNN(KwsModel):
    kind = "fastgrnn"

    def __init__(self, n_features: int, zeta_init: float = 1.0, nu_init: float = -4.0,
                 **hparams: Any) -> None:
        super().__init__()
        self.hparams = normalize_hparams("fastgrnn", hparams)
        self.n_features = int(n_features)
        h, f = self.hparams["hidden"], self.n_features
        rw, ru = self.hparams["w_rank"], self.hparams["u_rank"]
        # EdgeML's initialisation: small Gaussian matrices, unit biases, zeta/nu pre-sigmoid.
        if rw is None:
            self.W = nn.Parameter(0.1 * torch.randn(h, f))
        else:
            self.W1 = nn.Parameter(0.1 * torch.randn(h, rw))
            self.W2 = nn.Parameter(0.1 * torch.randn(rw, f))
        if ru is None:
            self.U = nn.Parameter(0.1 * torch.randn(h, h))
        else:
            self.U1 = nn.Parameter(0.1 * torch.randn(h, ru))
            self.U2 = nn.Parameter(0.1 * torch.randn(ru, h))
        self.b_z = nn.Parameter(torch.ones(h))
        self.b_h = nn.Parameter(torch.ones(h))
        self.zeta = nn.Parameter(torch.full((1,), float(zeta_init)))
        self.nu = nn.Parameter(torch.full((1,), float(nu_init)))
        self.head = nn.Linear(h, 1)
        if self.hparams["nonlinearity"] == "pwl":
            self._sigmoid, self._tanh = pwl_sigmoid, pwl_tanh
        else:
            self._sigmoid, self._tanh = torch.sigmoid, torch.tanh

    # ------------------------------------------------------------------ pieces
    def _wx(self, x: torch.Tensor) -> torch.Tensor:
        """W x for x [..., F] (the input projection, computed for all frames at once in forward)."""
        if self.hparams["w_rank"] is None:
            return x @ self.W.t()
        return (x @ self.W2.t()) @ self.W1.t()

    def _uh(self, h: torch.Tensor) -> torch.Tensor:
        if self.hparams["u_rank"] is None:
            return h @ self.U.t()
        return (h @ self.U2.t()) @ self.U1.t()

    def _cell(self, wx: torch.Tensor, h: torch.Tensor, zeta: torch.Tensor, nu: torch.Tensor) -> torch.Tensor:
        pre = wx + self._uh(h)
        z = self._sigmoid(pre + self.b_z)
        c = self._tanh(pre + self.b_h)
        return (zeta * (1.0 - z) + nu) * c + z * h

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        return (h @ self.head.weight.t() + self.head.bias).squeeze(-1)

    # ------------------------------------------------------------------ interface
    def init_state(self, batch: int) -> tuple[torch.Tensor, ...]:
        return self._zeros_state(batch, 1)

    def step(self, frame: torch.Tensor, state: tuple[torch.Tensor, ...]
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        h = self._cell(self._wx(frame), state[0], torch.sigmoid(self.zeta), torch.sigmoid(self.nu))
        return self._head(h), (h,)

    def _run(self, x: torch.Tensor, keep_all: bool) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.n_features:
            raise ValueError(f"expected input [B, T, {self.n_features}], got {list(x.shape)}")
        wx = self._wx(x)  # [B, T, H]: one matmul for all frames
        zeta, nu = torch.sigmoid(self.zeta), torch.sigmoid(self.nu)
        (h,) = self.init_state(x.shape[0])
        states = []
        for t in range(x.shape[1]):
            h = self._cell(wx[:, t], h, zeta, nu)
            if keep_all:
                states.append(h)
        if keep_all:
            return self._head(torch.stack(states, dim=1))
        return self._head(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, keep_all=False)

    def forward_all(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, keep_all=True)

    def matrices(self) -> list[str]:
        names = ["W"] if self.hparams["w_rank"] is None else ["W1", "W2"]
        names += ["U"] if self.hparams["u_rank"] is None else ["U1", "U2"]
        return names + ["head.weight"]

    def sparsifiable(self) -> dict[str, list[str]]:
        # As in EdgeML, sparsity on a low-rank W (or U) applies to both factors.
        return {"W": ["W"] if self.hparams["w_rank"] is None else ["W1", "W2"],
                "U": ["U"] if self.hparams["u_rank"] is None else ["U1", "U2"]}
