"""The decoded-folder cache: one ``.pt`` file per (folder contents, load settings).

Decoding a folder of a few thousand images takes seconds; the decoded uint8 tensor (and
the list of skipped files) is saved under a key that names everything deciding it, so
the second load of an unchanged folder is instant. A cache that cannot be read or
written is only a slower load, never an error.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import platformdirs
import torch

from ..rundir import atomic_write_via
from .dataset import SkippedFile

log = logging.getLogger(__name__)

# Bump whenever decoding changes what ends up in the tensor: old caches then miss.
CACHE_FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    env = os.environ.get("CMCORE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("consistency-studio")) / "datasets"


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
    """The cached (images, skipped), or None when absent, unreadable or malformed."""
    if not path.is_file():
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
    return (images, skipped) if valid else None


def write_cache(path: Path, images: torch.Tensor, skipped: Sequence[SkippedFile]) -> None:
    """Atomic write (the engine's one writer), so a crash never leaves a half-written cache;
    a failed write is logged and leaves no temporary file."""
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
