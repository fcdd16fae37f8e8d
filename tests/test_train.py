"""Trainers: the DROCC-family losses on random tensors, Proposition 1's projection against a
per-example reference, learning a separable toy problem with every method, resume equivalence."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import brentq

from kws.errors import KwsError
from kws.train import losses as L
from kws.train.trainer import CHECKPOINT, STATE, Arrays, TrainHparams, fit, predict_scores


class TinyNet(torch.nn.Module):
    """x [B, T, F] -> logit [B]: a small MLP on the flattened window (fast, smooth)."""

    def __init__(self, t: int, f: int, hidden: int = 16) -> None:
        super().__init__()
        self.l1 = torch.nn.Linear(t * f, hidden)
        self.l2 = torch.nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2(torch.tanh(self.l1(x.flatten(1)))).squeeze(1)


def reference_projection(h: np.ndarray, w: np.ndarray, r: float, gamma: float) -> np.ndarray:
    """Proposition 1 for one example with scipy's brentq on the secular equation."""
    n = np.sqrt((w * h ** 2).sum())
    if r <= n <= gamma * r:
        return h.copy()
    target = r if n < r else gamma * r
    f = lambda lam: np.sqrt((w * h ** 2 / (1 + lam * w) ** 2).sum()) - target  # noqa: E731
    lo, hi = ((-1 / w.max()) * (1 - 1e-14), 0.0) if n < r else (0.0, 1e8)
    lam = brentq(f, lo, hi, xtol=1e-300, rtol=1e-15, maxiter=1000)
    return h / (1 + lam * w)


# ---------------------------------------------------------------- projections
def test_mahalanobis_projection_matches_per_example_reference_and_lands_in_annulus():
    g = torch.Generator().manual_seed(0)
    d, r, gamma = 6 * 5, 3.0, 2.0
    w = L.lf_weights(torch.rand(6, 5, generator=g) ** 4)  # very uneven weights, clamped
    scale = torch.tensor([0.05, 0.3, 0.6, 1.0, 1.5, 3.0, 8.0, 30.0]).repeat(4)[:, None, None]
    h = torch.randn(len(scale), 6, 5, generator=g) * scale
    p = L.project_annulus_mahalanobis(h, w, r, gamma)
    ref = np.stack([reference_projection(hi.reshape(-1), w.double().numpy().reshape(-1), r, gamma)
                    for hi in h.double().numpy()])
    np.testing.assert_allclose(p.reshape(len(h), d).double().numpy(), ref, rtol=1e-5, atol=1e-6)
    norms = L.mahalanobis_norm(p.double(), w.double())
    assert bool(((norms >= r * (1 - 1e-6)) & (norms <= gamma * r * (1 + 1e-6))).all())
    before = L.mahalanobis_norm(h, w)
    inside = (before >= r) & (before <= gamma * r)
    assert inside.any() and (~inside).any()
    assert torch.equal(p[inside], h[inside])  # already feasible: untouched
    # pushed out onto r, pulled in onto gamma r exactly
    np.testing.assert_allclose(norms[before < r].numpy(), r, rtol=1e-6)  # float32 in, float32 out
    np.testing.assert_allclose(norms[before > gamma * r].numpy(), gamma * r, rtol=1e-6)
    n64 = L.mahalanobis_norm(L.project_annulus_mahalanobis(h.double(), w.double(), r, gamma), w.double())
    np.testing.assert_allclose(n64[before < r].numpy(), r, rtol=1e-12)  # exact in float64
    np.testing.assert_allclose(n64[before > gamma * r].numpy(), gamma * r, rtol=1e-12)


def test_mahalanobis_projection_is_the_closest_feasible_point():
    g = torch.Generator().manual_seed(1)
    w = L.lf_weights(torch.rand(20, generator=g) + 0.05).double()
    h = (torch.randn(6, 20, generator=g) * torch.tensor([0.1, 0.2, 0.5, 5, 10, 20])[:, None]).double()
    p = L.project_annulus_mahalanobis(h, w, 2.0, 2.0)
    for i in range(len(h)):
        best = float((p[i] - h[i]).norm())
        # random feasible points near the solution (rescaled onto the same M-sphere) are never closer
        cand = p[i] + 0.05 * torch.randn(500, 20, generator=g).double()
        target = float(L.mahalanobis_norm(p[i:i + 1], w))
        cand = cand * (target / L.mahalanobis_norm(cand, w))[:, None]
        assert float((cand - h[i]).norm(dim=1).min()) >= best - 1e-9


