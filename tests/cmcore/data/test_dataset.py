"""The dataset type (batches, flips, thumbnails, report) and the spec dispatch."""
from __future__ import annotations

import pytest
import torch

from cmcore.data import DataError, DataReport, ImageDataset, describe_spec, load_dataset


# --------------------------------------------------------------------------- batches


def _dataset(hflip: bool = False) -> ImageDataset:
    images = torch.arange(10 * 3 * 4 * 4, dtype=torch.int64).remainder(256).to(torch.uint8)
    images = images.reshape(10, 3, 4, 4)
    return ImageDataset(images, DataReport("test", 10, 4, 3, []), hflip=hflip)


def test_sample_batch_range_shape_and_determinism():
    ds = _dataset()
    batch = ds.sample_batch(32, torch.Generator().manual_seed(3))
    assert batch.shape == (32, 3, 4, 4) and batch.dtype == torch.float32
    assert batch.min() >= -1 and batch.max() <= 1
    assert torch.equal(batch, ds.sample_batch(32, torch.Generator().manual_seed(3)))
    full = ImageDataset(torch.tensor([0, 255], dtype=torch.uint8).reshape(2, 1, 1, 1), ds.report)
    values = full.sample_batch(64, torch.Generator().manual_seed(0)).unique().tolist()
    assert values == [-1.0, 1.0]


def test_hflip_flips_a_random_part_deterministically():
    plain = _dataset().sample_batch(64, torch.Generator().manual_seed(7))
    flipped = _dataset(hflip=True).sample_batch(64, torch.Generator().manual_seed(7))
    same = (plain == flipped).flatten(1).all(1)
    mirrored = (plain.flip(-1) == flipped).flatten(1).all(1)
    assert (same | mirrored).all()
    assert 10 < int(mirrored.sum()) < 54
    again = _dataset(hflip=True).sample_batch(64, torch.Generator().manual_seed(7))
    assert torch.equal(flipped, again)


def test_thumbnails_and_report():
    ds = _dataset()
    thumbs = ds.thumbnails(3)
    assert torch.equal(thumbs, ds.images[:3]) and len(ds.thumbnails(50)) == 10
    assert ds.report.to_dict()["num_images"] == 10


# --------------------------------------------------------------------------- specs


def test_unknown_spec_is_named(tmp_path):
    missing = tmp_path / "does-not-exist"
    with pytest.raises(DataError) as err:
        load_dataset(str(missing), cache_dir=tmp_path / "cache")
    assert str(missing) in str(err.value)


def test_demo_spec(tmp_path):
    ds = load_dataset("demo", 16, cache_dir=tmp_path / "cache")
    assert ds.images.shape[1:] == (3, 16, 16) and ds.labels is not None
    assert len(ds.labels) == len(ds) and ds.report.source == "demo"
    assert load_dataset("demo", 16, channels=1).channels == 1


def test_describe_spec():
    assert describe_spec("demo") == "demo"
    assert describe_spec("mnist:/data") == "MNIST (/data)"
    assert describe_spec("cifar10:/d") == "CIFAR-10 (/d)"
    assert describe_spec("/x/y") == "folder /x/y"

