"""Models: batch forward == streaming step, numpy reference == torch, cost by hand, IHT sparsity."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from kws.models import build_model, fastgrnn, normalize_hparams, weight_shapes
from kws.models.reference import ReferenceModel
from kws.models.sparsity import IHTSchedule, sparsity_stage

CONFIGS = [
    ("fastgrnn", {}),
    ("fastgrnn", {"w_rank": 3, "u_rank": 4}),
    ("fastgrnn", {"nonlinearity": "pwl"}),
    ("fastgrnn", {"w_rank": 5, "nonlinearity": "pwl"}),
    ("lstm", {}),
    ("gru", {}),
]
IDS = [f"{k}-{'-'.join(f'{a}{b}' for a, b in hp.items()) or 'default'}" for k, hp in CONFIGS]


def _model(kind, hp, seed=0, n_features=10, hidden=12, dtype=torch.float32):
    torch.manual_seed(seed)
    m = build_model(kind, n_features, hidden=hidden, **hp).to(dtype)
    # Make the state matter: larger recurrent weights than the init gives, and zeta/nu mid-range.
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.4)
        if kind == "fastgrnn":
            m.zeta.fill_(0.3)
            m.nu.fill_(-0.5)
    return m


def _stepped(m, x):
    state = m.init_state(x.shape[0])
    logits = []
    for t in range(x.shape[1]):
        logit, state = m.step(x[:, t], state)
        logits.append(logit)
    return torch.stack(logits, dim=1)


@pytest.mark.parametrize("kind,hp", CONFIGS, ids=IDS)
def test_forward_equals_step(kind, hp):
    m = _model(kind, hp)
    x = torch.randn(4, 30, 10, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = m(x)
        all_logits = m.forward_all(x)
        stepped = _stepped(m, x)
    assert full.shape == (4,)
    assert all_logits.shape == (4, 30)
    assert torch.allclose(full, stepped[:, -1], atol=1e-6, rtol=0)
    assert torch.allclose(all_logits, stepped, atol=1e-6, rtol=0)
    # the state matters: an input change a few frames back changes the last logit
    x2 = x.clone()
    x2[:, -4] += 1.0
    with torch.no_grad():
        assert (m(x2) - full).abs().max() > 1e-4


@pytest.mark.parametrize("kind,hp", CONFIGS, ids=IDS)
def test_empty_and_misshapen_input(kind, hp):
    m = _model(kind, hp)
    empty = torch.zeros(3, 0, 10)
    with torch.no_grad():
        # no frame: the logit of the initial state, and no per-frame logits or states
        assert torch.allclose(m(empty), m._head(m.init_state(3)[0]))
        assert m.forward_all(empty).shape == (3, 0)
        assert m.hidden_states(empty).shape == (3, 0, 12)
        x = torch.randn(2, 7, 10, generator=torch.Generator().manual_seed(2))
        assert torch.allclose(m.forward_all(x), m._head(m.hidden_states(x)))
    for bad in (torch.zeros(2, 5, 9), torch.zeros(5, 10)):
        with pytest.raises(ValueError, match="expected input"):
            m(bad)


@pytest.mark.parametrize("kind,hp", CONFIGS, ids=IDS)
def test_forward_equals_step_float64(kind, hp):
    m = _model(kind, hp, dtype=torch.float64)
    x = torch.randn(3, 25, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert m.init_state(3)[0].dtype == torch.float64
        assert torch.allclose(m(x), _stepped(m, x)[:, -1], atol=1e-12, rtol=0)


@pytest.mark.parametrize("kind,hp", CONFIGS, ids=IDS)
def test_reference_equals_torch(kind, hp):
    m = _model(kind, hp, seed=3)
    x = torch.randn(2, 40, 10, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = m.forward_all(x).numpy()
    ref = ReferenceModel(kind, m.hparams, m.weights_numpy())
    got_all, _ = ref.forward_all(x.numpy())
    np.testing.assert_allclose(got_all, expected, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(ref.forward(x.numpy()), expected[:, -1], atol=1e-5, rtol=1e-5)
    # in float64 both implement the same equations up to rounding
    m64 = m.to(torch.float64)
    with torch.no_grad():
        exact = m64.forward_all(x.to(torch.float64)).numpy()
    ref64 = ReferenceModel(kind, m.hparams, {k: v.detach().numpy() for k, v in m64.state_dict().items()})
    np.testing.assert_allclose(ref64.forward_all(x.numpy())[0], exact, atol=1e-10, rtol=0)
    # single clip [T, F] -> float, and frame-by-frame [F] steps
    tol = 1e-5 * max(1.0, float(np.abs(expected).max()))
    assert abs(ref.forward(x[1].numpy()) - expected[1, -1]) < tol
    state = ref.init_state()
    for t in range(x.shape[1]):
        logit, state = ref.step(x[1, t].numpy(), state)
        assert isinstance(logit, float)
        assert abs(logit - expected[1, t]) < tol
    assert state[0].shape == (12,)


def test_pwl_differs_from_standard_and_saturates():
    x = torch.randn(2, 20, 10, generator=torch.Generator().manual_seed(5))
    std = _model("fastgrnn", {}, seed=6)
    pwl = _model("fastgrnn", {"nonlinearity": "pwl"}, seed=6)
    pwl.load_state_dict(std.state_dict())
    with torch.no_grad():
        assert (std(x) - pwl(x)).abs().max() > 1e-3
    from kws.models.fastgrnn import pwl_sigmoid, pwl_tanh

    v = torch.tensor([-3.0, -1.0, 0.0, 0.5, 1.0, 3.0])
    assert pwl_sigmoid(v).tolist() == [0.0, 0.0, 0.5, 0.75, 1.0, 1.0]
    assert pwl_tanh(v).tolist() == [-1.0, -1.0, 0.0, 0.5, 1.0, 1.0]


def test_fastgrnn_equations_by_hand():
    """One step of FastGRNN computed from the paper's equations with plain numpy."""
    m = _model("fastgrnn", {}, seed=7, n_features=3, hidden=2)
    w = {k: v.astype(np.float64) for k, v in m.weights_numpy().items()}
    x = np.array([0.3, -1.2, 0.7])
    h = np.array([0.5, -0.25])
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    pre = w["W"] @ x + w["U"] @ h
    z = sig(pre + w["b_z"])
    c = np.tanh(pre + w["b_h"])
    h_new = (sig(w["zeta"][0]) * (1 - z) + sig(w["nu"][0])) * c + z * h
    logit = w["head.weight"][0] @ h_new + w["head.bias"][0]
    with torch.no_grad():
        got, (h_t,) = m.step(torch.tensor(x[None], dtype=torch.float32),
                             (torch.tensor(h[None], dtype=torch.float32),))
    np.testing.assert_allclose(h_t[0].numpy(), h_new, atol=1e-6)
    assert abs(got.item() - logit) < 1e-6


