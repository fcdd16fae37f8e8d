"""The common model interface: batch forward, streaming step, cost, and sparsity by iterative hard
thresholding (IHT) with masks that persist across optimizer steps."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

# Streaming runs one step per 10 ms hop: 100 frames per second of audio.
FRAMES_PER_SECOND = 100


class KwsModel(nn.Module):
    """Base class. Subclasses set `kind`, `n_features`, `hparams` and implement `init_state`,
    `step`, `_states`, a linear `head`, `sparsifiable` and `matrices`."""

    kind: str
    n_features: int
    hparams: dict[str, Any]

    def __init__(self) -> None:
        super().__init__()
        # Sparsity masks by parameter name. Plain attributes, not buffers: they must not end up in
        # state_dict (a bundle holds exactly the weights). Save/restore with sparsity_state().
        self._masks: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ inference
    def init_state(self, batch: int) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def step(self, frame: torch.Tensor, state: tuple[torch.Tensor, ...]
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """One 10 ms frame [B, F] -> (logit [B], new state)."""
        raise NotImplementedError

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        """States [..., H] -> logits [...] through the linear layer `self.head`."""
        return (h @ self.head.weight.t() + self.head.bias).squeeze(-1)

    def _states(self, x: torch.Tensor) -> torch.Tensor:
        """hidden_states for a checked x with T >= 1."""
        raise NotImplementedError

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 3 or x.shape[-1] != self.n_features:
            raise ValueError(f"expected input [B, T, {self.n_features}], got {list(x.shape)}")

    def hidden_states(self, x: torch.Tensor) -> torch.Tensor:
        """The recurrent state h after every frame: x [B, T, F] -> [B, T, H] (for distillation)."""
        self._check(x)
        if x.shape[1] == 0:
            return x.new_zeros(x.shape[0], 0, self.hparams["hidden"])
        return self._states(x)

    def forward_all(self, x: torch.Tensor) -> torch.Tensor:
        """Logits after every frame: x [B, T, F] -> [B, T] (T = 0 gives [B, 0])."""
        return self._head(self.hidden_states(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, F] -> logit of the last state [B]; equals running `step` from `init_state`
        (T = 0: the logit of the initial state)."""
        hs = self.hidden_states(x)
        return self._head(self.init_state(x.shape[0])[0] if x.shape[1] == 0 else hs[:, -1])

    def _zeros_state(self, batch: int, n: int) -> tuple[torch.Tensor, ...]:
        p = next(self.parameters())
        return tuple(torch.zeros(batch, self.hparams["hidden"], dtype=p.dtype, device=p.device)
                     for _ in range(n))

    # ------------------------------------------------------------------ weights
    def weights_numpy(self) -> dict[str, np.ndarray]:
        """state_dict as float32 numpy arrays (what a bundle stores)."""
        return {k: v.detach().cpu().to(torch.float32).numpy().copy() for k, v in self.state_dict().items()}

    def load_weights_numpy(self, weights: dict[str, np.ndarray]) -> None:
        p = next(self.parameters())
        self.load_state_dict({k: torch.as_tensor(np.asarray(v)).to(dtype=p.dtype, device=p.device)
                              for k, v in weights.items()}, strict=True)

    # ------------------------------------------------------------------ cost
    def matrices(self) -> list[str]:
        """Names of the weight matrices (quantized to int8 per output channel, counted as MACs)."""
        raise NotImplementedError

    def cost(self) -> dict[str, int]:
        """Model cost, counting what a sparse int8 deployment stores and computes:

        - params: nonzero parameter entries (all entries of a dense model); params_dense: all entries.
        - int8_bytes: each nonzero matrix entry as 1 byte, plus one float32 scale (4 bytes) per
          output channel (matrix row), plus every bias / scalar (zeta, nu) entry as a 4-byte
          int32. Index overhead of sparse storage is NOT included; it is reported separately as
          sparse_index_bytes (a 2-byte column index per nonzero of each matrix that has zeros).
        - macs_per_frame: multiply-accumulates of the matrix-vector products per 10 ms frame
          (nonzeros of every matrix, head included); elementwise gate arithmetic is not counted.
          macs_per_second = 100 * macs_per_frame.
        """
        mats = set(self.matrices())
        params = params_dense = int8 = index = macs = 0
        for name, p in self.named_parameters():
            nnz = int(torch.count_nonzero(p.detach()))
            params += nnz
            params_dense += p.numel()
            if name in mats:
                int8 += nnz + 4 * p.shape[0]
                macs += nnz
                if nnz < p.numel():
                    index += 2 * nnz
            else:
                int8 += 4 * p.numel()
        return {"params": params, "params_dense": params_dense, "int8_bytes": int8,
                "sparse_index_bytes": index, "macs_per_frame": macs,
                "macs_per_second": macs * FRAMES_PER_SECOND}

    # ------------------------------------------------------------------ sparsity (IHT)
    def sparsifiable(self) -> dict[str, list[str]]:
        """Group name -> parameter names that `hard_threshold` accepts (a parameter name works too)."""
        raise NotImplementedError

    def _resolve(self, key: str) -> list[str]:
        groups = self.sparsifiable()
        if key in groups:
            return groups[key]
        allowed = {n for names in groups.values() for n in names}
        if key in allowed:
            return [key]
        raise ValueError(f"cannot sparsify {key!r} of a {self.kind} model; "
                         f"choose from {', '.join(sorted(set(groups) | allowed))}")

    @torch.no_grad()
    def hard_threshold(self, sparsity: dict[str, float]) -> dict[str, torch.Tensor]:
        """Keep the top round(keep * n) entries by |w| of each named matrix, zero the rest and record
        the masks (replacing earlier ones). `sparsity` maps a group or parameter name to the kept
        fraction in [0, 1]; 1.0 removes the mask. Exactly k entries are kept even with ties."""
        params = dict(self.named_parameters())
        for key, keep in sparsity.items():
            keep = float(keep)
            if not 0.0 <= keep <= 1.0 or math.isnan(keep):
                raise ValueError(f"keep fraction for {key!r} must be in [0, 1], got {keep}")
            for name in self._resolve(key):
                p = params[name]
                if keep >= 1.0:
                    self._masks.pop(name, None)
                    continue
                k = int(round(keep * p.numel()))
                flat = p.detach().abs().flatten()
                mask = torch.zeros_like(flat, dtype=torch.bool)
                if k > 0:
                    mask[torch.topk(flat, k, sorted=False).indices] = True
                mask = mask.view_as(p)
                p.mul_(mask)
                self._masks[name] = mask
        return dict(self._masks)

    @torch.no_grad()
    def apply_masks(self) -> None:
        """Re-zero the pruned entries (call after every optimizer step while the support is fixed)."""
        if not self._masks:
            return
        params = dict(self.named_parameters())
        for name, mask in self._masks.items():
            p = params[name]
            if mask.device != p.device:
                mask = self._masks[name] = mask.to(p.device)
            p.mul_(mask)

    def clear_masks(self) -> None:
        self._masks = {}

    def sparsity_state(self) -> dict[str, torch.Tensor]:
        """The masks (bool tensors by parameter name), to save in a training checkpoint."""
        return {k: v.detach().cpu().clone() for k, v in self._masks.items()}

    def load_sparsity_state(self, masks: dict[str, torch.Tensor]) -> None:
        params = dict(self.named_parameters())
        for name, m in masks.items():
            if name not in params or tuple(m.shape) != tuple(params[name].shape):
                raise ValueError(f"mask {name!r} does not match a parameter of this model")
        self._masks = {k: torch.as_tensor(v).to(torch.bool).to(params[k].device) for k, v in masks.items()}

    def sparsity_report(self) -> dict[str, dict[str, float]]:
        """Per sparsifiable parameter: nonzero count, size and kept fraction (plus a 'total')."""
        report: dict[str, dict[str, float]] = {}
        params = dict(self.named_parameters())
        nnz_all = n_all = 0
        for names in self.sparsifiable().values():
            for name in names:
                p = params[name]
                nnz = int(torch.count_nonzero(p.detach()))
                report[name] = {"nonzero": nnz, "size": p.numel(), "density": nnz / p.numel(),
                                "masked": name in self._masks}
                nnz_all += nnz
                n_all += p.numel()
        report["total"] = {"nonzero": nnz_all, "size": n_all, "density": nnz_all / max(n_all, 1)}
        return report

    def extra_repr(self) -> str:
        return f"kind={self.kind}, n_features={self.n_features}, hparams={self.hparams}"
