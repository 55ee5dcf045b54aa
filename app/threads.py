"""The registry of every QThread the app starts, and the cancel flag its long jobs poll.

`start_worker` runs a worker's `run()` in a fresh QThread and keeps both alive until the thread
ends; `live_threads` and `join_all` let shutdown (and the tests' leak check) wait for them all.
app.workers holds the workers themselves and re-exports these names.
"""
from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QThread, Qt

if TYPE_CHECKING:
    from .workers import BaseWorker


# --- thread registry ------------------------------------------------------------------------

@dataclass
class ThreadEntry:
    thread: QThread
    worker: QObject  # kept alive until the thread has finished
    name: str
    origin: str  # where it was started, for the test fixture's failure message


_entries: list[ThreadEntry] = []


def _prune() -> None:
    for entry in list(_entries):
        if entry.thread.isFinished():
            entry.thread.wait()  # returns at once; makes sure the OS thread is gone
            _entries.remove(entry)


def start_worker(worker: "BaseWorker", name: str) -> QThread:
    """Run `worker.run()` in a new QThread; the registry keeps both alive until it ends."""
    _prune()
    thread = QThread()
    thread.setObjectName(name)
    worker.moveToThread(thread)
    thread.started.connect(worker.run, Qt.ConnectionType.DirectConnection)
    origin = "".join(traceback.format_list(traceback.extract_stack(limit=8)[:-1]))
    _entries.append(ThreadEntry(thread, worker, name, origin))
    thread.start()
    return thread


def live_threads() -> list[ThreadEntry]:
    _prune()
    return [e for e in _entries if not e.thread.isFinished()]


def join_all(timeout_ms: int = 30_000) -> bool:
    """Wait for every registered thread; True if all finished in time."""
    deadline = time.monotonic() + timeout_ms / 1000
    for entry in list(_entries):
        remaining = max(0, int((deadline - time.monotonic()) * 1000))
        if not entry.thread.wait(remaining):
            return False
    _prune()
    return True


# --- cancelling ---------------------------------------------------------------------------

class Cancelled(Exception):
    """A job stopped because it was asked to (window closing, a newer request): not an error."""


class CancelFlag:
    """Set from the GUI thread, polled by a job: `flag()` is a cancel callback for
    cmcore.data.load_dataset, `flag.check()` raises Cancelled (e.g. in a sampler callback)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    __call__ = is_set

    def check(self, *_args: Any) -> None:
        """Raise Cancelled once the flag is set (extra arguments: usable as a sampler callback)."""
        if self._event.is_set():
            raise Cancelled()
