"""Background work: the worker base class and the training / decoding / generic workers
(the thread registry and the cancel flag are in app.threads, re-exported here).

Pattern: a QObject worker is moved to a fresh QThread; `thread.started` runs `worker.run`
in that thread (direct connection), and `run` ends by moving the worker back to the GUI
thread and quitting its own thread, so no queued call into the main thread is needed for
a thread to finish (the GUI may be blocked in `wait()` at shutdown).

Every long job can be cancelled: it polls a thread-safe flag at least every sampler step,
decoded file or training step, so closing the window joins every thread within moments.
A job that sees its flag raises `Cancelled`, which ends it quietly (no error is shown).
"""
from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QCoreApplication, QObject, QThread, Signal

from .errors import ErrorInfo, describe

# the app and its tests reach these through app.workers
from .threads import Cancelled, CancelFlag, ThreadEntry, join_all, live_threads, start_worker  # noqa: F401

log = logging.getLogger(__name__)


# --- workers --------------------------------------------------------------------------------

class BaseWorker(QObject):
    failed = Signal(object)  # ErrorInfo
    done = Signal()  # always the last signal, success or not

    error_context = ""

    def __init__(self) -> None:
        super().__init__()
        self.cancel_flag = CancelFlag()

    def cancel(self) -> None:
        """Ask the job to end soon (thread-safe); it ends quietly."""
        self.cancel_flag.set()

    @property
    def cancelled(self) -> bool:
        return self.cancel_flag.is_set()

    def run(self) -> None:
        try:
            self.work()
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the user
            if isinstance(exc, Cancelled) or self.cancelled:
                # asked to stop: whatever the job raised on its way out (a file deleted under it) is moot
                log.info("%s cancelled (%s)", type(self).__name__, type(exc).__name__)
            else:
                log.error("%s failed:\n%s", type(self).__name__, traceback.format_exc())
                self.failed.emit(describe(exc, self.error_context))
        finally:
            self.done.emit()
            app = QCoreApplication.instance()
            if app is not None:
                self.moveToThread(app.thread())  # allowed: we are in the worker's thread
            QThread.currentThread().quit()  # exec() will return at once

    def work(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class FunctionWorker(BaseWorker):
    """Runs `fn(*args)` and emits its return value. A `cancellable` job is called as
    `fn(*args, cancel=flag)` and polls the CancelFlag; a cancelled job emits no result."""

    result = Signal(object)

    def __init__(self, fn: Callable[..., Any], *args: Any, context: str = "", cancellable: bool = False) -> None:
        super().__init__()
        self._fn, self._args, self._cancellable = fn, args, cancellable
        self.error_context = context

    def work(self) -> None:
        self.cancel_flag.check()  # cancelled before it began
        value = self._fn(*self._args, cancel=self.cancel_flag) if self._cancellable else self._fn(*self._args)
        self.cancel_flag.check()
        self.result.emit(value)


class EngineLoader(BaseWorker):
    """Imports cmcore (and torch) off the GUI thread, then lists the devices."""

    loaded = Signal(object)  # list[DeviceInfo]
    error_context = "Loading the engine"

    def work(self) -> None:
        t0 = time.perf_counter()
        from cmcore.devices import list_devices

        devices = list_devices()
        log.info("engine loaded in %.2f s; devices: %s", time.perf_counter() - t0, [d.id for d in devices])
        self.loaded.emit(devices)


class DecodeWorker(BaseWorker):
    """Decodes a data source the way the trainer will see it (with progress and cancel)."""

    progress = Signal(int, int)  # done, total
    scanned = Signal(int)  # image files found so far while a folder is walked (the engine reports every ~0.1 s)
    loaded = Signal(object, object)  # ImageDataset, thumbnails uint8 [N,H,W,C]
    error_context = "Reading images"
    THUMBNAILS = 64

    def __init__(self, spec: str, resolution: int, channels: str) -> None:
        super().__init__()
        self.spec, self.resolution, self.channels = spec, resolution, channels
        self._last_emit = 0.0

    def _on_progress(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last_emit >= 0.05 or done >= total:  # ~20 updates/s at most
            self._last_emit = now
            self.progress.emit(done, total)

    def work(self) -> None:
        from cmcore import DataError
        from cmcore.data import load_dataset

        try:
            dataset = load_dataset(self.spec, resolution=self.resolution, channels=self.channels,
                                   progress=self._on_progress, cancel=self.cancel_flag, scan_progress=self.scanned.emit)
        except DataError:
            if self.cancelled:  # the loader reports a cancel as DataError("cancelled")
                return
            raise
        if self.cancelled:
            return
        thumbs = dataset.thumbnails(self.THUMBNAILS).permute(0, 2, 3, 1).contiguous().numpy()
        self.loaded.emit(dataset, thumbs)


class TrainingWorker(BaseWorker):
    """Runs one `cmcore.Trainer`; engine events become (rate-limited) Qt signals."""

    run_started = Signal(object)  # events.Started
    progress = Signal(list)  # list[events.Progress], at most ~10 emissions per second
    preview = Signal(object)  # events.Preview
    checkpoint_saved = Signal(object)  # events.CheckpointSaved
    run_finished = Signal(object)  # events.Finished
    rolled_back = Signal(object)  # events.RolledBack
    warning = Signal(object)  # events.Warning: something failed that training survives
    history = Signal(object)  # list[dict]: the metrics.jsonl records of the run so far (resume)
    scored = Signal(object)  # events.Scored: a checkpoint scored on the held-out images
    error_context = "Training"

    EMIT_INTERVAL_S = 0.1

    def __init__(self, config: Any, run_dir: Path, *, resume: bool = False, dataset: Any = None) -> None:
        super().__init__()
        self.config, self.run_dir, self.resume, self.dataset = config, Path(run_dir), resume, dataset
        self._lock = threading.Lock()
        self._trainer: Any = None
        self._stop = False
        self._paused = False
        self._buffer: list[Any] = []
        self._last_emit = 0.0
        self.final_step: int | None = None

    # called from the GUI thread: the engine's flags are thread-safe, so no queued slots
    def request_stop(self) -> None:
        with self._lock:
            self._stop = True
            trainer = self._trainer
        if trainer is not None:
            trainer.request_stop()  # also wakes a paused trainer

    def pause(self) -> None:
        with self._lock:
            self._paused = True
            trainer = self._trainer
        if trainer is not None:
            trainer.pause()

    def unpause(self) -> None:
        with self._lock:
            self._paused = False
            trainer = self._trainer
        if trainer is not None:
            trainer.unpause()

    def cancel(self) -> None:
        """The same as Stop: the engine saves a checkpoint first (and a failure to save is still
        reported, so the cancel flag stays unset)."""
        self.request_stop()

    @property
    def stop_requested(self) -> bool:
        return self._stop

    # worker thread
    def work(self) -> None:
        from cmcore import Trainer

        dataset = self.dataset if self.dataset is not None else self._load_data()
        if dataset is None:
            return  # stopped while the images were being decoded: no run was started
        trainer = Trainer(self.config, self.run_dir, resume=self.resume, on_event=self._on_event,
                          dataset=dataset)
        with self._lock:  # a stop/pause clicked while the trainer was being built applies now
            self._trainer = trainer
            stop, paused = self._stop, self._paused
        if paused:
            trainer.pause()
        if stop:
            trainer.request_stop()
        try:
            self.final_step = trainer.run()
        finally:
            self._flush()

    def _load_data(self) -> Any:
        """Decode the run's data the way Trainer.setup would, but stoppable: a large folder takes
        minutes, and Stop (or closing the window) must not wait for it. None when stopped. The
        engine's quick refusals (a bad setting or path, a run another process trains) come first,
        as in Trainer.setup, so they are not kept waiting behind the decoding."""
        from cmcore import DataError, TrainConfig
        from cmcore.data import load_dataset
        from cmcore.errors import RunBusyError
        from cmcore.rundir import CONFIG
        from cmcore.runlock import lock_owner

        config = (self.config if self.config is not None else TrainConfig.load(self.run_dir / CONFIG)).validate()
        config = config.with_absolute_paths()
        config.check_paths(teacher=not self.resume)
        owner = lock_owner(self.run_dir)
        if owner and owner.get("pid") != os.getpid():
            raise RunBusyError(f"this run ({self.run_dir}) is being trained by pid {owner.get('pid')} on "
                               f"{owner.get('host', '?')}: stop that process first, or train into another folder")
        try:
            return load_dataset(config.data, config.resolution, config.channels, config.hflip,
                                cancel=lambda: self._stop)
        except DataError:
            if self._stop:  # the loader reports a cancel as DataError("cancelled")
                return None
            raise

    def _on_event(self, event: Any) -> None:
        name = type(event).__name__
        if name == "Progress":
            self._buffer.append(event)
            if time.monotonic() - self._last_emit >= self.EMIT_INTERVAL_S:
                self._flush()
            return
        self._flush()  # keep the order: progress before a preview/finish of a later step
        if name == "Started" and self.resume:
            from cmcore.rundir import read_metrics

            # read only now: the engine has just cut metrics.jsonl back to the checkpoint's step
            records = read_metrics(self.run_dir)
            if records:
                self.history.emit(records)
        signal = {"Started": self.run_started, "Preview": self.preview,
                  "CheckpointSaved": self.checkpoint_saved, "RolledBack": self.rolled_back,
                  "Warning": self.warning, "Scored": self.scored, "Finished": self.run_finished}.get(name)
        if signal is not None:
            signal.emit(event)

    def _flush(self) -> None:
        if self._buffer:
            batch, self._buffer = self._buffer, []
            self._last_emit = time.monotonic()
            self.progress.emit(batch)


class LatestOnly(QObject):
    """Runs one job at a time in the background; a job submitted while another runs replaces
    any job still waiting, so rapid requests (slider drags) coalesce to the latest.

    Jobs submitted with `cancellable=True` are called with `cancel=CancelFlag` and poll it.
    With `supersede=True` a new request also cancels the running job, so only the latest
    request is computed to the end; `shutdown` cancels the running job before waiting for it."""

    result = Signal(object)
    failed = Signal(object)  # ErrorInfo
    busy_changed = Signal(bool)

    def __init__(self, name: str, parent: QObject | None = None, *, supersede: bool = False) -> None:
        super().__init__(parent)
        self.name = name
        self.supersede = supersede
        self._pending: tuple[Callable[..., Any], tuple, str, bool] | None = None
        self._worker: FunctionWorker | None = None
        self._thread: QThread | None = None
        self._closed = False

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def submit(self, fn: Callable[..., Any], *args: Any, context: str = "", cancellable: bool = False) -> None:
        if self._closed:
            return
        self._pending = (fn, args, context, cancellable)
        if self._worker is None:
            self._start_pending()
            self.busy_changed.emit(True)
        elif self.supersede:
            self._worker.cancel()  # stale: it ends at its next check and the pending job starts

    def cancel(self) -> None:
        """Drop the waiting job and cancel the running one (it ends at its next check)."""
        self._pending = None
        if self._worker is not None:
            self._worker.cancel()

    def _start_pending(self) -> None:
        assert self._pending is not None
        fn, args, context, cancellable = self._pending
        self._pending = None
        worker = FunctionWorker(fn, *args, context=context, cancellable=cancellable)
        worker.result.connect(self._on_result)
        worker.failed.connect(self._on_failed)
        worker.done.connect(self._on_done)
        self._worker = worker
        self._thread = start_worker(worker, self.name)

    def _on_result(self, value: Any) -> None:
        self.result.emit(value)

    def _on_failed(self, info: ErrorInfo) -> None:
        self.failed.emit(info)

    def _on_done(self) -> None:
        self._worker = None
        if self._pending is not None and not self._closed:
            self._start_pending()
        else:
            self.busy_changed.emit(False)

    def shutdown(self, timeout_ms: int = 30_000) -> bool:
        """Refuse new jobs, drop the waiting one, cancel and wait for the running one (blocking;
        on close). True if no thread is left running."""
        self._closed = True
        self.cancel()
        if self._thread is not None:
            return self._thread.wait(timeout_ms)
        return True
