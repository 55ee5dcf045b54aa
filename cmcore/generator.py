"""A trained model ready to sample: load a run or checkpoint, draw seeded images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_checkpoint
from .devices import resolve_device
from .sampling import default_times, multistep, sample, to_uint8
from .training import build_model

SAMPLER_NAMES = ("multistep", "ode")


class Generator:
    def __init__(self, path: str | Path, device: str = "cpu"):
        ckpt = load_checkpoint(path)
        self.source = ckpt.path
        self.config = ckpt.config
        self.step = ckpt.step
        self.method = ckpt.config.method
        self.channels = int(ckpt.meta.get("channels", 3))
        self.resolution = int(ckpt.meta.get("resolution", ckpt.config.resolution))
        self.device = resolve_device(device)
        self.model = build_model(self.config, self.channels, self.resolution)
        self.model.load_state_dict(ckpt.weights.get("ema") or ckpt.weights["model"])
        self.model.to(self.device).eval()

    @property
    def default_sampler(self) -> str:
        """A flow teacher is sampled by integrating its ODE; multistep is for consistency models."""
        return "ode" if self.method == "flow" else "multistep"

    def _shape(self, num: int) -> tuple[int, int, int, int]:
        return (num, self.channels, self.resolution, self.resolution)

    def sample_tensor(self, num: int, steps: int, seed: int, sampler: str = "multistep") -> torch.Tensor:
        if sampler not in SAMPLER_NAMES:
            raise ValueError(f"sampler must be one of {SAMPLER_NAMES}")
        name = "ode_euler" if sampler == "ode" else "multistep"
        return sample(self.model, self._shape(num), steps, seed, name, self.device)

    def sample(self, num: int, steps: int, seed: int, sampler: str = "multistep") -> np.ndarray:
        """uint8 N×H×W×C images; the same seed gives the same images."""
        return to_uint8(self.sample_tensor(num, steps, seed, sampler))

    def trajectory(self, num: int, steps: int, seed: int) -> list[np.ndarray]:
        """The multistep sampler's denoised estimate after each step (GIF frames)."""
        frames: list[np.ndarray] = []
        generator = torch.Generator().manual_seed(int(seed))
        x1 = torch.randn(self._shape(num), generator=generator).to(self.device)
        multistep(self.model, x1, default_times(steps), generator, lambda i, x: frames.append(to_uint8(x)))
        return frames


def load_generator(path: str | Path, device: str = "cpu") -> Generator:
    return Generator(path, device)