def test_zero_and_degenerate_offsets_still_reach_the_annulus():
    w = torch.tensor([1.0, 1.0, 4.0, 4.0])
    h = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1e-3, 0.0, 0.0, 0.0]])  # no component on the max weight
    p = L.project_annulus_mahalanobis(h, w / w.mean(), 1.0, 2.0)
    n = L.mahalanobis_norm(p, w / w.mean())
    assert torch.isfinite(p).all() and bool(((n >= 1 - 1e-6) & (n <= 2 + 1e-6)).all())
    assert abs(float(n[1]) - 1.0) < 1e-5  # pushed out along its only direction
    e = L.project_annulus_euclidean(torch.stack([torch.zeros(3), torch.ones(3) * 10]), 1.0, 2.0)
    assert torch.allclose(e.norm(dim=1), torch.tensor([3 ** 0.5, 2.0]))  # zero -> a fixed direction


def test_euclidean_projection_is_radial_clamp():
    g = torch.Generator().manual_seed(2)
    h = torch.randn(50, 7, 3, generator=g) * torch.linspace(0.01, 5, 50)[:, None, None]
    p = L.project_annulus_euclidean(h, 2.0, 1.5)
    n = p.flatten(1).norm(dim=1)
    assert bool(((n > 2.0 - 1e-5) & (n < 3.0 + 1e-5)).all())
    cos = F.cosine_similarity(p.flatten(1), h.flatten(1), dim=1)
    assert torch.allclose(cos, torch.ones(50), atol=1e-5)


# ---------------------------------------------------------------- feature weights
def test_input_gradient_sigma_of_a_linear_model_is_its_weight_magnitude():
    lin = torch.nn.Linear(12, 1)
    model = lambda x: lin(x.flatten(1)).squeeze(1)  # noqa: E731
    x = torch.randn(9, 4, 3)
    sigma = L.input_gradient_sigma(model, x, batch_size=4)
    assert torch.allclose(sigma, lin.weight.detach().abs().reshape(4, 3), atol=1e-6)


def test_lf_weights_clamp_vanishing_sigma_and_have_mean_one():
    sigma = torch.tensor([0.0, 1e-9, 1.0, 2.0, 3.0])
    for metric in ("paper", "gradient"):
        w = L.lf_weights(sigma, metric=metric, floor=0.05)
        assert torch.isfinite(w).all() and bool((w > 0).all())
        assert abs(float(w.mean()) - 1) < 1e-6
    w = L.lf_weights(sigma, "paper", floor=0.05)
    assert w[0] == w[1] == w.max()  # both clamped to the floor: the largest, finite weight
    assert w[4] < w[3] < w[2]  # paper metric: influential coordinates weigh less
    assert L.lf_weights(sigma, "gradient")[4] > L.lf_weights(sigma, "gradient")[2]
    with pytest.raises(ValueError):
        L.lf_weights(sigma, "bogus")


# ---------------------------------------------------------------- adversarial search and losses
@pytest.mark.parametrize("lf", [False, True])
def test_adversarial_search_finds_points_with_higher_negative_loss(lf):
    torch.manual_seed(0)
    model = TinyNet(6, 4, 32)
    x = torch.randn(64, 6, 4)
    w = L.lf_weights(torch.rand(6, 4) + 0.1) if lf else None

    def neg_loss(h):
        with torch.no_grad():
            return F.binary_cross_entropy_with_logits(model(x + h), torch.zeros(len(x)), reduction="none")

    start = L.adversarial_search(model, x, 3.0, 2.0, 0, 1.0, weights=w, generator=torch.Generator().manual_seed(5))
    found = L.adversarial_search(model, x, 3.0, 2.0, 10, 1.0, weights=w, generator=torch.Generator().manual_seed(5))
    assert float(neg_loss(found).mean()) > float(neg_loss(start).mean()) + 0.05
    assert float((neg_loss(found) > neg_loss(start)).float().mean()) > 0.8
    n = L.mahalanobis_norm(found, w) if lf else found.flatten(1).norm(dim=1)
    assert bool(((n >= 3.0 - 1e-4) & (n <= 6.0 + 1e-4)).all())


