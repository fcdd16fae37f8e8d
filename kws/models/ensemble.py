"""Join models trained apart into ONE model of the same kind whose logit is their mean logit.

Seeds move real-speech recall by up to 27 points (BENCHMARKS.md text_only_lf); averaging a few
members' logits removes much of that spread. Rather than teach every runtime (bundle, streaming
detector, ONNX, C library) about ensembles, the members become the blocks of one wider recurrent
model: input projections stacked, recurrent matrices block-diagonal (no unit sees another member's
state), the head's weights concatenated and divided by the member count. Each block then computes
exactly what its member did, and the head returns the mean logit, so every existing runtime runs
an ensemble unchanged. FastGRNN's zeta and nu become per-unit vectors (`unit_zeta_nu`), since each
member learned its own pair.

The cost is honest: hidden and parameters add up, and the block-diagonal recurrent matrix is stored
dense (its off-diagonal zeros count towards size and MACs).

Pure numpy on bundle-style weights (names as kws.models.weight_shapes), so it needs no torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kws.models import normalize_hparams, weight_shapes

GATES = {"lstm": 4, "gru": 3}


def _block_diag(blocks: list[np.ndarray]) -> np.ndarray:
    rows = sum(b.shape[0] for b in blocks)
    cols = sum(b.shape[1] for b in blocks)
    out = np.zeros((rows, cols), dtype=np.float32)
    r = c = 0
    for b in blocks:
        out[r:r + b.shape[0], c:c + b.shape[1]] = b
        r += b.shape[0]
        c += b.shape[1]
    return out


def _f32(w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=np.float32) for k, v in w.items()}


def _merge_fastgrnn(hps: list[dict[str, Any]], ws: list[dict[str, np.ndarray]]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    nonlin = {hp["nonlinearity"] for hp in hps}
    if len(nonlin) > 1:
        raise ValueError(f"members use different nonlinearities ({', '.join(sorted(nonlin))}); "
                         "an ensemble needs one (the C library has one)")
    out: dict[str, np.ndarray] = {}
    # a shared low rank stays low rank (factors stack); otherwise the product is used
    if all("W1" in w for w in ws):
        out["W1"] = _block_diag([w["W1"] for w in ws])
        out["W2"] = np.concatenate([w["W2"] for w in ws], axis=0)
        w_rank = sum(hp["w_rank"] for hp in hps)
    else:
        out["W"] = np.concatenate([w["W"] if "W" in w else w["W1"] @ w["W2"] for w in ws], axis=0)
        w_rank = None
    if all("U1" in w for w in ws):
        out["U1"] = _block_diag([w["U1"] for w in ws])
        out["U2"] = _block_diag([w["U2"] for w in ws])
        u_rank = sum(hp["u_rank"] for hp in hps)
    else:
        out["U"] = _block_diag([w["U"] if "U" in w else w["U1"] @ w["U2"] for w in ws])
        u_rank = None
    for name in ("b_z", "b_h"):
        out[name] = np.concatenate([w[name] for w in ws])
    for name in ("zeta", "nu"):
        out[name] = np.concatenate([np.broadcast_to(w[name].reshape(-1), (hp["hidden"],)) for hp, w in zip(hps, ws)])
    hp = {"hidden": sum(hp["hidden"] for hp in hps), "w_rank": w_rank, "u_rank": u_rank,
          "nonlinearity": nonlin.pop(), "unit_zeta_nu": True}
    return hp, out


def _merge_rnn(kind: str, hps: list[dict[str, Any]], ws: list[dict[str, np.ndarray]]
               ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    g = GATES[kind]

    def gate_rows(w: dict[str, np.ndarray], name: str, h: int, gate: int) -> np.ndarray:
        return w[f"{kind}.{name}_l0"][gate * h:(gate + 1) * h]

    hs = [hp["hidden"] for hp in hps]
    out: dict[str, np.ndarray] = {}
    # torch's layout: gate blocks one after another ([i, f, g, o] for LSTM, [r, z, n] for GRU),
    # so each gate's rows of every member go together
    out[f"{kind}.weight_ih_l0"] = np.concatenate(
        [gate_rows(w, "weight_ih", h, k) for k in range(g) for w, h in zip(ws, hs)], axis=0)
    out[f"{kind}.weight_hh_l0"] = np.concatenate(
        [_block_diag([gate_rows(w, "weight_hh", h, k) for w, h in zip(ws, hs)]) for k in range(g)], axis=0)
    for name in ("bias_ih", "bias_hh"):
        out[f"{kind}.{name}_l0"] = np.concatenate([gate_rows(w, name, h, k) for k in range(g) for w, h in zip(ws, hs)])
    return {"hidden": sum(hs)}, out


def renormalize(kind: str, weights: dict[str, np.ndarray], mean_from: np.ndarray, std_from: np.ndarray,
                mean_to: np.ndarray, std_to: np.ndarray) -> dict[str, np.ndarray]:
    """The same model for inputs normalized with (mean_to, std_to) instead of (mean_from, std_from):
    x_from = x_to * std_to / std_from + (mean_to - mean_from) / std_from, folded into the input
    weights (columns scaled) and the input biases (a constant added). Exact up to float rounding, so
    models trained on different datasets can share one normalization in an ensemble."""
    w = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
    scale = np.asarray(std_to, np.float64) / np.asarray(std_from, np.float64)
    shift = (np.asarray(mean_to, np.float64) - np.asarray(mean_from, np.float64)) / np.asarray(std_from, np.float64)
    if kind == "fastgrnn":
        first = "W" if "W" in w else "W2"  # the factor that meets the input
        offset = w["W"] @ shift if "W" in w else w["W1"] @ (w["W2"] @ shift)
        w[first] = w[first] * scale[None, :]
        w["b_z"] = w["b_z"] + offset  # W x feeds both the gate and the candidate
        w["b_h"] = w["b_h"] + offset
    else:
        ih = f"{kind}.weight_ih_l0"
        w[f"{kind}.bias_ih_l0"] = w[f"{kind}.bias_ih_l0"] + w[ih] @ shift
        w[ih] = w[ih] * scale[None, :]
    return _f32(w)


def merge_weights(kind: str, n_features: int, members: list[tuple[dict[str, Any], dict[str, np.ndarray]]]
                  ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(hparams, weights) of one `kind` model whose logit is the mean of the members' logits.

    members: (hparams, weights) per model, all of `kind` and `n_features` inputs. ValueError when
    they cannot be joined (a weight missing or misshapen, mixed nonlinearities, fewer than two)."""
    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least two models, got {len(members)}")
    hps, ws = [], []
    for i, (hp, w) in enumerate(members):
        hp = normalize_hparams(kind, hp)
        w = _f32(w)
        want = weight_shapes(kind, n_features, hp)
        got = {k: tuple(v.shape) for k, v in w.items()}
        if got != want:
            raise ValueError(f"model {i + 1}: weights do not match a {kind} of {hp} on {n_features} features")
        hps.append(hp)
        ws.append(w)
    if kind == "fastgrnn":
        hp, out = _merge_fastgrnn(hps, ws)
    else:
        hp, out = _merge_rnn(kind, hps, ws)
    n = len(members)
    out["head.weight"] = np.concatenate([w["head.weight"] for w in ws], axis=1) / np.float32(n)
    out["head.bias"] = (np.sum([w["head.bias"] for w in ws], axis=0) / np.float32(n)).astype(np.float32)
    hp = normalize_hparams(kind, hp)
    out = _f32(out)
    assert {k: tuple(v.shape) for k, v in out.items()} == weight_shapes(kind, n_features, hp)
    return hp, out


def u_block_size(u: np.ndarray) -> int:
    """The smallest block size b (dividing H) for which the recurrent matrix U [H, H] is
    block-diagonal with b x b blocks: a joined FastGRNN has one block per member (or finer); any
    other model, H. The C library stores only those blocks, the training teacher runs them apart."""
    h = u.shape[0]
    for b in range(1, h):
        if h % b == 0:
            blocks = np.kron(np.eye(h // b, dtype=bool), np.ones((b, b), dtype=bool))
            if not u[~blocks].any():
                return b
    return h
