"""The Trainer's quality signal: each checkpoint scored on images held out from training (issue 23).

A run with `score` on (the default) trains on `cmcore.split.train_indices` of its data and records the
held-out images in RUN/split.json. At every checkpoint (and at the end) rank 0 samples the evaluation EMA
from fixed noise, scores the samples against the held-out images (cmcore.score) and measures the
denoising-error gap between training and held-out images (cmcore.memorisation: it grows when the model
memorises). The result is one metrics line without a "loss" key,

    {"step": 500, "score": {"1": 12.3, "2": 10.1}, "gap": 0.0004, "best": true}

and an events.Scored. The checkpoint with the lowest score at the first step count is the run's best:
RUN/checkpoints/best names it and pruning never removes it (cmcore.checkpoint).

Scoring costs seconds (sampling SCORE_NUM images per step count, and the gap's forward passes), so it takes
at most SCORE_TIME_SHARE of the run's wall time: a checkpoint is scored when the time since the last score
ended is at least (1/share − 1) times what that score took; the end of a run is always scored. A folder
below cmcore.split.NO_SPLIT_BELOW images holds nothing out and is not scored.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from . import events
from .memorisation import DENOISING_TIMES, denoising_error, overfitting_gap
from .precond import WithLabels
from .rundir import atomic_write_bytes, best_pointer, best_step, checkpoint_name, score_at
from .score import SCORE_SEED, Scorer, score_model
from .split import held_out_indices, read_split, spread_index, train_indices, write_split

CONSISTENCY_STEPS = (1, 2)  # a consistency model is scored at 1 and 2 sampler steps; the best is chosen at 1
FLOW_STEPS = (16,)  # a flow teacher at its preview's ODE step count
SCORE_NUM = 128  # samples per step count: ~1.5 s on a 2-core CPU at 32 px with `tiny` (docs/score.md)
GAP_NUM = 128  # training and held-out images in the denoising-error gap
SCORE_TIME_SHARE = 0.1  # of the wall time, at most, spent scoring checkpoints


def score_steps(method: str) -> tuple[int, ...]:
    return FLOW_STEPS if method == "flow" else CONSISTENCY_STEPS


class Evaluator:
    """Scores checkpoints of one run against its held-out images; remembers the best so far."""

    def __init__(self, held_out: torch.Tensor, train: torch.Tensor, steps: tuple[int, ...], sampler: str,
                 best: float | None = None, labels: tuple[torch.Tensor, torch.Tensor] | None = None):
        """`labels`: a class-conditional run's (training, held-out) labels: each image is denoised as its
        own class in the gap (the samples of the score take every class in turn)."""
        self.scorer = Scorer(held_out)
        self.labels = labels
        self.held_out, self.train = held_out, train
        self.steps, self.sampler = steps, sampler
        self.best = best  # the best score so far at steps[0]
        self._last_end, self._last_took = None, 0.0  # time.monotonic() when the last score ended, its seconds

    def due(self) -> bool:
        """Whether scoring now keeps the time spent scoring within SCORE_TIME_SHARE."""
        if self._last_end is None:
            return True
        return time.monotonic() - self._last_end >= (1 / SCORE_TIME_SHARE - 1) * self._last_took

    def evaluate(self, ema, step: int, device) -> events.Scored:
        """Score the evaluation EMA (the caller saves the checkpoint of `step` first)."""
        started = time.monotonic()
        try:
            return self._evaluate(ema, step, device)
        finally:
            self._last_end = time.monotonic()
            self._last_took = self._last_end - started

    def _evaluate(self, ema, step: int, device) -> events.Scored:
        scores = score_model(ema, self.scorer, self.steps, SCORE_NUM, SCORE_SEED, self.sampler, device)
        gap = self._gap(ema, device)
        first = scores[self.steps[0]]
        best = math.isfinite(first) and (self.best is None or first < self.best)
        if best:
            self.best = first
        return events.Scored(step, scores, sum(gap) / len(gap), best)

    def _gap(self, ema, device) -> list[float]:
        """Held-out minus training denoising error per time (cmcore.memorisation)."""
        if self.labels is None:
            return overfitting_gap(ema, self.train, self.held_out, num=GAP_NUM, seed=SCORE_SEED, device=device)["gap"]
        errors = []
        for images, labels in zip((self.train, self.held_out), self.labels):
            index = spread_index(len(images), GAP_NUM)
            errors.append(denoising_error(WithLabels(ema, labels[index]), images[index], DENOISING_TIMES, SCORE_SEED,
                                          device, batch=len(index)))
        return [errors[1][t] - errors[0][t] for t in DENOISING_TIMES]


def split_for_run(dataset, run_dir: Path, seed: int, resume: bool, write: bool) -> tuple[list[int], list[int]]:
    """(train indices, held-out indices) of a run's data. A new run records its split (`write`: rank 0);
    a resumed one must find the split it recorded: the data changed otherwise, and scores would compare
    different images (DataError). A resumed run that recorded no split trains on everything, unscored."""
    from .errors import DataError

    n = len(dataset)
    held = held_out_indices(n, seed)
    if resume:
        recorded = read_split(run_dir)
        if recorded is None:  # a run started before scoring existed (or below the size that holds out): all data
            return list(range(n)), []
        if (recorded["num_images"], recorded["held_out"]) != (n, held):
            raise DataError(f"this run held out {len(recorded['held_out'])} of {recorded['num_images']} images; its "
                            f"data now has {n}: resume it on the same data, or start a new run")
    elif write and held:
        write_split(run_dir, n, seed)
    return train_indices(n, seed), held


def record_of(scored: events.Scored) -> dict:
    """The metrics line of a score."""
    record = {"step": scored.step, "score": {str(k): round(v, 6) for k, v in scored.scores.items()}}
    if scored.gap is not None:
        record["gap"] = round(scored.gap, 8)
    if scored.best:
        record["best"] = True
    return record


def mark_best(run_dir: Path, step: int) -> None:
    """Point RUN/checkpoints/best at the checkpoint of `step` (written atomically)."""
    atomic_write_bytes(best_pointer(run_dir), checkpoint_name(step).encode())


def best_so_far(run_dir: Path, records: list[dict], steps: tuple[int, ...]) -> float | None:
    """On resume: the score of the checkpoint RUN/checkpoints/best names, from its metrics line."""
    return score_at(records, best_step(run_dir), steps[0])

