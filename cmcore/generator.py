"""A trained model ready to sample: load a run or checkpoint, draw seeded images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_checkpoint
from .devices import resolve_device
from .errors import OutOfMemoryError
from .model import load_model
from .sampling import sample, strip, to_uint8

SAMPLER_NAMES = ("multistep", "ode")
_SAMPLER_FUNCTIONS = {"multistep": "multistep", "ode": "ode_euler"}


class Generator:
    def __init__(self, path: str | Path, device: str = "cpu"):
        ckpt = load_checkpoint(path)
        self.source = ckpt.path
        self.config = ckpt.config
        self.step = ckpt.step
        self.method = ckpt.config.method
        self.channels, self.resolution = ckpt.channels, ckpt.resolution
        self.device = resolve_device(device)
        self.model = load_model(ckpt, self.device)

    @property
    def default_sampler(self) -> str:
        return self.config.default_sampler

    def _shape(self, num: int) -> tuple[int, int, int, int]:
        return (num, self.channels, self.resolution, self.resolution)

    def sample_tensor(self, num: int, steps: int, seed: int, sampler: str = "multistep", callback=None) -> torch.Tensor:
        if sampler not in SAMPLER_NAMES:
            raise ValueError(f"sampler must be one of {SAMPLER_NAMES}")
        try:
            return sample(self.model, self._shape(num), steps, seed, _SAMPLER_FUNCTIONS[sampler], self.device,
                          callback=callback)
        except torch.OutOfMemoryError:
            raise self._out_of_memory(num) from None

    def _out_of_memory(self, num: int) -> OutOfMemoryError:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return OutOfMemoryError(f"out of memory sampling {num} images at {self.resolution} px on {self.device}: "
                                "draw fewer images at once, or sample on the CPU")

    def sample(self, num: int, steps: int, seed: int, sampler: str = "multistep") -> np.ndarray:
        """uint8 N×H×W×C images; the same seed gives the same images."""
        return to_uint8(self.sample_tensor(num, steps, seed, sampler))

    def strip(self, seed: int, steps=(1, 2, 4, 8), index: int = 0, callback=None) -> dict[int, np.ndarray]:
        """Image `index` of a seed at each step count (multistep), in one batched run: steps -> uint8 H×W×C."""
        try:
            images = to_uint8(strip(self.model, self._shape(1), list(steps), seed, index, self.device, callback))
        except torch.OutOfMemoryError:
            raise self._out_of_memory(len(steps)) from None
        return dict(zip(steps, images))

    def trajectory(self, num: int, steps: int, seed: int) -> list[np.ndarray]:
        """The multistep sampler's denoised estimate after each step (GIF frames)."""
        frames: list[np.ndarray] = []
        self.sample_tensor(num, steps, seed, "multistep", callback=lambda i, x: frames.append(to_uint8(x)))
        return frames


def load_generator(path: str | Path, device: str = "cpu") -> Generator:
    return Generator(path, device)