def test_fastgrnn_init_and_names():
    m = build_model("fastgrnn", 32)
    assert m.hparams == {"hidden": 32, "w_rank": None, "u_rank": None, "nonlinearity": "standard"}
    assert m.zeta.item() == 1.0 and m.nu.item() == -4.0
    # update-gate bias: long memory at the start (a word must survive ~0.3 s to the window end)
    assert torch.all(m.b_z == fastgrnn.BZ_INIT) and torch.all(m.b_h == 1.0)
    assert torch.all(build_model("fastgrnn", 32, bz_init=1.0).b_z == 1.0)
    lstm = build_model("lstm", 32, hidden=8)
    forget = lstm.lstm.bias_ih_l0[8:16] + lstm.lstm.bias_hh_l0[8:16]
    assert torch.allclose(forget, torch.ones(8)) and "bz_init" not in m.hparams
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == weight_shapes("fastgrnn", 32, m.hparams)
    lr = build_model("fastgrnn", 32, hidden=16, w_rank=4, u_rank=6)
    assert set(lr.state_dict()) == {"W1", "W2", "U1", "U2", "b_z", "b_h", "zeta", "nu", "head.weight", "head.bias"}
    for kind in ("lstm", "gru"):
        r = build_model(kind, 32, hidden=8)
        assert {k: tuple(v.shape) for k, v in r.state_dict().items()} == weight_shapes(kind, 32, r.hparams)
    # rebuild from hparams
    again = build_model(m.kind, m.n_features, **m.hparams)
    again.load_state_dict(m.state_dict())


def test_bad_hparams_rejected():
    with pytest.raises(ValueError, match="hidden"):
        build_model("fastgrnn", 32, hidden=0)
    with pytest.raises(ValueError, match="nonlinearity"):
        build_model("fastgrnn", 32, nonlinearity="relu")
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        normalize_hparams("lstm", {"hidden": 4, "w_rank": 2})
    with pytest.raises(ValueError, match="unknown model kind"):
        build_model("transformer", 32)
    with pytest.raises(ValueError, match="expected input"):
        build_model("fastgrnn", 32, hidden=4)(torch.zeros(1, 5, 31))


