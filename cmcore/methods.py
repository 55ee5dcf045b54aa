"""Training objectives, one small class each (after EDM's training/loss.py).

Each `__call__` returns the per-sample loss for a batch of clean images x0 and noise x1; `labels` (one class
index per image) conditions every network pass, the teacher's too, for a class-conditional run (None: none).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .precond import ConsistencyFunction, noise
from .schedules import loss_weight


def distance(a: torch.Tensor, b: torch.Tensor, kind: str, huber_c: float) -> torch.Tensor:
    """Per-sample d(a, b): pseudo-Huber √(‖a−b‖² + c²) − c over the whole image (improved CT:
    quadratic for tiny errors, linear, so robust to outliers, for large ones), or `l1_fine`."""
    if kind == "l1_fine":
        return fine_l1(a - b)
    diff = (a - b).flatten(1).float()
    return (diff.square().sum(1) + huber_c * huber_c).sqrt() - huber_c


def fine_l1(diff: torch.Tensor) -> torch.Tensor:
    """Per-sample mean |Δ| + mean |Δ − up(avgpool₂(Δ))|: the second term is the part of the difference
    that varies within 2 × 2 pixels, zero for smooth errors and ~0.87·|Δ| for white ones, so pixel-level
    grain costs about twice what a smooth error of the same size does (the grain of one-step CD samples,
    docs/measurements.md). Odd sizes use L1 alone."""
    diff = diff.float()
    base = diff.flatten(1).abs().mean(1)
    if diff.dim() != 4 or diff.shape[-1] % 2 or diff.shape[-2] % 2:
        return base
    coarse = F.interpolate(F.avg_pool2d(diff, 2), scale_factor=2, mode="nearest")
    return base + (diff - coarse).flatten(1).abs().mean(1)


class FlowLoss:
    """ReFlow teacher: ‖v_θ(x_t, t) − (x1 − x0)‖², t ~ U[0, 1]."""

    def __call__(self, model: ConsistencyFunction, x0, x1, t, labels=None) -> torch.Tensor:
        v = _velocity(model, noise(x0, x1, t), t, labels)
        return (v.float() - (x1 - x0).float()).flatten(1).square().mean(1)


class ConsistencyTrainingLoss:
    """CT: λ(t, r)·d(f_θ(x_t, t), f_θ⁻(x_r, r)), both points from the same (x0, x1); θ⁻ is θ
    with the gradient stopped."""

    def __init__(self, distance: str, huber_c: float):
        self.distance, self.huber_c = distance, huber_c

    def target_input(self, x0, x1, t, r, labels=None) -> torch.Tensor:
        return noise(x0, x1, r)

    def __call__(self, model, x0, x1, t, r, n: int = 2, labels=None) -> torch.Tensor:
        """`n`: the curriculum's step count. With n = 1 every r is 0, where f(·, 0) is the identity, so
        the target is its input itself and the network pass for it is skipped (the same numbers, less work)."""
        rng = SameDropout(model, x0.device)
        pred = _f(model, noise(x0, x1, t), t, labels)
        with torch.no_grad():
            target = self.target_input(x0, x1, t, r, labels)
            if n > 1:
                rng.replay()
                target = _f(model, target, r, labels)
        return loss_weight(t, r) * distance(pred, target, self.distance, self.huber_c)


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
    """CD: the target point is one teacher ODE step (Heun on v_φ) from x_t down to r."""

    def __init__(self, teacher: ConsistencyFunction, distance: str, huber_c: float):
        super().__init__(distance, huber_c)
        self.teacher = teacher

    @torch.no_grad()
    def target_input(self, x0, x1, t, r, labels=None) -> torch.Tensor:
        return teacher_step(self.teacher, noise(x0, x1, t), t, r, labels)


@torch.no_grad()
def teacher_step(teacher: ConsistencyFunction, x: torch.Tensor, t: torch.Tensor, r: torch.Tensor,
                 labels: torch.Tensor | None = None) -> torch.Tensor:
    """One Heun step of dx/dt = v_φ(x, t) from t to r (r < t); an Euler step where r = 0."""
    dt = (r - t).reshape(-1, *([1] * (x.dim() - 1)))
    v = _velocity(teacher, x, t, labels)
    x_euler = x + dt * v
    v_next = _velocity(teacher, x_euler, r.clamp_min(1e-4), labels)
    x_heun = x + dt * 0.5 * (v + v_next)
    return torch.where((r > 0).reshape(dt.shape), x_heun, x_euler)


def _f(model, x, t, labels):
    # An unconditional pass is the call it always was: any model with f(x, t) trains as before.
    return model(x, t) if labels is None else model(x, t, labels)


def _velocity(model, x, t, labels):
    return model.velocity(x, t) if labels is None else model.velocity(x, t, labels)


class BatchLabels:
    """A loss of a class-conditional run, called as the unconditional one is (`loss(model, x0, x1, t[, r, n])`,
    also through DDP's Objective), with the labels of the batch drawn last (`labels`) passed on."""

    def __init__(self, loss):
        self.loss, self.labels = loss, None

    def __call__(self, model, *args) -> torch.Tensor:
        return self.loss(model, *args, labels=self.labels)
