"""Samplers: flat functions with one signature (after k-diffusion's sampling.py).

    sampler(model, x1, times, generator=None, callback=None) -> x0

`model` is a ConsistencyFunction (f and velocity), `x1` the starting noise at t = times[0],
`times` the descending evaluation times, `generator` a CPU torch.Generator for any fresh
noise (so the same seed gives the same images on every device), and `callback(i, x0_estimate)`
is called after each step (previews, progress, GIF frames).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

Callback = Callable[[int, torch.Tensor], None] | None


def default_times(steps: int) -> list[float]:
    """Evaluation times for K steps: 1, 1 − 1/K, ..., 1/K (t_max = 1 first)."""
    if steps < 1:
        raise ValueError("steps must be at least 1")
    return [1.0 - i / steps for i in range(steps)]


def _fresh_noise(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(like.shape, generator=generator, dtype=torch.float32).to(like.device, like.dtype)


@torch.no_grad()
def onestep(model, x1, times: Sequence[float] = (1.0,), generator=None, callback: Callback = None):
    """x0 = f(x1, t_max)."""
    x0 = model(x1, times[0])
    if callback:
        callback(0, x0)
    return x0


@torch.no_grad()
def multistep(model, x1, times: Sequence[float], generator=None, callback: Callback = None):
    """Reinjection: x0 = f(x1, t_max); for each next τ: x_τ = (1−τ)·x0 + τ·z, x0 = f(x_τ, τ)."""
    x0 = model(x1, times[0])
    if callback:
        callback(0, x0)
    for i, tau in enumerate(times[1:], start=1):
        x_tau = (1 - tau) * x0 + tau * _fresh_noise(x0, generator)
        x0 = model(x_tau, tau)
        if callback:
            callback(i, x0)
    return x0


@torch.no_grad()
def ode_euler(model, x1, times: Sequence[float], generator=None, callback: Callback = None):
    """Euler on dx/dt = (x − f(x, t))/t (= v for a teacher) from times[0] down to 0."""
    x = x1
    ts = list(times) + [0.0]
    for i, (t, t_next) in enumerate(zip(ts[:-1], ts[1:])):
        x = x + (t_next - t) * model.velocity(x, t)
        if callback:
            callback(i, x)
    return x


@torch.no_grad()
def ode_heun(model, x1, times: Sequence[float], generator=None, callback: Callback = None):
    """Heun (2nd order) on the same ODE; the last step to t = 0 is an Euler step."""
    x = x1
    ts = list(times) + [0.0]
    for i, (t, t_next) in enumerate(zip(ts[:-1], ts[1:])):
        d = model.velocity(x, t)
        x_next = x + (t_next - t) * d
        if t_next > 0:
            x_next = x + (t_next - t) * 0.5 * (d + model.velocity(x_next, t_next))
        x = x_next
        if callback:
            callback(i, x)
    return x


SAMPLERS = {"onestep": onestep, "multistep": multistep, "ode": ode_euler, "ode_euler": ode_euler, "ode_heun": ode_heun}


def sample(model, shape, steps: int, seed: int, sampler: str = "multistep", device="cpu",
           times: Sequence[float] | None = None, callback: Callback = None) -> torch.Tensor:
    """Images in [-1, 1] from a seed: the noise and every fresh draw come from one CPU generator."""
    generator = torch.Generator().manual_seed(int(seed))
    x1 = torch.randn(shape, generator=generator).to(device)
    fn = SAMPLERS[sampler] if steps > 1 or sampler != "multistep" else onestep
    return fn(model, x1, list(times) if times is not None else default_times(steps), generator, callback)


def to_uint8(x: torch.Tensor):
    """[-1, 1] NCHW tensor → uint8 NHWC numpy array."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
