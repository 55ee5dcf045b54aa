"""Training objectives, one small class each (after EDM's training/loss.py).

Each `__call__` returns the per-sample loss for a batch of clean images x0 and noise x1.
"""
from __future__ import annotations

import math

import torch

from .precond import ConsistencyFunction, noise
from .sampling import default_times, ode_heun
from .schedules import loss_weight


def distance(a: torch.Tensor, b: torch.Tensor, kind: str, huber_c: float = 0.0, fine_weight: float = 1.0) -> torch.Tensor:
    """Per-sample d(a, b): mean squared error, mean absolute error, L1 + fine detail or pseudo-Huber.

    ``l1_fine`` is L1 plus fine_weight times L1 of the difference's finest octave (`fine_l1`).
    Pseudo-Huber is √(‖a−b‖² + c²) − c over the whole image, c = 0.00054·√dim by default
    (improved CT): quadratic for tiny errors, linear (robust to outliers) for large ones.
    """
    if kind == "l1_fine":
        return fine_l1(a - b, fine_weight)
    diff = (a - b).flatten(1).float()
    if kind == "l2":
        return diff.square().mean(1)
    if kind == "l1":
        return diff.abs().mean(1)
    c = huber_c or 0.00054 * math.sqrt(diff.shape[1])
    return (diff.square().sum(1) + c * c).sqrt() - c


def fine_l1(diff: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """Per-sample mean |Δ| + weight·mean |Δ − up(avgpool₂(Δ))|: the second term is the part of the
    difference that varies within 2 × 2 pixels, zero for smooth errors and ~0.87·|Δ| for white ones, so
    with weight 1 pixel-level grain costs about twice what a smooth error of the same size does (the
    grain of one-step CD samples, README). Odd sizes use L1 alone."""
    diff = diff.float()
    base = diff.flatten(1).abs().mean(1)
    if diff.dim() != 4 or diff.shape[-1] % 2 or diff.shape[-2] % 2:
        return base
    coarse = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(diff, 2), scale_factor=2, mode="nearest")
    return base + weight * (diff - coarse).flatten(1).abs().mean(1)


class FlowLoss:
    """ReFlow teacher: w(t)·‖v_θ(x_t, t) − (x1 − x0)‖², t ~ U[0, 1]."""

    def __init__(self, weighting: str = "uniform"):
        self.weighting = weighting

    def __call__(self, model: ConsistencyFunction, x0, x1, t) -> torch.Tensor:
        v = model.velocity(noise(x0, x1, t), t)
        loss = (v.float() - (x1 - x0).float()).flatten(1).square().mean(1)
        if self.weighting == "lognormal":  # emphasise the middle times, as in SD3's logit-normal
            w = torch.exp(-0.5 * torch.logit(t.clamp(1e-4, 1 - 1e-4)) ** 2) / (t * (1 - t)).clamp_min(1e-4)
            loss = loss * w / w.mean()
        return loss


class ConsistencyTrainingLoss:
    """CT: λ(t_k)·d(f_θ(x_{t_k}, t_k), f_θ̄(x_{t_{k−1}}, t_{k−1})), both from the same (x0, x1)."""

    def __init__(self, distance: str = "pseudo_huber", weighting: str = "inverse_dt", huber_c: float = 0.0,
                 fine_weight: float = 1.0):
        self.distance, self.weighting, self.huber_c, self.fine_weight = distance, weighting, huber_c, fine_weight

    def target_input(self, x0, x1, t, r) -> torch.Tensor:
        return noise(x0, x1, r)

    def __call__(self, model, target_model, x0, x1, t, r, n: float = 1.0) -> torch.Tensor:
        """n: the curriculum's current step count (CT's weight needs only t and r; CD's anchors use it)."""
        rng = SameDropout(model, x0.device)
        pred = model(noise(x0, x1, t), t)
        with torch.no_grad():
            target_in = self.target_input(x0, x1, t, r)
            rng.replay()
            target = target_model(target_in, r)
        return loss_weight(t, r, self.weighting) * distance(pred, target, self.distance, self.huber_c, self.fine_weight)


class SameDropout:
    """Lets the target pass draw the prediction's dropout masks (as ECT does): with a stop-gradient
    copy of θ as the target, other masks would add the masks' noise to the target itself."""

    def __init__(self, model: torch.nn.Module, device: torch.device):
        self.active = any(isinstance(m, torch.nn.Dropout) and m.p > 0 and m.training for m in model.modules())
        if self.active:
            self.device = device
            self.cpu = torch.get_rng_state()
            self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def replay(self) -> None:
        """Rewind the random streams to where they were when this object was made."""
        if self.active:
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda, self.device)


class ConsistencyDistillationLoss(ConsistencyTrainingLoss):
    """CD: the target input is one teacher ODE step (Euler or Heun on v_φ) from x_{t_k} to t_{k−1}.

    With ``anchor = A`` the first A pairs of each batch are the top link of the chain taken whole:
    t = 1, r = 0, and the teacher's step is its ODE solved from x1 to 0 in ``anchor_steps`` Heun
    steps. By the boundary condition the target f(x_0, 0) is that solution itself, so these pairs
    pin f(x1, 1), the one-step sampler, to the teacher's trajectory directly instead of only through
    the n links below it. They are weighted as a pair at t = 1 of the current grid (λ = n).
    """

    def __init__(self, teacher: ConsistencyFunction, solver: str = "heun", anchor: int = 0, anchor_steps: int = 8,
                 **kwargs):
        super().__init__(**kwargs)
        self.teacher, self.solver = teacher, solver
        self.anchor, self.anchor_steps = anchor, anchor_steps

    def __call__(self, model, target_model, x0, x1, t, r, n: float = 1.0) -> torch.Tensor:
        a = min(self.anchor, len(t))
        if not a:
            return super().__call__(model, target_model, x0, x1, t, r)
        top = torch.arange(len(t), device=t.device) < a
        t, r = torch.where(top, 1.0, t), torch.where(top, 0.0, r)
        loss = super().__call__(model, target_model, x0, x1, t, r)
        return loss * torch.where(top, float(n), 1.0)  # λ(1, 0) = 1 → n, as a pair (1, 1 − 1/n)

    @torch.no_grad()
    def target_input(self, x0, x1, t, r) -> torch.Tensor:
        a = min(self.anchor, len(t))
        x = teacher_step(self.teacher, noise(x0[a:], x1[a:], t[a:]), t[a:], r[a:], self.solver)
        if a:  # at t = 1, x_t is x1 itself
            x = torch.cat([ode_heun(self.teacher, x1[:a], default_times(self.anchor_steps)), x])
        return x


@torch.no_grad()
def teacher_step(teacher: ConsistencyFunction, x: torch.Tensor, t: torch.Tensor, r: torch.Tensor, solver: str) -> torch.Tensor:
    """One step of dx/dt = v_φ(x, t) from t to r (r < t); Heun falls back to Euler where r = 0."""
    dt = (r - t).reshape(-1, *([1] * (x.dim() - 1)))
    v = teacher.velocity(x, t)
    x_euler = x + dt * v
    if solver == "euler":
        return x_euler
    v_next = teacher.velocity(x_euler, r.clamp_min(1e-4))
    x_heun = x + dt * 0.5 * (v + v_next)
    return torch.where((r > 0).reshape(dt.shape), x_heun, x_euler)
