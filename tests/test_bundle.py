"""Bundle: round trip (zip and folder), validation of every corruption, no torch needed to load."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from kws.bundle import FORMAT_VERSION, load_bundle, random_bundle, save_model_bundle
from kws.errors import BundleError
from kws.features import FeatureConfig
from kws.models import build_model


def _members(path):
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _write(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _edit_config(src, dst, edit):
    m = _members(src)
    cfg = json.loads(m["config.json"])
    edit(cfg)
    m["config.json"] = json.dumps(cfg).encode()
    return _write(dst, m)


def _edit_weights(src, dst, edit):
    m = _members(src)
    w = st_load(m["weights.safetensors"])
    edit(w)
    m["weights.safetensors"] = st_save(w)
    return _write(dst, m)


@pytest.fixture
def trained_like(tmp_path):
    torch.manual_seed(0)
    model = build_model("fastgrnn", 32, hidden=6, w_rank=4, nonlinearity="pwl")
    fc = FeatureConfig()
    mean = np.linspace(-5, 5, 32)
    std = np.linspace(0.5, 2, 32)
    path = save_model_bundle(tmp_path / "marvin.kws", model, fc, mean, std, "marvin",
                             {0.03: 0.71, "0.05": 0.62}, metrics={"recall@3%": 0.9, "bad": float("nan")},
                             provenance={"method": "drocc-lf", "seed": 1})
    return path, model, mean, std


def test_round_trip(trained_like, tmp_path):
    path, model, mean, std = trained_like
    b = load_bundle(path)
    assert b.keyword == "marvin" and b.model_kind == "fastgrnn" and b.n_features == 32
    assert b.hparams == model.hparams
    assert b.feature_config == FeatureConfig()
    assert b.threshold() == 0.71 and b.threshold(0.05) == 0.62
    with pytest.raises(BundleError, match="no threshold calibrated for FPR 0.1"):
        b.threshold(0.1)
    np.testing.assert_allclose(b.mean, mean, rtol=1e-6)
    assert b.metrics["recall@3%"] == 0.9 and b.metrics["bad"] is None  # NaN stored as null
    assert b.metrics["cost"] == model.cost()
    assert b.provenance == {"method": "drocc-lf", "seed": 1}
    feats = np.random.default_rng(0).normal(size=(98, 32)).astype(np.float32)
    np.testing.assert_allclose(b.normalize(feats), (feats - mean) / std, rtol=1e-5, atol=1e-5)
    x = torch.from_numpy(b.normalize(feats))[None]
    with torch.no_grad():
        expected = model(x).item()
        assert b.torch_model()(x).item() == expected
    assert abs(b.reference_model().forward(x[0].numpy()) - expected) < 1e-5
    # zip members, stored; no temp file left behind
    assert set(_members(path)) == {"config.json", "weights.safetensors"}
    assert not list(tmp_path.glob("*.tmp-*"))


def test_folder_bundle_loads(tmp_path):
    folder = random_bundle(tmp_path / "bundle_dir", kind="lstm", hidden=5, as_folder=True)
    assert (folder / "config.json").is_file() and (folder / "weights.safetensors").is_file()
    b = load_bundle(folder)
    assert b.model_kind == "lstm" and b.hparams == {"hidden": 5}
    # unpacking a zip bundle gives a loadable folder too
    z = random_bundle(tmp_path / "g.kws", kind="gru", seed=3)
    d = tmp_path / "unzipped"
    d.mkdir()
    for name, data in _members(z).items():
        (d / name).write_bytes(data)
    assert load_bundle(d).weights.keys() == load_bundle(z).weights.keys()


@pytest.mark.parametrize("kind,hp", [("fastgrnn", {}), ("fastgrnn", {"u_rank": 3}), ("lstm", {}), ("gru", {})])
def test_random_bundle_is_deterministic_and_valid(tmp_path, kind, hp):
    a = load_bundle(random_bundle(tmp_path / "a.kws", kind=kind, seed=5, **hp))
    b = load_bundle(random_bundle(tmp_path / "b.kws", kind=kind, seed=5, **hp))
    c = load_bundle(random_bundle(tmp_path / "c.kws", kind=kind, seed=6, **hp))
    assert all(np.array_equal(a.weights[k], b.weights[k]) for k in a.weights)
    assert any(not np.array_equal(a.weights[k], c.weights[k]) for k in a.weights)
    assert a.threshold(0.03) == 0.5 and a.threshold(0.05) == 0.5
    assert "not a trained detector" in a.provenance["note"]
    x = np.random.default_rng(0).normal(size=(98, 32))
    with torch.no_grad():
        t = a.torch_model()(torch.tensor(x, dtype=torch.float32)[None]).item()
    assert abs(a.reference_model().forward(x) - t) < 1e-4


def test_load_without_torch(tmp_path):
    path = random_bundle(tmp_path / "r.kws")
    code = ("import sys; sys.modules['torch'] = None\n"
            "import numpy as np\n"
            "from kws.bundle import load_bundle\n"
            f"b = load_bundle({str(path)!r})\n"
            "print(b.reference_model().forward(np.zeros((98, 32))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert np.isfinite(float(out.stdout.strip()))


# ---------------------------------------------------------------------- corruption cases
def _expect(path, *fragments):
    with pytest.raises(BundleError) as e:
        load_bundle(path)
    msg = str(e.value)
    assert str(path) in msg, msg
    for f in fragments:
        assert f in msg, msg
    return msg


@pytest.fixture
def good(tmp_path):
    return random_bundle(tmp_path / "good.kws", hidden=4)


def test_missing_file(tmp_path):
    _expect(tmp_path / "nope.kws", "no such bundle")


def test_not_a_zip(tmp_path):
    p = tmp_path / "text.kws"
    p.write_text("hello, I am not a bundle")
    _expect(p, "not a zip")
    empty = tmp_path / "empty.kws"
    empty.write_bytes(b"")
    _expect(empty, "not a zip")


def test_pickle_is_not_a_bundle(tmp_path):
    p = tmp_path / "model.pt"
    torch.save({"W": torch.zeros(2)}, p)  # a torch checkpoint (a zip of pickles) must be refused
    _expect(p, "missing config.json")


def test_truncated(good, tmp_path):
    data = good.read_bytes()
    for cut in (len(data) // 2, len(data) - 30):
        p = tmp_path / f"cut{cut}.kws"
        p.write_bytes(data[:cut])
        _expect(p, "corrupt or truncated")


def test_corrupt_member_bytes(good, tmp_path):
    data = bytearray(good.read_bytes())
    i = data.find(b"head.bias")  # inside the safetensors header: the CRC check must catch it
    data[i:i + 4] = b"XXXX"
    p = tmp_path / "flipped.kws"
    p.write_bytes(bytes(data))
    _expect(p, "corrupt", "CRC")


def test_missing_members(good, tmp_path):
    m = _members(good)
    _expect(_write(tmp_path / "nocfg.kws", {"weights.safetensors": m["weights.safetensors"]}),
            "missing config.json")
    _expect(_write(tmp_path / "now.kws", {"config.json": m["config.json"]}), "missing weights.safetensors")
    d = tmp_path / "folder"
    d.mkdir()
    (d / "config.json").write_bytes(m["config.json"])
    _expect(d, "missing weights.safetensors")


def test_bad_json_and_bad_safetensors(good, tmp_path):
    m = _members(good)
    _expect(_write(tmp_path / "j.kws", {**m, "config.json": b"{not json"}), "not valid JSON")
    _expect(_write(tmp_path / "j2.kws", {**m, "config.json": b"[1, 2]"}), "not a JSON object")
    _expect(_write(tmp_path / "s.kws", {**m, "weights.safetensors": m["weights.safetensors"][:-10]}),
            "weights.safetensors is corrupt")
    _expect(_write(tmp_path / "s2.kws", {**m, "weights.safetensors": b"\x80\x03}q\x00."}),  # a pickle
            "weights.safetensors is corrupt")


def test_wrong_format_and_versions(good, tmp_path):
    _expect(_edit_config(good, tmp_path / "f.kws", lambda c: c.update(format="something")), "not a kws bundle")
    newer = _expect(_edit_config(good, tmp_path / "v.kws", lambda c: c.update(format_version=FORMAT_VERSION + 1)),
                    "newer kws", "upgrade kws")
    assert str(FORMAT_VERSION + 1) in newer
    _expect(_edit_config(good, tmp_path / "v0.kws", lambda c: c.update(format_version=0)), "invalid format_version")
    _expect(_edit_config(good, tmp_path / "vs.kws", lambda c: c.update(format_version="1")), "invalid format_version")


def test_bad_feature_spec_and_normalization(good, tmp_path):
    _expect(_edit_config(good, tmp_path / "a.kws", lambda c: c["features"].update(n_mels=-3)), "featurizer spec")
    _expect(_edit_config(good, tmp_path / "b.kws", lambda c: c["features"].update(bogus=1)), "featurizer spec")
    _expect(_edit_config(good, tmp_path / "c.kws", lambda c: c["normalization"].update(mean=[0.0] * 31)),
            "normalization.mean has 31 values", "32 features")
    _expect(_edit_config(good, tmp_path / "d.kws", lambda c: c["normalization"]["std"].__setitem__(3, 0.0)),
            "std must be positive")
    _expect(_edit_config(good, tmp_path / "e.kws", lambda c: c.pop("normalization")), "lacks 'normalization'")
    # mfcc with 13 coefficients: the model's 32 inputs no longer match
    _expect(_edit_config(good, tmp_path / "g.kws", lambda c: c["features"].update(kind="mfcc", n_mfcc=13)),
            "13")


def test_bad_model_section(good, tmp_path):
    _expect(_edit_config(good, tmp_path / "k.kws", lambda c: c["model"].update(kind="transformer")),
            "unknown model kind 'transformer'")
    _expect(_edit_config(good, tmp_path / "h.kws", lambda c: c["model"]["hparams"].update(hidden=5)),
            "weight W has shape (4, 32)", "(5, 32)")
    _expect(_edit_config(good, tmp_path / "x.kws", lambda c: c["model"]["hparams"].update(depth=3)),
            "unknown hyper-parameter")
    _expect(_edit_config(good, tmp_path / "r.kws", lambda c: c["model"]["hparams"].update(w_rank=2)),
            "lacks W1, W2")


def test_bad_weights(good, tmp_path):
    _expect(_edit_weights(good, tmp_path / "m.kws", lambda w: w.pop("nu")), "lacks nu")
    _expect(_edit_weights(good, tmp_path / "e.kws", lambda w: w.update(extra=np.zeros(3, np.float32))),
            "unexpected tensors extra")
    _expect(_edit_weights(good, tmp_path / "s.kws", lambda w: w.update(U=np.zeros((4, 5), np.float32))),
            "weight U has shape (4, 5)")
    _expect(_edit_weights(good, tmp_path / "n.kws", lambda w: w["b_z"].__setitem__(0, np.nan)),
            "b_z contains NaN")
    _expect(_edit_weights(good, tmp_path / "i.kws", lambda w: w.update(b_h=np.zeros(4, np.int32))),
            "dtype int32")


def test_bad_thresholds(good, tmp_path):
    _expect(_edit_config(good, tmp_path / "t.kws", lambda c: c.update(thresholds={})), "no thresholds")
    _expect(_edit_config(good, tmp_path / "t2.kws", lambda c: c.pop("thresholds")), "lacks 'thresholds'")
    _expect(_edit_config(good, tmp_path / "t3.kws", lambda c: c.update(thresholds={"0.03": "high"})),
            "not a finite number")
    _expect(_edit_config(good, tmp_path / "t4.kws", lambda c: c.update(thresholds={"three": 0.5})),
            "not a false-positive rate")


def test_save_refuses_invalid(tmp_path):
    model = build_model("gru", 32, hidden=4)
    fc = FeatureConfig()
    with pytest.raises(BundleError, match="normalization.mean has 10 values"):
        save_model_bundle(tmp_path / "x.kws", model, fc, np.zeros(10), np.ones(10), "k", {0.03: 0.5})
    with pytest.raises(BundleError, match="13"):
        save_model_bundle(tmp_path / "x.kws", model, FeatureConfig(kind="mfcc", n_mfcc=13), np.zeros(13),
                          np.ones(13), "k", {0.03: 0.5})
    assert not (tmp_path / "x.kws").exists()


def test_save_is_atomic(tmp_path, monkeypatch):
    path = random_bundle(tmp_path / "b.kws", seed=1)
    before = path.read_bytes()

    def boom(self, name, data, *a, **k):
        raise KeyboardInterrupt  # interrupted while writing the zip

    monkeypatch.setattr(zipfile.ZipFile, "writestr", boom)
    with pytest.raises(KeyboardInterrupt):
        random_bundle(path, seed=2)
    assert path.read_bytes() == before  # the old bundle is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["b.kws"]  # no temp file left
    monkeypatch.undo()
    assert load_bundle(path).provenance["seed"] == 1
