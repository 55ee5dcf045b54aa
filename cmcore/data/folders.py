"""A folder of images: scan it, decode its files in a few threads into one buffer, cache it.

Scanning is ``scan`` (progress while walking, cancel), decoding one file is ``decode`` (a
bad file is skipped with a reason, never fatal). Decoded folders are cached (see ``cache``).

Memory stays bounded: the decoded images go straight into one preallocated uint8 tensor
(rows written as files finish, put in file order in place at the end, the unused rows of
skipped files released), so the peak is about the final tensor, not a list of arrays plus
their stack. The channel count of an "auto" load is decided before decoding from the
files' headers (colour as soon as one header is colour), so a grayscale folder never
holds a three-channel buffer.
"""
from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import DataError
from .classes import class_counts, folder_classes
from .cache import cache_key, default_cache_dir, entry_name, read_cache, write_cache
from .dataset import DataReport, SkippedFile
from .decode import decode_file, header_is_gray
from .decode import prepare as _prepare  # noqa: F401 - cmcore.editing imports it from here
from .scan import IMAGE_EXTENSIONS, Candidate, check_cancel, find_candidates


def load_folder(
    folder: Path,
    resolution: int,
    channels_setting: str | int,
    wanted: int | None,
    cache_dir: Path | None,
    progress: Callable[[int, int], None] | None,
    cancel: Callable[[], bool] | None,
    max_pixels: int,
    scan_progress: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, DataReport, tuple[str, ...], torch.Tensor | None]:
    """Every usable image under ``folder`` (resolved), from the cache when it is current, with the classes
    its sub-folders give (names, one label per image; (), None when none: cmcore.data.classes)."""
    candidates = find_candidates(folder, scan_progress, cancel)
    if not candidates:
        exts = ", ".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))
        raise DataError(f"No image files ({exts}) found in {folder}")
    files = [(c.relative, c.size, c.mtime_ns) for c in candidates]
    key = cache_key(folder, resolution, channels_setting, max_pixels, files)
    cache_file = Path(cache_dir or default_cache_dir()) / entry_name(
        folder, resolution, channels_setting, key
    )
    cached = read_cache(cache_file, resolution, len(candidates))
    if cached is not None:
        images, skipped = cached
        report = DataReport(str(folder), len(images), resolution, images.shape[1], skipped, cache_hit=True)
        return (images, report, *_classes(candidates, skipped, report))
    check_cancel(cancel)
    images, skipped = _decode_all(candidates, resolution, wanted, max_pixels, progress, cancel)
    if images is None:
        first = skipped[0]
        raise DataError(
            f"No usable image in {folder}: all {len(skipped)} image file(s) were skipped "
            f"(e.g. {first.path}: {first.reason})"
        )
    write_cache(cache_file, images, skipped)
    report = DataReport(str(folder), len(images), resolution, images.shape[1], skipped)
    return (images, report, *_classes(candidates, skipped, report))


def _classes(candidates: Sequence[Candidate], skipped: Sequence[SkippedFile],
             report: DataReport) -> tuple[tuple[str, ...], torch.Tensor | None]:
    """The classes of the loaded files (the candidates not skipped, in file order), noted in the report."""
    gone = {s.path for s in skipped}
    names, labels, report.classes_note = folder_classes([c.relative for c in candidates if str(c.path) not in gone])
    if labels is not None:
        report.classes = class_counts(names, labels)
    return names, labels


