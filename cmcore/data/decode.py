"""One image file, decoded defensively: upright 8-bit L or RGB at the training resolution.

Files come from users, so a bad one is never fatal: ``decode_file`` returns the reason it is
skipped (too large, not an image, truncated, unreadable) instead of raising. Every PIL mode
ends up as 8-bit L or RGB (16-bit scaled rather than clipped, transparency composited onto
white, EXIF orientation applied), then the shorter side is resized to the resolution and
the centre cropped.
"""
from __future__ import annotations

import math
import re

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .scan import Candidate

GRAYSCALE_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_HIGH_DEPTH_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


def header_is_gray(candidate: Candidate, max_pixels: int) -> bool | None:
    """``is_grayscale`` of the opened file exactly as decoding would compute it, or None
    for a file decoding will skip anyway (empty, too large, unreadable, not an image)."""
    if candidate.size == 0:
        return None
    try:
        with Image.open(candidate.path) as im:
            if im.size[0] * im.size[1] > max_pixels:
                return None
            return is_grayscale(im)
    except Exception:  # whatever it is, decoding meets it again and gives the reason
        return None


def decode_file(
    candidate: Candidate, resolution: int, max_pixels: int
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
            return prepare(im, resolution)
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


def prepare(im: Image.Image, resolution: int) -> tuple[np.ndarray, bool]:
    """First frame -> upright 8-bit L or RGB, shorter side to ``resolution``, centre crop."""
    gray = is_grayscale(im)
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


def is_grayscale(im: Image.Image) -> bool:
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
