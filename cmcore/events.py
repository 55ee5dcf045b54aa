"""What the Trainer reports while it runs; front ends (CLI progress bar, Qt signals) listen."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Started:
    run_dir: str
    step: int
    max_steps: int
    num_params: int
    device: str


@dataclass
class Progress:
    step: int
    max_steps: int
    loss: float
    lr: float
    n: int  # steps of the curriculum
    images_per_s: float
    elapsed_s: float
    eta_s: float | None
    fraction: float = 0.0  # of the run done, by steps or by the clock, whichever is further


@dataclass
class Preview:
    step: int
    grids: dict[int, np.ndarray] = field(default_factory=dict)  # sampling steps -> uint8 HxWxC


@dataclass
class CheckpointSaved:
    step: int
    path: str


@dataclass
class RolledBack:
    """The loss spiked (recent mean `ratio` times the earlier one): weights restored from `to_step`."""
    step: int
    to_step: int
    ratio: float


@dataclass
class Scored:
    """The checkpoint of `step` was scored on the held-out images (cmcore.evaluation): `scores` maps sampling
    steps to the score (lower is better), `gap` is the held-out minus training denoising error (None without
    a split), `best` whether this checkpoint is now the run's best (RUN/checkpoints/best)."""
    step: int
    scores: dict[int, float]
    gap: float | None
    best: bool


@dataclass
class Warning:  # noqa: A001 - cmcore.events.Warning; the builtin is not used here
    """Something failed that training survives (a preview or metrics line not written: full disk; a preview
    out of memory; a non-finite loss rolled back): one line for the front ends to show."""
    step: int
    message: str


@dataclass
class Finished:
    step: int
    reason: str  # max_steps | max_minutes | stopped
