"""The decoded-folder cache: hits, invalidation, corrupt and failed writes, key and format;
bounded: a slot's entry replaced, LRU under a limit, size and clear."""
from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path

import pytest
import torch

from cmcore.data import (
    cache, cache_size, clear_cache, default_cache_dir, folders, load_dataset, prune_cache,
    set_cache_limit,
)

from .images import folder_of, noise


def test_second_load_is_a_cache_hit_without_decoding(tmp_path, monkeypatch):
    folder = folder_of(tmp_path, {f"{i}.png": noise((20, 20), seed=i) for i in range(4)})
    (folder / "broken.png").write_bytes(b"garbage")
    first = load_dataset(str(folder), 16, cache_dir=tmp_path / "cache")
    assert not first.report.cache_hit

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(folders, "decode_file", no_decoding)
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

    monkeypatch.setattr(folders, "decode_file", no_decoding)
    ds = load_dataset(str(folder), 8, cache_dir=cache_dir)
    assert ds.report.cache_hit and torch.equal(ds.images, images)
    assert [(s.path, s.reason) for s in ds.report.skipped] == [tuple(s) for s in skipped]


# --------------------------------------------------------------------------- bounded


def _folder(tmp_path: Path, name: str, count: int = 4, seed: int = 0) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for i in range(count):
        noise((12, 12), seed=seed + i).save(folder / f"{i}.png")
    return folder


def _entries(cache_dir: Path) -> list[str]:
    return sorted(p.name for p in cache_dir.glob("*.pt"))


def _age(path: Path, seconds: float) -> None:
    """Make ``path`` look last used ``seconds`` ago (mtime is the LRU clock)."""
    then = time.time() - seconds
    os.utime(path, (then, then))


@pytest.fixture
def limit(monkeypatch):
    """set_cache_limit for one test: the process-wide limit is restored afterwards."""
    monkeypatch.setattr(cache, "_limit_bytes", cache._limit_bytes)
    return set_cache_limit


def test_a_folder_decoded_again_with_other_files_replaces_its_entry(tmp_path):
    folder = _folder(tmp_path, "a")
    cache_dir = tmp_path / "cache"
    load_dataset(str(folder), 8, cache_dir=cache_dir)
    [first] = _entries(cache_dir)
    noise((12, 12), seed=50).save(folder / "4.png")  # the key changes, the slot does not
    load_dataset(str(folder), 8, cache_dir=cache_dir)
    [second] = _entries(cache_dir)
    assert second != first and second.split("-")[0] == first.split("-")[0]
    load_dataset(str(folder), 16, cache_dir=cache_dir)  # another resolution: another slot
    load_dataset(str(folder), 8, channels=1, cache_dir=cache_dir)  # another channel setting
    load_dataset(str(_folder(tmp_path, "b")), 8, cache_dir=cache_dir)  # another folder
    assert len(_entries(cache_dir)) == 4 and second in _entries(cache_dir)