def test_method_losses():
    torch.manual_seed(0)
    model = TinyNet(5, 3)
    x = torch.randn(16, 5, 3)
    y = torch.tensor([1, 0] * 8)
    kw = dict(radius=2.0, gamma=2.0, mu=1.0, steps=2, step_size=0.5)
    bce, parts = L.method_loss("bce", model, x, y, adversarial=True, **kw)
    assert torch.allclose(bce, F.binary_cross_entropy_with_logits(model(x), y.float()))
    assert parts["adv"] == 0.0
    # warm-up: CE only for every method
    warm, _ = L.method_loss("drocc-oe", model, x, y, adversarial=False, **kw)
    assert torch.allclose(warm, bce)
    # DROCC is one-class: the negatives do not enter its loss at all
    x2 = x.clone()
    x2[y == 0] = 100.0
    a, _ = L.method_loss("drocc", model, x, y, adversarial=True, generator=torch.Generator().manual_seed(1), **kw)
    b, _ = L.method_loss("drocc", model, x2, y, adversarial=True, generator=torch.Generator().manual_seed(1), **kw)
    assert torch.allclose(a, b)
    oe, parts = L.method_loss("drocc-oe", model, x, y, adversarial=True, generator=torch.Generator().manual_seed(1), **kw)
    assert parts["adv"] > 0 and torch.allclose(oe, bce + parts["adv"], atol=1e-6)
    with pytest.raises(ValueError):
        L.method_loss("drocc-lf", model, x, y, adversarial=True, **kw)  # needs the weights
    w = L.lf_weights(L.input_gradient_sigma(model, x[y == 1]))
    lf, parts = L.method_loss("drocc-lf", model, x, y, adversarial=True, weights=w, **kw)
    lf.backward()
    assert parts["adv"] > 0 and all(p.grad is not None for p in model.parameters())
    # the caller's logits of x (shared with distillation) give the same loss, for every method
    for method in L.METHODS:
        g = dict(generator=torch.Generator().manual_seed(2), weights=w)
        own, _ = L.method_loss(method, model, x, y, adversarial=True, **kw, **g)
        g = dict(generator=torch.Generator().manual_seed(2), weights=w)
        given, _ = L.method_loss(method, model, x, y, adversarial=True, logits=model(x), **kw, **g)
        assert torch.allclose(own, given), method
    shifted, _ = L.method_loss("bce", model, x, y, adversarial=False, logits=model(x) + 1.0, **kw)
    assert not torch.allclose(shifted, bce)  # the given logits are the ones used


# ---------------------------------------------------------------- training
def toy_split(n_pos: int, n_neg: int, seed: int, t: int = 4, f: int = 3) -> Arrays:
    """Positives: a tight cluster; negatives: broad, centred elsewhere (separable)."""
    rng = np.random.default_rng(seed)
    centre = np.linspace(-1, 1, t * f).reshape(t, f)
    pos = centre + 0.15 * rng.standard_normal((n_pos, t, f))
    neg = -centre + 1.0 * rng.standard_normal((n_neg, t, f))
    x = np.concatenate([pos, neg]).astype(np.float32)
    y = np.concatenate([np.ones(n_pos), np.zeros(n_neg)])
    kinds = np.array(["positive"] * n_pos + ["negative"] * n_neg)
    return Arrays(x, y, kinds)


TOY_HP = dict(epochs=6, batch_size=32, lr=1e-2, warmup_epochs=2, radius=1.5, gamma=2.0, ascent_steps=3,
              ascent_step_size=0.3, patience=0)


@pytest.mark.parametrize("method", ["bce", "drocc", "drocc-oe", "drocc-lf"])
def test_tiny_model_learns_separable_toy_problem(method, tmp_path):
    train, val = toy_split(120, 120, 0), toy_split(60, 60, 1)
    torch.manual_seed(0)
    model = TinyNet(4, 3)
    res = fit(model, train, val, method, TrainHparams(**TOY_HP), tmp_path / method, seed=0)
    s = predict_scores(res.model, val.x)
    from kws.metrics import auc

    assert auc(s[val.y == 1], s[val.y == 0]) > 0.97
    assert res.best["val_recall_3"] > 0.9
    assert len(res.history) == 6 and (tmp_path / method / "training_curve.png").stat().st_size > 1000
    if method != "bce":
        assert res.best_epoch > TOY_HP["warmup_epochs"]  # chosen among DROCC epochs
        assert all(h["adv"] > 0 for h in res.history[2:]) and all(h["adv"] == 0 for h in res.history[:2])


