"""A folder of images: scanning it, decoding each file defensively, resizing and cropping.

Folders come from users, so every file is opened defensively: a bad file is skipped and
reported with a reason, never fatal (too large, not an image, truncated, unreadable).
Every PIL mode ends up as 8-bit L or RGB (16-bit scaled rather than clipped, transparency
composited onto white, EXIF orientation applied), then the shorter side is resized to
the resolution and the centre cropped. Decoded folders are cached (see ``cache``).
"""
from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError
from .cache import cache_key, default_cache_dir, read_cache, write_cache
from .dataset import DataReport, SkippedFile

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)
GRAYSCALE_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_HIGH_DEPTH_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


@dataclass(frozen=True)
class _Candidate:
    path: Path
    relative: str
    size: int  # -1 when stat failed (decoding then reports why)
    mtime_ns: int


def load_folder(
    folder: Path,
    resolution: int,
    channels_setting: str | int,
    wanted: int | None,
    cache_dir: Path | None,
    progress: Callable[[int, int], None] | None,
    cancel: Callable[[], bool] | None,
    max_pixels: int,
) -> tuple[torch.Tensor, DataReport]:
    """Every usable image under ``folder`` (resolved), from the cache when it is current."""
    candidates = _find_candidates(folder)
    if not candidates:
        exts = ", ".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))
        raise DataError(f"No image files ({exts}) found in {folder}")
    files = [(c.relative, c.size, c.mtime_ns) for c in candidates]
    cache_file = Path(cache_dir or default_cache_dir()) / (
        cache_key(folder, resolution, channels_setting, max_pixels, files) + ".pt"
    )
    cached = read_cache(cache_file, resolution, len(candidates))
    if cached is not None:
        images, skipped = cached
        return images, DataReport(
            str(folder), len(images), resolution, images.shape[1], skipped, cache_hit=True
        )
    check_cancel(cancel)
    results = _decode_all(candidates, resolution, max_pixels, progress, cancel)
    skipped = [
        SkippedFile(str(c.path), r) for c, r in zip(candidates, results) if isinstance(r, str)
    ]
    decoded = [r for r in results if not isinstance(r, str)]
    if not decoded:
        first = skipped[0]
        raise DataError(
            f"No usable image in {folder}: all {len(skipped)} image file(s) were skipped "
            f"(e.g. {first.path}: {first.reason})"
        )
    channels = wanted or (1 if all(gray for _, gray in decoded) else 3)
    images = _stack(decoded, channels, resolution)
    write_cache(cache_file, images, skipped)
    return images, DataReport(str(folder), len(images), resolution, channels, skipped)


def check_cancel(cancel: Callable[[], bool] | None) -> None:
    if cancel is not None and cancel():
        raise DataError("cancelled")


