"""Scoring a checkpoint: `cmcore score RUN|CKPT [--steps 1,2,4] [--data SPEC] [--num N] [--json]`.

Against what (`reference_for`): a run's held-out images when it recorded a split, else its data. What
(`score_checkpoint` → `ScoreReport`): the score per sampler step count (cmcore.score), the near-copy share of
the best step count's samples and, with a split, the denoising-error gap (cmcore.memorisation).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from .memorisation import near_copies, overfitting_gap
from .score import DEFAULT_NUM, DEFAULT_STEPS, SCORE_SEED, Scorer, score_model
from .split import read_split, spread_subset

MAX_REFERENCE = 1000  # a run without a split is scored against at most this many of its images


# --- scoring a checkpoint (cmcore score) -------------------------------------------------------------------
@dataclass
class Reference:
    """The images a checkpoint is scored against, the images it trained on, and what they are."""
    images: torch.Tensor  # uint8 N×C×H×W
    train: torch.Tensor | None  # the training images (None when unknown: another data set was given)
    description: str
    held_out: bool  # the images are held out from training (the run recorded a split)


def reference_for(config, channels: int, resolution: int, run_dir: str | Path | None = None,
                  data: str | None = None) -> Reference:
    """The reference of a run: its held-out images when it recorded a split (RUN/split.json) that fits
    its data, otherwise (up to MAX_REFERENCE of) its data, which it trained on. `data` (a data spec)
    replaces the run's own data: held out when it is the run's data with a split, else all of it
    (without training images: a folder the model never saw is not searched for copies)."""
    from .data import describe_spec, load_dataset

    spec = data if data is not None else config.data
    dataset = load_dataset(spec, resolution, channels)
    images, label = dataset.images, describe_spec(spec)
    same_data = data is None or _same_spec(data, config.data)
    split = read_split(run_dir) if same_data else None
    if split is not None and split["num_images"] == len(images) and split["held_out"]:
        held = split["held_out"]
        train = torch.ones(len(images), dtype=torch.bool)
        train[held] = False
        return Reference(images[held], images[train], f"{len(held)} held-out images of {label} (the run's split)", True)
    note = ""
    if split is not None:
        note = f"; the run's split is of {split['num_images']} images, the data now has {len(images)}"
    elif same_data:
        note = "; the run recorded no held-out split, so these are images it trained on"
    subset = spread_subset(images, MAX_REFERENCE)
    what = f"{len(subset)} of the {len(images)}" if len(subset) < len(images) else f"all {len(images)}"
    return Reference(subset, images if same_data else None, f"{what} images of {label}{note}", False)


def _same_spec(a: str, b: str) -> bool:
    from .config import TrainConfig

    try:
        return TrainConfig(data=a).with_absolute_paths().data == TrainConfig(data=b).with_absolute_paths().data
    except Exception:  # noqa: BLE001 - an odd spec is simply not the same
        return a.strip() == b.strip()


@dataclass
class ScoreReport:
    checkpoint: str
    step: int
    method: str
    sampler: str
    seed: int
    num: int  # samples per step count
    scores: dict[int, float]  # sampler steps → score, lower is better
    reference: str
    num_reference: int
    held_out: bool
    near_copies: dict | None = None  # share, threshold, median_neighbour, held_out_share, of the best step count
    copies_steps: int | None = None
    denoising: dict | None = None  # overfitting_gap's dict (only with a held-out split)
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        copies = None
        if self.near_copies is not None:
            copies = {k: v for k, v in self.near_copies.items() if k not in ("distances", "nearest")}
            copies["steps"] = self.copies_steps
        return {"checkpoint": self.checkpoint, "step": self.step, "method": self.method, "sampler": self.sampler,
                "seed": self.seed, "num": self.num, "scores": {str(k): v for k, v in self.scores.items()},
                "reference": self.reference, "num_reference": self.num_reference, "held_out": self.held_out,
                "near_copies": copies, "denoising": self.denoising, "seconds": round(self.seconds, 3)}


def score_checkpoint(source: str | Path, steps: Sequence[int] = DEFAULT_STEPS, data: str | None = None,
                     num: int = DEFAULT_NUM, seed: int = SCORE_SEED, device: str = "cpu", sampler: str | None = None,
                     copies: bool = True) -> ScoreReport:
    """Score a run folder or checkpoint (`reference_for` says against what) at each sampler step count;
    with `copies`, also look for near-copies of training images among the best step count's samples, and
    (with a held-out split) measure the denoising-error gap. Raises CheckpointError / DataError."""
    from .generator import load_generator
    from .rundir import run_of

    started = time.perf_counter()
    gen = load_generator(source, device)
    run_dir = run_of(gen.source)
    ref = reference_for(gen.config, gen.channels, gen.resolution, run_dir, data)
    if len(ref.images) < 2:
        from .errors import DataError

        raise DataError(f"a score needs at least 2 images to compare with; {ref.description}")
    scorer = Scorer(ref.images)
    sampler = sampler or gen.default_sampler
    samples: dict[int, torch.Tensor] = {}
    scores = score_model(gen.model, scorer, steps, num, seed, sampler, gen.device, samples)
    report = ScoreReport(str(gen.source), gen.step, gen.method, sampler, seed, num, scores, ref.description,
                         len(ref.images), ref.held_out)
    if copies and ref.train is not None and len(ref.train) > 1:
        best = min(scores, key=scores.get)
        report.near_copies = near_copies(samples[best], ref.train, ref.images if ref.held_out else None)
        report.copies_steps = best
        if ref.held_out:
            report.denoising = overfitting_gap(gen.model, ref.train, ref.images, seed=seed, device=gen.device)
    report.seconds = time.perf_counter() - started
    return report


# --- the command line: cmcore score ------------------------------------------------------------------------
def parse_steps(text: str) -> list[int]:
    """"1,2,4" → [1, 2, 4]; a CmcoreError for anything else."""
    from .errors import CmcoreError

    try:
        steps = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        steps = []
    if not steps or any(k < 1 for k in steps):
        raise CmcoreError(f"--steps must be whole numbers of at least 1 separated by commas, like 1,2,4; got {text!r}")
    return list(dict.fromkeys(steps))


def format_report(report: ScoreReport) -> str:
    """The readable table `cmcore score` prints."""
    lines = [f"checkpoint : {report.checkpoint} ({report.method}, step {report.step})",
             f"reference  : {report.reference}",
             f"samples    : {report.num} per step count, seed {report.seed}, {report.sampler} sampler",
             "",
             "steps   score (lower is better)"]
    lines += [f"{k:5d}   {v:10.3f}" for k, v in report.scores.items()]
    copies = report.near_copies
    if copies is not None:
        held = "" if copies["held_out_share"] is None else \
            f"; held-out images within it: {100 * copies['held_out_share']:.1f} %"
        lines += ["", f"near copies: {100 * copies['share']:.1f} % of the {report.copies_steps}-step samples lie "
                  f"within {copies['threshold']:.4f} of a training image (a lightly augmented copy's distance; "
                  f"distinct training images: median {copies['median_neighbour']:.4f}{held})"]
    gap = report.denoising
    if gap is not None:
        lines += ["", "denoising error   " + "  ".join(f"t={t:<6g}" for t in gap["times"]),
                  "  training        " + "  ".join(f"{v:<8.5f}" for v in gap["train"]),
                  "  held out        " + "  ".join(f"{v:<8.5f}" for v in gap["held_out"]),
                  "  gap             " + "  ".join(f"{v:<+8.5f}" for v in gap["gap"])]
    lines += ["", f"scored in {report.seconds:.1f} s"]
    return "\n".join(lines)


def main(args) -> int:
    """`cmcore score RUN|CKPT [--steps 1,2,4] [--data SPEC] [--num N] [--json]`: the table, then with --json
    one JSON object on the last line whose `scores` maps each step count (a string) to its score."""
    from .errors import CmcoreError

    steps = parse_steps(args.steps)
    if args.num < 2:
        raise CmcoreError("--num must be at least 2")
    report = score_checkpoint(args.source, steps, args.data, args.num, args.seed, args.device, args.sampler)
    print(format_report(report))
    if args.json:
        print(json.dumps(report.to_dict()))
    return 0
