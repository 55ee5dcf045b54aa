"""Data loading: bad files are skipped with a reason, never fatal; caching; batches."""
from __future__ import annotations

import errno
import io
import os
import socket
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cmcore import data
from cmcore.data import (
    DataError,
    DataReport,
    ImageDataset,
    default_cache_dir,
    describe_spec,
    load_dataset,
)

GOOD_FILES = [
    "rgb.png", "gray.png", "rgba.png", "palette.gif", "animated.gif", "cmyk.jpg",
    "deep16.png", "image.bmp", "image.webp", "image.tiff", "sub/dir/nested.PNG",
]
BAD_FILES = {
    "empty.png": "empty file",
    "text.jpg": "not an image",
    "truncated.jpg": "truncated or corrupt",
    "truncated.png": "truncated or corrupt",
    "bomb.png": "too large",
}


def _noise(size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], len(mode))
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _write_bomb_png(path: Path, side: int = 12000) -> None:
    """A valid 1-bit side x side PNG of a few KB (drawing it with PIL would take 144 MB)."""
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    rows = zlib.compress(bytes(side * (1 + side // 8)), 9)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", rows)
        + _png_chunk(b"IEND", b"")
    )


def _write_half(path: Path, image: Image.Image, fmt: str) -> None:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def _make_matrix(folder: Path) -> None:
    (folder / "sub" / "dir").mkdir(parents=True)
    _noise((40, 30)).save(folder / "rgb.png")
    _noise((30, 40), "L").save(folder / "gray.png")
    _noise((33, 33), "RGBA").save(folder / "rgba.png")
    _noise((20, 20)).convert("P").save(folder / "palette.gif")
    frames = [_noise((24, 24), seed=s).convert("P") for s in range(3)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:])
    _noise((36, 36), "CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(np.full((32, 32), 40000, np.uint16)).save(folder / "deep16.png")
    _noise((32, 32)).save(folder / "image.bmp")
    _noise((32, 32)).save(folder / "image.webp")
    _noise((32, 32)).save(folder / "image.tiff")
    _noise((32, 32)).save(folder / "sub" / "dir" / "nested.PNG")
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.jpg").write_text("this is a text file, not a JPEG\n")
    _write_half(folder / "truncated.jpg", _noise((64, 64)), "JPEG")
    _write_half(folder / "truncated.png", _noise((64, 64)), "PNG")
    _write_bomb_png(folder / "bomb.png")
    (folder / "notes.txt").write_text("ignored: not an image extension")


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("matrix")
    _make_matrix(folder)
    return folder


def _folder_of(tmp_path: Path, images: dict[str, Image.Image]) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for name, image in images.items():
        image.save(folder / name)
    return folder


# --------------------------------------------------------------------------- bad files


def test_bad_file_matrix_loads_the_good_and_reports_the_bad(matrix, tmp_path):
    ds = load_dataset(str(matrix), resolution=16, cache_dir=tmp_path / "cache")
    assert len(ds) == len(GOOD_FILES)
    assert ds.images.shape == (len(GOOD_FILES), 3, 16, 16) and ds.images.dtype == torch.uint8
    reasons = {Path(s.path).name: s.reason for s in ds.report.skipped}
    assert set(reasons) == set(BAD_FILES)
    for name, expected in BAD_FILES.items():
        assert reasons[name].startswith(expected), (name, reasons[name])
    text = ds.report.to_text()
    for name, reason in reasons.items():
        assert any(name in line and reason in line for line in text.splitlines())
    assert "notes.txt" not in text


def test_image_over_max_pixels_is_skipped_before_decoding(tmp_path):
    folder = _folder_of(tmp_path, {"big.png": _noise((64, 32)), "ok.png": _noise((8, 8))})
    ds = load_dataset(str(folder), 8, max_pixels=1000, cache_dir=tmp_path / "cache")
    assert len(ds) == 1
    assert [(Path(s.path).name, s.reason) for s in ds.report.skipped] == [
        ("big.png", "too large (64×32 pixels)")
    ]


def test_unreadable_file_reports_the_system_reason(tmp_path):
    folder = _folder_of(tmp_path, {"ok.png": _noise((8, 8))})
    try:
        (folder / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    except OSError:
        pytest.skip("symlinks not available")
    ds = load_dataset(str(folder), 8, cache_dir=tmp_path / "cache")
    assert [(Path(s.path).name, s.reason) for s in ds.report.skipped] == [
        ("dangling.png", f"unreadable: {os.strerror(errno.ENOENT)}")
    ]


def test_pil_bomb_guard_holds_even_when_max_pixels_is_raised(tmp_path):
    folder = tmp_path / "bomb"
    folder.mkdir()
    _write_bomb_png(folder / "bomb.png")
    _noise((8, 8)).save(folder / "ok.png")
    filters_before = list(warnings.filters)
    ds = load_dataset(str(folder), 8, max_pixels=10**12, cache_dir=tmp_path / "cache")
    assert [(Path(s.path).name, s.reason) for s in ds.report.skipped] == [
        ("bomb.png", "too large (144000000 pixels)")
    ]
    assert warnings.filters == filters_before  # PIL/warnings state is left as it was


def test_modes_are_converted_faithfully(tmp_path):
    transparent = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    folder = _folder_of(tmp_path, {
        "a_transparent.png": transparent,  # composited onto white
        "b_deep.png": Image.fromarray(np.full((8, 8), 32896, np.uint16)),  # 16-bit mid-gray
        "c_red.gif": Image.new("RGB", (8, 8), (255, 0, 0)).convert("P"),
    })
    ds = load_dataset(str(folder), 8, cache_dir=tmp_path / "cache")
    white, gray, red = (ds.images[i, :, 4, 4].tolist() for i in range(3))
    assert white == [255, 255, 255]
    assert gray == [128, 128, 128]  # 32896 / 257, not clipped to 255
    assert red == [255, 0, 0]


# --------------------------------------------------------------------------- channels


def test_auto_channels_all_grayscale_folder_gives_one_channel(tmp_path):
    gray_palette = _noise((16, 16), "L").convert("P")
    folder = _folder_of(tmp_path, {
        "l.png": _noise((16, 16), "L"),
        "bits.png": _noise((16, 16), "L").convert("1"),
        "deep.png": Image.fromarray(np.arange(256, dtype=np.uint16).reshape(16, 16) * 256),
        "la.png": _noise((16, 16), "LA"),
        "pal.gif": gray_palette,
    })
    ds = load_dataset(str(folder), 16, cache_dir=tmp_path / "cache")
    assert len(ds) == 5 and ds.channels == 1 and ds.report.channels == 1


def test_auto_channels_mixed_folder_gives_three_channels(tmp_path):
    folder = _folder_of(tmp_path, {"l.png": _noise((16, 16), "L"), "c.png": _noise((16, 16))})
    ds = load_dataset(str(folder), 16, cache_dir=tmp_path / "cache")
    assert ds.channels == 3
    gray = ds.images[1]  # files load in sorted order: c.png, l.png
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


def test_forced_channels(tmp_path):
    folder = _folder_of(tmp_path, {"c.png": Image.new("RGB", (8, 8), (255, 0, 0))})
    one = load_dataset(str(folder), 8, channels=1, cache_dir=tmp_path / "cache")
    assert one.channels == 1 and one.images[0, 0, 0, 0] == 76  # PIL's luma of pure red
    three = load_dataset(str(folder), 8, channels="3", cache_dir=tmp_path / "cache")
    assert three.channels == 3
    with pytest.raises(DataError, match="channels"):
        load_dataset(str(folder), 8, channels=2, cache_dir=tmp_path / "cache")


# --------------------------------------------------------------------------- geometry


def test_resize_then_centre_crop_keeps_the_middle(tmp_path):
    image = np.zeros((32, 64, 3), np.uint8)
    image[:, :16] = (255, 0, 0)  # left quarter red
    image[:, 16:48] = (0, 255, 0)  # middle half green
    image[:, 48:] = (0, 0, 255)  # right quarter blue
    folder = _folder_of(tmp_path, {"wide.png": Image.fromarray(image)})
    crop = load_dataset(str(folder), 16, cache_dir=tmp_path / "cache").images[0].int()
    r, g, b = crop
    assert (g > 200).all() and (r < 60).all() and (b < 60).all()  # a squash would show red/blue
    assert (crop[:, :, 2:-2] == torch.tensor([0, 255, 0])[:, None, None]).all()


# --------------------------------------------------------------------------- errors


def test_folder_without_usable_image_names_folder_and_count(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"")
    (folder / "b.jpg").write_text("nope")
    with pytest.raises(DataError, match="2 image file") as err:
        load_dataset(str(folder), cache_dir=tmp_path / "cache")
    assert str(folder) in str(err.value) and "\n" not in str(err.value)


def test_folder_without_image_files(tmp_path):
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match="No image files") as err:
        load_dataset(str(tmp_path), cache_dir=tmp_path / "cache")
    assert str(tmp_path) in str(err.value)


def test_unknown_spec_is_named(tmp_path):
    missing = tmp_path / "does-not-exist"
    with pytest.raises(DataError) as err:
        load_dataset(str(missing), cache_dir=tmp_path / "cache")
    assert str(missing) in str(err.value)


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


# --------------------------------------------------------------------------- cache


def test_second_load_is_a_cache_hit_without_decoding(tmp_path, monkeypatch):
    folder = _folder_of(tmp_path, {f"{i}.png": _noise((20, 20), seed=i) for i in range(4)})
    (folder / "broken.png").write_bytes(b"garbage")
    first = load_dataset(str(folder), 16, cache_dir=tmp_path / "cache")
    assert not first.report.cache_hit

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(data, "_decode_file", no_decoding)
    second = load_dataset(str(folder), 16, cache_dir=tmp_path / "cache")
    assert second.report.cache_hit
    assert torch.equal(first.images, second.images)
    assert second.report.skipped == first.report.skipped and len(second.report.skipped) == 1


def test_changed_or_added_file_invalidates_the_cache(tmp_path):
    folder = _folder_of(tmp_path, {f"{i}.png": _noise((20, 20), seed=i) for i in range(3)})
    cache = tmp_path / "cache"
    before = load_dataset(str(folder), 16, cache_dir=cache)
    _noise((20, 20), seed=99).save(folder / "0.png")
    stat = (folder / "0.png").stat()
    os.utime(folder / "0.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    changed = load_dataset(str(folder), 16, cache_dir=cache)
    assert not changed.report.cache_hit
    assert not torch.equal(before.images[0], changed.images[0])
    _noise((20, 20), seed=5).save(folder / "3.png")
    added = load_dataset(str(folder), 16, cache_dir=cache)
    assert not added.report.cache_hit and len(added) == 4
    assert load_dataset(str(folder), 16, cache_dir=cache).report.cache_hit
    assert not load_dataset(str(folder), 8, cache_dir=cache).report.cache_hit  # resolution


def test_corrupt_cache_falls_back_to_decoding(tmp_path):
    folder = _folder_of(tmp_path, {f"{i}.png": _noise((20, 20), seed=i) for i in range(3)})
    cache = tmp_path / "cache"
    first = load_dataset(str(folder), 16, cache_dir=cache)
    files = list(cache.glob("*.pt"))
    assert len(files) == 1 and not list(cache.glob("*.tmp"))
    files[0].write_bytes(files[0].read_bytes()[:100])
    again = load_dataset(str(folder), 16, cache_dir=cache)
    assert not again.report.cache_hit and torch.equal(first.images, again.images)
    assert load_dataset(str(folder), 16, cache_dir=cache).report.cache_hit  # rewritten


def test_default_cache_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("CMCORE_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("CMCORE_CACHE_DIR")
    assert default_cache_dir().name == "datasets"


# --------------------------------------------------------------------------- progress & cancel


def test_progress_reaches_total_and_cancel_aborts(tmp_path):
    folder = _folder_of(tmp_path, {f"{i}.png": _noise((16, 16), seed=i) for i in range(6)})
    calls: list[tuple[int, int]] = []
    record = lambda done, total: calls.append((done, total))  # noqa: E731
    load_dataset(str(folder), 8, cache_dir=tmp_path / "cache", progress=record)
    assert calls[-1] == (6, 6) and [d for d, _ in calls] == list(range(1, 7))

    done: list[int] = []
    with pytest.raises(DataError, match="cancelled"):
        load_dataset(
            str(folder), 16, cache_dir=tmp_path / "cache2",
            progress=lambda d, t: done.append(d), cancel=lambda: len(done) >= 2,
        )
    assert len(done) == 2  # stopped after the second file, not after all six
    assert not list((tmp_path / "cache2").glob("*.pt"))


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
