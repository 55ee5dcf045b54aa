"""What the app benchmarks share: a throw-away settings/workspace folder, dialogs that never
block, waiting on the real event loop, and a probe of how late the event loop serves a timer.

Waiting runs a QEventLoop rather than a busy loop: a busy GUI thread would contend for the
GIL with the worker threads whose effect on the window is what these benchmarks measure.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SETTINGS_ENV = (("CONSISTENCY_STUDIO_SETTINGS_DIR", "settings"), ("CONSISTENCY_STUDIO_LOG_DIR", "logs"),
                ("CMCORE_CACHE_DIR", "cache"))


def isolated(prefix: str) -> Path:
    """A temporary folder for this process's settings, log and data cache; Qt offscreen unless told otherwise."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    for name, sub in SETTINGS_ENV:
        os.environ[name] = str(tmp / sub)
    return tmp


def finish(tmp: Path, keep: bool) -> None:
    if keep:
        print(f"workspace: {tmp}", file=sys.stderr)
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def quiet_dialogs() -> list[str]:
    """Replace the app's dialogs: errors are collected in the returned list, questions answered yes."""
    from app import dialogs

    errors: list[str] = []
    dialogs.show_error = lambda parent, info: errors.append(f"{info.title}: {info.message}")
    dialogs.show_info = lambda parent, title, text: None
    dialogs.confirm = lambda *a, **k: True
    return errors


def run_events(seconds: float) -> None:
    """Serve the event loop for `seconds`."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(round(seconds * 1000), loop.quit)
    loop.exec()


def wait(condition: Callable[[], bool], what: str, errors: list[str], timeout_s: float = 300,
         poll_ms: int = 20) -> None:
    """Serve the event loop until `condition()` holds; SystemExit with one line on an app error or timeout."""
    from PySide6.QtCore import QEventLoop, QTimer

    deadline = time.monotonic() + timeout_s
    loop, timer = QEventLoop(), QTimer()
    timer.timeout.connect(lambda: loop.quit() if condition() or errors or time.monotonic() > deadline else None)
    timer.start(poll_ms)
    if not condition():
        loop.exec()
    timer.stop()
    if errors:
        raise SystemExit(f"error: {errors[0]}")
    if not condition():
        raise SystemExit(f"error: timed out waiting for {what}")


class LatenessProbe:
    """A precise single-shot timer of `interval_ms`, re-armed at every shot: each shot's lateness
    (when it ran minus when it was due, ms) is how long the window could not have answered an input."""

    def __init__(self, interval_ms: int = 10) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.interval_ms = interval_ms
        self.samples: list[float] = []
        self.late: list[tuple[float, float]] = []  # (due, ran) perf_counter times of every shot
        self._due = self._end = 0.0
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.timeout.connect(self._shot)

    def measure(self, seconds: float) -> list[float]:
        """Lateness of every shot during `seconds` of the event loop."""
        self.samples, self.late = [], []
        self._end = time.perf_counter() + seconds  # shots due later are not counted: the loop may quit late
        self._arm()
        run_events(seconds)
        self._timer.stop()
        return self.samples

    def _arm(self) -> None:
        self._due = time.perf_counter() + self.interval_ms / 1000
        self._timer.start(self.interval_ms)

    def _shot(self) -> None:
        now = time.perf_counter()
        if self._due > self._end:
            return
        self.samples.append(max(0.0, (now - self._due) * 1000))
        self.late.append((self._due, now))
        self._arm()


def overlapping(windows: list[tuple[float, float]], spans: list[tuple[float, float]]) -> int:
    """How many of `windows` overlap at least one of `spans` (both (start, end) pairs)."""
    return sum(any(s < end and start < e for s, e in spans) for start, end in windows)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    at = (len(ordered) - 1) * q / 100
    low = int(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def median(values: list[float]) -> float:
    return percentile(values, 50)


def summary(samples: list[float]) -> dict:
    """p50/p95/p99/max of lateness samples (ms, rounded to 0.01) and their count."""
    return {"ticks": len(samples), **{f"p{q}_ms": round(percentile(samples, q), 2) for q in (50, 95, 99)},
            "max_ms": round(max(samples), 2) if samples else float("nan")}
