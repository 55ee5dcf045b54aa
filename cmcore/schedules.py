"""Time discretisations, step-count curricula, target-EMA rates and time sampling.

All formulas map one to one onto the papers:
- ``karras_times``: Karras et al. (2022) ρ-spacing of t_1..t_n in [t_min, 1], with t_0 = 0.
- ``sqrt_curriculum``: Song et al. (2023), N(k) = ⌈√(k/K·((s1+1)² − s0²) + s0²) − 1⌉ + 1 points,
  target EMA μ(k) = exp(s0·ln μ0 / N(k)).
- ``doubling_curriculum``: Song & Dhariwal (2023, improved CT), n = min(s0·2^⌊k/K'⌋, s1)
  intervals, K' = ⌊K / (⌊log2(s1/s0)⌋ + 1)⌋.
- ``ect_curriculum``: ours, after Geng et al. (2024, ECT), in continuous time: t is drawn
  log-normally and r = t·(1 − 1/n). For a warm-up fraction of the run n = 1, so r = 0 and the
  target is x0 itself (plain denoising, which learns in minutes, like ECT's start from a
  diffusion model); then n doubles from s0 to s1, every stage getting equal time, so the
  target moves towards t gradually instead of racing to a fine grid.
- ``ect_smooth_curriculum``: the same without jumps: n grows geometrically and continuously.
- ``lognormal_k_probs``: improved CT's choice of k, p(k) ∝ Φ(ln σ_k) − Φ(ln σ_{k−1}) for
  ln σ ~ N(P_mean, P_std²); with ReFlow time, σ = t / (1 − t).
"""
from __future__ import annotations

import math

import torch


def uniform_times(n: int) -> torch.Tensor:
    """0 = t_0 < t_1 < ... < t_n = 1, evenly spaced."""
    return torch.linspace(0.0, 1.0, n + 1, dtype=torch.float64)


def karras_times(n: int, t_min: float = 0.002, t_max: float = 1.0, rho: float = 7.0) -> torch.Tensor:
    """t_0 = 0 and t_i = (t_min^(1/ρ) + (i−1)/(n−1)·(t_max^(1/ρ) − t_min^(1/ρ)))^ρ for i = 1..n."""
    if n == 1:
        return torch.tensor([0.0, t_max], dtype=torch.float64)
    i = torch.arange(n, dtype=torch.float64)
    lo, hi = t_min ** (1 / rho), t_max ** (1 / rho)
    ts = (lo + i / (n - 1) * (hi - lo)) ** rho
    return torch.cat([torch.zeros(1, dtype=torch.float64), ts])


def make_times(n: int, spacing: str, t_min: float = 0.002, rho: float = 7.0) -> torch.Tensor:
    return karras_times(n, t_min, 1.0, rho) if spacing == "karras" else uniform_times(n)


def sqrt_curriculum(k: float, K: int, s0: int, s1: int) -> int:
    """Number of intervals n = N(k) − 1 of the original CT schedule."""
    N = math.ceil(math.sqrt(k / K * ((s1 + 1) ** 2 - s0**2) + s0**2) - 1) + 1
    return max(1, N - 1)


def sqrt_target_ema(k: float, K: int, s0: int, s1: int, mu0: float) -> float:
    """μ(k) = exp(s0·ln μ0 / N(k)) of the original CT schedule."""
    N = sqrt_curriculum(k, K, s0, s1) + 1
    return math.exp(s0 * math.log(mu0) / N)


def doubling_curriculum(k: float, K: int, s0: int, s1: int) -> int:
    K_prime = max(1, math.floor(K / (math.floor(math.log2(s1 / s0)) + 1)))
    return min(s0 * 2 ** math.floor(k / K_prime), s1)


def ect_curriculum(k: float, K: int, s0: int, s1: int, warmup_fraction: float) -> int:
    warm = warmup_fraction * K
    if k < warm:
        return 1
    stages = math.floor(math.log2(s1 / s0)) + 1
    stage = math.floor((k - warm) / max(1e-9, K - warm) * stages)
    return min(s0 * 2 ** min(stage, stages - 1), s1)


def ect_smooth_curriculum(k: float, K: int, s0: int, s1: int, warmup_fraction: float) -> float:
    """`ect_curriculum` without the jumps: after the warm-up n grows geometrically and continuously,
    from 1 (joining the warm-up's n = 1) or, with no warm-up, from s0, to s1 at the end of the run."""
    warm = warmup_fraction * K
    if k < warm:
        return 1.0
    start = 1.0 if warm > 0 else float(s0)
    p = min(1.0, (k - warm) / max(1e-9, K - warm))
    return start * (s1 / start) ** p