def match_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 [..., C, H, W] with C in {1, 3} -> ``channels``; gray uses PIL's luma."""
    have = images.shape[-3]
    if have == channels:
        return images
    if channels == 3:
        return images.expand(*images.shape[:-3], 3, *images.shape[-2:])
    r, g, b = images.to(torch.int32).unbind(-3)
    return ((r * 299 + g * 587 + b * 114 + 500) // 1000).to(torch.uint8).unsqueeze(-3)


# --------------------------------------------------------------------------- scanning


def _find_candidates(folder: Path) -> list[_Candidate]:
    """Image-extension files under ``folder``, sorted; directory links are not followed."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in filenames:
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                path = Path(dirpath, name)
                found.append(_stat_candidate(path, path.relative_to(folder).as_posix()))
    return sorted(found, key=lambda c: c.relative)


def _stat_candidate(path: Path, relative: str) -> _Candidate:
    try:
        st = path.stat()
    except OSError:
        return _Candidate(path, relative, -1, -1)
    return _Candidate(path, relative, st.st_size, st.st_mtime_ns)


# --------------------------------------------------------------------------- decoding


def _decode_all(
    candidates: Sequence[_Candidate],
    resolution: int,
    max_pixels: int,
    progress: Callable[[int, int], None] | None,
    cancel: Callable[[], bool] | None,
) -> list[tuple[np.ndarray, bool] | str]:
    """Decode in a few threads (PIL releases the GIL); results keep the input order.

    PIL's decompression-bomb *warning* is turned into an error for the duration, so a
    huge image is skipped rather than decoded. Before Python 3.14 warning filters are
    process-wide, so this is set once here around the pool (``catch_warnings`` restores
    the previous filters) rather than per worker thread, which would race.
    """
    total = len(candidates)
    results: list[tuple[np.ndarray, bool] | str | None] = [None] * total
    workers = max(2, min(4, os.cpu_count() or 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        pool = ThreadPoolExecutor(workers, thread_name_prefix="cmcore-decode")
        try:
            futures = {
                pool.submit(_decode_file, c, resolution, max_pixels): i
                for i, c in enumerate(candidates)
            }
            for done, future in enumerate(as_completed(futures), start=1):
                results[futures[future]] = future.result()
                if progress:
                    progress(done, total)
                check_cancel(cancel)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return results


def _decode_file(
    candidate: _Candidate, resolution: int, max_pixels: int
) -> tuple[np.ndarray, bool] | str:
    """(uint8 array [R,R] or [R,R,3], is_grayscale), or the reason the file is skipped.

    Never raises: every failure of a user's file becomes a short reason.
    """
    if candidate.size == 0:
        return "empty file"
    try:
        with Image.open(candidate.path) as im:
            width, height = im.size
            if width * height > max_pixels:
                return f"too large ({width}×{height} pixels)"
            return _prepare(im, resolution)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Raised by Image.open before the size is known to us; PIL's message has it.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        return f"too large ({found.group(1)} pixels)" if found else "too large"
    except UnidentifiedImageError:
        return "not an image"
    except OSError as exc:
        if exc.errno is not None:
            return f"unreadable: {exc.strerror}"
        return "truncated or corrupt"
    except Exception:  # PIL raises SyntaxError, ValueError, EOFError... on broken files
        return "truncated or corrupt"


def _prepare(im: Image.Image, resolution: int) -> tuple[np.ndarray, bool]:
    """First frame -> upright 8-bit L or RGB, shorter side to ``resolution``, centre crop."""
    gray = _is_grayscale(im)
    # JPEG can decode at 1/2, 1/4 or 1/8 scale for free; ask for no less than needed.
    scale = resolution / min(im.size)
    im.draft(im.mode, (math.ceil(im.size[0] * scale), math.ceil(im.size[1] * scale)))
    im = ImageOps.exif_transpose(im)
    im = _to_8bit(im, gray)
    width, height = im.size
    side = min(width, height)
    box = ((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2)
    im = im.resize((resolution, resolution), Image.Resampling.BICUBIC, box=box, reducing_gap=3.0)
    return np.array(im), gray  # a writable copy: torch.from_numpy warns on read-only arrays


def _is_grayscale(im: Image.Image) -> bool:
    """By mode; palette images count as gray when every palette entry is a gray."""
    if im.mode in GRAYSCALE_MODES:
        return True
    if im.mode in ("P", "PA") and im.palette is not None and im.palette.mode == "RGB":
        entries = np.asarray(im.getpalette() or [1, 0, 0]).reshape(-1, 3)
        return bool((entries == entries[:, :1]).all())
    return False


def _to_8bit(im: Image.Image, gray: bool) -> Image.Image:
    """Any PIL mode -> "L" (if ``gray``) or "RGB"; transparency is composited onto white."""
    if im.mode in _HIGH_DEPTH_MODES:
        return _high_depth_to_l(im)
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im.convert("RGBA"))
    return im.convert("L" if gray else "RGB")


def _high_depth_to_l(im: Image.Image) -> Image.Image:
    """16/32-bit integer images are taken as 16-bit (the PNG/TIFF norm) and floats as
    [0, 1] when they fit it (else 16-bit), then scaled to 8 bits; PIL would clip instead.
    """
    values = np.asarray(im).astype(np.float64)
    full_scale = 1.0 if im.mode == "F" and values.size and values.max() <= 1.0 else 65535.0
    scaled = np.clip(np.rint(values * (255.0 / full_scale)), 0, 255).astype(np.uint8)
    return Image.fromarray(scaled, "L")


def _stack(
    decoded: Sequence[tuple[np.ndarray, bool]], channels: int, resolution: int
) -> torch.Tensor:
    """Decoded arrays -> one uint8 [N, channels, R, R] tensor (gray repeated or RGB->luma)."""
    out = torch.empty((len(decoded), channels, resolution, resolution), dtype=torch.uint8)
    for i, (array, _) in enumerate(decoded):
        image = torch.from_numpy(array)
        image = image.unsqueeze(0) if image.ndim == 2 else image.permute(2, 0, 1)
        out[i] = match_channels(image, channels)
    return out
