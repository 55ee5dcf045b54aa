"""Follow a run through its folder: a run trained by a child process (torchrun over all of this machine's GPUs)
or by any other process (`cmcore train` started from a terminal, or on a server whose run folder this machine
sees).

A `RunFollower` is a QObject on the GUI thread. A QTimer reads the run folder every POLL_MS (the new lines of
metrics.jsonl, new preview PNGs, the newest complete checkpoint, the lock that tells whether the run is
trained) and emits the signals a TrainingWorker emits, carrying the same cmcore.events, so the Train pane
shows a followed run exactly as one it trains itself. Pause, Resume and Stop go through the run's control file
(cmcore.runlock.write_control), which the training process (rank 0 of a torchrun run) reads every half second;
the follower writes its request again until the run answers, so a request made while the run is still
starting (before it cleared old requests) is not lost.
"""
from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from cmcore import rundir, runlock

from .errors import ErrorInfo

log = logging.getLogger(__name__)

POLL_MS = 500
STOP_GRACE_S = 120.0  # at shutdown: how long a stopped child may take to save before it is terminated
_PREVIEW = re.compile(r"step_(\d+)_(\d+)steps\.png")


def torchrun_command(run_dir: Path, nproc: int, *, resume: bool) -> list[str]:
    """The child that trains a run over `nproc` GPUs of this machine: PyTorch's launcher (torchrun) starting
    `nproc` processes of `cmcore train` on the run folder (a new run's config.toml written beforehand).
    Tests replace this with a CPU (gloo) command."""
    run_dir = Path(run_dir)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
               "-m", "cmcore", "train", "--out", str(run_dir), "--quiet"]
    return command + (["--resume"] if resume else ["--config", str(run_dir / rundir.CONFIG)])


