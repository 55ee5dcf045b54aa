"""MNIST, Fashion-MNIST and CIFAR-10 from files already on disk (torchvision's layout).

This module never downloads: a missing set is a ``DataError`` that says where the files
must be. The train split is read whole and resized in chunks to the wanted resolution.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import DataError
from .folders import check_cancel, match_channels

_CHUNK = 4096  # images per step when converting whole tensors (bounds peak memory)


@dataclass(frozen=True)
class _TorchvisionSet:
    label: str
    class_name: str
    where: str  # "{root}"-templated hint saying where the files must be


TORCHVISION_SETS = {
    "mnist": _TorchvisionSet(
        "MNIST",
        "MNIST",
        "place the raw files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, uncompressed) in {root}/MNIST/raw/",
    ),
    "fashionmnist": _TorchvisionSet(
        "Fashion-MNIST",
        "FashionMNIST",
        "place the raw files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, uncompressed) "
        "in {root}/FashionMNIST/raw/",
    ),
    "cifar10": _TorchvisionSet(
        "CIFAR-10",
        "CIFAR10",
        "extract cifar-10-python.tar.gz so that {root}/cifar-10-batches-py/ holds "
        "data_batch_1..5, test_batch and batches.meta",
    ),
}


# Each set's class names by label, as torchvision lists them (shortened for MNIST's digits).
TORCHVISION_CLASSES = {
    "mnist": tuple("0123456789"),
    "fashionmnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                     "Ankle boot"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}


def load_torchvision(
    name: str,
    root: str,
    resolution: int,
    wanted: int | None,
    progress: Callable[[int, int], None] | None,
    cancel: Callable[[], bool] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train split of a torchvision set already on disk (``download=False``, always)."""
    info = TORCHVISION_SETS[name]
    if not root:
        raise DataError(f"{name}: needs the folder holding the files, e.g. {name}:/data")
    root = str(Path(root).expanduser())
    import torchvision.datasets  # deferred: importing torchvision costs ~1 s at startup

    try:
        dataset = getattr(torchvision.datasets, info.class_name)(root, train=True, download=False)
    except RuntimeError:
        hint = info.where.format(root=root)
        raise DataError(
            f"{info.label} not found under {root}: {hint} (torchvision layout) "
            "— this app never downloads"
        ) from None
    except Exception as exc:
        raise DataError(f"{info.label} under {root} could not be read: {exc}") from exc
    images = torch.as_tensor(dataset.data)  # MNIST: tensor [N,H,W]; CIFAR: array [N,H,W,C]
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
    labels = torch.as_tensor(dataset.targets, dtype=torch.int64)
    return _resize_all(images, resolution, wanted or images.shape[1], progress, cancel), labels


def _resize_all(
    images: torch.Tensor,
    resolution: int,
    channels: int,
    progress: Callable[[int, int], None] | None,
    cancel: Callable[[], bool] | None,
) -> torch.Tensor:
    """Square uint8 images [N, C, h, h] -> [N, channels, resolution, resolution]."""
    total = len(images)
    out = torch.empty((total, channels, resolution, resolution), dtype=torch.uint8)
    for start in range(0, total, _CHUNK):
        check_cancel(cancel)
        chunk = images[start : start + _CHUNK]
        if chunk.shape[-1] != resolution:
            resized = F.interpolate(
                chunk.float(), size=(resolution, resolution), mode="bicubic",
                antialias=True, align_corners=False,
            )
            chunk = resized.round_().clamp_(0, 255).to(torch.uint8)
        out[start : start + len(chunk)] = match_channels(chunk, channels)
        if progress:
            progress(start + len(chunk), total)
    return out
