"""Does the model copy its training images? The overfitting gap and the near-copy check (issue 23).

* **Overfitting** (`denoising_error`, `overfitting_gap`): the model's denoising error at fixed times on
  training images and on held-out images, whose gap grows when the model memorises.
* **Memorisation** (`near_copies`, `nearest_training`): each sample's nearest training images, and the share
  of samples closer to one than a lightly augmented copy of a training image is to its original. Measured
  in `copy_features` (16×16 area-averaged images), not in the score's statistics: those forget where things
  are and move under pixel noise, so there a lightly noised copy sat as far from its original as distinct
  images do (25 % of held-out demo images were flagged; 0 % with copy_features).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from .score import SCORE_SEED, _area, _chunks, as_float
from .split import spread_index, spread_subset


# --- overfitting: the denoising error on training and held-out images --------------------------------------
DENOISING_TIMES = (0.2, 0.5, 0.8)


@torch.no_grad()
def denoising_error(model, images: torch.Tensor, times: Sequence[float] = DENOISING_TIMES, seed: int = SCORE_SEED,
                    device="cpu", batch: int = 128) -> dict[float, float]:
    """{t: mean ‖f(x_t, t) − x0‖² per pixel} over `images` (uint8 or floats in [-1, 1]), with
    x_t = (1 − t)·x0 + t·z and z from `seed` (image i from its own stream, the same z at every t): the
    same numbers for the same weights, whatever the curriculum."""
    from .sampling import ImageNoise

    was_training = model.training
    model.eval()
    total = {float(t): 0.0 for t in times}
    count = 0
    try:
        for first in range(0, len(images), batch):
            x0 = as_float(images[first:first + batch]).to(device)
            z = ImageNoise.for_images(seed, len(x0), first).draw(x0)
            for t in times:
                f = model((1 - t) * x0 + t * z, float(t))
                total[float(t)] += float((f.float() - x0).square().mean((1, 2, 3)).sum())
            count += len(x0)
    finally:
        model.train(was_training)
    return {t: v / max(count, 1) for t, v in total.items()}


def overfitting_gap(model, train_images: torch.Tensor, held_out_images: torch.Tensor,
                    times: Sequence[float] = DENOISING_TIMES, num: int = 256, seed: int = SCORE_SEED,
                    device="cpu") -> dict:
    """The denoising error on (up to `num` of) the training and the held-out images, and the gap
    held-out − training per time: about 0 while the model generalises, growing as it memorises."""
    train = denoising_error(model, spread_subset(train_images, num), times, seed, device)
    held = denoising_error(model, spread_subset(held_out_images, num), times, seed, device)
    return {"times": [float(t) for t in times], "train": [train[float(t)] for t in times],
            "held_out": [held[float(t)] for t in times], "gap": [held[float(t)] - train[float(t)] for t in times]}


# --- memorisation: near-copies of training images ---------------------------------------------------------
COPY_SIDE = 16  # near-copies are compared as 16×16 area-averaged images
AUGMENT = 0.05  # a light augmentation: contrast and brightness ±5 %, pixel noise σ = 0.05 (of the [-1, 1] range)
COPY_QUANTILE = 0.95  # the near-copy threshold: 95 % of lightly augmented copies fall within it


@torch.no_grad()
def copy_features(images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """The space near-copies are found in: the image area-averaged to 16×16, flattened (N × C·256).
    Unlike the score's statistics it keeps where things are, and it barely moves under pixel noise."""
    return torch.cat([_area(x, COPY_SIDE).flatten(1) for x in _chunks(images, batch)])


def light_augment(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A lightly changed copy of each image (floats in [-1, 1]): contrast and brightness ±5 %, noise σ 0.05."""
    x = as_float(images)
    gen = torch.Generator().manual_seed(seed)
    n = len(x)
    contrast = 1 + AUGMENT * (2 * torch.rand(n, 1, 1, 1, generator=gen) - 1)
    brightness = AUGMENT * (2 * torch.rand(n, 1, 1, 1, generator=gen) - 1)
    return (x * contrast + brightness + AUGMENT * torch.randn(x.shape, generator=gen)).clamp(-1, 1)


def nearest_training(samples: torch.Tensor, train: torch.Tensor, k: int = 1,
                     train_features: torch.Tensor | None = None,
                     exclude_self: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(distances, indices), each N × k: every sample's k nearest training images in `copy_features`
    (RMS distance per feature). `exclude_self`: samples ARE the first N training images; skip each itself."""
    a = copy_features(samples)
    b = copy_features(train) if train_features is None else train_features
    k = min(k, len(b) - (1 if exclude_self else 0))
    wide = min(k + 8, len(b))  # candidates by the fast (matrix-product) distance, then measured exactly
    dists, idxs = [], []
    for start in range(0, len(a), 256):
        rows = a[start:start + 256]
        d = torch.cdist(rows, b)
        if exclude_self:
            own = torch.arange(start, start + len(rows))
            d[own - start, own] = math.inf
        candidates = d.topk(wide, dim=1, largest=False).indices
        exact = (rows[:, None, :] - b[candidates]).norm(dim=2) / math.sqrt(b.shape[1])
        if exclude_self:
            exact[candidates == torch.arange(start, start + len(rows))[:, None]] = math.inf
        v, order = exact.topk(k, dim=1, largest=False)
        dists.append(v)
        idxs.append(candidates.gather(1, order))
    return torch.cat(dists), torch.cat(idxs)


def near_copy_threshold(train: torch.Tensor, num: int = 256, seed: int = 0,
                        train_features: torch.Tensor | None = None) -> dict:
    """Calibrated on the training images themselves: the distance within which 95 % of lightly augmented
    copies of (up to `num` of) them fall from their originals, and the median distance from a training
    image to its nearest other training image (what distinct images are apart)."""
    index = spread_index(len(train), num)
    subset = train[index]
    own = copy_features(subset)
    shifted = copy_features(light_augment(subset, seed))
    copy_d = (own - shifted).norm(dim=1) / math.sqrt(own.shape[1])
    feats = copy_features(train) if train_features is None else train_features
    d = torch.cdist(own, feats) / math.sqrt(own.shape[1])
    d[torch.arange(len(subset)), index] = math.inf
    neighbour = d.min(1).values if len(train) > 1 else torch.tensor([math.inf])
    return {"threshold": float(copy_d.quantile(COPY_QUANTILE)), "median_neighbour": float(neighbour.median())}


def near_copies(samples: torch.Tensor, train: torch.Tensor, held_out: torch.Tensor | None = None,
                k: int = 3, seed: int = 0) -> dict:
    """Memorisation check: each sample's `k` nearest training images and the share of samples within the
    near-copy threshold of one (`near_copy_threshold`). With `held_out` images, the share of them within it
    too: the false-alarm rate on this data (held-out images are no copies)."""
    feats = copy_features(train)
    calibration = near_copy_threshold(train, seed=seed, train_features=feats)
    dist, idx = nearest_training(samples, train, k, train_features=feats)
    report = {**calibration, "share": float((dist[:, 0] <= calibration["threshold"]).float().mean()),
              "distances": dist.tolist(), "nearest": idx.tolist(), "held_out_share": None}
    if held_out is not None and len(held_out):
        held_d, _ = nearest_training(held_out, train, 1, train_features=feats)
        report["held_out_share"] = float((held_d[:, 0] <= calibration["threshold"]).float().mean())
    return report
