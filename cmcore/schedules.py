"""The curriculum, time sampling, loss weight, EMA warm-up and learning-rate schedule.

- ``ect_curriculum``: after Geng et al. (2024, ECT), in continuous time. For a warm-up fraction
  of the run n = 1, so r = 0 and the target is x0 itself (plain denoising, which learns in
  minutes, like ECT's start from a diffusion model); then n doubles from s0 to s1, every stage
  getting equal time, so the target moves towards t gradually instead of racing to a fine grid.
- ``sample_t``: log-normal times, log(t / (1 − t)) ~ N(P_mean, P_std²) (improved CT's σ = t/(1 − t)).
- ``partner_time``: r = t·(1 − 1/n), ECT's gap relative to t: the pair (t, r) = (t_k, t_{k−1}).
- ``loss_weight``: λ = 1/(t − r) (improved CT).
"""
from __future__ import annotations

import math

import torch


def ect_curriculum(k: float, K: int, s0: int, s1: int, warmup_fraction: float) -> int:
    """The number of steps n at training step k of K."""
    warm = warmup_fraction * K
    if k < warm:
        return 1
    stages = math.floor(math.log2(s1 / s0)) + 1
    stage = math.floor((k - warm) / max(1e-9, K - warm) * stages)
    return min(s0 * 2 ** min(stage, stages - 1), s1)


def sample_t(batch: int, p_mean: float, p_std: float, t_min: float, generator: torch.Generator) -> torch.Tensor:
    """Times in [t_min, 1] with log(t/(1−t)) ~ N(p_mean, p_std²)."""
    t = torch.sigmoid(p_mean + p_std * torch.randn(batch, generator=generator))
    return t.clamp(t_min, 1.0)


def partner_time(t: torch.Tensor, n: float) -> torch.Tensor:
    """r = t·(1 − 1/n) < t; r = 0 when n = 1 (the target is then x0 itself)."""
    return t * (1 - 1 / n)


def loss_weight(t: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """λ(t, r) = 1/(t − r)."""
    return 1.0 / (t - r)


class TimePairs:
    """The curriculum's n at a point of the run, and (t, r) pairs drawn for it."""

    def __init__(self, config):
        self.c = config  # resolved: warmup_fraction is a number

    def n(self, k: float, K: int) -> int:
        return ect_curriculum(k, K, self.c.s0, self.c.s1, self.c.warmup_fraction)

    def sample(self, n: float, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(t, r) of shape [batch]."""
        t = sample_t(batch, self.c.p_mean, self.c.p_std, self.c.t_min, generator)
        return t, partner_time(t, n)


def ema_warmup(decay: float, step: int) -> float:
    """The evaluation EMA rate, warmed up so that the average is not dominated by the init."""
    return min(decay, (1 + step) / (10 + step))


def lr_factor(step: int, warmup_steps: int, fraction: float, min_ratio: float) -> float:
    """Linear warm-up over the first steps, times a cosine decay to min_ratio over the run."""
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, fraction))))
    return warm * (min_ratio + (1 - min_ratio) * cosine)
