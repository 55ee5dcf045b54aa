"""The decoded-folder cache: hits, invalidation, corrupt and failed writes, key and format."""
from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import torch

from cmcore.data import cache, default_cache_dir, folders, load_dataset

from .images import folder_of, noise


def test_second_load_is_a_cache_hit_without_decoding(tmp_path, monkeypatch):
    folder = folder_of(tmp_path, {f"{i}.png": noise((20, 20), seed=i) for i in range(4)})
    (folder / "broken.png").write_bytes(b"garbage")
    first = load_dataset(str(folder), 16, cache_dir=tmp_path / "cache")
    assert not first.report.cache_hit

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(folders, "_decode_file", no_decoding)
    second = load_dataset(str(folder), 16, cache_dir=tmp_path / "cache")
    assert second.report.cache_hit
    assert torch.equal(first.images, second.images)
    assert second.report.skipped == first.report.skipped and len(second.report.skipped) == 1


def test_changed_or_added_file_invalidates_the_cache(tmp_path):
    folder = folder_of(tmp_path, {f"{i}.png": noise((20, 20), seed=i) for i in range(3)})
    cache = tmp_path / "cache"
    before = load_dataset(str(folder), 16, cache_dir=cache)
    noise((20, 20), seed=99).save(folder / "0.png")
    stat = (folder / "0.png").stat()
    os.utime(folder / "0.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    changed = load_dataset(str(folder), 16, cache_dir=cache)
    assert not changed.report.cache_hit
    assert not torch.equal(before.images[0], changed.images[0])
    noise((20, 20), seed=5).save(folder / "3.png")
    added = load_dataset(str(folder), 16, cache_dir=cache)
    assert not added.report.cache_hit and len(added) == 4
    assert load_dataset(str(folder), 16, cache_dir=cache).report.cache_hit
    assert not load_dataset(str(folder), 8, cache_dir=cache).report.cache_hit  # resolution


def test_corrupt_cache_falls_back_to_decoding(tmp_path):
    folder = folder_of(tmp_path, {f"{i}.png": noise((20, 20), seed=i) for i in range(3)})
    cache = tmp_path / "cache"
    first = load_dataset(str(folder), 16, cache_dir=cache)
    files = list(cache.glob("*.pt"))
    assert len(files) == 1 and [p.name for p in cache.iterdir()] == [files[0].name]  # no temp file
    files[0].write_bytes(files[0].read_bytes()[:100])
    again = load_dataset(str(folder), 16, cache_dir=cache)
    assert not again.report.cache_hit and torch.equal(first.images, again.images)
    assert load_dataset(str(folder), 16, cache_dir=cache).report.cache_hit  # rewritten


def test_default_cache_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("CMCORE_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("CMCORE_CACHE_DIR")
    assert default_cache_dir().name == "datasets"


def test_failed_cache_write_leaves_no_temp_file_and_the_load_goes_on(tmp_path, monkeypatch, caplog):
    folder = folder_of(tmp_path, {f"{i}.png": noise((20, 20), seed=i) for i in range(3)})
    cache_dir = tmp_path / "cache"
    expected = load_dataset(str(folder), 16, cache_dir=tmp_path / "other").images
    written = []

    def disk_full(obj, f, *args, **kwargs):  # half a file written, then the disk is full
        written.append(Path(f.name))
        f.write(b"PK\x03\x04 half a zip")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", disk_full)
    with caplog.at_level(logging.WARNING, logger="cmcore.data"):
        ds = load_dataset(str(folder), 16, cache_dir=cache_dir)
    assert written and written[0].parent == cache_dir  # the temp file sat beside the target
    assert torch.equal(ds.images, expected) and not ds.report.cache_hit
    assert list(cache_dir.iterdir()) == []  # neither the temp file nor a half cache is left
    assert "could not write data cache" in caplog.text
    monkeypatch.undo()
    assert not load_dataset(str(folder), 16, cache_dir=cache_dir).report.cache_hit
    assert load_dataset(str(folder), 16, cache_dir=cache_dir).report.cache_hit


def test_cache_key_is_unchanged():
    """Existing caches stay valid only while the key is computed exactly as before."""
    files = [("a.png", 10, 5), ("sub/b.jpg", 2048, 1700000000123456789)]
    key = "632d214c2390aee5d4d639761cf90ddaa5248fb66e020770ac85fa4a9dbfd3d9"
    assert cache.cache_key(Path("/photos/cats"), 32, "auto", 64_000_000, files) == key
    assert cache.cache_key(Path("/photos/cats"), 32, " Auto ", 64_000_000, files) == key
    assert cache.cache_key(Path("/photos/cats"), 32, 3, 64_000_000, files) != key


def test_cache_in_the_existing_format_is_read(tmp_path, monkeypatch):
    folder = folder_of(tmp_path, {"a.png": noise((20, 20)), "b.png": noise((20, 20), seed=1)})
    (folder / "c.png").write_bytes(b"garbage")
    cache_dir = tmp_path / "cache"
    load_dataset(str(folder), 8, cache_dir=cache_dir)
    [path] = cache_dir.glob("*.pt")
    images = torch.arange(2 * 3 * 8 * 8).remainder(256).to(torch.uint8).reshape(2, 3, 8, 8)
    skipped = [[str(folder / "c.png"), "a reason written by an older version"]]
    torch.save({"format": 1, "images": images, "skipped": skipped}, path)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(folders, "_decode_file", no_decoding)
    ds = load_dataset(str(folder), 8, cache_dir=cache_dir)
    assert ds.report.cache_hit and torch.equal(ds.images, images)
    assert [(s.path, s.reason) for s in ds.report.skipped] == [tuple(s) for s in skipped]
