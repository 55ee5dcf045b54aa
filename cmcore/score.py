"""Know your model: a sample-quality score on the user's own images (issue 23).

Every default of this project was chosen by the demo FD (benchmarks/fid_demo.py: classifiers trained
on the demo shapes); on a user's own folder there are no such classifiers and nothing may be
downloaded. This module scores samples against held-out images of the user's data instead:

* **The score** (`Scorer`, `score_model`, `score_checkpoint`): a Fréchet distance between Gaussians
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
* **The held-out split** (`held_out_indices`, `train_indices`, `write_split`, `read_split`).
* **Overfitting** (`denoising_error`, `overfitting_gap`): the model's denoising error at fixed times on
  training images and on held-out images, whose gap grows when the model memorises.
* **Memorisation** (`near_copies`): each sample's nearest training images, and the share of samples
  closer to one than a lightly augmented copy of a training image is to its original. Measured in
  `copy_features` (16×16 area-averaged images), not in the score's statistics: those forget where
  things are and move under pixel noise, so there a lightly noised copy sat as far from its original
  as distinct images do (25 % of held-out demo images were flagged; 0 % with copy_features).

For the Trainer: split with `train_indices` / `held_out_indices` (seed = the run's seed) and record
it with `write_split`; build one `Scorer(held_out_images)`; at each checkpoint call
`score_model(ema, scorer, steps, num, sampler=config.default_sampler, device=...)`, log the result as
{"step", "score": {"1": ...}} and pick the best checkpoint with `best_step(records, steps)`.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

# --- the held-out split -------------------------------------------------------------------------------------
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
MAX_REFERENCE = 1000  # a run without a split is scored against at most this many of its images


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
    """The training step whose score at `steps` sampler steps is lowest, from records like
    {"step": 500, "score": {"1": 41.2, "2": ...}} (string or int keys); None when none has one."""
    best = None
    for record in history:
        table = record.get("score") or record.get("scores") or {}
        value = table.get(str(steps), table.get(steps)) if isinstance(table, dict) else None
        if isinstance(value, (int, float)) and math.isfinite(value) and (best is None or value < best[0]):
            best = (value, int(record["step"]))
    return None if best is None else best[1]


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


def _spread_index(size: int, num: int) -> torch.Tensor:
    """`num` indices spread evenly over range(size) (all of them when it is smaller)."""
    if size <= num:
        return torch.arange(size)
    return torch.linspace(0, size - 1, num).round().long()


def _spread_subset(images: torch.Tensor, num: int) -> torch.Tensor:
    """`num` images spread evenly over the set (all of them when it is smaller)."""
    return images[_spread_index(len(images), num)]


def overfitting_gap(model, train_images: torch.Tensor, held_out_images: torch.Tensor,
                    times: Sequence[float] = DENOISING_TIMES, num: int = 256, seed: int = SCORE_SEED,
                    device="cpu") -> dict:
    """The denoising error on (up to `num` of) the training and the held-out images, and the gap
    held-out − training per time: about 0 while the model generalises, growing as it memorises."""
    train = denoising_error(model, _spread_subset(train_images, num), times, seed, device)
    held = denoising_error(model, _spread_subset(held_out_images, num), times, seed, device)
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
    index = _spread_index(len(train), num)
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
    subset = _spread_subset(images, MAX_REFERENCE)
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
