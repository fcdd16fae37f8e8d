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
from kws.models.ensemble import u_block_size


def pwl_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp((x + 1.0) * 0.5, 0.0, 1.0)


def pwl_tanh(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(x, -1.0, 1.0)


def _reduce(g: torch.Tensor, per_unit: bool) -> torch.Tensor:
    """Gradient of a zeta/nu of shape [H] (per unit) or [1] from per-element terms [T, B, H]."""
    return g.sum((0, 1)) if per_unit else g.sum().reshape(1)


class _FastGRNNScan(torch.autograd.Function):
    """The FastGRNN recurrence over all frames with a hand-written backward (BPTT).

    Autograd through a Python loop of ~12 small ops per frame spends most of its time on graph
    bookkeeping. Here the forward runs without a graph and, when gradients are needed, stores the
    local derivatives of each frame; the backward then needs 3 ops per frame and the parameter
    gradients are single vectorised reductions (1.5-3x faster than autograd on CPU: BENCHMARKS.md "models").

    Inputs: wx [B, T, H] (= W x), U [H, H] (effective: U1 U2 when low rank), b_z, b_h [H],
    zeta, nu (post-sigmoid, shape [1] or [H]), pwl (bool). Output: every state h_t, [B, T, H]."""

    @staticmethod
    def forward(ctx, wx, U, b_z, b_h, zeta, nu, pwl, grad):  # noqa: D401
        wx_t = wx.transpose(0, 1)  # [T, B, H]
        n_t, b, hdim = wx_t.shape
        ut = U.t()
        # `grad` comes from the caller: needs_input_grad stays True under torch.no_grad()
        sig, tanh = (pwl_sigmoid, pwl_tanh) if pwl else (torch.sigmoid, torch.tanh)
        hs = wx.new_empty(n_t, b, hdim)
        if grad:
            zs, cs, a_z, a_c, omz_c = (wx.new_empty(n_t, b, hdim) for _ in range(5))
        h = wx.new_zeros(b, hdim)
        for t in range(n_t):
            pre = torch.addmm(wx_t[t], h, ut)
            pz = pre + b_z
            pc = pre + b_h
            z = sig(pz)
            c = tanh(pc)
            omz = 1.0 - z
            g = zeta * omz + nu
            h_new = g * c + z * h
            if grad:
                if pwl:  # torch.clamp passes the gradient where min <= input <= max (inclusive)
                    y = (pz + 1.0) * 0.5
                    dsig = 0.5 * ((y >= 0.0) & (y <= 1.0)).to(h.dtype)
                    dtanh = ((pc >= -1.0) & (pc <= 1.0)).to(h.dtype)
                else:
                    dsig = z * omz
                    dtanh = 1.0 - c * c
                torch.mul(h - zeta * c, dsig, out=a_z[t])  # d h_t / d pre, through z
                torch.mul(g, dtanh, out=a_c[t])            # d h_t / d pre, through the candidate
                torch.mul(omz, c, out=omz_c[t])            # d h_t / d zeta
                zs[t] = z
                cs[t] = c
            hs[t] = h_new
            h = h_new
        if grad:
            ctx.save_for_backward(U, hs, zs, cs, a_z, a_c, omz_c)
            ctx.per_unit = zeta.numel() > 1
        return hs.transpose(0, 1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_hs):
        U, hs, zs, cs, a_z, a_c, omz_c = ctx.saved_tensors
        n_t, b, hdim = hs.shape
        dhs = grad_hs.transpose(0, 1)
        k = a_z + a_c
        dh_all = torch.empty_like(hs)
        dpre = torch.empty_like(hs)
        carry = hs.new_zeros(b, hdim)
        for t in range(n_t - 1, -1, -1):
            dh = torch.add(dhs[t], carry, out=dh_all[t])
            dp = torch.mul(dh, k[t], out=dpre[t])
            carry = torch.addmm(dh * zs[t], dp, U)
        need = ctx.needs_input_grad
        d_wx = dpre.transpose(0, 1) if need[0] else None
        # h_{-1} = 0, so frame 0 adds nothing to dU
        d_u = dpre[1:].reshape(-1, hdim).t() @ hs[:-1].reshape(-1, hdim) if need[1] else None
        d_bz = (dh_all * a_z).sum((0, 1)) if need[2] else None
        d_bh = (dh_all * a_c).sum((0, 1)) if need[3] else None
        per_unit = ctx.per_unit
        d_zeta = _reduce(dh_all * omz_c, per_unit) if need[4] else None
        d_nu = _reduce(dh_all * cs, per_unit) if need[5] else None
        return d_wx, d_u, d_bz, d_bh, d_zeta, d_nu, None, None


# Update-gate bias at initialisation. EdgeML uses 1: z ~ 0.73, the state keeps 0.73 per 10 ms frame
# and has forgotten a word ~30 frames later, before the window ends. 2.5 (z ~ 0.92) starts with a
# memory of ~0.3 s. Measured (marvin, paper preset, BCE, lr 1e-2, weight decay 1e-3, 80 epochs,
# seed 0): test recall@3% FPR 32.7% with 1.0, 41.2% with 2.5.
BZ_INIT = 2.5


class FastGRNN(KwsModel):
    kind = "fastgrnn"

    def __init__(self, n_features: int, zeta_init: float = 1.0, nu_init: float = -4.0,
                 bz_init: float = BZ_INIT, **hparams: Any) -> None:
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
        self.b_z = nn.Parameter(torch.full((h,), float(bz_init)))
        self.b_h = nn.Parameter(torch.ones(h))
        n_zeta = h if self.hparams.get("unit_zeta_nu") else 1
        self.zeta = nn.Parameter(torch.full((n_zeta,), float(zeta_init)))
        self.nu = nn.Parameter(torch.full((n_zeta,), float(nu_init)))
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

    def effective_u(self) -> torch.Tensor:
        """U, or U1 U2 when low rank (step and forward both use it, so they agree exactly; the numpy
        reference and the exports apply the factors, which costs fewer MACs)."""
        if self.hparams["u_rank"] is None:
            return self.U
        return self.U1 @ self.U2

    def _cell(self, wx: torch.Tensor, h: torch.Tensor, zeta: torch.Tensor, nu: torch.Tensor) -> torch.Tensor:
        pre = torch.addmm(wx, h, self.effective_u().t())  # the same op as the scan: exact agreement
        z = self._sigmoid(pre + self.b_z)
        c = self._tanh(pre + self.b_h)
        return (zeta * (1.0 - z) + nu) * c + z * h

    # ------------------------------------------------------------------ interface
    def init_state(self, batch: int) -> tuple[torch.Tensor, ...]:
        return self._zeros_state(batch, 1)

    def step(self, frame: torch.Tensor, state: tuple[torch.Tensor, ...]
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        h = self._cell(self._wx(frame), state[0], torch.sigmoid(self.zeta), torch.sigmoid(self.nu))
        return self._head(h), (h,)

    def _states(self, x: torch.Tensor) -> torch.Tensor:
        wx = self._wx(x)  # [B, T, H]: one matmul for all frames
        u = self.effective_u()
        zeta, nu = torch.sigmoid(self.zeta), torch.sigmoid(self.nu)
        inputs = (wx, u, self.b_z, self.b_h, zeta, nu)
        grad = torch.is_grad_enabled() and any(t.requires_grad for t in inputs)
        return _FastGRNNScan.apply(*inputs, self.hparams["nonlinearity"] == "pwl", grad)

    def _run_autograd(self, x: torch.Tensor) -> torch.Tensor:
        """Plain autograd version of forward_all (the scan's backward is tested against it)."""
        self._check(x)
        wx = self._wx(x)
        zeta, nu = torch.sigmoid(self.zeta), torch.sigmoid(self.nu)
        (h,) = self.init_state(x.shape[0])
        states = []
        for t in range(x.shape[1]):
            h = self._cell(wx[:, t], h, zeta, nu)
            states.append(h)
        return self._head(torch.stack(states, dim=1))

    def matrices(self) -> list[str]:
        names = ["W"] if self.hparams["w_rank"] is None else ["W1", "W2"]
        names += ["U"] if self.hparams["u_rank"] is None else ["U1", "U2"]
        return names + ["head.weight"]

    def sparsifiable(self) -> dict[str, list[str]]:
        # As in EdgeML, sparsity on a low-rank W (or U) applies to both factors.
        return {"W": ["W"] if self.hparams["w_rank"] is None else ["W1", "W2"],
                "U": ["U"] if self.hparams["u_rank"] is None else ["U1", "U2"]}


# ---------------------------------------------------------------- an ensemble run block by block
class BlockwiseFastGRNN(nn.Module):
    """A frozen FastGRNN with a block-diagonal U (a joined ensemble), run as `groups` small
    recurrences in one batched matmul per frame: the same logits as `model(x)` for a fraction of
    the MACs (the dense U of 4 members of 64 holds 16x a member's recurrent weights, 4x theirs).
    Forward only, without gradients: the distillation teacher (kws.train.api.load_teacher)."""

    def __init__(self, model: FastGRNN, groups: int) -> None:
        super().__init__()
        h = model.hparams["hidden"]
        if groups < 2 or h % groups:
            raise ValueError(f"a {h}-unit FastGRNN does not split into {groups} blocks")
        self.model, self.groups, self.k = model, groups, h // groups
        with torch.no_grad():
            u = model.effective_u().detach()
            if self.k % u_block_size(u.numpy()):
                raise ValueError(f"U is not block-diagonal in {groups} blocks")
            k = self.k
            self.register_buffer("u_t", torch.stack([u[i * k:(i + 1) * k, i * k:(i + 1) * k].t()
                                                     for i in range(groups)]))  # [G, k, k]

    def _per_block(self, v: torch.Tensor) -> torch.Tensor:
        """[H] (or a shared [1]) -> broadcastable over states [G, B, k]."""
        return v.reshape(self.groups, 1, self.k) if v.numel() > 1 else v.reshape(1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        m._check(x)
        if x.shape[1] == 0:
            return m(x)
        with torch.no_grad():
            wx = m._wx(x)  # [B, T, H]
            b, n_t, h = wx.shape
            wx = wx.reshape(b, n_t, self.groups, self.k).permute(1, 2, 0, 3).contiguous()  # [T, G, B, k]
            b_z, b_h = self._per_block(m.b_z), self._per_block(m.b_h)
            zeta, nu = self._per_block(torch.sigmoid(m.zeta)), self._per_block(torch.sigmoid(m.nu))
            state = wx.new_zeros(self.groups, b, self.k)
            for t in range(n_t):
                pre = torch.baddbmm(wx[t], state, self.u_t)
                z = m._sigmoid(pre + b_z)
                c = m._tanh(pre + b_h)
                state = (zeta * (1.0 - z) + nu) * c + z * state
            return m._head(state.permute(1, 0, 2).reshape(b, h))


def blockwise(model: nn.Module) -> nn.Module:
    """`model` as a BlockwiseFastGRNN when it is a FastGRNN with a block-diagonal U, else itself."""
    if not isinstance(model, FastGRNN):
        return model
    h = model.hparams["hidden"]
    groups = h // u_block_size(model.effective_u().detach().numpy())
    return BlockwiseFastGRNN(model, groups) if groups > 1 else model
