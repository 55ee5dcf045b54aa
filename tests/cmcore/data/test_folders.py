"""Folders: bad files are skipped with a reason, never fatal; modes, channels, geometry,
errors, progress and cancel, the preallocated buffer, the scan."""
from __future__ import annotations

import errno
import io
import os
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cmcore.data import DataError, decode, folders, load_dataset, scan

from .images import folder_of, noise

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
    noise((40, 30)).save(folder / "rgb.png")
    noise((30, 40), "L").save(folder / "gray.png")
    noise((33, 33), "RGBA").save(folder / "rgba.png")
    noise((20, 20)).convert("P").save(folder / "palette.gif")
    frames = [noise((24, 24), seed=s).convert("P") for s in range(3)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:])
    noise((36, 36), "CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(np.full((32, 32), 40000, np.uint16)).save(folder / "deep16.png")
    noise((32, 32)).save(folder / "image.bmp")
    noise((32, 32)).save(folder / "image.webp")
    noise((32, 32)).save(folder / "image.tiff")
    noise((32, 32)).save(folder / "sub" / "dir" / "nested.PNG")
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.jpg").write_text("this is a text file, not a JPEG\n")
    _write_half(folder / "truncated.jpg", noise((64, 64)), "JPEG")
    _write_half(folder / "truncated.png", noise((64, 64)), "PNG")
    _write_bomb_png(folder / "bomb.png")
    (folder / "notes.txt").write_text("ignored: not an image extension")


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("matrix")
    _make_matrix(folder)
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
    folder = folder_of(tmp_path, {"big.png": noise((64, 32)), "ok.png": noise((8, 8))})
    ds = load_dataset(str(folder), 8, max_pixels=1000, cache_dir=tmp_path / "cache")
    assert len(ds) == 1
    assert [(Path(s.path).name, s.reason) for s in ds.report.skipped] == [
        ("big.png", "too large (64×32 pixels)")
    ]


def test_unreadable_file_reports_the_system_reason(tmp_path):
    folder = folder_of(tmp_path, {"ok.png": noise((8, 8))})
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
    noise((8, 8)).save(folder / "ok.png")
    filters_before = list(warnings.filters)
    ds = load_dataset(str(folder), 8, max_pixels=10**12, cache_dir=tmp_path / "cache")
    assert [(Path(s.path).name, s.reason) for s in ds.report.skipped] == [
        ("bomb.png", "too large (144000000 pixels)")
    ]
    assert warnings.filters == filters_before  # PIL/warnings state is left as it was


def test_modes_are_converted_faithfully(tmp_path):
    transparent = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    folder = folder_of(tmp_path, {
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
    gray_palette = noise((16, 16), "L").convert("P")
    folder = folder_of(tmp_path, {
        "l.png": noise((16, 16), "L"),
        "bits.png": noise((16, 16), "L").convert("1"),
        "deep.png": Image.fromarray(np.arange(256, dtype=np.uint16).reshape(16, 16) * 256),
        "la.png": noise((16, 16), "LA"),
        "pal.gif": gray_palette,
    })
    ds = load_dataset(str(folder), 16, cache_dir=tmp_path / "cache")
    assert len(ds) == 5 and ds.channels == 1 and ds.report.channels == 1


def test_auto_channels_mixed_folder_gives_three_channels(tmp_path):
    folder = folder_of(tmp_path, {"l.png": noise((16, 16), "L"), "c.png": noise((16, 16))})
    ds = load_dataset(str(folder), 16, cache_dir=tmp_path / "cache")
    assert ds.channels == 3
    gray = ds.images[1]  # files load in sorted order: c.png, l.png
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


def test_forced_channels(tmp_path):
    folder = folder_of(tmp_path, {"c.png": Image.new("RGB", (8, 8), (255, 0, 0))})
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
    folder = folder_of(tmp_path, {"wide.png": Image.fromarray(image)})
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


# --------------------------------------------------------------------------- progress & cancel


def test_progress_reaches_total_and_cancel_aborts(tmp_path):
    folder = folder_of(tmp_path, {f"{i}.png": noise((16, 16), seed=i) for i in range(6)})
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



# --------------------------------------------------------------------------- the preallocated buffer


def _mixed_folder(tmp_path: Path) -> Path:
    """Gray files first, a colour one after them, and a file that is skipped in between."""
    images = {f"g{i}.png": noise((20 + i, 16), "L", seed=i) for i in range(5)}
    folder = folder_of(tmp_path, {**images, "z_colour.png": noise((16, 18), seed=9)})
    (folder / "h_broken.png").write_bytes(b"garbage")
    return folder


def test_rows_finishing_out_of_order_come_out_in_file_order(tmp_path, monkeypatch):
    folder = _mixed_folder(tmp_path)
    expected = load_dataset(str(folder), 8, cache_dir=tmp_path / "c1")
    decode_file = folders.decode_file

    def late_first(candidate, *args):  # the earlier the file, the later it finishes
        time.sleep(0.02 * (7 - sorted(os.listdir(folder)).index(candidate.relative)))
        return decode_file(candidate, *args)

    monkeypatch.setattr(folders, "decode_file", late_first)
    got = load_dataset(str(folder), 8, cache_dir=tmp_path / "c2")
    assert torch.equal(got.images, expected.images) and got.report.skipped == expected.report.skipped
    [first], [second] = (tmp_path / "c1").glob("*.pt"), (tmp_path / "c2").glob("*.pt")
    assert first.read_bytes() == second.read_bytes()  # the cache holds the same bytes


def test_a_colour_file_behind_gray_headers_widens_the_buffer(tmp_path, monkeypatch):
    folder = _mixed_folder(tmp_path)
    expected = load_dataset(str(folder), 8, cache_dir=tmp_path / "c1")
    monkeypatch.setattr(folders, "header_is_gray", lambda candidate, max_pixels: True)
    got = load_dataset(str(folder), 8, cache_dir=tmp_path / "c2")
    assert got.channels == 3 and torch.equal(got.images, expected.images)
    assert torch.equal(got.images[0, 0], got.images[0, 2])  # the gray rows written before stay gray


def test_a_skipped_colour_file_leaves_a_grayscale_set(tmp_path):
    """Its header says colour, so the buffer starts with three channels; decoding skips it,
    so the set is gray (one channel) exactly as a forced one-channel load of it."""
    folder = folder_of(tmp_path, {f"g{i}.png": noise((20, 16), "L", seed=i) for i in range(4)})
    _write_half(folder / "c_colour.jpg", noise((64, 64)), "JPEG")
    assert decode.header_is_gray(scan.stat_candidate(folder / "c_colour.jpg", "c"), 10**6) is False
    ds = load_dataset(str(folder), 8, cache_dir=tmp_path / "c1")
    assert ds.channels == 1 and len(ds) == 4 and ds.report.skipped[0].reason == "truncated or corrupt"
    assert torch.equal(ds.images, load_dataset(str(folder), 8, 1, cache_dir=tmp_path / "c2").images)


def test_the_tensor_owns_exactly_its_rows(tmp_path):
    folder = _mixed_folder(tmp_path)
    images = load_dataset(str(folder), 8, cache_dir=tmp_path / "cache").images
    assert images.shape == (6, 3, 8, 8) and images.is_contiguous()
    assert images.untyped_storage().nbytes() == images.numel()  # the skipped file's row is given back


def test_rows_are_sorted_in_place():
    rng = np.random.default_rng(0)
    order = [int(i) for i in rng.permutation(50)]
    rows = np.array([[i, i * 2] for i in order], np.int64)
    folders._sort_rows(rows, order)
    assert rows.tolist() == [[i, i * 2] for i in range(50)]


# --------------------------------------------------------------------------- scanning


def _many_files(tmp_path: Path, count: int = 300) -> Path:
    """``count`` tiny image files in a few subfolders (empty: the scan does not open them)."""
    folder = tmp_path / "many"
    for i in range(count):
        sub = folder / f"d{i % 7}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{i:04d}.png").write_bytes(b"")
    (folder / "d0" / "notes.txt").write_text("not an image")
    return folder


def _never(*args, **kwargs):
    raise AssertionError("decoding started although the scan was cancelled")


def test_scan_reports_the_files_found_and_can_be_cancelled_after_the_first_report(tmp_path, monkeypatch):
    folder = _many_files(tmp_path)
    monkeypatch.setattr(folders, "header_is_gray", _never)
    monkeypatch.setattr(folders, "decode_file", _never)
    reports: list[int] = []
    with pytest.raises(DataError, match="cancelled"):
        load_dataset(str(folder), 8, cache_dir=tmp_path / "cache",
                     scan_progress=reports.append, cancel=lambda: bool(reports))
    assert reports == [1]  # stopped right after the first report, not after the whole tree
    assert not (tmp_path / "cache").exists()


def test_scan_reports_at_the_first_file_then_by_the_clock_then_the_total(tmp_path, monkeypatch):
    folder = _many_files(tmp_path, 40)
    ticks = iter(range(10**6))
    monkeypatch.setattr(scan, "_clock", lambda: next(ticks) * 0.03)  # 30 ms per file
    reports: list[int] = []
    with pytest.raises(DataError, match="No usable image"):  # the files are empty
        load_dataset(str(folder), 8, cache_dir=tmp_path / "cache", scan_progress=reports.append)
    assert reports == [*range(1, 40, 4), 40]  # 1 at once, every 4th file (120 ms), the total


def test_scan_polls_cancel_between_every_two_files(tmp_path, monkeypatch):
    folder = _many_files(tmp_path, 50)
    log: list[str] = []
    stat = scan.stat_candidate

    def logged_stat(*args):
        log.append("stat")
        return stat(*args)

    monkeypatch.setattr(scan, "stat_candidate", logged_stat)
    monkeypatch.setattr(folders, "decode_file", _never)
    with pytest.raises(DataError, match="cancelled"):
        load_dataset(str(folder), 8, cache_dir=tmp_path / "cache",
                     cancel=lambda: log.append("cancel") or log.count("stat") >= 30)
    assert log.count("stat") == 30  # stopped at the first poll after the 30th file
    assert "stat,stat" not in ",".join(log)  # a poll between every two files (one stat each)
