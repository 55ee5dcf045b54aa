"""MNIST, Fashion-MNIST and CIFAR-10 from local files: never downloads, says where files go."""
from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from cmcore.data import DataError, load_dataset


@pytest.mark.parametrize(
    "name, where",
    [
        ("mnist", "MNIST/raw"),
        ("fashionmnist", "FashionMNIST/raw"),
        ("cifar10", "cifar-10-batches-py"),
    ],
)
def test_missing_torchvision_set_says_where_to_put_files(tmp_path, monkeypatch, name, where):
    def no_network(*args, **kwargs):
        raise AssertionError("tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    start = time.perf_counter()
    with pytest.raises(DataError) as err:
        load_dataset(f"{name}:{tmp_path}", cache_dir=tmp_path / "cache")
    message = str(err.value)
    assert str(tmp_path) in message and where in message and "never downloads" in message
    assert "\n" not in message
    assert time.perf_counter() - start < 10


def _write_idx(path: Path, array: np.ndarray) -> None:
    magic = 0x0800 + array.ndim
    path.write_bytes(struct.pack(f">{array.ndim + 1}I", magic, *array.shape) + array.tobytes())


def test_mnist_from_raw_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = np.zeros((5, 28, 28), np.uint8)
    images[:, 10:18, 10:18] = 255
    labels = np.arange(5, dtype=np.uint8)
    for split in ("train", "t10k"):
        _write_idx(raw / f"{split}-images-idx3-ubyte", images)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
    ds = load_dataset(f"mnist:{tmp_path}", 32, cache_dir=tmp_path / "cache")
    assert ds.images.shape == (5, 1, 32, 32)
    assert ds.labels.tolist() == [0, 1, 2, 3, 4]
    assert ds.images[0, 0, 16, 16] == 255 and ds.images[0, 0, 0, 0] == 0
    assert load_dataset(f"mnist:{tmp_path}", 16, channels=3).images.shape == (5, 3, 16, 16)

