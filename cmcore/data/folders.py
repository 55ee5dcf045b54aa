"""A folder of images: scanning it, decoding each file defensively, resizing and cropping.

Folders come from users, so every file is opened defensively: a bad file is skipped and
reported with a reason, never fatal (too large, not an image, truncated, unreadable).
Every PIL mode ends up as 8-bit L or RGB (16-bit scaled rather than clipped, transparency
composited onto white, EXIF orientation applied), then the shorter side is resized to
the resolution and the centre cropped. Decoded folders are cached (see ``cache``).

Memory stays bounded: the decoded images go straight into one preallocated uint8 tensor
(rows written as files finish, put in file order in place at the end, the unused rows of
skipped files released), so the peak is about the final tensor, not a list of arrays plus
their stack. The channel count of an "auto" load is decided before decoding from the
files' headers (colour as soon as one header is colour), so a grayscale folder never
holds a three-channel buffer. The folder walk reports how many image files it has found
and polls ``cancel`` between directory entries, so a huge tree can be watched and stopped
while it is scanned.
"""
from __future__ import annotations

import itertools
import math
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError
from .cache import cache_key, default_cache_dir, entry_name, read_cache, write_cache
from .dataset import DataReport, SkippedFile

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)
GRAYSCALE_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_HIGH_DEPTH_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
SCAN_REPORT_INTERVAL_S = 0.1  # how often the folder walk reports the count found so far
_clock = time.monotonic


@dataclass(frozen=True)
class _Candidate:
    path: Path
    relative: str
    size: int  # -1 when stat failed (decoding then reports why)
    mtime_ns: int


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
) -> tuple[torch.Tensor, DataReport]:
    """Every usable image under ``folder`` (resolved), from the cache when it is current."""
    candidates = _find_candidates(folder, scan_progress, cancel)
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
        return images, DataReport(
            str(folder), len(images), resolution, images.shape[1], skipped, cache_hit=True
        )
    check_cancel(cancel)
    images, skipped = _decode_all(candidates, resolution, wanted, max_pixels, progress, cancel)
    if images is None:
        first = skipped[0]
        raise DataError(
            f"No usable image in {folder}: all {len(skipped)} image file(s) were skipped "
            f"(e.g. {first.path}: {first.reason})"
        )
    write_cache(cache_file, images, skipped)
    return images, DataReport(str(folder), len(images), resolution, images.shape[1], skipped)


def check_cancel(cancel: Callable[[], bool] | None) -> None:
    if cancel is not None and cancel():
        raise DataError("cancelled")


