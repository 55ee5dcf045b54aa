"""Gallery sampling jobs (run in worker threads; no Qt here).

Generators are cached per (source, device, checkpoint time), so moving the steps
slider only samples; a run that saved a newer checkpoint is reloaded automatically.
A lock per generator keeps two jobs (sampling, GIF export) from using it at once.

Every job takes an optional `cancel` (app.workers.CancelFlag): it is checked after every
sampler step (the engine's `callback`), so a stale or abandoned job ends within one step.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

    def drop(self, folder: str | Path) -> None:
        """Forget the generators loaded from `folder` or from files inside it (a run being deleted)."""
        folder = Path(folder)
        with self._lock:
            for key in [k for k in self._items if Path(k[0]) == folder or folder in Path(k[0]).parents]:
                del self._items[key]


GENERATORS = GeneratorCache()


def _check(cancel: Any) -> None:
    if cancel is not None:
        cancel.check()


def _sample(generator, count: int, steps: int, seed: int, sampler: str, cancel: Any) -> np.ndarray:
    from cmcore.sampling import to_uint8

    return to_uint8(generator.sample_tensor(count, steps, seed, sampler,
                                            callback=None if cancel is None else cancel.check))


def run_sample(request: SampleRequest, cancel: Any = None) -> SampleResult:
    import time

    t0 = time.perf_counter()
    generator, lock = GENERATORS.get(request.source, request.device)
    with lock:
        _check(cancel)  # a job that waited for the lock may be stale by now
        images = _sample(generator, request.count, request.steps, request.seed, request.sampler, cancel)
        strip = None
        if request.strip:
            if request.sampler == "multistep":  # image #1 at 1, 2, 4 and 8 steps in one batched run
                strip = generator.strip(request.seed, STRIP_STEPS, callback=None if cancel is None else cancel.check)
            else:
                strip = {s: _sample(generator, 1, s, request.seed, request.sampler, cancel)[0] for s in STRIP_STEPS}
    return SampleResult(request, images, strip, run_name(generator.source), int(generator.step),
                        str(generator.method), int(generator.resolution), int(generator.channels),
                        str(generator.source), generator.default_sampler, time.perf_counter() - t0)


def run_trajectory(request: SampleRequest, cancel: Any = None) -> list[np.ndarray]:
    """Grids of the multistep sampler's estimate after each step (frames of the GIF)."""
    from cmcore.export import make_grid
    from cmcore.sampling import to_uint8

    frames: list[np.ndarray] = []

    def frame(i: int, x) -> None:
        _check(cancel)
        frames.append(to_uint8(x))

    generator, lock = GENERATORS.get(request.source, request.device)
    with lock:
        _check(cancel)
        generator.sample_tensor(request.count, request.steps, request.seed, "multistep", callback=frame)
    return [make_grid(f) for f in frames]