def test_cost_by_hand():
    # FastGRNN F=3, H=2, dense: W 6, U 4, b_z 2, b_h 2, zeta 1, nu 1, head 2 + 1 = 19 params.
    m = build_model("fastgrnn", 3, hidden=2)
    c = m.cost()
    assert c["params"] == 19 and c["params_dense"] == 19
    # int8: matrices 6 + 4 + 2 bytes, scales 4 * (2 + 2 + 1), biases/scalars 4 * (2 + 2 + 1 + 1 + 1)
    assert c["int8_bytes"] == 12 + 20 + 28
    assert c["macs_per_frame"] == 6 + 4 + 2
    assert c["macs_per_second"] == 100 * 12
    assert c["sparse_index_bytes"] == 0
    # low rank F=5, H=4, rw=2, ru=1: W1 8, W2 10, U1 4, U2 4
    lr = build_model("fastgrnn", 5, hidden=4, w_rank=2, u_rank=1).cost()
    assert lr["params"] == 8 + 10 + 4 + 4 + 4 + 4 + 1 + 1 + 4 + 1
    assert lr["macs_per_frame"] == 8 + 10 + 4 + 4 + 4
    assert lr["int8_bytes"] == (8 + 10 + 4 + 4 + 4) + 4 * (4 + 2 + 4 + 1 + 1) + 4 * (4 + 4 + 1 + 1 + 1)
    # LSTM F=3, H=2: weight_ih 8x3, weight_hh 8x2, biases 8 + 8, head 2 + 1
    lc = build_model("lstm", 3, hidden=2).cost()
    assert lc["params"] == 24 + 16 + 16 + 3
    assert lc["macs_per_frame"] == 24 + 16 + 2
    assert lc["int8_bytes"] == (24 + 16 + 2) + 4 * (8 + 8 + 1) + 4 * (8 + 8 + 1)
    gc = build_model("gru", 3, hidden=2).cost()
    assert gc["params"] == 18 + 12 + 12 + 3 and gc["macs_per_frame"] == 18 + 12 + 2
    # sparse: half of W (3 of 6) and U (2 of 4) kept -> counts drop, index bytes appear
    m.hard_threshold({"W": 0.5, "U": 0.5})
    s = m.cost()
    assert s["params"] == 19 - 3 - 2
    assert s["macs_per_frame"] == 3 + 2 + 2
    assert s["int8_bytes"] == 60 - 5
    assert s["sparse_index_bytes"] == 2 * (3 + 2)


@pytest.mark.parametrize("kind,hp", [("fastgrnn", {}), ("fastgrnn", {"w_rank": 4, "u_rank": 5}), ("lstm", {}),
                                     ("gru", {})])
def test_hard_threshold_exact_fraction_and_masks_persist(kind, hp):
    m = _model(kind, hp, seed=8, n_features=16, hidden=10)
    with torch.no_grad():  # ties at the cut must still give exactly k entries
        first = dict(m.named_parameters())[m.sparsifiable()["W"][0]]
        first.view(-1)[:20] = 0.25
    masks = m.hard_threshold({"W": 0.3, "U": 0.25})
    params = dict(m.named_parameters())
    expected = {}
    for group, keep in (("W", 0.3), ("U", 0.25)):
        for name in m.sparsifiable()[group]:
            expected[name] = int(round(keep * params[name].numel()))
            assert int(torch.count_nonzero(params[name])) == expected[name]
            assert int(masks[name].sum()) == expected[name]
    # an optimizer step moves pruned weights; apply_masks puts them back to zero
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    x = torch.randn(8, 12, 16)
    for _ in range(3):
        opt.zero_grad()
        m(x).pow(2).mean().backward()
        opt.step()
        m.apply_masks()
    for name, k in expected.items():
        assert int(torch.count_nonzero(params[name])) == k
        assert torch.equal(params[name] != 0, masks[name])
    report = m.sparsity_report()
    assert report["total"]["nonzero"] == sum(expected.values())
    # masks are not part of the weights, but survive a save/restore
    assert set(m.state_dict()) == set(weight_shapes(kind, 16, m.hparams))
    saved = m.sparsity_state()
    m.clear_masks()
    m.load_sparsity_state(saved)
    assert set(m.sparsity_state()) == set(expected)
    # sparse model still streams exactly like its batch forward
    with torch.no_grad():
        assert torch.allclose(m(x), _stepped(m, x)[:, -1], atol=1e-6)
    with pytest.raises(ValueError, match="cannot sparsify"):
        m.hard_threshold({"head.bias": 0.5})
    with pytest.raises(ValueError, match="keep fraction"):
        m.hard_threshold({"W": 1.5})