def match_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 [..., C, H, W] with C in {1, 3} -> ``channels``; gray uses PIL's luma."""
    have = images.shape[-3]
    if have == channels:
        return images
    if channels == 3:
        return images.expand(*images.shape[:-3], 3, *images.shape[-2:])
    r, g, b = images.to(torch.int32).unbind(-3)
    return ((r * 299 + g * 587 + b * 114 + 500) // 1000).to(torch.uint8).unsqueeze(-3)


# --------------------------------------------------------------------------- scanning


def _find_candidates(
    folder: Path,
    scan_progress: Callable[[int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> list[_Candidate]:
    """Image-extension files under ``folder``, sorted; directory links are not followed.

    The walk is ``os.walk``'s (a directory that cannot be listed is passed over, links to
    directories are listed but not entered) done entry by entry, so ``cancel`` is polled
    before every directory and every entry. ``scan_progress(found)`` gets the number of
    image files found so far: at the first, then every ``SCAN_REPORT_INTERVAL_S``, then
    once more with the final count.
    """
    found: list[_Candidate] = []
    last_report = None
    stack = [(str(folder), "")]
    while stack:
        directory, prefix = stack.pop()
        check_cancel(cancel)
        here: list[_Candidate] = []  # kept only if the whole directory could be listed
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    check_cancel(cancel)
                    if _is_directory(entry):
                        if not _is_link(entry):
                            stack.append((entry.path, f"{prefix}{entry.name}/"))
                    elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
                        here.append(_stat_candidate(Path(entry.path), prefix + entry.name))
                        now = _clock()
                        if scan_progress and (
                            last_report is None or now - last_report >= SCAN_REPORT_INTERVAL_S
                        ):
                            last_report = now
                            scan_progress(len(found) + len(here))
                            check_cancel(cancel)
        except OSError:
            continue
        found += here
    if scan_progress:
        scan_progress(len(found))
    return sorted(found, key=lambda c: c.relative)


def _is_directory(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _is_link(entry: os.DirEntry) -> bool:
    try:
        return entry.is_symlink()
    except OSError:
        return False


def _stat_candidate(path: Path, relative: str) -> _Candidate:
    try:
        st = path.stat()
    except OSError:
        return _Candidate(path, relative, -1, -1)
    return _Candidate(path, relative, st.st_size, st.st_mtime_ns)


# --------------------------------------------------------------------------- decoding


def _decode_all(
    candidates: Sequence[_Candidate],
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
            decode = lambda c: _decode_file(c, resolution, max_pixels)  # noqa: E731
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
    candidates: Sequence[_Candidate],
    max_pixels: int,
    workers: int,
    cancel: Callable[[], bool] | None,
) -> int:
    """3 as soon as one file's header is colour, else 1: the "auto" channel count, read
    before decoding so the buffer is allocated once with it. Only an all-grayscale folder
    has every header read (cheap, except palette images, whose palette PIL must load)."""
    peeks = _completed(pool, lambda c: _header_is_gray(c, max_pixels), candidates, 4 * workers)
    try:
        for _, gray in peeks:
            check_cancel(cancel)
            if gray is False:
                return 3
    finally:
        peeks.close()
    return 1


def _header_is_gray(candidate: _Candidate, max_pixels: int) -> bool | None:
    """``_is_grayscale`` of the opened file exactly as decoding would compute it, or None
    for a file decoding will skip anyway (empty, too large, unreadable, not an image)."""
    if candidate.size == 0:
        return None
    try:
        with Image.open(candidate.path) as im:
            if im.size[0] * im.size[1] > max_pixels:
                return None
            return _is_grayscale(im)
    except Exception:  # whatever it is, decoding meets it again and gives the reason
        return None


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


def _decode_file(
    candidate: _Candidate, resolution: int, max_pixels: int
) -> tuple[np.ndarray, bool] | str:
    """(uint8 array [R,R] or [R,R,3], is_grayscale), or the reason the file is skipped.

    Never raises: every failure of a user's file becomes a short reason.
    """
    if candidate.size == 0:
        return "empty file"
    try:
        with Image.open(candidate.path) as im:
            width, height = im.size
            if width * height > max_pixels:
                return f"too large ({width}×{height} pixels)"
            return _prepare(im, resolution)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Raised by Image.open before the size is known to us; PIL's message has it.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        return f"too large ({found.group(1)} pixels)" if found else "too large"
    except UnidentifiedImageError:
        return "not an image"
    except OSError as exc:
        if exc.errno is not None:
            return f"unreadable: {exc.strerror}"
        return "truncated or corrupt"
    except Exception:  # PIL raises SyntaxError, ValueError, EOFError... on broken files
        return "truncated or corrupt"


def _prepare(im: Image.Image, resolution: int) -> tuple[np.ndarray, bool]:
    """First frame -> upright 8-bit L or RGB, shorter side to ``resolution``, centre crop."""
    gray = _is_grayscale(im)
    # JPEG can decode at 1/2, 1/4 or 1/8 scale for free; ask for no less than needed.
    scale = resolution / min(im.size)
    im.draft(im.mode, (math.ceil(im.size[0] * scale), math.ceil(im.size[1] * scale)))
    im = ImageOps.exif_transpose(im)
    im = _to_8bit(im, gray)
    width, height = im.size
    side = min(width, height)
    box = ((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2)
    im = im.resize((resolution, resolution), Image.Resampling.BICUBIC, box=box, reducing_gap=3.0)
    return np.array(im), gray  # a writable copy: torch.from_numpy warns on read-only arrays


def _is_grayscale(im: Image.Image) -> bool:
    """By mode; palette images count as gray when every palette entry is a gray."""
    if im.mode in GRAYSCALE_MODES:
        return True
    if im.mode in ("P", "PA") and im.palette is not None and im.palette.mode == "RGB":
        entries = np.asarray(im.getpalette() or [1, 0, 0]).reshape(-1, 3)
        return bool((entries == entries[:, :1]).all())
    return False


def _to_8bit(im: Image.Image, gray: bool) -> Image.Image:
    """Any PIL mode -> "L" (if ``gray``) or "RGB"; transparency is composited onto white."""
    if im.mode in _HIGH_DEPTH_MODES:
        return _high_depth_to_l(im)
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im.convert("RGBA"))
    return im.convert("L" if gray else "RGB")


def _high_depth_to_l(im: Image.Image) -> Image.Image:
    """16/32-bit integer images are taken as 16-bit (the PNG/TIFF norm) and floats as
    [0, 1] when they fit it (else 16-bit), then scaled to 8 bits; PIL would clip instead.
    """
    values = np.asarray(im).astype(np.float64)
    full_scale = 1.0 if im.mode == "F" and values.size and values.max() <= 1.0 else 65535.0
    scaled = np.clip(np.rint(values * (255.0 / full_scale)), 0, 255).astype(np.uint8)
    return Image.fromarray(scaled, "L")
