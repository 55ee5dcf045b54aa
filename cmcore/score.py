"""Know your model: a sample-quality score on the user's own images (issue 23).

Every default of this project was chosen by the demo FD (benchmarks/fid_demo.py: classifiers trained
on the demo shapes); on a user's own folder there are no such classifiers and nothing may be
downloaded. This module scores samples against held-out images of the user's data instead:

The score (`Scorer`, `score_model`) is a Fréchet distance between Gaussians
  fitted to `quality_features` of the samples and of the held-out images, each feature standardised
  by the held-out images' spread. The features are multi-scale image statistics, computed on an
  image pyramid from the full resolution down to 8 px: per level the mean and spread of each colour
  channel, the mean and spread of the gradient magnitude, the mean and RMS of a band-pass
  (Laplacian) response, the 10/50/90 % luma quantiles, the mean chroma and the coherence of edge
  directions. They were chosen by measurement among random convolutional networks, pixels, a
  small net trained on the data and these statistics: their ranking of demo sample sets agrees best
  with the demo FD (Spearman 0.97 over the 20 sets they were chosen on, 0.92 over 10 sets added
  after the choice; docs/score.md, benchmarks/score_agreement.py). Lower is better; identical sets
  score 0. Fixed code, no weights: the same on every machine, any size 16-256 px, 1 or 3 channels;
  256 images take about 0.1 s at 32 px and 1-2 s at 256 px on a CPU.

The held-out split is cmcore.split; the overfitting gap and the near-copy check are cmcore.memorisation;
`cmcore score` (a checkpoint against its run's held-out images) is cmcore.score_report; the Trainer scores
each checkpoint through cmcore.evaluation and picks the best with `best_step`.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F


# --- images ---------------------------------------------------------------------------------------------------
def as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images → floats in [-1, 1]; float images are clamped to [-1, 1]."""
    if images.dtype == torch.uint8:
        return images.float().div(127.5).sub(1.0)
    return images.float().clamp(-1, 1)