def test_the_least_recently_used_entries_go_when_the_cache_is_over_its_limit(tmp_path, limit):
    cache_dir = tmp_path / "cache"
    folders_ = [_folder(tmp_path, name, seed=10 * i) for i, name in enumerate("abcd")]
    load_dataset(str(folders_[0]), 8, cache_dir=cache_dir)
    [a] = cache_dir.glob("*.pt")
    load_dataset(str(folders_[1]), 8, cache_dir=cache_dir)
    [b] = set(cache_dir.glob("*.pt")) - {a}
    size = max(a.stat().st_size, b.stat().st_size)
    limit(3 * size + size // 2)  # room for three entries
    _age(a, 300)
    _age(b, 200)
    assert load_dataset(str(folders_[0]), 8, cache_dir=cache_dir).report.cache_hit  # a used again
    load_dataset(str(folders_[2]), 8, cache_dir=cache_dir)  # three entries: all fit
    assert len(_entries(cache_dir)) == 3
    load_dataset(str(folders_[3]), 8, cache_dir=cache_dir)  # the fourth pushes out b, the LRU
    assert a.is_file() and not b.is_file() and len(_entries(cache_dir)) == 3
    assert cache_size(cache_dir) == sum(p.stat().st_size for p in cache_dir.iterdir()) <= 3.5 * size
    assert load_dataset(str(folders_[0]), 8, cache_dir=cache_dir).report.cache_hit
    assert not load_dataset(str(folders_[1]), 8, cache_dir=cache_dir).report.cache_hit


def test_an_entry_over_the_limit_is_not_written_and_a_zero_limit_caches_nothing(tmp_path, limit, caplog):
    folder = _folder(tmp_path, "a")
    limit(4 * 3 * 8 * 8 - 1)  # one byte less than the images alone
    with caplog.at_level(logging.INFO, logger="cmcore.data"):
        ds = load_dataset(str(folder), 8, cache_dir=tmp_path / "cache")
    assert len(ds) == 4 and not ds.report.cache_hit and "over the cache limit" in caplog.text
    assert _entries(tmp_path / "cache") == []
    limit(0)
    assert not load_dataset(str(folder), 8, cache_dir=tmp_path / "cache").report.cache_hit
    limit(None)
    assert cache.cache_limit() == cache.DEFAULT_CACHE_LIMIT_BYTES == 4 * 1024**3
    with pytest.raises(ValueError, match="cache limit"):
        limit(-1)


def test_cache_size_and_clear_cache_count_and_delete_only_cache_files(tmp_path):
    cache_dir = tmp_path / "cache"
    assert cache_size(cache_dir) == 0 and clear_cache(cache_dir) == 0  # no folder yet
    for i, name in enumerate("ab"):
        load_dataset(str(_folder(tmp_path, name, seed=i)), 8, cache_dir=cache_dir)
    crashed = cache_dir / f".{_entries(cache_dir)[0]}.x1y2z3.tmp"  # left by a killed write
    crashed.write_bytes(b"12345")
    (cache_dir / "notes.txt").write_text("not ours")  # CMCORE_CACHE_DIR may be a shared folder
    size = sum(p.stat().st_size for p in cache_dir.iterdir() if p.name != "notes.txt")
    assert cache_size(cache_dir) == size
    assert clear_cache(cache_dir) == size
    assert [p.name for p in cache_dir.iterdir()] == ["notes.txt"] and cache_size(cache_dir) == 0


def test_prune_deletes_old_temporary_files_and_applies_a_lowered_limit(tmp_path, limit):
    cache_dir = tmp_path / "cache"
    for i, name in enumerate("abc"):
        load_dataset(str(_folder(tmp_path, name, seed=i)), 8, cache_dir=cache_dir)
    oldest, *rest = sorted(cache_dir.glob("*.pt"), key=lambda p: p.stat().st_mtime_ns)
    _age(oldest, 100)
    stale, fresh = (cache_dir / f".{oldest.name}.{tag}.tmp" for tag in ("old", "new"))
    stale.write_bytes(b"x" * 10)
    fresh.write_bytes(b"y" * 20)  # a write in progress in another process
    _age(stale, 2 * 3600)
    limit(cache_size(cache_dir) - 10 - 1)  # one entry too many once the stale file is gone
    oldest_size = oldest.stat().st_size
    assert prune_cache(cache_dir) == 10 + oldest_size
    assert sorted(cache_dir.iterdir()) == sorted([fresh, *rest])


def test_an_entry_written_by_an_earlier_version_under_its_key_alone_is_still_read(tmp_path, monkeypatch):
    folder = _folder(tmp_path, "a")
    cache_dir = tmp_path / "cache"
    first = load_dataset(str(folder), 8, cache_dir=cache_dir)
    [entry] = cache_dir.glob("*.pt")
    legacy = entry.rename(cache_dir / entry.name.partition("-")[2])  # KEY.pt
    monkeypatch.setattr(folders, "decode_file", lambda *a: pytest.fail("decoded although cached"))
    again = load_dataset(str(folder), 8, cache_dir=cache_dir)
    assert again.report.cache_hit and torch.equal(again.images, first.images)
    assert _entries(cache_dir) == [entry.name] and not legacy.exists()  # renamed SLOT-KEY.pt
