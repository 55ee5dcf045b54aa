"""The demo set: deterministic, balanced, high-contrast, and its classes really differ."""
from __future__ import annotations

import time

import pytest
import torch

from cmcore.data.demo import DEMO_CLASSES, make_demo


def test_same_arguments_give_identical_bytes():
    a_images, a_labels = make_demo(16, count=256, seed=3)
    b_images, b_labels = make_demo(16, count=256, seed=3)
    assert torch.equal(a_images, b_images) and torch.equal(a_labels, b_labels)
    assert not torch.equal(a_images, make_demo(16, count=256, seed=4)[0])


@pytest.mark.parametrize("resolution, channels", [(16, 3), (24, 1)])
def test_shapes_and_dtypes(resolution, channels):
    images, labels = make_demo(resolution, channels, count=40)
    assert images.shape == (40, channels, resolution, resolution) and images.dtype == torch.uint8
    assert labels.shape == (40,) and labels.dtype == torch.int64


def test_labels_are_balanced_and_shuffled():
    _, labels = make_demo(16, count=402)
    counts = torch.bincount(labels, minlength=len(DEMO_CLASSES)).tolist()
    assert len(counts) == len(DEMO_CLASSES) and max(counts) - min(counts) <= 1
    assert labels[:8].unique().numel() > 1  # not sorted by class


def test_grayscale_is_the_luma_of_the_colour_images():
    rgb, _ = make_demo(16, 3, count=64)
    gray, _ = make_demo(16, 1, count=64)
    weights = torch.tensor([0.299, 0.587, 0.114])[:, None, None]
    luma = (rgb.float() * weights).sum(1, keepdim=True)
    assert (luma - gray.float()).abs().max() <= 1.5


def test_shape_stands_out_from_a_plain_background_even_in_grayscale():
    gray, _ = make_demo(32, 1, count=1024)
    g = gray[:, 0].float()
    corners = torch.stack([g[:, 0, 0], g[:, 0, -1], g[:, -1, 0], g[:, -1, -1]], 1)
    assert (corners == corners[:, :1]).all()  # the shape never reaches the corners
    contrast = (g - corners[:, :1, None]).abs().flatten(1).max(1).values
    assert contrast.min() >= 40


def _shape_moment(images: torch.Tensor) -> torch.Tensor:
    """Second moment of the foreground over its area squared: ignores size, place, angle."""
    g = images[:, 0].float()
    background = g[:, :1, :1]
    foreground = g.flatten(1).gather(1, (g - background).abs().flatten(1).argmax(1, keepdim=True))
    alpha = ((g - background) / (foreground[:, :, None] - background)).clamp(0, 1)
    area = alpha.flatten(1).sum(1)
    side = g.shape[-1]
    ii, jj = torch.meshgrid(torch.arange(side) + 0.5, torch.arange(side) + 0.5, indexing="ij")
    cy = (alpha * ii).flatten(1).sum(1) / area
    cx = (alpha * jj).flatten(1).sum(1) / area
    r2 = (ii - cy[:, None, None]) ** 2 + (jj - cx[:, None, None]) ** 2
    return (alpha * r2).flatten(1).sum(1) / area**2


def test_classes_are_distinguishable():
    train_images, train_labels = make_demo(32, 1, count=1024, seed=1)
    test_images, test_labels = make_demo(32, 1, count=512, seed=2)
    train, test = _shape_moment(train_images), _shape_moment(test_images)
    centroids = torch.stack([train[train_labels == k].mean() for k in range(len(DEMO_CLASSES))])
    assert centroids.unique().numel() == len(DEMO_CLASSES)
    predicted = (test[:, None] - centroids).abs().argmin(1)
    assert (predicted == test_labels).float().mean() >= 0.95


def test_shape_sizes_follow_the_class_areas():
    images, labels = make_demo(32, 1, count=1024)
    g = images[:, 0].float()
    background = g[:, :1, :1]
    covered = ((g - background).abs() > 20).flatten(1).float().mean(1)
    mean = {name: covered[labels == k].mean() for k, name in enumerate(DEMO_CLASSES)}
    assert mean["circle"] > mean["square"] > mean["cross"] > mean["triangle"] > 0.05
    assert covered.max() < 0.5  # 45-75 % of the side means well under half the pixels


def test_generation_is_fast():
    start = time.perf_counter()
    make_demo(32, count=4096)
    assert time.perf_counter() - start < 10  # ~0.3 s here; generous for slow CI machines


def test_invalid_arguments():
    with pytest.raises(ValueError):
        make_demo(16, channels=2)
    with pytest.raises(ValueError):
        make_demo(2)
    with pytest.raises(ValueError):
        make_demo(16, count=0)
