"""The model bundle (DESIGN.md section 7): everything a detector needs, as data.

A `.kws` file is a zip holding two members (a folder with the same two files also loads):

    config.json          {"format": "kws-bundle", "format_version": 1, "kws_version", "keyword",
                          "features": FeatureConfig.to_dict(), "normalization": {"mean", "std"},
                          "model": {"kind", "hparams", "n_features"},
                          "thresholds": {"0.03": t, "0.05": t}, "metrics": {...}, "provenance": {...}}
    weights.safetensors  the model's state_dict (float32), names as kws.models.weight_shapes

Loading validates everything and executes no code: JSON and safetensors only, never pickle, and
no torch import (torch_model() imports it when asked).
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kws.errors import BundleError
from kws.util import atomic_path, atomic_write_bytes

if TYPE_CHECKING:  # pragma: no cover
    from kws.features import FeatureConfig
    from kws.models.base import KwsModel
    from kws.models.reference import ReferenceModel

FORMAT = "kws-bundle"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "weights.safetensors"
# Refuse absurd members before reading them into memory (a KWS model is kilobytes).
MAX_MEMBER_BYTES = 256 * 1024 * 1024


@dataclass
class Bundle:
    path: Path
    keyword: str
    feature_config: "FeatureConfig"
    mean: np.ndarray
    std: np.ndarray
    model_kind: str
    hparams: dict[str, Any]
    n_features: int
    weights: dict[str, np.ndarray]
    thresholds: dict[str, float]
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def threshold(self, fpr: float = 0.03) -> float:
        """The score threshold calibrated (on validation) for this false-positive rate."""
        for key, t in self.thresholds.items():
            if math.isclose(float(key), float(fpr), rel_tol=0, abs_tol=1e-12):
                return float(t)
        raise BundleError(f"{self.path}: no threshold calibrated for FPR {fpr:g}; this bundle has "
                          f"{', '.join(sorted(self.thresholds))} (pass an explicit threshold instead)")

    def normalize(self, feats: np.ndarray) -> np.ndarray:
        """(feats - mean) / std per coefficient, float32; feats [..., F]."""
        return ((np.asarray(feats, dtype=np.float32) - self.mean) / self.std).astype(np.float32)

    def torch_model(self) -> "KwsModel":
        """The trained model as a torch module (eval mode)."""
        try:
            import torch  # noqa: F401
        except ImportError:
            raise BundleError(f"{self.path}: torch is not installed; use reference_model() (numpy) "
                              f"or install torch") from None
        from kws.models import build_model

        model = build_model(self.model_kind, self.n_features, **self.hparams)
        model.load_weights_numpy(self.weights)
        return model.eval()

    def reference_model(self, dtype: type = np.float64) -> "ReferenceModel":
        """The numpy model (no torch)."""
        from kws.models.reference import ReferenceModel

        return ReferenceModel(self.model_kind, self.hparams, self.weights, dtype=dtype)


# ---------------------------------------------------------------------- saving
def _json_safe(x: Any) -> Any:
    """JSON-able copy: numpy scalars/arrays to Python, non-finite floats to None (strict JSON)."""
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return _json_safe(x.tolist())
    if isinstance(x, np.generic):
        return _json_safe(x.item())
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _threshold_dict(path: Path, thresholds: dict[Any, float]) -> dict[str, Any]:
    """{fpr: t} with keys written as f"{fpr:g}" ("0.03"), the form Bundle.threshold looks up."""
    out: dict[str, Any] = {}
    for k, v in thresholds.items():
        try:
            out[f"{float(k):g}"] = float(v)
        except (TypeError, ValueError):
            raise BundleError(f"{path}: cannot save: threshold {k!r}: {v!r} is not a false-positive "
                              f"rate mapped to a number") from None
    return out


def save_bundle(path: str | Path, model_kind: str, hparams: dict[str, Any], weights: dict[str, np.ndarray],
                feature_config: "FeatureConfig", mean: np.ndarray, std: np.ndarray, keyword: str,
                thresholds: dict[Any, float], metrics: dict[str, Any] | None = None,
                provenance: dict[str, Any] | None = None, as_folder: bool = False) -> Path:
    """Write a bundle atomically (a zip, or a folder when as_folder). The same validation as
    load_bundle runs first, so an invalid bundle is never written. Returns the path."""
    from safetensors.numpy import save as st_save

    import kws
    from kws.models import normalize_hparams

    path = Path(path)
    try:
        hp = normalize_hparams(model_kind, dict(hparams))
    except ValueError as e:
        raise BundleError(f"{path}: cannot save: {e}") from None
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kws_version": kws.__version__,
        "keyword": keyword,
        "features": feature_config.to_dict(),
        "normalization": {"mean": np.asarray(mean, dtype=np.float64).ravel().tolist(),
                          "std": np.asarray(std, dtype=np.float64).ravel().tolist()},
        "model": {"kind": model_kind, "hparams": hp, "n_features": int(feature_config.n_features)},
        "thresholds": _threshold_dict(path, thresholds),
        "metrics": metrics or {},
        "provenance": provenance or {},
    }
    config = _json_safe(config)
    arrays = {k: np.ascontiguousarray(np.asarray(v, dtype=np.float32)) for k, v in weights.items()}
    _validate(path, config, arrays)  # raises BundleError naming what is wrong
    config_bytes = json.dumps(config, indent=2, allow_nan=False).encode("utf-8")
    weights_bytes = st_save(arrays, metadata={"format": FORMAT})
    if as_folder:
        path.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path / WEIGHTS_NAME, weights_bytes)
        atomic_write_bytes(path / CONFIG_NAME, config_bytes)
        return path
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr(CONFIG_NAME, config_bytes)
            zf.writestr(WEIGHTS_NAME, weights_bytes)
    return path


def save_model_bundle(path: str | Path, model: "KwsModel", feature_config: "FeatureConfig",
                      mean: np.ndarray, std: np.ndarray, keyword: str, thresholds: dict[Any, float],
                      metrics: dict[str, Any] | None = None, provenance: dict[str, Any] | None = None,
                      as_folder: bool = False) -> Path:
    """save_bundle for a torch KwsModel (its weights as float32; its cost() goes into metrics)."""
    if model.n_features != feature_config.n_features:
        raise BundleError(f"{path}: model takes {model.n_features} features but the feature config "
                          f"gives {feature_config.n_features}")
    metrics = dict(metrics or {})
    metrics.setdefault("cost", model.cost())
    return save_bundle(path, model.kind, model.hparams, model.weights_numpy(), feature_config, mean, std,
                       keyword, thresholds, metrics, provenance, as_folder=as_folder)


def random_bundle(path: str | Path, kind: str = "fastgrnn", seed: int = 0, hidden: int = 8,
                  keyword: str = "random", as_folder: bool = False, feature_config: Any = None,
                  **hparams: Any) -> Path:
    """TEST/DEMO UTILITY, NOT A TRAINED DETECTOR: save a valid bundle with seeded random weights,
    the default FeatureConfig (or `feature_config`), unit normalization (mean 0, std 1) and thresholds 0.5 at FPR 0.03
    and 0.05. Needs no torch, so the detector/export tests can use it anywhere."""
    from kws.features import FeatureConfig
    from kws.models import weight_shapes

    fc = feature_config if feature_config is not None else FeatureConfig()
    nf = fc.n_features
    hp = {"hidden": hidden, **hparams}
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    for name, shape in weight_shapes(kind, nf, hp).items():
        if name == "zeta":
            w = np.full(shape, 1.0)
        elif name == "nu":
            w = np.full(shape, -4.0)
        elif len(shape) == 2:
            w = rng.normal(0.0, 1.0 / math.sqrt(shape[1]), size=shape)
        else:
            w = rng.normal(0.0, 0.1, size=shape)
        weights[name] = w.astype(np.float32)
    return save_bundle(path, kind, hp, weights, fc, np.zeros(nf), np.ones(nf), keyword,
                       {0.03: 0.5, 0.05: 0.5}, metrics={},
                       provenance={"note": "random weights for tests and demos; not a trained detector",
                                   "seed": seed},
                       as_folder=as_folder)


# ---------------------------------------------------------------------- loading
def _starts_like_zip(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _read_members(path: Path) -> tuple[bytes, bytes]:
    if not path.exists():
        raise BundleError(f"{path}: no such bundle file or folder")
    if path.is_dir():
        out = []
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            member = path / name
            if not member.is_file():
                raise BundleError(f"{path}: bundle folder is missing {name}; re-export the bundle")
            if member.stat().st_size > MAX_MEMBER_BYTES:
                raise BundleError(f"{path}: {name} is implausibly large for a keyword model")
            out.append(member.read_bytes())
        return out[0], out[1]
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if n not in names]
            if missing:
                raise BundleError(f"{path}: bundle is missing {', '.join(missing)} "
                                  f"(holds {', '.join(sorted(names)) or 'nothing'}); re-export the bundle")
            out = []
            for name in (CONFIG_NAME, WEIGHTS_NAME):
                if zf.getinfo(name).file_size > MAX_MEMBER_BYTES:
                    raise BundleError(f"{path}: {name} is implausibly large for a keyword model")
                out.append(zf.read(name))  # checks the CRC: a damaged member raises
            return out[0], out[1]
    except BundleError:
        raise
    except zipfile.BadZipFile as e:
        if _starts_like_zip(path):
            raise BundleError(f"{path}: bundle is corrupt or truncated ({e}); copy or export it again") from None
        raise BundleError(f"{path}: not a kws bundle (not a zip file); a bundle is the .kws file "
                          f"written by `kws train`, or a folder with config.json and weights.safetensors") from None
    except (OSError, EOFError, ValueError, RuntimeError, NotImplementedError) as e:
        raise BundleError(f"{path}: cannot read bundle (corrupt or truncated: {e})") from None
    except Exception as e:  # zlib.error and friends from a damaged archive
        raise BundleError(f"{path}: cannot read bundle (corrupt or truncated: {type(e).__name__}: {e})") from None


def _finite_floats(path: Path, what: str, values: Any, n: int) -> np.ndarray:
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                               for v in values):
        raise BundleError(f"{path}: config.json {what} must be a list of numbers")
    a = np.asarray(values, dtype=np.float64)
    if a.size != n:
        raise BundleError(f"{path}: config.json {what} has {a.size} values but the featurizer gives "
                          f"{n} features")
    if not np.all(np.isfinite(a)):
        raise BundleError(f"{path}: config.json {what} contains non-finite values")
    return a


def _validate(path: Path, config: Any, weights: dict[str, np.ndarray]) -> dict[str, Any]:
    """Check a parsed config + weights; return the pieces a Bundle needs. BundleError otherwise."""
    from kws.features import FeatureConfig
    from kws.models import MODEL_KINDS, normalize_hparams, weight_shapes

    if not isinstance(config, dict):
        raise BundleError(f"{path}: config.json is not a JSON object")
    if config.get("format") != FORMAT:
        raise BundleError(f"{path}: not a kws bundle (config.json format is {config.get('format')!r}, "
                          f"expected {FORMAT!r})")
    version = config.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise BundleError(f"{path}: invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise BundleError(f"{path}: bundle format_version {version} was written by a newer kws "
                          f"({config.get('kws_version', '?')}); this kws reads format_version "
                          f"{FORMAT_VERSION}: upgrade kws (pip install -U kws)")
    for key in ("keyword", "features", "normalization", "model", "thresholds"):
        if key not in config:
            raise BundleError(f"{path}: config.json lacks {key!r}")
    keyword = config["keyword"]
    if not isinstance(keyword, str) or not keyword.strip():
        raise BundleError(f"{path}: config.json keyword must be a non-empty string")
    try:
        if not isinstance(config["features"], dict):
            raise ValueError("not an object")
        fc = FeatureConfig.from_dict(config["features"])
    except (ValueError, TypeError, KeyError) as e:
        raise BundleError(f"{path}: invalid featurizer spec in config.json: {e}") from None
    nf = fc.n_features
    norm = config["normalization"]
    if not isinstance(norm, dict) or "mean" not in norm or "std" not in norm:
        raise BundleError(f"{path}: config.json normalization must hold mean and std")
    mean = _finite_floats(path, "normalization.mean", norm["mean"], nf)
    std = _finite_floats(path, "normalization.std", norm["std"], nf)
    if np.any(std <= 0):
        raise BundleError(f"{path}: config.json normalization.std must be positive")
    model = config["model"]
    if not isinstance(model, dict) or not {"kind", "hparams", "n_features"} <= set(model):
        raise BundleError(f"{path}: config.json model must hold kind, hparams and n_features")
    kind = model["kind"]
    if kind not in MODEL_KINDS:
        raise BundleError(f"{path}: unknown model kind {kind!r} (this kws knows {', '.join(MODEL_KINDS)}); "
                          f"upgrade kws if the bundle comes from a newer version")
    if model["n_features"] != nf:
        raise BundleError(f"{path}: model n_features {model['n_features']!r} does not match the "
                          f"featurizer's {nf}")
    if not isinstance(model["hparams"], dict):
        raise BundleError(f"{path}: config.json model.hparams must be an object")
    try:
        hp = normalize_hparams(kind, model["hparams"])
        shapes = weight_shapes(kind, nf, hp)
    except ValueError as e:
        raise BundleError(f"{path}: invalid model hyper-parameters: {e}") from None
    missing = [k for k in shapes if k not in weights]
    if missing:
        raise BundleError(f"{path}: weights.safetensors lacks {', '.join(missing)}")
    extra = [k for k in weights if k not in shapes]
    if extra:
        raise BundleError(f"{path}: weights.safetensors has unexpected tensors {', '.join(sorted(extra))}")
    for name, shape in shapes.items():
        w = weights[name]
        if tuple(w.shape) != shape:
            raise BundleError(f"{path}: weight {name} has shape {tuple(w.shape)} but {kind} with "
                              f"{hp} needs {shape}")
        if not np.issubdtype(w.dtype, np.floating):
            raise BundleError(f"{path}: weight {name} has dtype {w.dtype}, expected float")
        if not np.all(np.isfinite(w)):
            raise BundleError(f"{path}: weight {name} contains NaN or infinity")
    thresholds = config["thresholds"]
    if not isinstance(thresholds, dict) or not thresholds:
        raise BundleError(f"{path}: config.json has no thresholds; recalibrate with `kws evaluate`")
    clean: dict[str, float] = {}
    for key, t in thresholds.items():
        try:
            fpr = float(key)
        except ValueError:
            raise BundleError(f"{path}: threshold key {key!r} is not a false-positive rate") from None
        if not 0.0 <= fpr <= 1.0:
            raise BundleError(f"{path}: threshold key {key!r} is not a rate in [0, 1]")
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise BundleError(f"{path}: threshold for FPR {key} is not a finite number: {t!r}")
        clean[key] = float(t)
    for key in ("metrics", "provenance"):
        if not isinstance(config.get(key, {}), dict):
            raise BundleError(f"{path}: config.json {key} must be an object")
    return {"feature_config": fc, "mean": mean.astype(np.float32), "std": std.astype(np.float32),
            "kind": kind, "hparams": hp, "n_features": nf, "thresholds": clean, "keyword": keyword}


def load_bundle(path: str | Path) -> Bundle:
    """Read and validate a bundle (.kws zip or folder). BundleError names the file and the problem."""
    from safetensors.numpy import load as st_load

    path = Path(path)
    config_bytes, weights_bytes = _read_members(path)
    try:
        config = json.loads(config_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{path}: config.json is not valid JSON ({e}); the bundle is corrupt") from None
    try:
        weights = st_load(weights_bytes)
    except Exception as e:  # safetensors raises its own SafetensorError on malformed headers/data
        raise BundleError(f"{path}: weights.safetensors is corrupt or truncated ({e})") from None
    v = _validate(path, config, weights)
    return Bundle(path=path, keyword=v["keyword"], feature_config=v["feature_config"], mean=v["mean"],
                  std=v["std"], model_kind=v["kind"], hparams=v["hparams"], n_features=v["n_features"],
                  weights={k: np.asarray(w, dtype=np.float32) for k, w in weights.items()},
                  thresholds=v["thresholds"], metrics=config.get("metrics", {}),
                  provenance=config.get("provenance", {}), config=config)


__all__ = ["Bundle", "load_bundle", "save_bundle", "save_model_bundle", "random_bundle",
           "FORMAT", "FORMAT_VERSION"]
