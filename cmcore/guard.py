"""Loss-spike guard: roll a run back to recent good weights when its loss suddenly jumps.

A consistency loss chases its own moving target, and its loss can spike at random. On a fine
grid a spike can tip the network into the trivial f ≈ x_t, from which a stop-gradient target
asks for only 1/n of the way back, and the run never recovers (README, "Four times the
budget"). The guard compares the mean loss of the last `window` steps with the mean of the
`history` steps before them. Measured on this project's runs with window 50 and history 500:
healthy runs reach ×2.4 (a doubling of the curriculum's n doubles λ = 1/(t − r)), the spikes
that preceded collapses or long recoveries ×4.7–7.7, hence the default factor 3.

On a spike the trainer restores the newest snapshot taken before the spike window (weights,
target, evaluation EMA, optimizer state) and goes on with its random streams moving forward,
so the same batch sequence is not replayed. Snapshots live in memory, one every
`snapshot_every` steps while the loss is calm.
"""
from __future__ import annotations

from collections import deque
from typing import Any

import torch


CALM = 1.5  # the ratio under which the loss counts as steady


class SpikeGuard:
    def __init__(self, factor: float = 3.0, window: int = 50, history: int = 500, snapshot_every: int = 250,
                 max_rollbacks: int = 3):
        self.factor, self.window, self.history = factor, window, history
        self.snapshot_every, self.max_rollbacks = snapshot_every, max_rollbacks
        self.losses: deque[float] = deque(maxlen=window + history)
        self.snapshots: deque[tuple[int, Any]] = deque(maxlen=2)
        self.rollbacks = 0  # in this run, all snapshots together
        self._restores: dict[int, int] = {}  # snapshot step -> times restored

    @property
    def enabled(self) -> bool:
        return self.factor > 0

    def ratio(self) -> float | None:
        """Mean of the last `window` losses over the mean of the `history` before; None until full."""
        if len(self.losses) < self.window + self.history:
            return None
        values = list(self.losses)
        base = sum(values[: self.history]) / self.history
        recent = sum(values[self.history:]) / self.window
        return recent / base if base > 0 else None

    def observe(self, loss: float) -> float | None:
        """Record one step's loss; the ratio when it is a spike (> factor), else None."""
        self.losses.append(float(loss))
        if not self.enabled:
            return None
        ratio = self.ratio()
        return ratio if ratio is not None and ratio > self.factor else None

    def calm(self) -> bool:
        """Safe to snapshot: the loss is not rising (a spike that set in over a few hundred steps
        was at ×1.7 one snapshot before it crossed ×3; a doubling of n also pauses snapshots)."""
        ratio = self.ratio()
        return ratio is None or ratio < CALM

    def wants_snapshot(self, step: int) -> bool:
        return self.enabled and step % self.snapshot_every == 0 and self.calm()

    def add_snapshot(self, step: int, state: Any) -> None:
        self.snapshots.append((step, state))

    def rollback_target(self, step: int) -> tuple[int, Any] | None:
        """The newest snapshot from before the spike window that has not been restored too often."""
        for snap_step, state in reversed(self.snapshots):
            if snap_step <= step - self.window and self._restores.get(snap_step, 0) < self.max_rollbacks:
                return snap_step, state
        return None

    def rolled_back(self, snap_step: int) -> None:
        """Forget the spike's losses; the window refills before the next check."""
        for _ in range(min(self.window, len(self.losses))):
            self.losses.pop()
        self.rollbacks += 1
        self._restores[snap_step] = self._restores.get(snap_step, 0) + 1

    # --- resume: the loss history travels in the checkpoint's state ----------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"losses": list(self.losses), "rollbacks": self.rollbacks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.losses.clear()
        self.losses.extend(float(v) for v in state.get("losses", []))
        self.rollbacks = int(state.get("rollbacks", 0))


def snapshot(parts: dict) -> dict:
    """CPU copies (off the accelerator's memory) of the state dicts of `parts` (model, EMA, optimizer,
    scaler): what a rollback restores."""
    return {name: _to_cpu(part.state_dict()) for name, part in parts.items()}


def _to_cpu(value):
    """A copy of a nested state dict with its tensors on the CPU (optimizer state for a snapshot)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value


def finite(state: dict[str, torch.Tensor]) -> bool:
    """Whether every floating-point tensor of a state dict is finite (a rollback target must be)."""
    return all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point())