class RunFollower(QObject):
    """Shows a run that another process trains; with `command`, starts that process (and owns it)."""

    run_started = Signal(object)  # events.Started
    progress = Signal(list)  # list[events.Progress]
    preview = Signal(object)  # events.Preview
    checkpoint_saved = Signal(object)  # events.CheckpointSaved
    run_finished = Signal(object)  # events.Finished
    rolled_back = Signal(object)  # events.RolledBack (never: metrics.jsonl has counts; a Warning and a history say it)
    scored = Signal(object)  # events.Scored, from the score lines of metrics.jsonl
    warning = Signal(object)  # events.Warning
    history = Signal(object)  # list[dict]: the metrics.jsonl records so far
    failed = Signal(object)  # ErrorInfo
    done = Signal()  # always the last signal

    def __init__(self, run_dir: Path | str, command: list[str] | None = None, *, label: str = "",
                 poll_ms: int = POLL_MS, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.run_dir = Path(run_dir)
        self.command = command
        self.label = label  # the device, as the Started event names it
        self.proc: subprocess.Popen | None = None
        self.output: Path | None = None  # the child's stdout and stderr
        self.config = None
        self.final_step: int | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(poll_ms)
        self._timer.timeout.connect(self.poll)
        self._started = self._finished = False
        self._inode: tuple[int, int] | None = None
        self._offset = 0
        self._records: list[dict] = []
        self._preview_key: tuple[int, tuple[str, ...]] | None = None
        self._checkpoint = rundir.committed_step(self.run_dir) if self.run_dir.is_dir() else None
        self._rollbacks = self._nan_rollbacks = 0
        self._wanted: dict | None = None  # the control request last made, written until the run has it
        self.stop_requested = False

    @property
    def owns_process(self) -> bool:
        return self.command is not None

    @property
    def step(self) -> int:
        return int(self._records[-1]["step"]) if self._records else (self._checkpoint or 0)

    # --- starting and ending -------------------------------------------------------------------------
    def start(self) -> None:
        if self.command is not None:
            from .log import log_dir

            log_dir().mkdir(parents=True, exist_ok=True)
            self.output = log_dir() / f"train-{self.run_dir.name}.log"
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            log.info("starting %s", " ".join(self.command))
            with open(self.output, "wb") as out:
                self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=out,
                                             stderr=subprocess.STDOUT, env=env)
        self._timer.start()
        QTimer.singleShot(0, self.poll)

    def stop_and_wait(self, timeout_ms: int = 120_000) -> bool:
        """Blocking, at shutdown. A child is asked to stop (it saves a checkpoint), then terminated if it takes
        longer than the timeout; a run of another process is left running: only the following ends."""
        if self._finished:
            return True
        if self.proc is None:
            self._finish()
            return True
        self.request_stop()
        deadline = time.monotonic() + timeout_ms / 1000
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._push_control()
            time.sleep(0.1)
        if self.proc.poll() is None:
            log.warning("the training child did not stop in %.0f s: terminating it", timeout_ms / 1000)
            self.proc.terminate()  # torchrun passes SIGTERM on; cmcore train saves on it
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._finish()
        return self.proc.returncode == 0

    # --- controls: the run's control file ----------------------------------------------------------------
    def pause(self) -> None:
        self._request(pause=True, stop=False)

    def unpause(self) -> None:
        self._request(pause=False, stop=False)

    def request_stop(self) -> None:
        self.stop_requested = True
        self._request(pause=False, stop=True)

    cancel = request_stop

    def _request(self, **wanted: bool) -> None:
        self._wanted = wanted
        self._push_control()

    def _push_control(self) -> None:
        if self._wanted is None or self._finished or not self.run_dir.is_dir():
            return
        if runlock.read_control(self.run_dir) != self._wanted:  # new, or cleared by a run just starting
            try:
                runlock.write_control(self.run_dir, **self._wanted)
            except OSError as exc:
                log.warning("could not write %s: %s", rundir.CONTROL, exc)

    # --- the poll ------------------------------------------------------------------------------------
    def _alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return runlock.lock_owner(self.run_dir) is not None

    def poll(self) -> None:
        if self._finished:
            return
        try:
            alive = self._alive()
            if not self._started:
                if self.proc is not None and alive and runlock.lock_owner(self.run_dir) is None:
                    return  # the child is still starting (imports, data): the pane says "preparing"
                if not self._start_following():
                    if not alive:
                        self._finish()
                    return
            self._push_control()
            self._read_metrics()
            self._read_previews()
            self._read_checkpoint()
            if not alive:
                self._finish()
        except Exception:  # noqa: BLE001 - a poll must never raise into Qt's event loop
            log.exception("following %s", self.run_dir)

    def _start_following(self) -> bool:
        from cmcore import TrainConfig, events

        try:
            self.config = TrainConfig.load(self.run_dir / rundir.CONFIG)
        except Exception:  # noqa: BLE001 - not written yet (a child starting), or not a run
            return False
        self._started = True
        owner = runlock.lock_owner(self.run_dir)
        label = self.label or (f"pid {owner['pid']} on {owner.get('host', '?')}" if owner else "no process now")
        self.run_started.emit(events.Started(str(self.run_dir), self.step, self.config.max_steps,
                                             self._num_params(), label))
        return True

    def _num_params(self) -> int:
        """The model's size from the run's config and data report (built on the meta device: no memory, no file read)."""
        try:
            import json
            import math

            from cmcore.model import expected_tensors

            channels = json.loads((self.run_dir / rundir.DATA_REPORT).read_text())["channels"]
            config = self.config.resolved(channels)
            return sum(math.prod(shape) for shape, _ in expected_tensors(config, channels, self.config.resolution).values())
        except Exception:  # noqa: BLE001 - only a number on the status line (a cd run's config before it is resolved)
            return 0

    def _read_metrics(self) -> None:
        """The lines added since the last poll; a file rewritten (a resume cuts it back) is read again whole."""
        path = self.run_dir / rundir.METRICS
        try:
            st = path.stat()
        except OSError:
            return
        inode = (st.st_dev, st.st_ino)
        rewritten = inode != self._inode or st.st_size < self._offset
        if rewritten:
            self._inode, self._offset, self._records = inode, 0, []
        if st.st_size == self._offset:
            return
        with open(path, "rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next poll
        self._offset += end
        new = _parse(data[:end])
        if not new:
            return
        first = not self._records
        self._records.extend(new)
        losses = [r for r in new if "loss" in r]
        rolled = bool(losses) and int(losses[-1].get("rollbacks", 0)) > self._rollbacks
        if first or rolled:  # the curve so far (a run followed midway, a file a resume cut back, a rollback's mark)
            self.history.emit(list(self._records))
        else:
            if losses:
                self.progress.emit([self._progress(r) for r in losses])
            for r in new:
                if "score" in r:
                    self.scored.emit(_scored(r))
        if losses:
            self._report_rollbacks(losses[-1])

    def _progress(self, r: dict):
        from cmcore import events

        c = self.config
        step, wall, ips = int(r["step"]), float(r.get("wall", 0.0)), float(r.get("images_per_s", 0.0))
        steps_per_s = ips / c.batch_size
        eta = (c.max_steps - step) / steps_per_s if steps_per_s > 0 else None
        fraction = step / c.max_steps
        if c.max_minutes > 0:
            left = max(0.0, 60 * c.max_minutes - wall)
            eta = left if eta is None else min(eta, left)
            fraction = max(fraction, wall / (60 * c.max_minutes))
        return events.Progress(step, c.max_steps, float(r["loss"]), float(r.get("lr", 0.0)), int(r.get("n", 0)), ips,
                               wall, eta, min(1.0, fraction))

    def _report_rollbacks(self, last: dict) -> None:
        from cmcore import events

        rollbacks, nans = int(last.get("rollbacks", 0)), int(last.get("nan_rollbacks", 0))
        if rollbacks > self._rollbacks:
            self.warning.emit(events.Warning(int(last["step"]), f"loss spike: the spike guard rolled the run back "
                                                                f"({rollbacks} time(s) so far)"))
        if nans > self._nan_rollbacks:
            self.warning.emit(events.Warning(int(last["step"]), f"non-finite loss: rolled back and halved the learning "
                                                                f"rate ({nans} time(s) so far)"))
        self._rollbacks, self._nan_rollbacks = rollbacks, nans

    def _read_previews(self) -> None:
        folder = self.run_dir / rundir.PREVIEWS
        newest: dict[int, list[tuple[int, str]]] = {}
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    m = _PREVIEW.fullmatch(entry.name)
                    if m:
                        newest.setdefault(int(m.group(1)), []).append((int(m.group(2)), entry.name))
        except OSError:
            return
        if not newest:
            return
        step = max(newest)
        files = tuple(sorted(name for _, name in newest[step]))
        if (step, files) == self._preview_key:
            return
        grids = {}
        for steps, name in newest[step]:
            try:
                grids[steps] = _read_png(folder / name)
            except OSError:
                return  # replaced while read: next poll
        self._preview_key = (step, files)
        from cmcore import events

        self.preview.emit(events.Preview(step, grids))

    def _read_checkpoint(self) -> None:
        step = rundir.committed_step(self.run_dir)
        if step is not None and step != self._checkpoint:
            from cmcore import events

            self._checkpoint = step
            path = rundir.checkpoint_files(self.run_dir, step)[0]
            self.checkpoint_saved.emit(events.CheckpointSaved(step, str(path)))

    def _finish(self) -> None:
        """The run's process ended (or the following does): the last lines, then Finished or failed, then done."""
        if self._finished:
            return
        self._timer.stop()
        try:
            if self._started or self._start_following():
                self._read_metrics()
                self._read_previews()
                self._read_checkpoint()
        except Exception:  # noqa: BLE001
            log.exception("reading %s at its end", self.run_dir)
        self._finished = True
        self.final_step = self.step
        code = self.proc.returncode if self.proc is not None else 0
        stopped_by_signal = code in (-signal.SIGTERM, 128 + signal.SIGTERM, -signal.SIGINT, 128 + signal.SIGINT)
        if code != 0 and not (self.stop_requested and stopped_by_signal):
            self.failed.emit(self._failure(code))
        elif self._started and (self.proc is not None or runlock.lock_owner(self.run_dir) is None):
            from cmcore import events

            reached = rundir.limit_reached(self.run_dir, self.config) if self.config is not None else None
            reason = {"steps": "max_steps", "minutes": "max_minutes"}.get(reached, "stopped")
            self.run_finished.emit(events.Finished(self.step, reason))
        self.done.emit()

    def _failure(self, code: int) -> ErrorInfo:
        text = ""
        if self.output is not None:
            try:
                text = self.output.read_text(errors="replace")[-20_000:]
            except OSError:
                pass
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error:")]
        message = errors[-1].removeprefix("error:").strip() if errors else \
            (lines[-1] if lines else f"the training process exited with code {code}")
        return ErrorInfo(kind="TrainingProcessError", title="Training: the training process failed", message=message,
                         hint=f"Its whole output is in {self.output}. The run resumes from its last checkpoint "
                              "(Runs pane).", details=text)


def _parse(data: bytes) -> list[dict]:
    import json
    import math

    records = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        step = record.get("step") if isinstance(record, dict) else None
        if isinstance(step, (int, float)) and not isinstance(step, bool) and math.isfinite(step) and \
                ("loss" in record or rundir.scored([record])):
            records.append(record)
    return records


def _scored(record: dict):
    """A score line (cmcore.evaluation) as the events.Scored the Trainer emitted for it."""
    from cmcore import events

    s = rundir.scored([record])[0]
    return events.Scored(s["step"], s["score"], s["gap"], s["best"])


def _read_png(path: Path):
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).copy()
