"""Walking a folder for image files: sorted candidates, progress while walking, cancel.

The walk is ``os.walk``'s (a directory that cannot be listed is passed over, links to
directories are listed but not entered) done entry by entry, so a huge tree can be watched
and stopped while it is scanned: ``cancel`` is polled before every directory and entry.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)
SCAN_REPORT_INTERVAL_S = 0.1  # how often the folder walk reports the count found so far
_clock = time.monotonic


@dataclass(frozen=True)
class Candidate:
    path: Path
    relative: str
    size: int  # -1 when stat failed (decoding then reports why)
    mtime_ns: int


def check_cancel(cancel: Callable[[], bool] | None) -> None:
    if cancel is not None and cancel():
        raise DataError("cancelled")


def find_candidates(
    folder: Path,
    scan_progress: Callable[[int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> list[Candidate]:
    """Image-extension files under ``folder``, sorted; directory links are not followed.

    ``scan_progress(found)`` gets the number of image files found so far: at the first, then
    every ``SCAN_REPORT_INTERVAL_S``, then once more with the final count.
    """
    found: list[Candidate] = []
    last_report = None
    stack = [(str(folder), "")]
    while stack:
        directory, prefix = stack.pop()
        check_cancel(cancel)
        here: list[Candidate] = []  # kept only if the whole directory could be listed
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    check_cancel(cancel)
                    if _is_directory(entry):
                        if not _is_link(entry):
                            stack.append((entry.path, f"{prefix}{entry.name}/"))
                    elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
                        here.append(stat_candidate(Path(entry.path), prefix + entry.name))
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


def stat_candidate(path: Path, relative: str) -> Candidate:
    try:
        st = path.stat()
    except OSError:
        return Candidate(path, relative, -1, -1)
    return Candidate(path, relative, st.st_size, st.st_mtime_ns)
