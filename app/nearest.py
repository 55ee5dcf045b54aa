"""The gallery's memorisation check (no Qt; runs in a worker thread): a sample's nearest training images.

The training images are the run's data, loaded with the run's config at the model's resolution and
channels, minus the images its split (RUN/split.json) holds out. They and their features are cached per
run, so a second look is instant. Distances are cmcore.memorisation's (RMS over 16×16 area-averaged images,
in [-1, 1] units): a near-copy sits at about 0.03 or less, distinct images at about 0.2 or more.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy and torch load after the window is shown
    import numpy as np
    import torch

K = 5  # training images shown per sample


@dataclass
class TrainingImages:
    images: torch.Tensor  # uint8 N×C×H×W, the images the run trained on
    indices: list[int]  # their indices in the run's data
    features: torch.Tensor  # cmcore.memorisation.copy_features of them
    description: str


@dataclass
class NearestResult:
    samples: np.ndarray  # uint8 N×H×W×C
    labels: list[str]  # what each sample is ("image #3")
    neighbours: np.ndarray  # uint8 N×k×H×W×C
    distances: np.ndarray  # float N×k, nearest first
    indices: np.ndarray  # int N×k, indices in the run's data
    description: str  # which images were searched


class _Cache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple, TrainingImages] = {}

    def get(self, key: tuple) -> TrainingImages | None:
        with self._lock:
            return self._items.get(key)

    def put(self, key: tuple, value: TrainingImages) -> None:
        with self._lock:
            self._items = {k: v for k, v in self._items.items() if k[0] != key[0]}  # one entry per run
            self._items[key] = value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


TRAINING = _Cache()


def _stamp(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def training_images(run_dir: str | Path, resolution: int, channels: int, cancel: Any = None) -> TrainingImages:
    """The images a run trained on (cached per run, resolution and channels). Raises DataError / ConfigError."""
    import torch

    from cmcore.config import TrainConfig
    from cmcore.data import describe_spec, load_dataset
    from cmcore.memorisation import copy_features
    from cmcore.rundir import CONFIG
    from cmcore.split import SPLIT_FILE, read_split

    run_dir = Path(run_dir)
    key = (str(run_dir), resolution, channels, _stamp(run_dir / CONFIG), _stamp(run_dir / SPLIT_FILE))
    cached = TRAINING.get(key)
    if cached is not None:
        return cached
    config = TrainConfig.load(run_dir / CONFIG)
    dataset = load_dataset(config.data, resolution, channels, cancel=cancel)
    images, label = dataset.images, describe_spec(config.data)
    split = read_split(run_dir)
    keep = torch.ones(len(images), dtype=torch.bool)
    if split is not None and split["num_images"] == len(images):
        keep[split["held_out"]] = False
        what = f"the {int(keep.sum())} training images of {label} ({len(split['held_out'])} held out)"
    else:
        what = f"all {len(images)} images of {label}" + ("" if split is None else " (its split no longer fits)")
    indices = keep.nonzero().flatten().tolist()
    train = images[keep]
    if cancel is not None:
        cancel.check()
    value = TrainingImages(train, indices, copy_features(train), what)
    TRAINING.put(key, value)
    return value


def find_nearest(checkpoint: str | Path, samples: np.ndarray, labels: list[str], k: int = K,
                 cancel: Any = None) -> NearestResult:
    """Each sample's k nearest training images of the run that `checkpoint` belongs to."""
    import numpy as np
    import torch

    from cmcore.errors import DataError
    from cmcore.memorisation import nearest_training
    from cmcore.rundir import run_of

    run_dir = run_of(checkpoint) if Path(checkpoint).is_file() else Path(checkpoint)
    if run_dir is None or not (run_dir / "config.toml").is_file():
        raise DataError(f"{Path(checkpoint).name} is not inside a run folder, so its training images are unknown")
    samples = np.ascontiguousarray(samples, dtype=np.uint8)
    _, h, _, c = samples.shape
    train = training_images(run_dir, h, c, cancel)
    if len(train.images) == 0:
        raise DataError("the run has no training images to compare with")
    x = torch.from_numpy(samples).permute(0, 3, 1, 2)
    dist, idx = nearest_training(x, train.images, k, train_features=train.features)
    neighbours = train.images[idx].permute(0, 1, 3, 4, 2).numpy()
    data_index = np.asarray(train.indices)[idx.numpy()]
    return NearestResult(samples, list(labels), neighbours, dist.numpy(), data_index, train.description)
