"""Ensembles as one model (kws.models.ensemble): the joined model's logit is the members' mean logit
in torch, the numpy detector, ONNX and the C library; `kws train --ensemble N` and `kws ensemble`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from firmware_export import build  # noqa: E402
from firmware_export.generate import calibration_from_audio, generate, golden_audio  # noqa: E402
from kws.bundle import load_bundle, save_bundle  # noqa: E402
from kws.cli import main as kws_main  # noqa: E402
from kws.errors import KwsError  # noqa: E402
from kws.features import FeatureConfig  # noqa: E402
from kws.models import build_model, weight_shapes  # noqa: E402
from kws.models.ensemble import merge_weights, renormalize, u_block_size  # noqa: E402
from kws.stream import make_scorer  # noqa: E402


def _members(kind: str, n: int, n_features: int, **hp) -> list:
    """n models with weights far enough from the initialisation that every part matters."""
    torch.manual_seed(11)
    models = []
    for _ in range(n):
        m = build_model(kind, n_features, **hp)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.3 * torch.randn_like(p))
        models.append(m.eval())
    return models


def _state(m) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in m.state_dict().items()}


@pytest.mark.parametrize("kind,hp", [("fastgrnn", {"hidden": 6}),
                                     ("fastgrnn", {"hidden": 5, "w_rank": 3, "u_rank": 2, "nonlinearity": "pwl"}),
                                     ("lstm", {"hidden": 4}), ("gru", {"hidden": 3})])
def test_joined_model_gives_the_mean_logit_at_every_frame(kind, hp):
    models = _members(kind, 3, 7, **hp)
    joined_hp, joined_w = merge_weights(kind, 7, [(m.hparams, _state(m)) for m in models])
    assert joined_hp["hidden"] == 3 * hp["hidden"]
    joined = build_model(kind, 7, **joined_hp)
    joined.load_state_dict({k: torch.from_numpy(v) for k, v in joined_w.items()})
    x = torch.randn(4, 25, 7)
    with torch.no_grad():
        want = torch.stack([m.forward_all(x) for m in models]).mean(0)
        got = joined.forward_all(x)
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5)
    if kind == "fastgrnn":  # each block keeps its own zeta and nu
        assert joined_hp["unit_zeta_nu"] and joined_w["zeta"].shape == (3 * hp["hidden"],)
        assert ("W1" in joined_w) == ("w_rank" in hp)


@pytest.mark.parametrize("hp", [{"hidden": 6}, {"hidden": 5, "w_rank": 3, "u_rank": 2, "nonlinearity": "pwl"}])
def test_blockwise_teacher_scores_exactly_what_the_joined_model_does(hp):
    from kws.models.fastgrnn import BlockwiseFastGRNN, blockwise

    models = _members("fastgrnn", 3, 7, **hp)
    joined_hp, joined_w = merge_weights("fastgrnn", 7, [(m.hparams, _state(m)) for m in models])
    joined = build_model("fastgrnn", 7, **joined_hp).eval()
    joined.load_state_dict({k: torch.from_numpy(v) for k, v in joined_w.items()})
    fast = blockwise(joined)
    assert isinstance(fast, BlockwiseFastGRNN) and fast.groups == 3
    x = torch.randn(4, 25, 7)
    with torch.no_grad():
        np.testing.assert_allclose(fast(x).numpy(), joined(x).numpy(), atol=1e-5)
    assert fast(x[:, :0]).shape == (4,)
    assert blockwise(models[0]) is models[0]  # one model: nothing to split
    with pytest.raises(ValueError, match="not block-diagonal"):
        BlockwiseFastGRNN(models[0], 2 if hp["hidden"] % 2 == 0 else 5)


def test_unit_zeta_nu_trains():
    """Per-unit zeta/nu: the hand-written backward matches autograd, per unit."""
    m = build_model("fastgrnn", 5, hidden=4, unit_zeta_nu=True)
    with torch.no_grad():
        m.zeta.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0]))
    x = torch.randn(3, 9, 5)
    m.forward_all(x).sum().backward()
    fast = (m.zeta.grad.clone(), m.nu.grad.clone())
    m.zero_grad()
    m._run_autograd(x).sum().backward()
    np.testing.assert_allclose(fast[0].numpy(), m.zeta.grad.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(fast[1].numpy(), m.nu.grad.numpy(), rtol=1e-4, atol=1e-6)
    assert m.zeta.grad.shape == (4,) and len(set(np.round(m.zeta.grad.numpy(), 6))) > 1


@pytest.mark.parametrize("kind,hp", [("fastgrnn", {"hidden": 6}), ("fastgrnn", {"hidden": 5, "w_rank": 3}),
                                     ("lstm", {"hidden": 4}), ("gru", {"hidden": 3})])
def test_renormalize_folds_another_normalization_into_the_weights(kind, hp, rng):
    (m,) = _members(kind, 1, 7, **hp)
    mean_a, std_a = rng.normal(size=7), rng.uniform(0.5, 2.0, 7)
    mean_b, std_b = rng.normal(size=7), rng.uniform(0.5, 2.0, 7)
    moved = build_model(kind, 7, **m.hparams)
    moved.load_state_dict({k: torch.from_numpy(v) for k, v in
                           renormalize(kind, _state(m), mean_a, std_a, mean_b, std_b).items()})
    raw = rng.normal(size=(3, 20, 7)) * 2.0
    with torch.no_grad():
        want = m.forward_all(torch.from_numpy(((raw - mean_a) / std_a).astype(np.float32)))
        got = moved.forward_all(torch.from_numpy(((raw - mean_b) / std_b).astype(np.float32)))
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-4)


def test_merge_refuses_what_cannot_be_joined():
    a, b = _members("fastgrnn", 2, 7, hidden=4)
    with pytest.raises(ValueError, match="at least two"):
        merge_weights("fastgrnn", 7, [(a.hparams, _state(a))])
    pwl = build_model("fastgrnn", 7, hidden=4, nonlinearity="pwl")
    with pytest.raises(ValueError, match="nonlinearit"):
        merge_weights("fastgrnn", 7, [(a.hparams, _state(a)), (pwl.hparams, _state(pwl))])
    broken = _state(b)
    broken["U"] = broken["U"][:, :3]
    with pytest.raises(ValueError, match="model 2"):
        merge_weights("fastgrnn", 7, [(a.hparams, _state(a)), (b.hparams, broken)])


@pytest.fixture(scope="module")
def joined_bundle(tmp_path_factory) -> tuple[Path, list]:
    """Two FastGRNNs (hidden 10) joined, saved as a bundle with a real normalization."""
    d = tmp_path_factory.mktemp("ens")
    fc = FeatureConfig()
    calib = calibration_from_audio(golden_audio(), fc).reshape(-1, fc.n_features)
    models = _members("fastgrnn", 2, fc.n_features, hidden=10)
    hp, w = merge_weights("fastgrnn", fc.n_features, [(m.hparams, _state(m)) for m in models])
    path = save_bundle(d / "ens.kws", "fastgrnn", hp, w, fc, calib.mean(0), calib.std(0) + 1e-3, "testword",
                       {0.03: 0.6, 0.05: 0.4})
    return path, models


def test_every_runtime_scores_the_mean_logit(joined_bundle, tmp_path, rng):
    path, models = joined_bundle
    b = load_bundle(path)
    assert set(b.weights) == set(weight_shapes("fastgrnn", b.n_features, b.hparams))
    x = (np.cumsum(0.3 * rng.standard_normal((5, b.feature_config.window_frames, b.n_features)), axis=1)
         - 6.0).astype(np.float32)
    with torch.no_grad():
        mean_logit = torch.stack([m(torch.from_numpy(b.normalize(x))) for m in models]).mean(0).double().numpy()
    want = 1.0 / (1.0 + np.exp(-mean_logit))
    scorer = make_scorer(b, "numpy")
    projected = np.stack([scorer.project(w) for w in b.normalize(x)])
    np.testing.assert_allclose(scorer.score_windows(projected), want, atol=1e-5)
    np.testing.assert_allclose(b.reference_model().score(b.normalize(x)), want, atol=1e-6)
    pytest.importorskip("onnxruntime")
    from kws.export.onnx_export import export_onnx
    import onnxruntime as ort

    export_onnx(path, tmp_path / "onnx")
    sess = ort.InferenceSession(str(tmp_path / "onnx" / "model_window.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(["score"], {"logmel": x})[0], want, atol=1e-5)


@pytest.mark.skipif(not build.have("gcc"), reason="host gcc not installed")
def test_c_library_runs_per_unit_zeta_nu_bit_exactly(joined_bundle, tmp_path):
    path, _ = joined_bundle
    summary = generate(path, tmp_path / "c", calib_x_raw=calibration_from_audio(golden_audio(), FeatureConfig()),
                       verify=True)
    assert "PASS" in summary, summary
    cfg = (tmp_path / "c" / "kws_config.h").read_text()
    assert "#define KWS_ZETA_PER_UNIT 1" in cfg and "KWS_ZETA_Q15 " not in cfg
    assert "kws_zeta_q15[KWS_HIDDEN]" in (tmp_path / "c" / "kws_weights.c").read_text()
    # only the two 10 x 10 blocks of U are stored (and multiplied): the harness above checked the sums
    assert "#define KWS_U_BLOCK 10" in cfg and "2 blocks of 10" in summary


def test_u_block_size_finds_the_diagonal_blocks(rng):
    dense = rng.integers(-127, 128, size=(12, 12)).astype(np.int8)
    assert u_block_size(dense) == 12
    blocks = np.zeros((12, 12), np.int8)
    for b in range(3):
        blocks[4 * b:4 * b + 4, 4 * b:4 * b + 4] = dense[:4, :4]
    assert u_block_size(blocks) == 4
    blocks[0, 11] = 1  # one entry outside the blocks: dense again
    assert u_block_size(blocks) == 12


def test_train_ensemble_and_kws_ensemble(trained_bundle, tmp_path, capsys):
    """`kws train --ensemble 2` trains two seeds and ships their mean; `kws ensemble` joins the same
    two bundles into the same model; rerunning resumes without training again."""
    from kws.data.dataset import load_split
    from kws.train.api import TrainOptions, train_keyword

    data = Path(trained_bundle[0]).parent / "data"
    opts = TrainOptions(keyword="marvin", data=data, method="bce", hidden=8, epochs=3, ensemble=2,
                        out=tmp_path / "ens.kws", run_dir=tmp_path / "run")
    r = train_keyword(opts)
    assert [m.run_dir.name for m in r.members] == ["member0", "member1"]
    b = load_bundle(r.bundle)
    assert b.hparams["hidden"] == 16 and b.hparams["unit_zeta_nu"]
    assert b.provenance["seed"] == [0, 1] and len(b.provenance["ensemble"]) == 2
    assert "ensemble of 2 models" in r.table()
    members = [load_bundle(m.bundle) for m in r.members]
    assert not np.array_equal(members[0].weights["W"], members[1].weights["W"])
    # the shipped score is the members' mean logit, thresholds calibrated on validation
    val = load_split(data, "val")
    x = b.normalize(np.asarray(val.x[:64]))
    with torch.no_grad():
        logits = [m.torch_model()(torch.from_numpy(x)).numpy() for m in members]
        joined = b.torch_model()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(joined, np.mean(logits, axis=0), atol=1e-5)
    assert set(b.thresholds) == {"0.03", "0.05"}
    again = train_keyword(opts)
    assert [m.resumed_from for m in again.members] == [3, 3]
    np.testing.assert_array_equal(load_bundle(again.bundle).weights["U"], b.weights["U"])
    # the CLI joins the same bundles into the same model
    assert kws_main(["ensemble", str(r.members[0].bundle), str(r.members[1].bundle), "-o", str(tmp_path / "cli.kws")]) == 0
    assert "ensemble of 2 models" in capsys.readouterr().out
    cli = load_bundle(tmp_path / "cli.kws")
    for k in b.weights:
        np.testing.assert_array_equal(cli.weights[k], b.weights[k])
    assert cli.thresholds == b.thresholds


def test_ensemble_errors_name_the_files_and_the_fix(trained_bundle, tmp_path, capsys):
    from kws.bundle import random_bundle
    from kws.train.api import ensemble_bundles

    with pytest.raises(KwsError, match="at least two"):
        ensemble_bundles([trained_bundle[0]], tmp_path / "x.kws")
    other = random_bundle(tmp_path / "other.kws", hidden=8, keyword="sheila")
    with pytest.raises(KwsError, match="other.kws.*keyword"):
        ensemble_bundles([trained_bundle[0], other], tmp_path / "x.kws")
    # random bundles record no dataset: the validation split for the thresholds must be named
    pair = [random_bundle(tmp_path / f"r{s}.kws", hidden=8, seed=s) for s in (0, 1)]
    with pytest.raises(KwsError, match="--data"):
        ensemble_bundles(pair, tmp_path / "x.kws")
    assert kws_main(["ensemble", str(trained_bundle[0]), "-o", str(tmp_path / "y.kws")]) != 0
    assert "at least two" in capsys.readouterr().err


def test_models_of_other_datasets_join_in_the_first_ones_normalization(trained_bundle, tmp_path):
    """A bundle with other normalization statistics (another dataset) is re-expressed, not refused:
    the ensemble scores the mean of each model's logit under its own normalization."""
    from kws.data.dataset import load_split
    from kws.train.api import ensemble_bundles

    a = load_bundle(trained_bundle[0])
    rng = np.random.default_rng(3)
    other = save_bundle(tmp_path / "other.kws", a.model_kind, a.hparams,
                        {k: v + rng.normal(0, 0.05, v.shape).astype(np.float32) for k, v in a.weights.items()},
                        a.feature_config, a.mean + rng.normal(0, 0.5, a.mean.shape), a.std * rng.uniform(0.7, 1.4, a.std.shape),
                        a.keyword, a.thresholds, provenance=a.provenance)
    r = ensemble_bundles([trained_bundle[0], other], tmp_path / "ens.kws")
    b, o = load_bundle(r.bundle), load_bundle(other)
    x = np.asarray(load_split(r.data_dir, "test").x[:32])
    with torch.no_grad():
        logits = [m.torch_model()(torch.from_numpy(m.normalize(x))).numpy() for m in (a, o)]
        joined = b.torch_model()(torch.from_numpy(b.normalize(x))).numpy()
    np.testing.assert_allclose(joined, np.mean(logits, axis=0), atol=1e-4)
    np.testing.assert_array_equal(b.mean, a.mean)