def test_iht_schedule():
    assert [sparsity_stage(p) for p in (0.0, 0.3, 0.34, 0.6, 0.67, 1.0)] == \
        ["dense", "dense", "sparsify", "sparsify", "retrain", "retrain"]
    m = _model("fastgrnn", {}, seed=9, n_features=8, hidden=6)
    sched = IHTSchedule({"W": 0.25, "U": 0.5})
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    x = torch.randn(4, 10, 8)
    support = None
    for i in range(30):
        opt.zero_grad()
        m(x).pow(2).mean().backward()
        opt.step()
        stage = sched.after_step(m, i / 30)
        nnz_w = int(torch.count_nonzero(m.W))
        if stage == "dense":
            assert nnz_w == m.W.numel()
        else:
            assert nnz_w == 12  # 0.25 * 48, after every step once sparsifying started
            assert int(torch.count_nonzero(m.U)) == 18
        if stage == "retrain":
            if support is None:
                support = m.W != 0
            assert torch.equal(m.W != 0, support)  # fixed support
    assert support is not None
    assert not IHTSchedule({"W": 1.0}).active

    # resume in the retrain stage: a fresh model + schedule restored from weights and masks keeps the
    # support even though the first optimizer step moves pruned entries
    m2 = build_model("fastgrnn", 8, hidden=6)
    m2.load_state_dict(m.state_dict())
    m2.load_sparsity_state(m.sparsity_state())
    sched2 = IHTSchedule({"W": 0.25, "U": 0.5})
    opt2 = torch.optim.Adam(m2.parameters(), lr=0.5)
    for _ in range(3):
        opt2.zero_grad()
        m2(x).pow(2).mean().backward()
        opt2.step()
        assert sched2.after_step(m2, 0.9) == "retrain"
        assert torch.equal(m2.W != 0, support)


def test_reference_imports_without_torch(tmp_path):
    """The numpy reference must work on a box without torch (torch import made to fail)."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from kws.models.reference import ReferenceModel\n"
        "from kws.models import weight_shapes\n"
        "rng = np.random.default_rng(0)\n"
        "w = {k: rng.normal(size=s) for k, s in weight_shapes('gru', 4, {'hidden': 3}).items()}\n"
        "r = ReferenceModel('gru', {'hidden': 3}, w)\n"
        "print(r.forward(rng.normal(size=(5, 4))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert np.isfinite(float(out.stdout.strip()))


def test_reference_rejects_wrong_weights():
    m = build_model("fastgrnn", 6, hidden=4)
    w = m.weights_numpy()
    w["U"] = np.zeros((4, 5), np.float32)
    with pytest.raises(ValueError, match="do not match"):
        ReferenceModel("fastgrnn", m.hparams, w)
    ref = ReferenceModel("fastgrnn", m.hparams, m.weights_numpy())
    with pytest.raises(ValueError, match="expected"):
        ref.step(np.zeros(5))


@pytest.mark.parametrize("hp", [{}, {"nonlinearity": "pwl"}, {"w_rank": 3, "u_rank": 4}], ids=["std", "pwl", "lowrank"])
def test_fastgrnn_hand_written_backward_matches_autograd(hp):
    """The scan's BPTT equals autograd through the plain per-frame loop (float64)."""
    m = _model("fastgrnn", hp, seed=10, dtype=torch.float64)
    x = torch.randn(5, 17, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(11),
                    requires_grad=True)
    target = torch.randn(5, 17, dtype=torch.float64, generator=torch.Generator().manual_seed(12))
    params = [x] + list(m.parameters())
    fast = m.forward_all(x)
    slow = m._run_autograd(x)
    assert torch.allclose(fast, slow, atol=1e-12, rtol=0)
    g_fast = torch.autograd.grad(((fast - target) ** 2).sum(), params)
    g_slow = torch.autograd.grad(((slow - target) ** 2).sum(), params)
    for (name, _), a, b in zip([("x", None)] + list(m.named_parameters()), g_fast, g_slow):
        assert torch.allclose(a, b, atol=1e-10, rtol=1e-9), name
        assert a.abs().max() > 0, name
    # input gradient alone (frozen model, as in the adversarial search of DROCC)
    for p in m.parameters():
        p.requires_grad_(False)
    (gx,) = torch.autograd.grad(m(x).sum(), [x])
    (gx_slow,) = torch.autograd.grad(m._run_autograd(x)[:, -1].sum(), [x])
    assert torch.allclose(gx, gx_slow, atol=1e-10, rtol=1e-9)


def test_fastgrnn_scan_gradcheck():
    from kws.models.fastgrnn import _FastGRNNScan

    g = torch.Generator().manual_seed(13)
    for pwl in (False, True):
        args = [torch.randn(2, 4, 3, dtype=torch.float64, generator=g) * 0.7,
                torch.randn(3, 3, dtype=torch.float64, generator=g) * 0.5,
                torch.randn(3, dtype=torch.float64, generator=g) * 0.3,
                torch.randn(3, dtype=torch.float64, generator=g) * 0.3,
                torch.tensor([0.6], dtype=torch.float64), torch.tensor([0.1], dtype=torch.float64)]
        args = [a.requires_grad_() for a in args]
        assert torch.autograd.gradcheck(lambda *a: _FastGRNNScan.apply(*a, pwl, True), args, eps=1e-6, atol=1e-6)
