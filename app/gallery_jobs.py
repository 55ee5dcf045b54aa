"""Gallery sampling jobs (run in worker threads; no Qt here).

Generators are cached per (source, device, checkpoint time), so moving the steps
slider only samples; a run that saved a newer checkpoint is reloaded automatically.
A lock per generator keeps two jobs (sampling, GIF export) from using it at once.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cmcore.rundir import latest_pointer, run_name

if TYPE_CHECKING:  # numpy loads after the window is shown
    import numpy as np


STRIP_STEPS = (1, 2, 4, 8)


@dataclass(frozen=True)
class SampleRequest:
    source: str  # run dir or checkpoint file
    device: str
    count: int
    steps: int
    seed: int
    sampler: str = "multistep"
    strip: bool = True  # also sample one image at STRIP_STEPS with the same noise


@dataclass
class SampleResult:
    request: SampleRequest
    images: np.ndarray  # uint8 [N, H, W, C]
    strip: dict[int, np.ndarray] | None  # steps -> uint8 [H, W, C]
    run_name: str
    step: int
    method: str
    resolution: int
    channels: int
    checkpoint: str
    default_sampler: str  # how the engine samples this model (Generator.default_sampler)
    seconds: float = 0.0

    def metadata(self, index: int | None = None) -> dict[str, str]:
        """PNG text chunks: the same keys the CLI writes (cmcore.export.image_metadata)."""
        from cmcore.export import image_metadata

        r = self.request
        return image_metadata(run=self.run_name, checkpoint=self.checkpoint, step=self.step, method=self.method,
                              sampler=r.sampler, steps=r.steps, seed=r.seed, count=r.count, index=index)


class GeneratorCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple, tuple[object, threading.Lock]] = {}

    @staticmethod
    def _version(source: str) -> float:
        latest = latest_pointer(source)
        path = latest if latest.exists() else Path(source)
        try:
            return path.stat().st_mtime
        except OSError:
            return 0.0

    def get(self, source: str, device: str):
        from cmcore.generator import load_generator

        key = (str(source), device, self._version(source))
        with self._lock:
            item = self._items.get(key)
        if item is None:
            generator = load_generator(source, device=device)
            item = (generator, threading.Lock())
            with self._lock:
                for old in [k for k in self._items if k[:2] == key[:2]]:
                    del self._items[old]  # an older checkpoint of the same source
                self._items[key] = item
        return item

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


GENERATORS = GeneratorCache()


def run_sample(request: SampleRequest) -> SampleResult:
    import time

    t0 = time.perf_counter()
    generator, lock = GENERATORS.get(request.source, request.device)
    with lock:
        images = generator.sample(request.count, request.steps, request.seed, request.sampler)
        strip = None
        if request.strip:
            strip = {s: generator.sample(1, s, request.seed, request.sampler)[0] for s in STRIP_STEPS}
    return SampleResult(request, images, strip, run_name(generator.source), int(generator.step),
                        str(generator.method), int(generator.resolution), int(generator.channels),
                        str(generator.source), generator.default_sampler, time.perf_counter() - t0)


def run_trajectory(request: SampleRequest) -> list[np.ndarray]:
    """Grids of the multistep sampler's estimate after each step (frames of the GIF)."""
    from cmcore.export import make_grid

    generator, lock = GENERATORS.get(request.source, request.device)
    with lock:
        frames = generator.trajectory(request.count, request.steps, request.seed)
    return [make_grid(f) for f in frames]
