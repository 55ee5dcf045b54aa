"""The numbers behind the loss plot's marks and its per-stage view (numpy only, no Qt).

A consistency loss is not comparable across curriculum stages: when n doubles, the partner time r moves
closer to t, λ = 1/(t − r) grows and the loss steps up although the model did not get worse. So the plot
marks each stage and offers each stage's loss relative to its own start, where "settles within each stage"
can be read off directly.
"""
from __future__ import annotations

import math

import numpy as np

from .growing import GrowingArray, ema_raw

REFERENCE_POINTS = 5  # a stage's loss is divided by the median of its first few logged values


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def loss_records(records: list[dict]) -> list[dict]:
    """The metrics records that log a training step (they have a "loss"); score records have none."""
    return [r for r in records if "loss" in r and _number(r.get("step"))]


def score_records(records: list[dict]) -> list[tuple[int, dict[int, float], bool]]:
    """(step, {sampling steps: score}, best) of each score record (cmcore.evaluation), in order."""
    from cmcore.rundir import scored  # torch-free

    return [(s["step"], s["score"], s["best"]) for s in scored(records)]


def stage_changes(steps: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(steps, new n) where the curriculum's n differs from the previous logged value (not at the first point;
    a point without n is no change)."""
    if len(n) < 2:
        return np.empty(0), np.empty(0)
    prev, cur = n[:-1], n[1:]
    changed = np.flatnonzero((cur != prev) & np.isfinite(cur) & np.isfinite(prev)) + 1
    return steps[changed], n[changed]


def rollback_steps(steps: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The steps whose cumulative rollback count (metrics' "rollbacks", absent = 0) grew since the previous record."""
    if len(counts) < 2:
        return np.empty(0)
    counts = np.nan_to_num(counts, nan=0.0)
    return steps[np.flatnonzero(np.diff(counts) > 0) + 1]


class StageNormalised:
    """Each curriculum stage's loss divided by the median of the stage's first REFERENCE_POINTS values, so
    every stage starts at 1, with its own bias-corrected EMA that restarts at each stage (a smoothed curve
    carried across a stage change would dip or bump where nothing happened).

    Incremental: `update` handles only the points added since the last call, and a stage's first few points
    again while its reference is still being gathered, so a million points stay cheap."""

    def __init__(self, beta: float) -> None:
        self.beta = beta
        self.raw = GrowingArray()
        self.smooth = GrowingArray()
        self._start = 0  # index of the current (last) stage's first point
        self._ref = 1.0
        self._ref_final = False
        self._state = 0.0  # EMA state at the end of what is done

    def reset(self, beta: float | None = None) -> None:
        self.__init__(self.beta if beta is None else beta)

    def update(self, loss: np.ndarray, n: np.ndarray) -> None:
        total, done = len(loss), len(self.raw)
        if done > total:  # the data was cleared and refilled
            self.reset()
            done = 0
        if done == total:
            return
        if not self._ref_final:  # the last stage's reference was provisional: that stage again, whole
            done = self._start
        self.raw.size = self.smooth.size = done
        o = max(0, done - 1)  # only the new part (and the point before it) is looked at
        m = np.nan_to_num(n[o:total], nan=-1.0)  # a record without n: a stage of its own, not a NaN per point
        i, new_stage = done, done == 0 or m[done - o] != m[done - 1 - o]
        while i < total:
            later = np.flatnonzero(m[i + 1 - o:] != m[i - o:-1])
            j = i + 1 + int(later[0]) if len(later) else total
            self._extend(loss, i, j, new_stage)
            i, new_stage = j, True

    def _extend(self, loss: np.ndarray, a: int, b: int, new_stage: bool) -> None:
        """Points a..b-1, all of one stage: a new one starting at a, or the last one going on (its reference
        final, its EMA state carried over)."""
        if new_stage:
            self._start, self._state = a, 0.0
            head = loss[a: min(b, a + REFERENCE_POINTS)]
            finite = head[np.isfinite(head)]
            ref = float(np.median(finite)) if len(finite) else 1.0
            self._ref = ref if math.isfinite(ref) and ref > 0 else 1.0
            self._ref_final = b - a >= REFERENCE_POINTS
        s = self._start
        values = loss[a:b] / self._ref
        self.raw.extend(values)
        ema = ema_raw(np.nan_to_num(values, nan=1.0), self.beta, self._state)
        self._state = float(ema[-1])
        k = np.arange(a - s + 1, b - s + 1, dtype=np.float64)
        self.smooth.extend(ema / (1.0 - self.beta ** k))
