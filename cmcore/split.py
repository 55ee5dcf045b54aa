"""The held-out split of a run's data: the images a run never trains on, scored against (cmcore.score).

2 % of the folder, at least 32 and at most 1000 images, never more than half; none below 8 images. The split
is a function of (number of images, the run's seed) and recorded in RUN/split.json.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

HELD_OUT_FRACTION = 0.02
HELD_OUT_MIN = 32
HELD_OUT_MAX = 1000
NO_SPLIT_BELOW = 8  # a folder this small keeps every image for training (a score on < 4 images means nothing)
SPLIT_FILE = "split.json"  # RUN/split.json: the held-out indices a run recorded
_SPLIT_SALT = 0x5C0E  # the split's generator is seeded with the run's seed plus this (not the batches' seeds)


def held_out_size(num_images: int) -> int:
    """How many of `num_images` are held out: 2 %, at least 32 and at most 1000, never more than half
    (a folder of 8-63 images holds out half, rounded down); none below 8 images."""
    if num_images < NO_SPLIT_BELOW:
        return 0
    return min(max(round(HELD_OUT_FRACTION * num_images), HELD_OUT_MIN), HELD_OUT_MAX, num_images // 2)


def _permutation(num_images: int, seed: int) -> list[int]:
    gen = torch.Generator().manual_seed(_SPLIT_SALT + int(seed))
    return torch.randperm(num_images, generator=gen).tolist()


def held_out_indices(num_images: int, seed: int) -> list[int]:
    """The held-out images of a run with this seed, sorted: the same for the same (num_images, seed)."""
    return sorted(_permutation(num_images, seed)[:held_out_size(num_images)])


def train_indices(num_images: int, seed: int) -> list[int]:
    """Every image not held out, sorted (all of them below NO_SPLIT_BELOW images)."""
    return sorted(_permutation(num_images, seed)[held_out_size(num_images):])


def write_split(run_dir: str | Path, num_images: int, seed: int) -> list[int]:
    """Record the run's held-out images in RUN/split.json (the Trainer calls this when it starts a run
    that trains on `train_indices`); returns the held-out indices."""
    from .rundir import atomic_write_bytes

    held = held_out_indices(num_images, seed)
    record = {"num_images": num_images, "seed": int(seed), "held_out": held}
    atomic_write_bytes(Path(run_dir) / SPLIT_FILE, (json.dumps(record) + "\n").encode())
    return held


def read_split(run_dir: str | Path | None) -> dict | None:
    """The split a run recorded ({"num_images", "seed", "held_out"}), or None when it recorded none
    (or the file is not one this module wrote)."""
    if run_dir is None:
        return None
    try:
        record = json.loads((Path(run_dir) / SPLIT_FILE).read_text(encoding="utf-8"))
        n, held = int(record["num_images"]), [int(i) for i in record["held_out"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if any(not 0 <= i < n for i in held):
        return None
    return {"num_images": n, "seed": int(record.get("seed", 0)), "held_out": sorted(held)}



def spread_index(size: int, num: int) -> torch.Tensor:
    """`num` indices spread evenly over range(size) (all of them when it is smaller)."""
    if size <= num:
        return torch.arange(size)
    return torch.linspace(0, size - 1, num).round().long()


def spread_subset(images: torch.Tensor, num: int) -> torch.Tensor:
    """`num` images spread evenly over the set (all of them when it is smaller)."""
    return images[spread_index(len(images), num)]
