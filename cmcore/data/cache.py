"""The decoded-folder cache: one ``.pt`` file per (folder contents, load settings).

Decoding a folder of a few thousand images takes seconds; the decoded uint8 tensor (and
the list of skipped files) is saved under a key that names everything deciding it, so
the second load of an unchanged folder is instant. A cache that cannot be read or
written is only a slower load, never an error.

The cache is bounded. An entry is named ``SLOT-KEY.pt``: SLOT names the folder, resolution
and channel setting, KEY also the folder's files, so when a folder is decoded again with
other files the entries of its slot are replaced, not kept. After each write the least
recently used entries (by modification time; a cache hit touches its file) are deleted
until the whole cache is under the limit (``set_cache_limit``, default
``DEFAULT_CACHE_LIMIT_BYTES``); an entry larger than the limit is not written at all.
``cache_size`` and ``clear_cache`` are for the app's Data pane. Only files named like
entries (or their temporary files) are ever counted or deleted, so a cache folder pointed
at a folder holding other files leaves those alone. Entries named ``KEY.pt`` by earlier
versions are still read (renamed on their first hit).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path

import platformdirs
import torch

from ..rundir import atomic_write_via
from .dataset import SkippedFile

log = logging.getLogger(__name__)

# Bump whenever decoding changes what ends up in the tensor: old caches then miss.
CACHE_FORMAT_VERSION = 1

DEFAULT_CACHE_LIMIT_BYTES = 4 * 1024**3  # 4 GiB
_limit_bytes = DEFAULT_CACHE_LIMIT_BYTES
_ENTRY = re.compile(r"(?:[0-9a-f]{16}-)?[0-9a-f]{64}\.pt")
_TEMP = re.compile(r"\.(?:[0-9a-f]{16}-)?[0-9a-f]{64}\.pt\..*\.tmp")  # rundir.atomic_write_via's
_STALE_TEMP_S = 3600  # a temporary file this old is left by a crashed write, not one in progress


def default_cache_dir() -> Path:
    env = os.environ.get("CMCORE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("consistency-studio")) / "datasets"


def set_cache_limit(limit_bytes: int | None) -> None:
    """The most the cache may hold, in bytes, for every later write in this process
    (None: the default; 0: nothing is cached). Applied at the next write, or by ``prune_cache``."""
    global _limit_bytes
    if limit_bytes is None:
        limit_bytes = DEFAULT_CACHE_LIMIT_BYTES
    if isinstance(limit_bytes, bool) or not isinstance(limit_bytes, int) or limit_bytes < 0:
        raise ValueError(f"cache limit must be a whole number of bytes >= 0, got {limit_bytes!r}")
    _limit_bytes = limit_bytes


def cache_limit() -> int:
    return _limit_bytes


def entry_name(folder: Path, resolution: int, channels_setting: str | int, key: str) -> str:
    """``SLOT-KEY.pt``: SLOT is the same for every content of one folder at one resolution
    and channel setting, so a newer entry of the slot replaces the older ones."""
    slot = [str(folder), resolution, str(channels_setting).strip().lower()]
    return f"{hashlib.sha256(json.dumps(slot).encode()).hexdigest()[:16]}-{key}.pt"


def cache_key(
    folder: Path,
    resolution: int,
    channels_setting: str | int,
    max_pixels: int,
    files: Sequence[tuple[str, int, int]],
) -> str:
    """Everything that decides the decoded tensor; any change gives another key.

    ``files`` holds (relative path, size, mtime_ns) of every candidate file, in load order.
    """
    content = [
        CACHE_FORMAT_VERSION,
        str(folder),
        resolution,
        str(channels_setting).strip().lower(),
        max_pixels,
        [list(f) for f in files],
    ]
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()


def read_cache(
    path: Path, resolution: int, num_candidates: int
) -> tuple[torch.Tensor, list[SkippedFile]] | None:
    """The cached (images, skipped), or None when absent, unreadable or malformed.
    A hit marks the entry as just used (its modification time), for the LRU limit."""
    if not path.is_file() and not _adopt_legacy(path):
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        images = payload["images"]
        skipped = [SkippedFile(str(p), str(r)) for p, r in payload["skipped"]]
        valid = (
            payload["format"] == CACHE_FORMAT_VERSION
            and isinstance(images, torch.Tensor)
            and images.dtype == torch.uint8
            and images.ndim == 4
            and images.shape[1] in (1, 3)
            and images.shape[2:] == (resolution, resolution)
            and len(images) > 0
            and len(images) + len(skipped) == num_candidates
        )
    except Exception as exc:  # a corrupt cache is only a slower load, never an error
        log.warning("ignoring unreadable data cache %s: %s", path, exc)
        return None
    if not valid:
        return None
    try:
        os.utime(path)
    except OSError:
        pass  # a read-only cache is still a cache; its entries just age
    return images, skipped


def _adopt_legacy(path: Path) -> bool:
    """Rename an entry an earlier version wrote as ``KEY.pt`` to ``path`` (``SLOT-KEY.pt``)."""
    _, dash, legacy_name = path.name.partition("-")
    if not dash:
        return False
    try:
        os.replace(path.with_name(legacy_name), path)
    except OSError:
        return False
    return True


def write_cache(
    path: Path, images: torch.Tensor, skipped: Sequence[SkippedFile], limit: int | None = None
) -> bool:
    """Write the entry ``path`` (True when written), first deleting the other entries of its
    slot, then the least recently used ones until the cache is under ``limit`` (default:
    ``cache_limit()``); an entry larger than the limit is not written.

    Atomic write (the engine's one writer), so a crash never leaves a half-written cache;
    a failed write is logged and leaves no temporary file."""
    limit = _limit_bytes if limit is None else limit
    _remove_replaced(path)
    if images.nbytes > limit:
        log.info("not caching %s: %d bytes is over the cache limit of %d", path, images.nbytes, limit)
        return False
    payload = {
        "format": CACHE_FORMAT_VERSION,
        "images": images,
        "skipped": [[s.path, s.reason] for s in skipped],
    }

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: a full disk raises OSError, as it should
            torch.save(payload, f)

    try:
        atomic_write_via(path, write)
    except OSError as exc:  # no cache is only a slower next load
        log.warning("could not write data cache %s: %s", path, exc)
        return False
    prune_cache(path.parent, limit, keep=path)
    return True


def cache_size(cache_dir: Path | None = None) -> int:
    """Bytes the cache holds (entries and temporary files), 0 when there is no cache."""
    return sum(size for _, size, _ in _cache_files(cache_dir))


def clear_cache(cache_dir: Path | None = None) -> int:
    """Delete every entry (and temporary file) of the cache; the bytes freed."""
    return sum(size for path, size, _ in _cache_files(cache_dir) if _delete(path))


def prune_cache(cache_dir: Path | None = None, limit: int | None = None, keep: Path | None = None) -> int:
    """Delete temporary files left by crashed writes, then the least recently used entries
    until the cache holds at most ``limit`` bytes (default: ``cache_limit()``); the bytes
    freed. Called after every write, with ``keep`` the entry just written: it counts as the
    most recent whatever the clock's resolution (so it goes only if it alone is too big)."""
    limit = _limit_bytes if limit is None else limit
    files = _cache_files(cache_dir)
    total = sum(size for _, size, _ in files)
    freed = 0
    now = time.time()
    for path, size, mtime in files:
        if _TEMP.fullmatch(path.name) and now - mtime > _STALE_TEMP_S and _delete(path):
            total, freed = total - size, freed + size
    entries = sorted((path == keep, mtime, path.name, path, size) for path, size, mtime in files
                     if _ENTRY.fullmatch(path.name))
    for *_, path, size in entries:  # oldest first
        if total <= limit:
            break
        if _delete(path):
            total, freed = total - size, freed + size
    return freed


def _remove_replaced(path: Path) -> None:
    """Delete the other entries of ``path``'s slot: the same folder decoded with other files."""
    slot = path.name.partition("-")[0] + "-"
    for other, _, _ in _cache_files(path.parent):
        if other.name.startswith(slot) and other != path and _ENTRY.fullmatch(other.name):
            _delete(other)


def _cache_files(cache_dir: Path | None) -> list[tuple[Path, int, float]]:
    """(path, size, modification time) of every entry and temporary file in the cache."""
    folder = Path(cache_dir or default_cache_dir())
    found = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if _ENTRY.fullmatch(entry.name) or _TEMP.fullmatch(entry.name):
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    found.append((Path(entry.path), st.st_size, st.st_mtime))
    except OSError:  # no cache folder yet, or one that cannot be listed
        pass
    return found


def _delete(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False  # another process deleted it first
    except OSError as exc:
        log.warning("could not delete data cache file %s: %s", path, exc)
        return False
    return True