def lognormal_k_probs(times: torch.Tensor, p_mean: float, p_std: float) -> torch.Tensor:
    """Probability of each k = 1..n given the grid t_0..t_n."""
    t = times.double()
    log_sigma = torch.log(t / (1 - t))  # -inf at t = 0, +inf at t = 1: the CDF handles both
    cdf = torch.special.ndtr((log_sigma - p_mean) / p_std)
    p = (cdf[1:] - cdf[:-1]).clamp_min(0)
    return p / p.sum() if p.sum() > 0 else torch.full_like(p, 1 / len(p))


CONTINUOUS_CURRICULA = ("ect", "ect_smooth")  # r from t and n (`pair_gap`) with t drawn freely, not a grid


def continuous_r(t: torch.Tensor, n: float, gap: str) -> torch.Tensor:
    """The partner time r < t of a continuous curriculum with n steps.

    ``relative``: r = t·(1 − 1/n), as in ECT; from t = 1 down to t_min a chain then has
    ln(1/t_min)/ln(n/(n−1)) links (~400 for n = 64, t_min = 0.002).
    ``absolute``: r = max(0, t − 1/n), the gaps of a uniform grid: n links from t = 1 to 0, so the
    boundary condition reaches the one-step map through n links instead of hundreds; but λ = 1/(t − r)
    is then the constant n where r > 0, small times stop counting, and CD came out grainy at every
    step count (README, "CD, third round"), so relative is the default.
    """
    if gap == "absolute":
        return (t - 1 / n).clamp_min(0.0)
    return t * (1 - 1 / n)


class TimePairs:
    """Draws (t_k, t_{k-1}) pairs for consistency losses from the configured curriculum."""

    def __init__(self, config):
        self.c = config

    def n(self, k: float, K: int) -> float:
        c = self.c
        if c.curriculum == "sqrt":
            return sqrt_curriculum(k, K, c.s0, c.s1)
        if c.curriculum == "doubling":
            return doubling_curriculum(k, K, c.s0, c.s1)
        if c.curriculum in CONTINUOUS_CURRICULA:
            # A distilled student starts from the teacher, which already is a good denoiser.
            warmup = c.warmup_fraction if c.method == "ct" else 0.0
            schedule = ect_curriculum if c.curriculum == "ect" else ect_smooth_curriculum
            return schedule(k, K, c.s0, c.s1, warmup)
        return c.s1  # constant

    def target_ema(self, k: float, K: int) -> float:
        c = self.c
        if c.curriculum == "sqrt":
            return sqrt_target_ema(k, K, c.s0, c.s1, c.mu0)
        return c.target_ema

    def times(self, n: int) -> torch.Tensor:
        return make_times(n, self.c.spacing, self.c.t_min, self.c.rho)

    def sample(self, n: float, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(t, r) of shape [batch]: t = t_k, r = t_{k-1}, k drawn per sample."""
        if self.c.curriculum in CONTINUOUS_CURRICULA:
            t = sample_t(batch, self.c.k_sampling, self.c.p_mean, self.c.p_std, self.c.t_min, generator)
            return t, continuous_r(t, n, self.c.pair_gap)
        times = self.times(n)
        if self.c.k_sampling == "lognormal":
            probs = lognormal_k_probs(times, self.c.p_mean, self.c.p_std)
        else:
            probs = torch.full((n,), 1.0 / n, dtype=torch.float64)
        k = torch.multinomial(probs, batch, replacement=True, generator=generator) + 1
        return times[k].float(), times[k - 1].float()


def sample_t(batch: int, kind: str, p_mean: float, p_std: float, t_min: float, generator: torch.Generator) -> torch.Tensor:
    """Continuous times in [t_min, 1]: log(t/(1−t)) ~ N(p_mean, p_std²), or uniform."""
    if kind == "lognormal":
        t = torch.sigmoid(p_mean + p_std * torch.randn(batch, generator=generator))
    else:
        t = torch.rand(batch, generator=generator)
    return t.clamp(t_min, 1.0)


def loss_weight(t: torch.Tensor, r: torch.Tensor, weighting: str) -> torch.Tensor:
    """λ(t_k) = 1/(t_k − t_{k−1}) (improved CT) or 1."""
    if weighting == "inverse_dt":
        return 1.0 / (t - r)
    return torch.ones_like(t)


def ema_warmup(decay: float, step: int) -> float:
    """The evaluation EMA rate, warmed up so that the average is not dominated by the init."""
    return min(decay, (1 + step) / (10 + step))


def lr_factor(step: int, warmup_steps: int, fraction: float, min_ratio: float) -> float:
    """Linear warm-up over the first steps, times a cosine decay to min_ratio over the run."""
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, fraction))))
    return warm * (min_ratio + (1 - min_ratio) * cosine)
