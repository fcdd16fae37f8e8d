"""Training losses: plain BCE, DROCC, DROCC-OE and DROCC-LF (Goyal et al., ICML 2020).

All four share one shape: a cross-entropy term on real examples plus, for the DROCC family, `mu`
times the cross-entropy of labelling adversarially generated points x + h *negative*. The
adversarial points come from `adversarial_search`: start at h ~ N(0, I), take `steps` normalized
gradient-ascent steps on that negative-label loss and project h back onto the annulus
{r <= ||h|| <= gamma r} after every step. The search and both projections work on the whole batch
at once (no per-example Python loops).

Norms. DROCC and DROCC-OE use the Euclidean norm. DROCC-LF uses the paper's Mahalanobis norm
||h||_M^2 = sum_j w_j h_j^2 with w_j = 1 / sigma_j^2, where sigma_j is the mean input-gradient
magnitude |d f / d x_j| over the training positives (`input_gradient_sigma`), recomputed every
epoch. Our choices where the paper is silent (`lf_weights`):
  * sigma is divided by its mean and clamped below at `floor` (default 0.05) before inverting, so
    a coordinate the model ignores (sigma -> 0) gets a large but finite weight instead of an
    infinite one;
  * the weights are rescaled to mean 1, so a N(0, I) draw has the same expected squared norm (d)
    in both metrics and the same radius r means the same thing for DROCC-OE and DROCC-LF.
  EdgeML's reference code weights the constraint by the (normalized) gradient magnitude itself,
  w_j = sigma_j, instead of 1 / sigma_j^2; `metric="gradient"` selects that variant.

Projection (Proposition 1): the Euclidean-closest point h' to h with r <= ||h'||_M <= gamma r is
h' = h when h already lies in the annulus, else h'_j = h_j / (1 + lam w_j) with the scalar lam
solving ||h'||_M = r (lam in (-1 / max w, 0), h inside) or = gamma r (lam > 0, h outside).
||h'||_M is monotone in lam on that interval, so a vectorized safeguarded Newton iteration in
float64 finds lam; a final radial rescale removes the last rounding error so the constraint holds to float precision.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

METHODS = ("bce", "drocc", "drocc-oe", "drocc-lf")
Model = Callable[[torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------- norms and projections
def mahalanobis_norm(h: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """||h||_M per example: sqrt(sum_j w_j h_j^2) over all non-batch dimensions."""
    b = h.shape[0]
    flat = h.reshape(b, -1)
    w = weights.reshape(-1 if weights.numel() == flat.shape[1] else b, flat.shape[1])
    return torch.sqrt((w * flat ** 2).sum(dim=1))


def project_annulus_euclidean(h: torch.Tensor, radius: float, gamma: float) -> torch.Tensor:
    """Closest point to h (per example) with radius <= ||h||_2 <= gamma * radius: a radial rescale."""
    flat = h.reshape(h.shape[0], -1)
    norm = flat.norm(dim=1)
    # a zero h has no direction; give it a fixed one so the result is still on the sphere
    flat = torch.where((norm == 0)[:, None], torch.ones_like(flat), flat)
    norm = flat.norm(dim=1)
    scale = norm.clamp(radius, gamma * radius) / norm
    return (flat * scale[:, None]).reshape(h.shape)


def project_annulus_mahalanobis(h: torch.Tensor, weights: torch.Tensor, radius: float, gamma: float,
                                iters: int = 60) -> torch.Tensor:
    """Proposition 1, vectorized: the Euclidean-closest point h' to each h[i] with
    radius <= ||h'||_M <= gamma * radius, where ||v||_M^2 = sum_j weights_j v_j^2.

    `weights` is one positive vector shared by the batch (shape h.shape[1:] or [d]) or one per
    example ([B, d]). Points already inside the annulus are returned unchanged.
    """
    b = h.shape[0]
    x = h.reshape(b, -1).to(torch.float64)
    w = weights.reshape(-1 if weights.numel() == x.shape[1] else b, x.shape[1]).to(torch.float64)
    w = w.expand(b, -1)
    if not bool((w > 0).all()):
        raise ValueError("Mahalanobis weights must be positive (clamp sigma first)")
    zero = (x == 0).all(dim=1)
    x = torch.where(zero[:, None], torch.ones_like(x), x)
    n2 = (w * x * x).sum(dim=1)
    lo_r2, hi_r2 = radius ** 2, (gamma * radius) ** 2
    inner, outer = n2 < lo_r2, n2 > hi_r2
    target2 = torch.where(inner, torch.full_like(n2, lo_r2), torch.full_like(n2, hi_r2))
    w_max, w_min = w.max(dim=1).values, w.min(dim=1).values
    # Bracket for lam. g(lam) = sum w x^2 / (1 + lam w)^2 decreases on (-1/w_max, inf).
    # inside: g(0) < r^2 and g -> inf at -1/w_max; outside: g(0) > (gamma r)^2 and, since
    # 1 + lam w_j >= 1 + lam w_min, g(hi) <= g(0) / (1 + hi w_min)^2 = (gamma r)^2 at hi below.
    lo = torch.where(inner, -1.0 / w_max, torch.zeros_like(n2))
    hi = torch.where(inner, torch.zeros_like(n2), (torch.sqrt(n2 / hi_r2) - 1.0).clamp_min(0) / w_min)
    xx = w * x * x
    # Safeguarded Newton on psi(lam) = g^-1/2 - target^-1/2, which is nearly linear in lam (the
    # trust-region secular-equation trick); a step leaving the bracket falls back to bisection.
    lam = 0.5 * (lo + hi)
    inv_t = target2.rsqrt()
    for _ in range(iters):
        d = 1.0 + lam[:, None] * w
        g = (xx / d ** 2).sum(dim=1)
        dg = -2.0 * (xx * w / d ** 3).sum(dim=1)
        psi = g.rsqrt() - inv_t
        up = psi < 0  # ||h'||_M still too long: lam must grow
        lo = torch.where(up, lam, lo)
        hi = torch.where(up, hi, lam)
        step = psi / (-0.5 * g.pow(-1.5) * dg)
        new = lam - step
        bad = ~torch.isfinite(new) | (new <= lo) | (new >= hi)
        new = torch.where(bad, 0.5 * (lo + hi), new)
        done = (psi.abs() * target2.sqrt() < 1e-12) | (hi - lo <= 1e-15 * (1.0 + lam.abs()))
        lam = torch.where(done, lam, new)
        if bool(done.all()):
            break
    lam = torch.where(inner | outer, lam, torch.zeros_like(n2))
    out = x / (1.0 + lam[:, None] * w)
    # remove the bisection's last rounding error (and cover the degenerate case where h has no
    # component along the largest weight, where g stays bounded) with an exact radial rescale
    n = torch.sqrt((w * out * out).sum(dim=1))
    scale = torch.where(inner | outer, torch.sqrt(target2) / n, torch.ones_like(n))
    out = out * scale[:, None]
    return out.reshape(h.shape).to(h.dtype)


# ---------------------------------------------------------------- DROCC-LF feature weights
def input_gradient_sigma(model: Model, x_pos: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """sigma_j = mean over the given positives of |d f(x) / d x_j| (f = the logit), shape x.shape[1:]."""
    total = torch.zeros(x_pos.shape[1:], dtype=torch.float32)
    for start in range(0, x_pos.shape[0], batch_size):
        xb = x_pos[start:start + batch_size].detach().clone().requires_grad_(True)
        logits = model(xb)
        (grad,) = torch.autograd.grad(logits.sum(), xb)
        total += grad.abs().sum(dim=0)
    return total / max(1, x_pos.shape[0])


def lf_weights(sigma: torch.Tensor, metric: str = "paper", floor: float = 0.05) -> torch.Tensor:
    """Per-coordinate weights w_j of the DROCC-LF norm ||h||_M^2 = sum_j w_j h_j^2, mean 1.

    metric="paper": w = 1 / s^2 (the paper's sum_j h_j^2 / sigma_j^2); "gradient": w = s (EdgeML's
    code). s = sigma / mean(sigma) clamped below at `floor`, so sigma_j -> 0 gives a finite weight.
    """
    mean = sigma.mean()
    s = sigma / mean if float(mean) > 0 else torch.ones_like(sigma)
    s = s.clamp_min(floor)
    if metric == "paper":
        w = 1.0 / s ** 2
    elif metric == "gradient":
        w = s
    else:
        raise ValueError(f"unknown DROCC-LF metric {metric!r} (use 'paper' or 'gradient')")
    return w / w.mean()


# ---------------------------------------------------------------- adversarial search
def adversarial_search(model: Model, x: torch.Tensor, radius: float, gamma: float, steps: int,
                       step_size: float, weights: torch.Tensor | None = None,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Offsets h (detached, same shape as x) that make x + h look most *positive* to the model
    while staying in the annulus (Euclidean, or Mahalanobis with `weights`).

    Start h ~ N(0, I); each step moves h by `step_size` along the normalized gradient of the loss
    of labelling x + h negative (i.e. towards higher logits), then projects onto the annulus.
    """
    def project(v: torch.Tensor) -> torch.Tensor:
        if weights is None:
            return project_annulus_euclidean(v, radius, gamma)
        return project_annulus_mahalanobis(v, weights, radius, gamma)

    x = x.detach()
    h = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    h = project(h)
    zeros = torch.zeros(x.shape[0], dtype=x.dtype)
    for _ in range(steps):
        h.requires_grad_(True)
        # summed, not averaged, so each example's step does not depend on the batch size
        loss = F.binary_cross_entropy_with_logits(model(x + h), zeros, reduction="sum")
        (grad,) = torch.autograd.grad(loss, h)
        with torch.no_grad():
            norm = grad.reshape(grad.shape[0], -1).norm(dim=1).clamp_min(1e-12)
            h = h + step_size * grad / norm.view(-1, *[1] * (grad.dim() - 1))
            h = project(h)
    return h.detach()


