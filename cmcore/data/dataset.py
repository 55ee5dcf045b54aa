"""The loaded data set and the report of how it was loaded (the types every loader returns)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch


@dataclass
class SkippedFile:
    path: str
    reason: str


@dataclass
class DataReport:
    """What a load did; shown in the app's Data pane and written next to runs."""

    source: str  # the spec string or the resolved folder path
    num_images: int
    resolution: int
    channels: int  # 1 or 3, the resolved choice
    skipped: list[SkippedFile] = field(default_factory=list)
    cache_hit: bool = False
    seconds: float = 0.0  # time to load (decode or cache read)
    classes: dict[str, int] = field(default_factory=dict)  # class name -> images, in label order; {}: none found
    classes_used: bool = False  # trained with them (cmcore.data.classes: the `classes` setting)
    classes_note: str = ""  # why a folder with sub-folders has no classes

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_text(self) -> str:
        kind = "grayscale" if self.channels == 1 else "RGB"
        how = "read from cache" if self.cache_hit else "loaded"
        lines = [
            f"{self.source}: {self.num_images} images, {self.resolution}x{self.resolution} "
            f"{kind}, {how} in {self.seconds:.2f} s",
        ]
        if self.classes:
            listed = ", ".join(f"{name} {count}" for name, count in self.classes.items())
            how = "trained with classes" if self.classes_used else "classes off"
            lines.append(f"{len(self.classes)} classes ({how}): {listed}")
        elif self.classes_note:
            lines.append(f"No classes: {self.classes_note}")
        if self.skipped:
            lines.append(f"Skipped {len(self.skipped)} file(s):")
            lines += [f"  {s.path}: {s.reason}" for s in self.skipped]
        return "\n".join(lines)


@dataclass
class ImageDataset:
    images: torch.Tensor  # uint8 [N, C, H, W], CPU
    report: DataReport
    labels: torch.Tensor | None = None  # int64 [N]: the class of each image, when the source has any
    hflip: bool = False
    class_names: tuple[str, ...] = ()  # label i's name when training is class-conditional; (): unconditional

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def resolution(self) -> int:
        return self.images.shape[-1]

    def sample_batch(self, batch_size: int, generator: torch.Generator, with_labels: bool = False):
        """A float32 batch [B, C, H, W] in [-1, 1], drawn with replacement (with ``with_labels``: and the
        batch's labels, int64 [B], taken with the same indices: no further draw).

        Every random choice comes from ``generator`` (indices first, then the flips),
        so restoring the generator state reproduces the batch exactly.
        """
        index = torch.randint(len(self), (batch_size,), generator=generator)
        batch = self.images[index].to(torch.float32).div_(127.5).sub_(1.0)
        if self.hflip:
            flip = torch.rand(batch_size, generator=generator) < 0.5
            batch[flip] = batch[flip].flip(-1)
        return (batch, self.labels[index]) if with_labels else batch

    def thumbnails(self, count: int) -> torch.Tensor:
        """The first ``count`` images (fewer if the set is smaller), uint8, a copy."""
        return self.images[:count].clone()
