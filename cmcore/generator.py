"""A trained model ready to sample: load a run or checkpoint, draw seeded images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_checkpoint
from .devices import resolve_device
from .errors import ConfigError, OutOfMemoryError
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
        self.class_names: tuple[str, ...] = ckpt.class_names  # () for an unconditional model

    @property
    def default_sampler(self) -> str:
        return self.config.default_sampler

    def _shape(self, num: int) -> tuple[int, int, int, int]:
        return (num, self.channels, self.resolution, self.resolution)

    def class_index(self, name_or_index: str | int) -> int:
        """A class of this model by name or by index (as text or a number); ConfigError (one line) otherwise."""
        if not self.class_names:
            raise ConfigError(f"{self.source} was trained without classes: sample it without a class")
        if isinstance(name_or_index, str) and name_or_index in self.class_names:
            return self.class_names.index(name_or_index)
        try:
            index = int(name_or_index)
        except (TypeError, ValueError):
            index = -1
        if not 0 <= index < len(self.class_names):
            raise ConfigError(f"class {name_or_index!r} is not one of this model's: "
                              f"{', '.join(self.class_names)} (or 0 to {len(self.class_names) - 1})")
        return index

    def labels_for(self, num: int, classes=None, per_row: int | None = None) -> torch.Tensor | None:
        """The class of each of `num` images: None (unconditional); one class (name or index) for all; a list,
        one per image; or for `classes` None with `per_row`: one class per row of `per_row` images, the
        classes in turn (None without `per_row`: image i gets class i mod the number of classes)."""
        if not self.class_names:
            if classes is not None:
                self.class_index(0)  # the one-line refusal
            return None
        if classes is None:
            if per_row is None:
                return None
            return (torch.arange(num) // max(1, per_row)) % len(self.class_names)
        if isinstance(classes, (str, int)):
            return torch.full((num,), self.class_index(classes), dtype=torch.long)
        labels = torch.tensor([self.class_index(c) for c in classes], dtype=torch.long)
        if len(labels) != num:
            raise ValueError(f"{len(labels)} classes for {num} images")
        return labels

    def sample_tensor(self, num: int, steps: int, seed: int, sampler: str = "multistep", callback=None,
                      labels=None) -> torch.Tensor:
        """`labels`: a class index per image (or one for all) of a class-conditional model; None: every class
        in turn."""
        if sampler not in SAMPLER_NAMES:
            raise ValueError(f"sampler must be one of {SAMPLER_NAMES}")
        try:
            return sample(self.model, self._shape(num), steps, seed, _SAMPLER_FUNCTIONS[sampler], self.device,
                          callback=callback, labels=labels)
        except torch.OutOfMemoryError:
            raise self._out_of_memory(num) from None

    def _out_of_memory(self, num: int) -> OutOfMemoryError:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return OutOfMemoryError(f"out of memory sampling {num} images at {self.resolution} px on {self.device}: "
                                "draw fewer images at once, or sample on the CPU")

    def sample(self, num: int, steps: int, seed: int, sampler: str = "multistep", classes=None) -> np.ndarray:
        """uint8 N×H×W×C images; the same seed gives the same images. `classes` (a class-conditional model):
        one class (name or index) for all, or one per image; None: every class in turn."""
        return to_uint8(self.sample_tensor(num, steps, seed, sampler, labels=self.labels_for(num, classes)))

    def strip(self, seed: int, steps=(1, 2, 4, 8), index: int = 0, callback=None,
              label: int | None = None) -> dict[int, np.ndarray]:
        """Image `index` of a seed at each step count (multistep), in one batched run: steps -> uint8 H×W×C
        (of class `label` for a class-conditional model; None: the class image `index` gets)."""
        try:
            images = to_uint8(strip(self.model, self._shape(1), list(steps), seed, index, self.device, callback,
                                    label))
        except torch.OutOfMemoryError:
            raise self._out_of_memory(len(steps)) from None
        return dict(zip(steps, images))

    def trajectory(self, num: int, steps: int, seed: int, labels=None) -> list[np.ndarray]:
        """The multistep sampler's denoised estimate after each step (GIF frames)."""
        frames: list[np.ndarray] = []
        self.sample_tensor(num, steps, seed, "multistep", callback=lambda i, x: frames.append(to_uint8(x)),
                           labels=labels)
        return frames


def load_generator(path: str | Path, device: str = "cpu") -> Generator:
    return Generator(path, device)