def _luma(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def _area(x: torch.Tensor, size: int) -> torch.Tensor:
    return x if x.shape[-1] == size else F.interpolate(x, size=(size, size), mode="area")


def _chunks(images: torch.Tensor, size: int):
    for start in range(0, len(images), size):
        yield as_float(images[start:start + size])


# --- the score's features ----------------------------------------------------------------------------------
QUANTILES = (0.1, 0.5, 0.9)
SMALLEST_LEVEL = 8  # the pyramid goes down to this side (or the image's own side if smaller)


def _level_statistics(x: torch.Tensor) -> torch.Tensor:
    """The statistics of one pyramid level: N × (2C + 8, plus 1 for colour)."""
    y = _luma(x)
    gx = (y[..., :, 1:] - y[..., :, :-1])[..., :-1, :]  # both on the (H−1)×(W−1) grid
    gy = (y[..., 1:, :] - y[..., :-1, :])[..., :, :-1]
    grad = (gx.square() + gy.square()).sqrt()

    def box(a: torch.Tensor) -> torch.Tensor:  # 3×3 mean over the neighbours inside the image
        return F.avg_pool2d(a, 3, 1, 1, count_include_pad=False)

    band = y - box(y)
    tensor = box(torch.cat([gx * gx, gy * gy, gx * gy], 1))  # the structure tensor, smoothed
    jxx, jyy, jxy = tensor[:, 0:1], tensor[:, 1:2], tensor[:, 2:3]
    energy = jxx + jyy
    coherence = ((jxx - jyy).square() + 4 * jxy.square()).sqrt() / (energy + 1e-4)
    stride = max(1, y.shape[-1] // 64)  # quantiles from at most 64×64 evenly spread pixels
    flat = y[..., ::stride, ::stride].flatten(1).sort(dim=1).values
    positions = [min(flat.shape[1] - 1, round(q * (flat.shape[1] - 1))) for q in QUANTILES]
    columns = [x.mean((2, 3)), x.std((2, 3)),
               grad.mean((1, 2, 3))[:, None], grad.std((1, 2, 3))[:, None],
               band.abs().mean((1, 2, 3))[:, None], band.square().mean((1, 2, 3)).sqrt()[:, None],
               flat[:, positions],
               ((coherence * energy).sum((1, 2, 3)) / (energy.sum((1, 2, 3)) + 1e-8))[:, None]]
    if x.shape[1] == 3:
        columns.append((x - y).square().sum(1).sqrt().mean((1, 2))[:, None])
    return torch.cat(columns, 1)


@torch.no_grad()
def quality_features(images: torch.Tensor, batch: int | None = None) -> torch.Tensor:
    """The score's features of N×C×H×W images (uint8, or floats in [-1, 1]): float64 N × D, the
    statistics of every level of an image pyramid (full size, halved, ... down to 8 px). Computed
    `batch` images at a time (default: a quarter of a million pixels' worth)."""
    batch = batch or max(1, 2**18 // (images.shape[-1] * images.shape[-2]))
    rows = []
    for x in _chunks(images, batch):
        levels = []
        while True:
            levels.append(_level_statistics(x))
            if x.shape[-1] // 2 < SMALLEST_LEVEL:
                break
            x = F.avg_pool2d(x, 2)
        rows.append(torch.cat(levels, 1))
    return torch.cat(rows).double()


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to the rows of a and of b (≥ 0; 0 for equal sets)."""
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    vals, vecs = torch.linalg.eigh(ca)
    sqrt_a = vecs @ torch.diag(vals.clamp_min(0).sqrt()) @ vecs.T
    cross = torch.linalg.eigvalsh(sqrt_a @ cb @ sqrt_a).clamp_min(0).sqrt().sum()
    return max(0.0, float((mu_a - mu_b).square().sum() + ca.trace() + cb.trace() - 2 * cross))


class Scorer:
    """Scores sample sets against fixed reference images (a run's held-out images).

    The reference's features are computed once; each feature is then centred on the reference's
    mean and divided by its spread (at least a tenth of the median spread, so a feature that hardly
    varies in the reference cannot dominate), which puts colour, gradient and band-pass statistics on
    one scale. `score(samples)` is the Fréchet distance in those units: lower is better, 0 for the
    reference itself. `features` may be another function of images → N × D (the benchmark compares
    candidates with it)."""

    def __init__(self, reference: torch.Tensor, features: Callable[[torch.Tensor], torch.Tensor] = quality_features):
        if len(reference) < 2:
            raise ValueError("a score needs at least 2 reference images")
        self.features = features
        self.num_reference = len(reference)
        self.channels, self.resolution = int(reference.shape[1]), int(reference.shape[-1])
        ref = features(reference).double()
        self.mean = ref.mean(0)
        spread = ref.std(0)
        self.spread = spread.clamp_min(max(0.1 * float(spread.median()), 1e-8))
        self.reference = self.standardise(ref)

    def standardise(self, feats: torch.Tensor) -> torch.Tensor:
        return (feats.double() - self.mean) / self.spread

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Standardised features of images (N × D)."""
        return self.standardise(self.features(images))

    def score(self, images: torch.Tensor) -> float:
        """The score of a set of images (uint8 or floats in [-1, 1]; at least 2): lower is better."""
        if len(images) < 2:
            raise ValueError("a score needs at least 2 images")
        if tuple(images.shape[1:]) != (self.channels, self.resolution, self.resolution):
            raise ValueError(f"images of shape {tuple(images.shape[1:])} scored against references of shape "
                             f"{(self.channels, self.resolution, self.resolution)}")
        return frechet_distance(self.embed(images), self.reference)


# --- scoring a model -------------------------------------------------------------------------------------
SCORE_SEED = 0  # the noise every score samples from: the same images for every checkpoint of a run
DEFAULT_STEPS = (1, 2, 4)
DEFAULT_NUM = 256  # samples per step count


def score_model(model, scorer: Scorer, steps: Sequence[int] = DEFAULT_STEPS, num: int = DEFAULT_NUM,
                seed: int = SCORE_SEED, sampler: str = "multistep", device="cpu",
                samples: dict[int, torch.Tensor] | None = None) -> dict[int, float]:
    """{step count: score} of `num` samples of a ConsistencyFunction (the Trainer's evaluation EMA) at each
    sampler step count, drawn from `seed` with `sampler` ("multistep", or "ode" for a flow teacher);
    lower is better. The model is evaluated in eval mode and left in the mode it was in. When `samples`
    is a dict, the samples (CPU floats in [-1, 1]) are put in it by step count."""
    from .sampling import sample

    if num < 2:
        raise ValueError("a score needs at least 2 samples")
    shape = (num, scorer.channels, scorer.resolution, scorer.resolution)
    was_training = model.training
    model.eval()
    try:
        scores = {}
        for k in steps:
            x = sample(model, shape, int(k), seed, sampler, device).float().cpu()
            if samples is not None:
                samples[int(k)] = x
            scores[int(k)] = scorer.score(x)
        return scores
    finally:
        model.train(was_training)


def best_step(history: Sequence[dict], steps: int = 1) -> int | None:
    """The training step whose score at `steps` sampler steps is lowest, from metrics records (their score
    lines, cmcore.rundir.scored); None when none has one."""
    from .rundir import scored

    found = [(s["score"][steps], s["step"]) for s in scored(list(history)) if steps in s["score"]]
    return min(found)[1] if found else None
