"""Keyword-spotting models: FastGRNN, LSTM, GRU (torch) and their numpy reference.

This package's __init__ imports no torch, so `kws.models.reference` and the bundle loader work on a
box without torch; `build_model` imports the torch modules when called.

Pure helpers here describe each model kind without torch: the hyper-parameters it accepts
(`normalize_hparams`) and the exact weight names and shapes they imply (`weight_shapes`); the bundle
validator and the numpy reference rely on them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from kws.models.base import KwsModel

MODEL_KINDS = ("fastgrnn", "lstm", "gru")
NONLINEARITIES = ("standard", "pwl")

# Defaults for the structural hyper-parameters (the ones stored in a bundle). FastGRNN unit_zeta_nu:
# zeta and nu per hidden unit instead of one pair; kws.models.ensemble sets it when it joins FastGRNNs
# trained apart into one block-diagonal model (each block keeps its own pair).
OPTIONAL_FLAGS = {"fastgrnn": ("unit_zeta_nu",)}  # stored only when true: older bundles and runs match
DEFAULT_HPARAMS: dict[str, dict[str, Any]] = {
    "fastgrnn": {"hidden": 32, "w_rank": None, "u_rank": None, "nonlinearity": "standard", "unit_zeta_nu": False},
    "lstm": {"hidden": 32},
    "gru": {"hidden": 32},
}


def _positive_int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"hyper-parameter {name} must be a positive integer, got {v!r}")
    return v


def normalize_hparams(kind: str, hparams: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults and check a model's structural hyper-parameters; ValueError names the bad one.

    Returns a new JSON-able dict with the keys of DEFAULT_HPARAMS[kind], less OPTIONAL_FLAGS that are
    false."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; known kinds: {', '.join(MODEL_KINDS)}")
    unknown = set(hparams) - set(DEFAULT_HPARAMS[kind])
    if unknown:
        raise ValueError(f"unknown hyper-parameter(s) for {kind}: {', '.join(sorted(unknown))}; "
                         f"accepted: {', '.join(DEFAULT_HPARAMS[kind])}")
    hp = {**DEFAULT_HPARAMS[kind], **hparams}
    hp["hidden"] = _positive_int("hidden", hp["hidden"])
    if kind == "fastgrnn":
        for key in ("w_rank", "u_rank"):
            if hp[key] is not None:
                hp[key] = _positive_int(key, hp[key])
        if hp["nonlinearity"] not in NONLINEARITIES:
            raise ValueError(f"nonlinearity must be one of {NONLINEARITIES}, got {hp['nonlinearity']!r}")
    for flag in OPTIONAL_FLAGS.get(kind, ()):
        if not isinstance(hp[flag], bool):
            raise ValueError(f"{flag} must be true or false, got {hp[flag]!r}")
        if not hp[flag]:
            del hp[flag]
    return hp


def weight_shapes(kind: str, n_features: int, hparams: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The exact state_dict names and shapes a model of this kind and size has (no torch needed)."""
    n_features = _positive_int("n_features", n_features)
    hp = normalize_hparams(kind, hparams)
    h = hp["hidden"]
    shapes: dict[str, tuple[int, ...]] = {}
    if kind == "fastgrnn":
        if hp["w_rank"] is None:
            shapes["W"] = (h, n_features)
        else:
            shapes["W1"], shapes["W2"] = (h, hp["w_rank"]), (hp["w_rank"], n_features)
        if hp["u_rank"] is None:
            shapes["U"] = (h, h)
        else:
            shapes["U1"], shapes["U2"] = (h, hp["u_rank"]), (hp["u_rank"], h)
        n_zeta = h if hp.get("unit_zeta_nu") else 1
        shapes.update({"b_z": (h,), "b_h": (h,), "zeta": (n_zeta,), "nu": (n_zeta,)})
    else:
        gates = 4 if kind == "lstm" else 3
        shapes.update({
            f"{kind}.weight_ih_l0": (gates * h, n_features),
            f"{kind}.weight_hh_l0": (gates * h, h),
            f"{kind}.bias_ih_l0": (gates * h,),
            f"{kind}.bias_hh_l0": (gates * h,),
        })
    shapes.update({"head.weight": (1, h), "head.bias": (1,)})
    return shapes


def build_model(kind: str, n_features: int, **hparams: Any) -> "KwsModel":
    """Build a fresh (randomly initialised) model. Extra keyword arguments that only affect
    initialisation (FastGRNN `zeta_init`, `nu_init`) are accepted but not stored in `hparams`."""
    if kind == "fastgrnn":
        from kws.models.fastgrnn import FastGRNN

        return FastGRNN(n_features, **hparams)
    if kind in ("lstm", "gru"):
        from kws.models.rnn import RecurrentKws

        return RecurrentKws(kind, n_features, **hparams)
    raise ValueError(f"unknown model kind {kind!r}; known kinds: {', '.join(MODEL_KINDS)}")


__all__ = ["MODEL_KINDS", "DEFAULT_HPARAMS", "normalize_hparams", "weight_shapes", "build_model"]