def test_spec_mask_masks_one_span_and_band_per_example():
    from kws.train.trainer import spec_mask

    x = torch.ones(64, 20, 8)
    y = spec_mask(x, 5, 3, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and torch.equal(spec_mask(x, 0, 0, torch.Generator()), x)
    for i in range(64):
        zero_t = (y[i] == 0).all(dim=1)  # frames masked across every coefficient
        zero_f = (y[i] == 0).all(dim=0)
        for z, width in ((zero_t, 5), (zero_f, 3)):
            idx = torch.nonzero(z).ravel()
            assert len(idx) <= width and (len(idx) == 0 or idx[-1] - idx[0] + 1 == len(idx))  # one span
    widths = {int((y[i] == 0).all(dim=1).sum()) for i in range(64)}
    assert widths == set(range(6))  # 0..time_mask frames
    with pytest.raises(ValueError, match="time_mask"):
        TrainHparams(time_mask=-1)
    with pytest.raises(ValueError, match="ema"):
        TrainHparams(ema=1.0)


def test_weight_average_is_what_is_validated_and_returned(tmp_path):
    train, val = toy_split(120, 120, 0), toy_split(60, 60, 1)
    torch.manual_seed(0)
    model = TinyNet(4, 3)
    first = {k: v.clone() for k, v in model.state_dict().items()}
    res = fit(model, train, val, "bce", TrainHparams(**dict(TOY_HP, ema=0.9, epochs=3)), tmp_path, seed=0)
    from kws.train.trainer import _load_checkpoint

    groups, state = _load_checkpoint(tmp_path / CHECKPOINT)
    raw, ema = groups["model"], groups["ema"]
    assert set(ema) == set(first) and any(not torch.equal(raw[k], ema[k]) for k in raw)
    # the returned model holds averaged weights (the best epoch's average), not the last raw ones
    got = res.model.state_dict()
    assert any(not torch.equal(got[k], raw[k]) for k in raw)
    if res.best_epoch == 3:
        assert all(torch.equal(got[k], ema[k]) for k in ema)
    assert res.best["val_recall_3"] > 0.8


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    train, val = toy_split(64, 64, 3), toy_split(40, 40, 4)
    # masking comes from the epoch's seed and the weight average is checkpointed, so a resumed
    # run is identical
    hp = dict(TOY_HP, warmup_epochs=1, select_after_warmup=False, time_mask=1, freq_mask=1, ema=0.9)

    def run(run_dir, epochs):
        torch.manual_seed(7)
        model = TinyNet(4, 3)
        return fit(model, train, val, "drocc-lf", TrainHparams(**dict(hp, epochs=epochs)), run_dir, seed=3)

    full = run(tmp_path / "full", 4)
    part = run(tmp_path / "part", 2)
    assert json.loads((tmp_path / "part" / STATE).read_text())["epoch"] == 2
    resumed = run(tmp_path / "part", 4)
    assert resumed.resumed_from == 2 and [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert [h["loss"] for h in full.history] == [h["loss"] for h in resumed.history]
    assert part.best_epoch <= 2
    # a finished run reruns instantly with the same result
    again = run(tmp_path / "part", 4)
    assert again.resumed_from == 4
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k])


