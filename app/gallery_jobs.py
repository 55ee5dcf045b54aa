"""Gallery sampling jobs (run in worker threads; no Qt here).

A run folder is sampled at its best-scored checkpoint (RUN/checkpoints/best, the newest when none was
scored) or at its latest, resolved to the checkpoint file on every request: a run that saved a newer
checkpoint (or a better one) is picked up at once. Generators are cached per (checkpoint file, device,
file time), the few most recently used kept, so moving the steps slider or switching between best and
latest only samples; a lock per generator keeps two jobs (sampling, GIF export, an edit) from using it
at once.

Every job takes an optional `cancel` (app.workers.CancelFlag): it is checked after every
sampler step (the engine's `callback`), so a stale or abandoned job ends within one step.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cmcore.rundir import find_checkpoint, latest_pointer, run_name

if TYPE_CHECKING:  # numpy loads after the window is shown
    import numpy as np


STRIP_STEPS = (1, 2, 4, 8)
MAX_GENERATORS = 4  # loaded models kept (best, latest, another run's…); older ones are let go


@dataclass(frozen=True)
class SampleRequest:
    source: str  # run dir or checkpoint file
    device: str
    count: int
    steps: int
    seed: int
    sampler: str = "multistep"
    strip: bool = True  # also sample one image at STRIP_STEPS with the same noise
    which: str = "best"  # a run folder's best-scored checkpoint, or "latest"
    label: int | None = None  # a class-conditional model: this class for every image; None: one row per class


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
    best_step: int | None = None  # the run's best-scored checkpoint, if one was scored
    latest_step: int | None = None  # the run's newest checkpoint (None: a checkpoint file was opened)
    score: float | None = None  # the shown checkpoint's 1-step score (lower is better), if logged
    class_names: tuple[str, ...] = ()  # the model's classes; () for an unconditional model
    labels: list[int] | None = None  # the class of each image (a class-conditional model)
    per_row: int = 0  # images per row when each row is one class; 0: rows as they fit

    def metadata(self, index: int | None = None) -> dict[str, str]:
        """PNG text chunks: the same keys the CLI writes (cmcore.export.image_metadata), and the class."""
        from cmcore.export import image_metadata

        r = self.request
        data = image_metadata(run=self.run_name, checkpoint=self.checkpoint, step=self.step, method=self.method,
                              sampler=r.sampler, steps=r.steps, seed=r.seed, count=r.count, index=index)
        if self.labels and (index is not None or self.per_row == 0):  # a grid of one row per class has no one class
            data["class"] = self.class_names[self.labels[index or 0]]
        return data

    def caption(self, index: int) -> str:
        return f"#{index + 1}" + (f" · {self.class_names[self.labels[index]]}" if self.labels else "")


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
                    del self._items[old]  # an older version of the same file
                self._items[key] = item
        with self._lock:  # most recently used last; a job still using an evicted one keeps its own reference
            self._items[key] = self._items.pop(key, item)
            while len(self._items) > MAX_GENERATORS:
                del self._items[next(iter(self._items))]
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


def _sample(generator, count: int, steps: int, seed: int, sampler: str, cancel: Any, labels=None) -> np.ndarray:
    from cmcore.sampling import to_uint8

    return to_uint8(generator.sample_tensor(count, steps, seed, sampler,
                                            callback=None if cancel is None else cancel.check, labels=labels))


def class_layout(generator, request: SampleRequest) -> tuple[int, Any, int]:
    """(images to draw, their labels, images per class row) of a request: an unconditional model draws
    `count` images (labels None, 0); one class, `count` of it; all classes, one row each of
    ceil(count / classes) images. A label the model does not have (another model's) counts as all classes."""
    import math

    classes = len(generator.class_names)
    if not classes:
        return request.count, None, 0
    if request.label is not None and 0 <= request.label < classes:
        return request.count, generator.labels_for(request.count, request.label), 0
    per_row = math.ceil(request.count / classes)
    return per_row * classes, generator.labels_for(per_row * classes, None, per_row), per_row


def checkpoint_for(source: str, which: str) -> str:
    """The checkpoint file a request samples: a run folder's best (or latest) one; a file is itself."""
    return str(find_checkpoint(source, which=which))


def scored(checkpoint: str) -> tuple[int | None, int | None, float | None]:
    """(best step, latest step, the checkpoint's 1-step score) of the run a checkpoint file belongs to;
    all None for a file outside a run folder."""
    from cmcore.rundir import best_step, latest_step, run_of, step_of

    run = run_of(checkpoint)
    if run is None:
        return None, None, None
    return best_step(run), latest_step(run), _scores_of(run).get(step_of(Path(checkpoint)))


_SCORES: dict[str, tuple[tuple[int, int], dict[int, float]]] = {}  # metrics file -> ((mtime, size), scores)


def _scores_of(run: Path) -> dict[int, float]:
    """{step: 1-step score} from a run's metrics.jsonl, read again only when the file changed: a long run's
    file takes ~0.5 s per 100 000 lines to read, too slow for every move of the steps slider."""
    from cmcore.rundir import METRICS, read_metrics, scored

    path = Path(run) / METRICS
    try:
        st = path.stat()
    except OSError:
        return {}
    key = (st.st_mtime_ns, st.st_size)
    cached = _SCORES.get(str(path))
    if cached is not None and cached[0] == key:
        return cached[1]
    table = {s["step"]: s["score"][1] for s in scored(read_metrics(path)) if 1 in s["score"]}
    _SCORES[str(path)] = (key, table)
    return table


def run_sample(request: SampleRequest, cancel: Any = None) -> SampleResult:
    import time

    t0 = time.perf_counter()
    checkpoint = checkpoint_for(request.source, request.which)
    generator, lock = GENERATORS.get(checkpoint, request.device)
    with lock:
        _check(cancel)  # a job that waited for the lock may be stale by now
        count, labels, per_row = class_layout(generator, request)
        images = _sample(generator, count, request.steps, request.seed, request.sampler, cancel, labels)
        strip = None
        first = None if labels is None else labels[:1]  # the strip shows image #1, of its class
        if request.strip:
            if request.sampler == "multistep":  # image #1 at 1, 2, 4 and 8 steps in one batched run
                strip = generator.strip(request.seed, STRIP_STEPS, callback=None if cancel is None else cancel.check,
                                        label=None if first is None else int(first[0]))
            else:
                strip = {s: _sample(generator, 1, s, request.seed, request.sampler, cancel, first)[0]
                         for s in STRIP_STEPS}
    best, latest, score = scored(str(generator.source))
    if Path(request.source).is_file():  # a checkpoint file was opened: it is what it is, no best or latest
        best = latest = None
    return SampleResult(request, images, strip, run_name(generator.source), int(generator.step),
                        str(generator.method), int(generator.resolution), int(generator.channels),
                        str(generator.source), generator.default_sampler, time.perf_counter() - t0,
                        best, latest, score, tuple(generator.class_names),
                        None if labels is None else [int(k) for k in labels], per_row)


def run_trajectory(request: SampleRequest, cancel: Any = None) -> list[np.ndarray]:
    """Grids of the multistep sampler's estimate after each step (frames of the GIF)."""
    from cmcore.export import make_grid
    from cmcore.sampling import to_uint8

    frames: list[np.ndarray] = []

    def frame(i: int, x) -> None:
        _check(cancel)
        frames.append(to_uint8(x))

    generator, lock = GENERATORS.get(checkpoint_for(request.source, request.which), request.device)
    with lock:
        _check(cancel)
        count, labels, per_row = class_layout(generator, request)
        generator.sample_tensor(count, request.steps, request.seed, "multistep", callback=frame, labels=labels)
    return [make_grid(f, per_row or None) for f in frames]
