"""The built-in demo data set: one filled shape per image, generated on the fly.

Why it looks like this:

* It must need no files and no network, so a first-time user can press "Train" at once
  and the test suite can train on it; it is generated from a seed, so every run (and
  every machine) sees the same bytes.
* It must be learnable by a tiny model on a CPU in minutes. A few classes of simple,
  flat shapes (``DEMO_CLASSES``) with strong foreground/background contrast give a
  distribution that is easy to fit yet varied enough (size, position, rotation,
  colours) that memorising a handful of images does not pass for learning it.
  Shapes are drawn at 4x the resolution and box-filtered down, so edges are
  antialiased like real photographs rather than aliased staircases.
* Each image carries its class label, so the quality benchmark can train a small
  classifier on the demo set and use its features for a Fréchet distance between
  real and generated images, without any downloaded Inception weights.

A shape's size is the diameter of the circle around it (45-75 % of the image side)
and its centre keeps that circle inside the image, so every rotation stays fully
visible and the corners always show the plain background.

Contrast is also guaranteed in grayscale: the background is dark or light at random,
but is switched to the other side when its luma would sit too close to the
foreground's, so ``channels=1`` keeps every shape clearly visible.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw

DEMO_CLASSES = ("circle", "square", "triangle", "cross")

_SUPERSAMPLE = 4
_SIZE_RANGE = (0.45, 0.75)  # diameter of the shape's circumscribed circle / image side
_CROSS_HALF_WIDTH = 0.25  # half width of a cross arm / circumscribed radius
_MIN_LUMA_CONTRAST = 0.3
# ITU-R 601 luma, the weights PIL uses for convert("L").
_LUMA = np.array([0.299, 0.587, 0.114])


def make_demo(
    resolution: int, channels: int = 3, count: int = 4096, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(images uint8 [N,C,H,W], labels int64 [N])``; same arguments, same bytes.

    Labels are balanced exactly (each class ``count // 4`` or one more) and shuffled.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if resolution < 4 or count < 1:
        raise ValueError(f"need resolution >= 4 and count >= 1, got {resolution}, {count}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(count) % len(DEMO_CLASSES))
    diameters = rng.uniform(*_SIZE_RANGE, size=count) * resolution
    half = diameters[:, None] / 2
    centres = rng.uniform(half, resolution - half, size=(count, 2))
    angles = rng.uniform(0.0, 2 * math.pi, size=count)
    foreground, background = _colours(rng, count)
    alpha = np.stack(
        [
            _shape_mask(resolution, int(lab), d, c, a)
            for lab, d, c, a in zip(labels, diameters, centres, angles)
        ]
    )
    if channels == 1:
        foreground, background = foreground @ _LUMA[:, None], background @ _LUMA[:, None]
    images = _composite(alpha, foreground, background)
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))


def _colours(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Saturated foregrounds; near-gray backgrounds far enough in luma from them."""
    fg = _hsv_to_rgb(
        rng.uniform(0, 1, count), rng.uniform(0.6, 1.0, count), rng.uniform(0.7, 1.0, count)
    )
    bg_hue, bg_sat = rng.uniform(0, 1, count), rng.uniform(0.0, 0.2, count)
    dark = _hsv_to_rgb(bg_hue, bg_sat, rng.uniform(0.1, 0.3, count))
    light = _hsv_to_rgb(bg_hue, bg_sat, rng.uniform(0.75, 0.95, count))
    fg_luma = fg @ _LUMA
    dark_gap, light_gap = np.abs(fg_luma - dark @ _LUMA), np.abs(fg_luma - light @ _LUMA)
    want_dark = rng.random(count) < 0.5
    # Keep the random choice unless it is too close in luma and the other side is better.
    too_close = np.where(want_dark, dark_gap, light_gap) < _MIN_LUMA_CONTRAST
    use_dark = np.where(too_close, dark_gap > light_gap, want_dark)
    return fg, np.where(use_dark[:, None], dark, light)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB in [0, 1], shape [N, 3] (colorsys works on scalars only)."""
    sector = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = np.stack(
        [
            np.stack([v, t, p], 1),
            np.stack([q, v, p], 1),
            np.stack([p, v, t], 1),
            np.stack([p, q, v], 1),
            np.stack([t, p, v], 1),
            np.stack([v, p, q], 1),
        ]
    )
    return table[sector, np.arange(len(h))]


def _shape_mask(
    resolution: int, label: int, diameter: float, centre: np.ndarray, angle: float
) -> np.ndarray:
    """Antialiased coverage [H, W] uint8 of one shape inside its circumscribed circle."""
    big = resolution * _SUPERSAMPLE
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    cx, cy = centre * _SUPERSAMPLE
    radius = diameter * _SUPERSAMPLE / 2
    if DEMO_CLASSES[label] == "circle":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=255)
    else:
        outline = _outline(DEMO_CLASSES[label])
        cos, sin = math.cos(angle) * radius, math.sin(angle) * radius
        draw.polygon([(cx + x * cos - y * sin, cy + x * sin + y * cos) for x, y in outline], fill=255)
    small = canvas.resize((resolution, resolution), Image.Resampling.BOX)
    return np.asarray(small)


def _outline(name: str) -> list[tuple[float, float]]:
    """Polygon vertices on the unit circle (the shape's circumscribed circle)."""
    if name == "square":
        return [(math.cos(a), math.sin(a)) for a in np.arange(4) * math.pi / 2 + math.pi / 4]
    if name == "triangle":
        return [(math.cos(a), math.sin(a)) for a in np.arange(3) * 2 * math.pi / 3 - math.pi / 2]
    w = _CROSS_HALF_WIDTH
    arm = math.sqrt(1 - w * w)  # arm corners (±w, ±arm) lie on the unit circle
    quarter = [(w, -arm), (w, -w), (arm, -w)]
    # The first quarter turned by 0, 90, 180 and 270 degrees closes the plus outline.
    turns = ((1, 0), (0, 1), (-1, 0), (0, -1))
    return [(x * c - y * s, x * s + y * c) for c, s in turns for x, y in quarter]


def _composite(alpha: np.ndarray, fg: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """Blend per-image colours through the coverage masks -> uint8 [N, C, H, W]."""
    a = alpha[:, None].astype(np.float32) / 255.0
    fg = fg.astype(np.float32)[:, :, None, None]
    bg = bg.astype(np.float32)[:, :, None, None]
    out = (bg + (fg - bg) * a) * 255.0
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