def match_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 [..., C, H, W] with C in {1, 3} -> ``channels``; gray uses PIL's luma."""
    have = images.shape[-3]
    if have == channels:
        return images
    if channels == 3:
        return images.expand(*images.shape[:-3], 3, *images.shape[-2:])
    r, g, b = images.to(torch.int32).unbind(-3)
    return ((r * 299 + g * 587 + b * 114 + 500) // 1000).to(torch.uint8).unsqueeze(-3)


# --------------------------------------------------------------------------- decoding


def _decode_all(
    candidates: Sequence[Candidate],
    resolution: int,
    wanted: int | None,
    max_pixels: int,
    progress: Callable[[int, int], None] | None,
    cancel: Callable[[], bool] | None,
) -> tuple[torch.Tensor | None, list[SkippedFile]]:
    """(uint8 [N, C, R, R] of the usable files in file order, or None if there is none;
    the skipped files in file order), decoded in a few threads (PIL releases the GIL).

    PIL's decompression-bomb *warning* is turned into an error for the duration, so a
    huge image is skipped rather than decoded. Before Python 3.14 warning filters are
    process-wide, so this is set once here around the pool (``catch_warnings`` restores
    the previous filters) rather than per worker thread, which would race.
    """
    total = len(candidates)
    reasons: dict[int, str] = {}
    workers = max(2, min(4, os.cpu_count() or 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        pool = ThreadPoolExecutor(workers, thread_name_prefix="cmcore-decode")
        try:
            channels = wanted or _header_channels(pool, candidates, max_pixels, workers, cancel)
            rows = _Rows(total, channels, resolution, auto=wanted is None)
            decode = lambda c: decode_file(c, resolution, max_pixels)  # noqa: E731
            for done, (index, result) in enumerate(
                _completed(pool, decode, candidates, 4 * workers), start=1
            ):
                if isinstance(result, str):
                    reasons[index] = result
                else:
                    rows.add(index, *result)
                if progress:
                    progress(done, total)
                check_cancel(cancel)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    skipped = [SkippedFile(str(candidates[i].path), reasons[i]) for i in sorted(reasons)]
    return (rows.finish() if rows.count else None), skipped


def _completed(
    pool: ThreadPoolExecutor, fn: Callable, items: Sequence, window: int
) -> Iterator[tuple[int, object]]:
    """(index, fn(item)) as they finish, with at most ``window`` submitted and not yet taken:
    finished results never pile up, and a generator closed early cancels the rest."""
    pending: dict[Future, int] = {}
    todo = iter(enumerate(items))
    try:
        while True:
            for index, item in itertools.islice(todo, window - len(pending)):
                pending[pool.submit(fn, item)] = index
            if not pending:
                return
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                yield pending.pop(future), future.result()
    finally:
        for future in pending:
            future.cancel()


def _header_channels(
    pool: ThreadPoolExecutor,
    candidates: Sequence[Candidate],
    max_pixels: int,
    workers: int,
    cancel: Callable[[], bool] | None,
) -> int:
    """3 as soon as one file's header is colour, else 1: the "auto" channel count, read
    before decoding so the buffer is allocated once with it. Only an all-grayscale folder
    has every header read (cheap, except palette images, whose palette PIL must load)."""
    peeks = _completed(pool, lambda c: header_is_gray(c, max_pixels), candidates, 4 * workers)
    try:
        for _, gray in peeks:
            check_cancel(cancel)
            if gray is False:
                return 3
    finally:
        peeks.close()
    return 1


class _Rows:
    """The preallocated uint8 buffer the decoded images are written into.

    Room for every candidate is reserved (``np.empty``: pages of rows never written, those
    of skipped files, are never touched) and rows are filled densely in the order files
    finish. ``finish`` puts them in file order in place, and gives the buffer's unused tail
    back with ``ndarray.resize`` (a ``realloc`` that shrinks in place), so the returned
    tensor owns exactly its rows and is saved to the cache byte for byte as a stacked one.
    A numpy array rather than a tensor only because torch cannot shrink storage in place.
    """

    def __init__(self, capacity: int, channels: int, resolution: int, auto: bool) -> None:
        self.buf = np.empty((capacity, channels, resolution, resolution), np.uint8)
        self.auto = auto  # channels decided from the headers, revised if the decoding disagrees
        self.order: list[int] = []  # the candidate index of each filled row
        self.all_gray = True

    @property
    def count(self) -> int:
        return len(self.order)

    def add(self, index: int, array: np.ndarray, gray: bool) -> None:
        """Row ``count`` := the decoded ``array`` in the buffer's channels (gray repeated, or RGB -> luma)."""
        if self.auto and not gray and self.buf.shape[1] == 1:
            self._widen()  # only when a header said gray but the file decoded as colour
        image = torch.from_numpy(array)
        image = image.unsqueeze(0) if image.ndim == 2 else image.permute(2, 0, 1)
        torch.from_numpy(self.buf[self.count]).copy_(match_channels(image, self.buf.shape[1]))
        self.order.append(index)
        self.all_gray = self.all_gray and gray

    def _widen(self) -> None:
        wide = np.empty((len(self.buf), 3, *self.buf.shape[2:]), np.uint8)
        wide[: self.count] = self.buf[: self.count]  # gray repeated, as match_channels does
        self.buf = wide

    def finish(self) -> torch.Tensor:
        """The filled rows in file order as uint8 [count, C, R, R]; the buffer is given up."""
        n, channels, res = self.count, self.buf.shape[1], self.buf.shape[2]
        if self.auto and channels == 3 and self.all_gray:
            # A header said colour but that file was skipped: keep channel 0 (the gray),
            # moving plane k from 3k to k; the sources are always ahead of the targets.
            plane = res * res
            flat = self.buf.reshape(-1)
            for k in range(1, n):
                flat[k * plane : (k + 1) * plane] = flat[3 * k * plane : (3 * k + 1) * plane]
            del flat
            channels = 1
        rows = self.buf.reshape(-1)[: n * channels * res * res].reshape(n, -1)
        _sort_rows(rows, self.order)
        del rows
        buf, self.buf = self.buf, np.empty((0,), np.uint8)
        try:
            buf.resize((n, channels, res, res))
        except ValueError:  # something else still references the buffer: copy instead
            buf = buf.reshape(-1)[: n * channels * res * res].reshape(n, channels, res, res).copy()
        return torch.from_numpy(buf)


def _sort_rows(rows: np.ndarray, order: Sequence[int]) -> None:
    """Permute ``rows`` in place so that they are sorted by ``order`` (one row of scratch)."""
    source = sorted(range(len(order)), key=order.__getitem__)  # row j takes old row source[j]
    scratch = np.empty_like(rows[0])
    placed = [False] * len(source)
    for start in range(len(source)):
        if placed[start] or source[start] == start:
            continue
        scratch[:] = rows[start]
        j = start
        while source[j] != start:
            rows[j] = rows[source[j]]
            placed[j] = True
            j = source[j]
        rows[j] = scratch
        placed[j] = True
