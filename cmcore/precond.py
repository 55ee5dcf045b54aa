"""Preconditioning: f(x, t) = c_skip(t)·x + c_out(t)·F(c_in(t)·x, c_noise(t)).

Noising is ReFlow's x_t = (1-t)·x0 + t·x1 with x1 ~ N(0, I), t in [0, 1]. All
parametrisations have c_skip(0) = 1 and c_out(0) = 0, so f(x, 0) = x holds exactly.

- ``reflow`` (the seed's choice): F is a velocity v and f = x - t·v.
- ``blend``: f = (1-t)·x + t·F, i.e. the seed's f = x - t·v with v = x - F: the network
  predicts x - v instead of v. Same function class, but the noise that v must copy at
  t = 1 (v = x1 - x0) is carried by the skip, so at t = 1 the network outputs the image
  itself and a fresh network (F = 0) starts from f = (1-t)·x instead of f = x.
"""
from __future__ import annotations

import torch
from torch import nn

PARAMETRIZATIONS = ("blend", "reflow")


def noise(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t)·x0 + t·x1 (t has one entry per sample)."""
    t = _bcast(t, x0)
    return (1 - t) * x0 + t * x1


def _bcast(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)


class ConsistencyFunction(nn.Module):
    def __init__(self, net: nn.Module, parametrization: str = "reflow"):
        super().__init__()
        if parametrization not in PARAMETRIZATIONS:
            raise ValueError(f"unknown parametrization {parametrization!r}")
        self.net, self.parametrization = net, parametrization

    def scalings(self, t: torch.Tensor):
        """(c_skip, c_out, c_in, c_noise) for times t."""
        one = torch.ones_like(t)
        if self.parametrization == "reflow":
            return one, -t, one, t
        return 1 - t, t, one, t

    @property
    def num_classes(self) -> int:
        """The classes the network is conditioned on; 0: an unconditional model."""
        return getattr(self.net, "num_classes", 0)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The consistency function f(x_t, t[, labels]): an estimate of x0."""
        t = _as_batch(t, x)
        c_skip, c_out, c_in, c_noise = self.scalings(t)
        out = self._net(_bcast(c_in, x) * x, c_noise, labels)
        return _bcast(c_skip, x) * x + _bcast(c_out, x) * out.to(x.dtype)

    def velocity(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """v(x_t, t) = dx_t/dt of the ReFlow ODE, (x - f)/t; the network itself for `reflow`."""
        t = _as_batch(t, x)
        if self.parametrization == "reflow":
            return self._net(x, t, labels).to(x.dtype)
        return x - self._net(x, t, labels).to(x.dtype)  # blend: exact at every t, no division by t

    def _net(self, x, c_noise, labels):
        # An unconditional call stays F(x, c_noise): any backbone with that signature still works.
        return self.net(x, c_noise) if labels is None else self.net(x, c_noise, labels)


class WithLabels(nn.Module):
    """f with its class labels bound, for samplers that call f(x, t) and f.velocity(x, t): `labels` one per
    image (or one for all); None: image i of each call gets class i mod num_classes (every class in turn)."""

    def __init__(self, model: ConsistencyFunction, labels: torch.Tensor | None = None):
        super().__init__()
        self.model, self.labels = model, labels

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    def _labels(self, x: torch.Tensor) -> torch.Tensor:
        if self.labels is None:
            return torch.arange(x.shape[0], device=x.device) % self.model.num_classes
        labels = torch.as_tensor(self.labels, dtype=torch.long).to(x.device).reshape(-1)
        return labels.expand(x.shape[0]) if labels.numel() == 1 else labels

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.model(x, t, self._labels(x))

    def velocity(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.model.velocity(x, t, self._labels(x))


def _as_batch(t, x: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=torch.float32, device=x.device)
    return t.expand(x.shape[0]) if t.dim() == 0 else t
