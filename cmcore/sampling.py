"""Samplers: flat functions with one signature (after k-diffusion's sampling.py).

    sampler(model, x1, times, noise=None, callback=None) -> x0

`model` is a ConsistencyFunction (f and velocity), `x1` the starting noise at t = times[0],
`times` the descending evaluation times, `noise` an `ImageNoise` for any fresh noise (each image
draws from its own seeded stream, so an image is the same alone, in any batch and on every device),
and `callback(i, x0_estimate)` is called after each step (previews, progress, GIF frames, cancelling).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from .precond import WithLabels

Callback = Callable[[int, torch.Tensor], None] | None


class ImageNoise:
    """Gaussian noise per image, image i from its own CPU generator seeded with seeds[i]: the starting
    noise x1 is each stream's first draw, every reinjection the next one."""

    def __init__(self, seeds: Sequence[int]):
        self.streams = [torch.Generator().manual_seed(int(s)) for s in seeds]

    @classmethod
    def for_images(cls, seed: int, count: int, first: int = 0) -> "ImageNoise":
        """The streams of images first .. first + count − 1 of a seed: image i uses seed + i."""
        return cls(range(seed + first, seed + first + count))

    def draw(self, like: torch.Tensor, rows: Sequence[int] | None = None) -> torch.Tensor:
        """One draw per image (of `rows`, default all), shaped, typed and placed like `like`."""
        rows = range(len(self.streams)) if rows is None else rows
        shape = like.shape[1:]
        z = torch.stack([torch.randn(shape, generator=self.streams[r]) for r in rows])
        return z.to(like.device, like.dtype)


def default_times(steps: int) -> list[float]:
    """Evaluation times for K steps: 1, 1 − 1/K, ..., 1/K (t_max = 1 first)."""
    if steps < 1:
        raise ValueError("steps must be at least 1")
    return [1.0 - i / steps for i in range(steps)]


@torch.inference_mode()
def onestep(model, x1, times: Sequence[float] = (1.0,), noise: ImageNoise | None = None, callback: Callback = None):
    """x0 = f(x1, t_max)."""
    x0 = model(x1, times[0])
    if callback:
        callback(0, x0)
    return x0


@torch.inference_mode()
def multistep(model, x1, times: Sequence[float], noise: ImageNoise | None = None, callback: Callback = None):
    """Reinjection: x0 = f(x1, t_max); for each next τ: x_τ = (1−τ)·x0 + τ·z, x0 = f(x_τ, τ)."""
    x0 = model(x1, times[0])
    if callback:
        callback(0, x0)
    for i, tau in enumerate(times[1:], start=1):
        z = noise.draw(x0) if noise is not None else torch.randn_like(x0)
        x0 = model((1 - tau) * x0 + tau * z, tau)
        if callback:
            callback(i, x0)
    return x0


@torch.inference_mode()
def ode_euler(model, x1, times: Sequence[float], noise: ImageNoise | None = None, callback: Callback = None):
    """Euler on dx/dt = (x − f(x, t))/t (= v for a teacher) from times[0] down to 0."""
    x = x1
    ts = list(times) + [0.0]
    for i, (t, t_next) in enumerate(zip(ts[:-1], ts[1:])):
        x = x + (t_next - t) * model.velocity(x, t)
        if callback:
            callback(i, x)
    return x


@torch.inference_mode()
def ode_heun(model, x1, times: Sequence[float], noise: ImageNoise | None = None, callback: Callback = None):
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


@torch.inference_mode()
def multistep_rows(model, x1, row_times: Sequence[Sequence[float]], noise: ImageNoise, callback: Callback = None):
    """`multistep` for rows that each have their own times, in one batch: pass i evaluates every row
    with an i-th time, so rows of 1, 2, 4 and 8 steps take 8 passes instead of 15. Each row's image
    is the one its own `multistep` run gives (its noise comes from its own stream)."""
    x0 = model(x1, torch.tensor([times[0] for times in row_times], device=x1.device))
    if callback:
        callback(0, x0)
    for i in range(1, max(len(times) for times in row_times)):
        rows = [r for r, times in enumerate(row_times) if len(times) > i]
        tau = torch.tensor([row_times[r][i] for r in rows], device=x1.device, dtype=x1.dtype).reshape(-1, 1, 1, 1)
        x_tau = (1 - tau) * x0[rows] + tau * noise.draw(x0, rows)
        x0 = x0.clone()
        x0[rows] = model(x_tau, tau.flatten())
        if callback:
            callback(i, x0)
    return x0


SAMPLERS = {"onestep": onestep, "multistep": multistep, "ode": ode_euler, "ode_euler": ode_euler, "ode_heun": ode_heun}


def sample(model, shape, steps: int, seed: int, sampler: str = "multistep", device="cpu",
           times: Sequence[float] | None = None, callback: Callback = None, first: int = 0,
           labels=None) -> torch.Tensor:
    """Images in [-1, 1]: image i (counting from `first`) from its own noise stream, seed + i. A class-conditional
    model draws class `labels[i]` for image i (one label: all of them; None: every class in turn, image i of the
    seed class i mod the number of classes, in any batch)."""
    classes = getattr(model, "num_classes", 0)
    if labels is None and classes and not isinstance(model, WithLabels):
        labels = (torch.arange(shape[0]) + first) % classes
    model = with_labels(model, labels)
    noise = ImageNoise.for_images(seed, shape[0], first)
    x1 = noise.draw(torch.empty(shape)).to(device)
    fn = SAMPLERS[sampler] if steps > 1 or sampler != "multistep" else onestep
    return fn(model, x1, list(times) if times is not None else default_times(steps), noise, callback)


def strip(model, shape, steps: Sequence[int], seed: int, index: int = 0, device="cpu",
          callback: Callback = None, label: int | None = None) -> torch.Tensor:
    """Image `index` of a seed drawn with each step count in `steps` (the gallery's 1/2/4/8 strip), in
    one batched `multistep_rows` run: row k equals image `index` of `sample(..., steps[k], seed)` (of class
    `label` for a class-conditional model; None: the class `sample` gives image `index`)."""
    if getattr(model, "num_classes", 0):
        model = with_labels(model, [index % model.num_classes if label is None else label])
    noise = ImageNoise([seed + index] * len(steps))
    x1 = noise.draw(torch.empty((len(steps), *shape[1:]))).to(device)
    return multistep_rows(model, x1, [default_times(k) for k in steps], noise, callback)


def with_labels(model, labels=None):
    """`model` as the samplers call it, f(x, t): a class-conditional one with its labels bound
    (cmcore.precond.WithLabels); an unconditional one as it is (labels must then be None)."""
    if not getattr(model, "num_classes", 0):
        if labels is not None:
            raise ValueError("this model has no classes: sample it without labels")
        return model
    if isinstance(model, WithLabels) and labels is None:
        return model  # already bound
    if labels is not None:
        labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < model.num_classes:
            raise ValueError(f"class labels must be 0 to {model.num_classes - 1}")
    return WithLabels(model, labels)


def to_uint8(x: torch.Tensor):
    """[-1, 1] NCHW tensor → uint8 NHWC numpy array."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