def test_cosine_schedule_decays_the_rate_and_an_interrupted_run_resumes_identically(tmp_path, monkeypatch):
    from kws.train import trainer as T

    hp = TrainHparams(**dict(TOY_HP, lr_schedule="cosine", epochs=4))
    rates = [T.scheduled_lr(hp, t) for t in np.linspace(0, 1, 11)]
    assert rates[0] == pytest.approx(hp.lr) and rates[-1] == pytest.approx(T.COSINE_FLOOR * hp.lr)
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert T.scheduled_lr(TrainHparams(**TOY_HP), 0.9) == TOY_HP["lr"]
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainHparams(lr_schedule="step")
    train, val = toy_split(64, 64, 3), toy_split(40, 40, 4)

    def run(run_dir, schedule="cosine"):
        torch.manual_seed(7)
        return fit(TinyNet(4, 3), train, val, "bce", TrainHparams(**dict(TOY_HP, lr_schedule=schedule, epochs=4)),
                   run_dir, seed=3)

    full = run(tmp_path / "full")
    # the checkpoint's optimizer was last stepped at the last batch's scheduled (small) rate
    _, state = T._load_checkpoint(tmp_path / "full" / CHECKPOINT)
    n_batches = -(-len(train.y) // TOY_HP["batch_size"])
    last = T.scheduled_lr(hp, (3 + (n_batches - 1) / n_batches) / 4)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(last) and last < 0.1 * hp.lr
    constant = run(tmp_path / "constant", "constant")
    assert any(not torch.equal(v, constant.model.state_dict()[k]) for k, v in full.model.state_dict().items())

    saves = {"n": 0}
    real_save = T._save_checkpoint

    def save_then_stop(*args, **kwargs):
        real_save(*args, **kwargs)
        saves["n"] += 1
        if saves["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(T, "_save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "part")
    monkeypatch.setattr(T, "_save_checkpoint", real_save)
    resumed = run(tmp_path / "part")
    assert resumed.resumed_from == 2
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_resume_refuses_changed_settings_and_corrupt_checkpoints(tmp_path):
    train, val = toy_split(32, 32, 5), toy_split(20, 20, 6)
    torch.manual_seed(0)
    fit(TinyNet(4, 3), train, val, "bce", TrainHparams(**dict(TOY_HP, epochs=1)), tmp_path, seed=0)
    with pytest.raises(KwsError, match="different settings"):
        fit(TinyNet(4, 3), train, val, "bce", TrainHparams(**dict(TOY_HP, epochs=2, lr=0.5)), tmp_path, seed=0)
    (tmp_path / CHECKPOINT).write_bytes(b"garbage")
    with pytest.raises(KwsError, match="unreadable"):
        fit(TinyNet(4, 3), train, val, "bce", TrainHparams(**dict(TOY_HP, epochs=2)), tmp_path, seed=0)


def test_fastgrnn_sparse_training_keeps_the_asked_fraction(tmp_path):
    from kws.models import build_model

    train, val = toy_split(48, 48, 7, t=5, f=4), toy_split(30, 30, 8, t=5, f=4)
    torch.manual_seed(0)
    model = build_model("fastgrnn", 4, hidden=8)
    res = fit(model, train, val, "bce", TrainHparams(**dict(TOY_HP, epochs=3, sparsity=0.25)), tmp_path, seed=0)
    for name in ("W", "U"):
        p = dict(res.model.named_parameters())[name]
        assert int(torch.count_nonzero(p)) == round(0.25 * p.numel())


def test_default_fastgrnn_fits_in_8_kb_at_int8():
    from kws.models import build_model
    from kws.train.api import DEFAULT_HIDDEN

    model = build_model("fastgrnn", 32, hidden=DEFAULT_HIDDEN["fastgrnn"])
    assert model.cost()["int8_bytes"] <= 8 * 1024


def test_drocc_lf_search_differs_from_euclidean_when_the_projection_acts():
    torch.manual_seed(0)
    model = TinyNet(6, 4)
    x = torch.randn(16, 6, 4)
    sigma = torch.ones(6, 4)
    sigma[:, :2] = 0.05  # the model "ignores" half the coordinates
    w = L.lf_weights(sigma)
    # N(0, I) in d = 24 has norm ~4.9: outside [1, 2], so both searches project
    e = L.adversarial_search(model, x, 1.0, 2.0, 2, 0.3, generator=torch.Generator().manual_seed(3))
    m = L.adversarial_search(model, x, 1.0, 2.0, 2, 0.3, weights=w, generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(e, m)
    # the paper's metric makes ignored coordinates expensive: relative to the rest, LF offsets put
    # much less of their length there than Euclidean ones do
    def share(h):
        return float(h[..., :2].pow(2).sum() / h.pow(2).sum())

    assert share(m) < 0.5 * share(e)


def word_split(n: int, seed: int, t: int = 4, f: int = 3) -> Arrays:
    """Three 'words': clusters at different places of the window (y = word index)."""
    rng = np.random.default_rng(seed)
    centres = np.stack([np.roll(np.linspace(-1, 1, t * f), k * 4).reshape(t, f) for k in range(3)])
    y = np.arange(n) % 3
    x = (3 * centres[y] + 0.2 * rng.standard_normal((n, t, f))).astype(np.float32)
    return Arrays(x, y)


def test_word_task_trains_a_head_that_names_the_words_and_resumes(tmp_path):
    from kws.models import build_model
    from kws.train.trainer import _load_checkpoint

    train, val, words = toy_split(192, 192, 9), toy_split(30, 30, 10), word_split(90, 11)
    hp = dict(TOY_HP, epochs=5, lr=3e-2, warmup_epochs=1, word_task=1.0, time_mask=1)

    def run(run_dir, epochs, method="drocc-lf", **kw):
        torch.manual_seed(5)
        model = build_model("fastgrnn", 3, hidden=8)
        return fit(model, train, val, method, TrainHparams(**dict(hp, epochs=epochs, **kw)), run_dir,
                   seed=2, words=words)

    full = run(tmp_path / "full", 5)
    losses = [h["word"] for h in full.history]
    assert losses[-1] < 0.5 * losses[0]  # ln 3 = 1.1 at chance
    groups, _ = _load_checkpoint(tmp_path / "full" / CHECKPOINT)
    head = torch.nn.Linear(8, 3)
    head.load_state_dict(groups["aux"])  # the head is checkpointed, and is not part of the model
    assert not any(k.startswith("aux") or k.startswith("head.weight") and v.shape[0] == 3
                   for k, v in full.model.state_dict().items())
    with torch.no_grad():
        pred = head(full.model.hidden_states(torch.from_numpy(words.x))[:, -1]).argmax(1).numpy()
    assert (pred == words.y).mean() > 0.9
    assert full.best["val_recall_3"] > 0.9  # the keyword task is still learnt
    run(tmp_path / "part", 2)
    resumed = run(tmp_path / "part", 5)
    assert resumed.resumed_from == 2 and [h["word"] for h in resumed.history] == losses
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    # weight 0: the words are ignored and the run is the plain one
    torch.manual_seed(5)
    plain = fit(build_model("fastgrnn", 3, hidden=8), train, val, "bce",
                TrainHparams(**dict(hp, epochs=2, word_task=0.0)), tmp_path / "plain", seed=2)
    off = run(tmp_path / "off", 2, method="bce", word_task=0.0)
    for k, v in plain.model.state_dict().items():
        assert torch.equal(v, off.model.state_dict()[k]), k
    assert "word" not in off.history[0]
    with pytest.raises(KwsError, match="word-task clips"):
        fit(build_model("fastgrnn", 3, hidden=8), train, val, "bce", TrainHparams(**hp), tmp_path / "none")
    with pytest.raises(ValueError, match="word_task"):
        TrainHparams(word_task=-1)


def phone_split(n: int, seed: int, t: int = 12) -> Arrays:
    """Word clips made of phones: each clip says 2-3 of phones 1-3 (no repeats in a row), each phone
    a 3-frame one-hot segment over 3 features, then quiet frames; `phones` holds the sequence."""
    rng = np.random.default_rng(seed)
    x = 0.05 * rng.standard_normal((n, t, 3)).astype(np.float32)
    phones = np.zeros((n, 3), dtype=np.int64)
    for i in range(n):
        seq = [int(rng.integers(1, 4))]
        while len(seq) < int(rng.integers(2, 4)):
            seq.append(int(rng.choice([p for p in (1, 2, 3) if p != seq[-1]])))
        for k, p in enumerate(seq):
            x[i, 3 * k:3 * k + 3, p - 1] += 1.0
        phones[i, :len(seq)] = seq
    y = np.array([int("".join(map(str, r[r > 0]))) % 3 for r in phones])  # a word label as well
    return Arrays(x, y, phones=phones)


def test_phone_task_learns_to_spell_the_word_clips_frame_by_frame_and_resumes(tmp_path):
    from kws.models import build_model
    from kws.train.trainer import _load_checkpoint

    train, val, words = toy_split(96, 96, 9, t=12), toy_split(30, 30, 10, t=12), phone_split(120, 11)
    hp = dict(TOY_HP, epochs=30, lr=3e-2, warmup_epochs=1, phone_task=1.0, word_task=0.5)

    def run(run_dir, epochs, **kw):
        torch.manual_seed(5)
        model = build_model("fastgrnn", 3, hidden=16)
        return fit(model, train, val, "bce", TrainHparams(**dict(hp, epochs=epochs, **kw)), run_dir,
                   seed=2, words=words)

    full = run(tmp_path / "full", 30)
    losses = [h["phone"] for h in full.history]
    assert losses[-1] < 0.05 * losses[0]
    groups, _ = _load_checkpoint(tmp_path / "full" / CHECKPOINT)
    from kws.data.confusables import PHONES

    head = torch.nn.Linear(16, len(PHONES) + 1)
    head.load_state_dict({k[len("phone."):]: v for k, v in groups["aux"].items() if k.startswith("phone.")})
    assert {k for k in groups["aux"] if not k.startswith("phone.")} == {"weight", "bias"}  # the word head's
    last = build_model("fastgrnn", 3, hidden=16)
    last.load_state_dict(groups["model"])  # the weights the head was trained with (not the best epoch's)
    with torch.no_grad():  # greedy CTC decoding of the frame states spells most clips right
        best = head(last.hidden_states(torch.from_numpy(words.x))).argmax(-1).numpy()
    decoded = [[int(p) for j, p in enumerate(row) if p and (j == 0 or p != row[j - 1])] for row in best]
    right = [d == list(r[r > 0]) for d, r in zip(decoded, words.phones)]
    assert np.mean(right) > 0.8
    run(tmp_path / "part", 10)
    resumed = run(tmp_path / "part", 30)
    assert resumed.resumed_from == 10 and [h["phone"] for h in resumed.history] == losses
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    with pytest.raises(KwsError, match="phones"):
        fit(build_model("fastgrnn", 3, hidden=8), train, val, "bce", TrainHparams(**hp), tmp_path / "no",
            words=Arrays(words.x, words.y))
    with pytest.raises(ValueError, match="phone_task"):
        TrainHparams(phone_task=-1)


def test_phone_targets_spell_words_in_arpabet_ids():
    from kws.data.confusables import PHONES
    from kws.train.api import phone_targets

    ids = phone_targets(["right", "left", "right", "zorblax"])
    spelled = [[PHONES[i - 1] for i in row if i] for row in ids]
    assert spelled[:3] == [["R", "AY", "T"], ["L", "EH", "F", "T"], ["R", "AY", "T"]]
    assert ids.shape == (4, len(spelled[3])) and spelled[3][:2] == ["Z", "AO"]  # espeak-ng reads it


def test_mining_picks_the_pool_clips_the_model_scores_highest():
    from kws.train.api import mine_hard_negatives

    torch.manual_seed(0)
    model = TinyNet(4, 3)
    pool = toy_split(20, 20, 12)
    s = predict_scores(model, pool.x)
    rows = mine_hard_negatives(model, pool, 5)
    assert list(rows) == list(np.argsort(-s, kind="stable")[:5]) and s[rows[0]] == s.max()
    assert len(mine_hard_negatives(model, pool, 100)) == 40
    with pytest.raises(ValueError, match="mine"):
        TrainHparams(mine=-1)


def test_model_selection_uses_the_validation_real_negatives_when_there_are_enough():
    from kws.metrics import auc, recall_at_fpr
    from kws.train.api import mining_helped, mining_key
    from kws.train.trainer import REAL_SELECTION_MIN, selection_key, validation_metrics

    rng = np.random.default_rng(0)
    n_pos, n_synth, n_real = 100, 300, REAL_SELECTION_MIN
    scores = np.concatenate([rng.uniform(0.5, 1.0, n_pos), rng.uniform(0.0, 0.4, n_synth), rng.uniform(0.3, 0.9, n_real)])
    y = np.r_[np.ones(n_pos), np.zeros(n_synth + n_real)]
    real = np.r_[np.zeros(n_pos + n_synth, bool), np.ones(n_real, bool)]
    m = validation_metrics(scores, y, real)
    pos, real_neg = scores[:n_pos], scores[n_pos + n_synth:]
    assert m["val_real_recall_3"] == recall_at_fpr(pos, real_neg, 0.03)[0]
    assert m["val_real_auc"] == auc(pos, real_neg)
    assert m["val_real_auc"] < m["val_auc"]  # the real negatives are the hard ones here
    assert selection_key(m) == (m["val_real_recall_3"], m["val_real_auc"])
    # one real negative short: the whole split decides, as before
    few = validation_metrics(scores[:-1], y[:-1], real[:-1])
    assert "val_real_auc" not in few and selection_key(few) == (few["val_recall_3"], few["val_auc"])
    assert "val_real_auc" not in validation_metrics(scores, y)
    # the mined stage is judged by the same AUC when both stages have it
    first, mined = {"val_auc": 0.90, "val_real_auc": 0.99}, {"val_auc": 0.99, "val_real_auc": 0.95}
    assert mining_key(first, mined) == "val_real_auc" and not mining_helped(first, mined)
    assert mining_key(first, {"val_auc": 0.99}) == "val_auc" and mining_helped(first, {"val_auc": 0.99})
