"""Small image files for the data tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def noise(size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], len(mode))
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)


def folder_of(tmp_path: Path, images: dict[str, Image.Image]) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for name, image in images.items():
        image.save(folder / name)
    return folder
