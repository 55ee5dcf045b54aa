"""Closed-form ReFlow for Gaussian data x0 ~ N(m, s²) per pixel, x1 ~ N(0, 1).

x_t = (1−t)·x0 + t·x1 is N((1−t)m, σ_t²) with σ_t² = (1−t)²s² + t². The probability-flow ODE
keeps ε = (x_t − (1−t)m)/σ_t fixed, so the exact consistency function is
f(x, t) = m + s·(x − (1−t)m)/σ_t, with f(x, 0) = x and f(x1, 1) = m + s·x1.
"""
import torch


class GaussianConsistency(torch.nn.Module):
    def __init__(self, m: float, s: float, trainable: bool = False):
        super().__init__()
        self.m = torch.nn.Parameter(torch.tensor(float(m)), requires_grad=trainable)
        self.s = torch.nn.Parameter(torch.tensor(float(s)), requires_grad=trainable)

    def _t(self, t, x):
        t = torch.as_tensor(t, dtype=x.dtype)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        return t.reshape(-1, *([1] * (x.dim() - 1)))

    def forward(self, x, t):
        t = self._t(t, x)
        sigma = ((1 - t) ** 2 * self.s**2 + t**2).sqrt()
        return self.m + self.s * (x - (1 - t) * self.m) / sigma

    def velocity(self, x, t):
        return (x - self(x, t)) / self._t(t, x)


class GaussianTeacher(torch.nn.Module):
    """The exact ReFlow velocity v(x, t) = E[x1 − x0 | x_t] = −m + (t − (1−t)s²)/σ_t² · (x − (1−t)m);
    called as a model it is the denoiser x − t·v = E[x0 | x_t], as a `flow` network is."""

    def __init__(self, m: float, s: float):
        super().__init__()
        self.m, self.s = m, s

    def velocity(self, x, t):
        t = GaussianConsistency._t(None, t, x)
        var = (1 - t) ** 2 * self.s**2 + t**2
        return -self.m + (t - (1 - t) * self.s**2) / var * (x - (1 - t) * self.m)

    def forward(self, x, t):
        return x - GaussianConsistency._t(None, t, x) * self.velocity(x, t)