# ---------------------------------------------------------------- the per-batch objectives
def method_loss(method: str, model: Model, x: torch.Tensor, y: torch.Tensor, *, adversarial: bool,
                radius: float, gamma: float, mu: float, steps: int, step_size: float,
                weights: torch.Tensor | None = None, generator: torch.Generator | None = None,
                logits: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The training loss of one batch (x [B, ...], y [B] in {0, 1}) for `method`; `logits`: the
    model's logits of x when the caller needs them too (computed here otherwise).

    bce: mean CE on the batch. drocc: CE on the positives only (+ mu * adversarial term).
    drocc-oe / drocc-lf: CE on positives and negatives + mu * adversarial term, Euclidean resp.
    Mahalanobis (`weights` required). `adversarial=False` is the CE-only warm-up.
    Returns (loss, {"ce": ..., "adv": ...}).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    y = y.to(x.dtype)
    pos = y > 0.5
    if method == "drocc":
        x, y = x[pos], y[pos]
        logits = None if logits is None else logits[pos]
        pos = pos[pos]
    if x.shape[0] == 0:
        zero = torch.zeros((), requires_grad=True)
        return zero, {"ce": 0.0, "adv": 0.0}
    ce = F.binary_cross_entropy_with_logits(model(x) if logits is None else logits, y)
    loss, adv_value = ce, 0.0
    if adversarial and method != "bce" and bool(pos.any()):
        if method == "drocc-lf" and weights is None:
            raise ValueError("drocc-lf needs the feature weights (lf_weights of input_gradient_sigma)")
        x_pos = x[pos]
        h = adversarial_search(model, x_pos, radius, gamma, steps, step_size,
                               weights=weights if method == "drocc-lf" else None, generator=generator)
        adv = F.binary_cross_entropy_with_logits(model(x_pos + h), torch.zeros(x_pos.shape[0]))
        loss = ce + mu * adv
        adv_value = float(adv.detach())
    return loss, {"ce": float(ce.detach()), "adv": adv_value}


# ---------------------------------------------------------------- feature distillation
def distill_loss(student: torch.Tensor, teacher: torch.Tensor, ridge: float = 1e-3) -> torch.Tensor:
    """The fraction of the teacher's variance that the student's states do NOT explain linearly:
    student [M, H], teacher [M, D] (rows = moments of clips) -> scalar in [0, 1].

    The best linear map (ridge regression, fitted in closed form on the batch) replaces a learned
    projection head: nothing extra to train, checkpoint or ship, and the loss cannot be lowered by
    merely scaling the states. Gradients flow through the solve into the student."""
    s = (student - student.mean(0)).to(torch.float64)
    t = (teacher - teacher.mean(0)).to(torch.float64)
    gram = s.T @ s
    reg = ridge * (gram.diagonal().mean() + 1e-12) * torch.eye(s.shape[1], dtype=s.dtype)
    w = torch.linalg.solve(gram + reg, s.T @ t)
    resid = t - s @ w
    return ((resid ** 2).sum() / (t ** 2).sum().clamp_min(1e-12)).to(student.dtype)


def logit_distill_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL divergence from the teacher's keyword probability to the student's, both at `temperature`
    (logits [B] -> scalar >= 0, 0 when the logits agree), times T^2 so that the gradient's scale does
    not depend on T (Hinton et al. 2015). The teacher is a constant: no gradient reaches it."""
    t = float(temperature)
    p = torch.sigmoid(teacher.detach() / t)
    entropy = F.binary_cross_entropy(p, p, reduction="none")  # the floor of the cross-entropy
    ce = F.binary_cross_entropy_with_logits(student / t, p, reduction="none")
    return (ce - entropy).mean() * t * t
