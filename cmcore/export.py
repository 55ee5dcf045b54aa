"""Writing images: PNGs with their settings in text chunks, grids, animated GIFs.

Every file is written atomically (a temporary file renamed over the name): a full disk or a killed
process leaves no half image; a failed write raises SaveError (one line, an OSError too) and leaves no
temporary file.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from .errors import SaveError, reason
from .rundir import atomic_write_via


def image_metadata(*, run: str, checkpoint: str, step: int, method: str, sampler: str, steps: int, seed: int,
                   count: int, index: int | None = None) -> dict[str, str]:
    """The PNG text chunks of a sampled image or grid: enough to find the model and draw it again.
    The CLI and the app write the same keys."""
    from . import __version__

    data = {"run": run, "checkpoint": checkpoint, "step": str(step), "method": method, "sampler": sampler,
            "steps": str(steps), "seed": str(seed), "count": str(count), "software": f"Consistency Studio {__version__}"}
    if index is not None:
        data["index"] = str(index)
    return data


def image_stem(run: str, step: int, sampler: str, steps: int, seed: int) -> str:
    """The start of an exported file's name: run, checkpoint step, sampler and steps, seed."""
    return f"{run}_step{step}_{sampler}{steps}_seed{seed}"


def unique_path(path: str | Path) -> Path:
    """`path`, or `name-1.ext`, `name-2.ext`... if it exists: never overwrite silently."""
    path = Path(path)
    candidate, i = path, 1
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{i}{path.suffix}")
        i += 1
    return candidate


def _pil(image: np.ndarray) -> Image.Image:
    image = np.asarray(image, dtype=np.uint8)
    return Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image)


def save_png(path: str | Path, image: np.ndarray, metadata: dict[str, str] | None = None) -> Path:
    info = PngImagePlugin.PngInfo()
    for key, value in (metadata or {}).items():
        info.add_text(str(key), str(value))
    pil = _pil(image)
    return _write(path, lambda tmp: pil.save(tmp, format="PNG", pnginfo=info))


def _write(path: str | Path, write) -> Path:
    path = Path(path)
    try:
        atomic_write_via(path, write)
    except (OSError, RuntimeError) as exc:
        raise SaveError(f"could not write {path} ({reason(exc)}): free disk space or choose another folder") from exc
    return path


def read_png_metadata(path: str | Path) -> dict[str, str]:
    with Image.open(path) as im:
        return dict(im.text)


def make_grid(images: np.ndarray, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """N×H×W×C uint8 → one uint8 image, `nrow` images per row (default: square-ish)."""
    images = np.asarray(images, dtype=np.uint8)
    n, h, w, c = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    grid = np.zeros((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), dtype=np.uint8)
    for i, img in enumerate(images):
        y, x = divmod(i, nrow)
        grid[pad + y * (h + pad): pad + y * (h + pad) + h, pad + x * (w + pad): pad + x * (w + pad) + w] = img
    return grid


def save_gif(path: str | Path, frames: list[np.ndarray], duration_ms: int = 400) -> Path:
    pil = [_pil(f).convert("RGB") for f in frames]
    return _write(path, lambda tmp: pil[0].save(tmp, format="GIF", save_all=True, append_images=pil[1:],
                                                duration=duration_ms, loop=0))
