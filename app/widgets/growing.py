"""Numpy buffers that grow by doubling, and an incremental bias-corrected EMA.

The loss plot must stay smooth with a million points: appending must be amortised O(1)
and handing the data to pyqtgraph must not copy, so curves get views of these buffers.
"""
from __future__ import annotations

import math

import numpy as np


class GrowingArray:
    def __init__(self, capacity: int = 1024) -> None:
        self._data = np.empty(capacity, dtype=np.float64)
        self.size = 0

    def extend(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64).ravel()
        need = self.size + len(values)
        if need > len(self._data):
            grown = np.empty(max(need, 2 * len(self._data)), dtype=np.float64)
            grown[: self.size] = self._data[: self.size]
            self._data = grown
        self._data[self.size: need] = values
        self.size = need

    def view(self) -> np.ndarray:
        return self._data[: self.size]

    def clear(self) -> None:
        self.size = 0

    def __len__(self) -> int:
        return self.size


def _chunk(beta: float) -> int:
    # beta**-k must stay far from overflow (<= 1e200) however large the values are
    return int(min(4096, max(16, 200 / -math.log10(beta))))


def ema_raw(x: np.ndarray, beta: float, state: float = 0.0) -> np.ndarray:
    """ema_t = beta * ema_{t-1} + (1 - beta) * x_t starting from `state`, vectorised per chunk
    via ema_k = beta^k (state + (1 - beta) * sum_{i<=k} beta^-i x_i)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    e = float(state)
    size = _chunk(beta)
    for start in range(0, len(x), size):
        chunk = x[start: start + size]
        p = beta ** np.arange(1, len(chunk) + 1, dtype=np.float64)
        out[start: start + len(chunk)] = p * (e + (1.0 - beta) * np.cumsum(chunk / p))
        e = out[start + len(chunk) - 1]
    return out


class SmoothedSeries:
    """Raw values plus their bias-corrected EMA (shown_t = ema_t / (1 - beta^t))."""

    def __init__(self, beta: float = 0.98) -> None:
        if not 0.5 <= beta < 1.0:
            raise ValueError("beta must be in [0.5, 1)")
        self.beta = beta
        self.raw = GrowingArray()
        self.smooth = GrowingArray()
        self._state = 0.0

    def extend(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64).ravel()
        if not len(values):
            return
        t0 = len(self.raw)
        self.raw.extend(values)
        ema = ema_raw(values, self.beta, self._state)
        self._state = float(ema[-1])
        t = np.arange(t0 + 1, t0 + len(values) + 1, dtype=np.float64)
        self.smooth.extend(ema / (1.0 - self.beta ** t))

    def set_beta(self, beta: float) -> None:
        values = self.raw.view().copy()
        self.__init__(beta)
        self.extend(values)

    def clear(self) -> None:
        self.raw.clear()
        self.smooth.clear()
        self._state = 0.0

    def __len__(self) -> int:
        return len(self.raw)
