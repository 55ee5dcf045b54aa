"""Train pane: settings on the left; controls, live loss plot and previews on the right.

The TrainingWorker runs the engine in its own QThread. Pause/stop call the worker's
methods directly (the engine's flags are thread-safe), never through queued slots, so
they act even while the worker thread is busy in a training step.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QProgressBar, QSplitter, QVBoxLayout, QWidget

from cmcore import rundir
from cmcore.config import TrainConfig

from .. import dialogs
from ..errors import ErrorInfo, describe
from ..icons import icon_button
from ..run_follower import RunFollower, torchrun_command
from ..widgets.previews import PreviewPanel
from ..workers import TrainingWorker, start_worker
from .common import card, muted, pane_layout, row
from .runs_pane import describe_owner, is_this_process, lock_owner
from .train_runs import RunSources
from .train_settings import TrainSettings
from .train_status import end_summary, finished_text, last_scored, progress_text, score_text

if TYPE_CHECKING:
    from ..widgets.loss_plot import LossPlot

log = logging.getLogger(__name__)


def new_run_dir(workspace: Path, method: str) -> Path:
    base = Path(workspace) / f"{method}-{time.strftime('%Y%m%d-%H%M%S')}"
    candidate, i = base, 1
    while candidate.exists():  # never reuse a folder: a run dir belongs to one run
        candidate = base.with_name(f"{base.name}-{i}")
        i += 1
    return candidate


class TrainPane(TrainSettings, RunSources, QWidget):
    running_changed = Signal(bool)
    run_finished = Signal(str, str)  # run dir, reason ("" when it failed)
    status_message = Signal(str)

    def __init__(self, workspace: Path, data_pane: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.workspace = Path(workspace)
        self.data_pane = data_pane
        self.worker: TrainingWorker | None = None
        self._thread = None
        self.run_dir: Path | None = None
        self.last_run: tuple[Path, str] | None = None  # (run dir, finish reason) of the previous run
        self.last_error: ErrorInfo | None = None
        self.rollbacks: list[Any] = []  # events.RolledBack of the current run (the spike guard)
        self.warnings: list[Any] = []  # events.Warning of the current run (a preview not written...)
        self.last_score: Any = None  # the last events.Scored of the current run (its held-out score)
        self.step = 0
        self.max_steps = 0
        self._finish_reason = ""
        self._engine_ready = False

        layout = pane_layout(self, "Train", "click Start; watch the loss and previews")

        scroll = self._settings_column()  # left: presets + form (TrainSettings)

        # right: controls, progress, plot, previews
        self.start_button = icon_button("play", "Start training", "#ffffff")
        self.start_button.setObjectName("primary")
        self.pause_button = icon_button("pause", "Pause")
        self.resume_button = icon_button("play", "Resume")
        self.resume_button.setToolTip("Continue a paused run, or the last stopped run from its checkpoint")
        self.stop_button = icon_button("stop", "Stop")
        self.stop_button.setToolTip("Finish the current step, save a checkpoint and stop")
        self.follow_button = icon_button("folder", "Follow a run…")
        self.follow_button.setToolTip("Watch a run that another process trains (cmcore train from a terminal, or on "
                                      "a server whose run folder is visible here): its loss, previews and progress; "
                                      "Pause and Stop reach it too")
        self.progress = QProgressBar()
        # Per mille of the run: it ends at max steps or max minutes, whichever comes first.
        self.progress.setRange(0, 1000)
        self.progress.setFormat("%p%")
        self.progress.setValue(0)
        self.status = muted("Idle")
        self.run_label = muted("")
        controls_card, controls = card()
        controls.addLayout(row(self.start_button, self.pause_button, self.resume_button, self.stop_button, 12,
                               self.progress))
        controls.addLayout(row(self.status, None, self.run_label, self.follow_button))

        # the plot (pyqtgraph, ~0.5 s to import) is built just after the window is shown
        self._plot: LossPlot | None = None
        self._plot_slot = QWidget()
        self.previews = PreviewPanel()
        right_split = QSplitter(Qt.Orientation.Vertical)
        right_split.addWidget(self._plot_slot)
        right_split.addWidget(self.previews)
        self._right_split = right_split
        right_split.setStretchFactor(0, 3)
        right_split.setStretchFactor(1, 2)
        right_split.setSizes([460, 300])
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(8, 0, 0, 0)
        right_layout.addWidget(controls_card)
        right_layout.addWidget(right_split, 1)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(scroll)
        split.addWidget(right)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([380, 900])
        layout.addWidget(split, 1)

        self.start_button.clicked.connect(self.start)
        self.pause_button.clicked.connect(self.pause)
        self.resume_button.clicked.connect(self.resume_clicked)
        self.stop_button.clicked.connect(self.stop)
        self.follow_button.clicked.connect(self.follow_clicked)
        self.fill_presets()
        self._restore()
        self._set_state("idle")

    @property
    def plot(self) -> LossPlot:
        if self._plot is None:
            from ..widgets.loss_plot import LossPlot  # noqa: F811 - deferred: pyqtgraph is slow to import

            self._plot = LossPlot()
            self._right_split.replaceWidget(0, self._plot)
            self._plot_slot.deleteLater()
        return self._plot

    # --- state -----------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.worker is not None

    @property
    def paused(self) -> bool:
        return self._state == "paused"

    def _set_state(self, state: str) -> None:
        self._state = state
        busy = state in ("running", "paused", "stopping", "starting")
        self.start_button.setEnabled(not busy and self._engine_ready)
        self.pause_button.setEnabled(state == "running")
        can_continue = bool(self.last_run and self.last_run[1] in ("stopped", "max_minutes"))
        self.resume_button.setEnabled(state == "paused" or (state == "idle" and can_continue and self._engine_ready))
        self.stop_button.setEnabled(state in ("running", "paused", "starting"))
        self.follow_button.setEnabled(not busy)
        self.form.setEnabled(not busy)
        for w in (self.preset_box, self.load_preset_button):
            w.setEnabled(not busy)

    # --- starting --------------------------------------------------------------------------------
    def start(self) -> bool:
        """Start a new run with the form's settings; False (and a message) if it cannot."""
        if self.running:
            return False
        try:
            config = self.current_config().validate()
            if not config.data:
                from cmcore import ConfigError

                raise ConfigError("no data chosen: pick a folder, the demo data or a torchvision set in the Data pane")
        except Exception as exc:  # noqa: BLE001 - ConfigError; shown, never raised into Qt
            self._fail_now(exc)
            return False
        self.remember_settings()
        run_dir = new_run_dir(self.workspace, config.method)
        self.plot.clear()
        self.previews.clear()
        processes = self.form.gpu_processes()
        if processes > 1:  # all GPUs: a torchrun child trains the run; the pane follows its folder
            try:
                run_dir.mkdir(parents=True)
                config.save(run_dir / rundir.CONFIG)
            except OSError as exc:
                self._fail_now(exc)
                return False
            self._launch(self._child(run_dir, processes, resume=False), run_dir, config.max_steps)
            return True
        self._launch(TrainingWorker(config, run_dir, dataset=self.data_pane.dataset_for(config)), run_dir, config.max_steps)
        return True

    def _child(self, run_dir: Path, processes: int, *, resume: bool) -> RunFollower:
        """A torchrun child over all of this machine's GPUs, followed through the run folder."""
        return RunFollower(run_dir, torchrun_command(run_dir, processes, resume=resume),
                           label=f"{processes} GPUs (torchrun)")

    def resume_run(self, run_dir: Path | str) -> bool:
        """Continue a run from its last checkpoint (a finished run is extended by its own length)."""
        if self.running:
            dialogs.show_info(self, "Training is running", "Stop the current run before resuming another.")
            return False
        run_dir = Path(run_dir)
        owner = lock_owner(run_dir)
        if owner and not is_this_process(owner):
            dialogs.show_info(self, "Run is busy", f"{run_dir.name} is being trained by {describe_owner(owner)}: "
                              "it can be resumed once that ends.")
            return False
        try:
            config = TrainConfig.load(run_dir / rundir.CONFIG)
            if not self._agree_to_extend(run_dir, config):
                return False
            config = rundir.extended(run_dir, config)  # saves config.toml: the run's record says what it trains to
        except Exception as exc:  # noqa: BLE001
            self._fail_now(exc, "Resuming")
            return False
        self.previews.clear()
        self.plot.clear()
        if config.device == "cuda" and self.form.gpu_count() > 1:  # a run on all GPUs goes on on all of them
            self._launch(self._child(run_dir, self.form.gpu_count(), resume=True), run_dir, config.max_steps)
            return True
        # the Data pane's decoded images when they are this run's: the resume does not decode them again
        dataset = self.data_pane.dataset_for(config)
        self._launch(TrainingWorker(None, run_dir, resume=True, dataset=dataset), run_dir, config.max_steps)
        return True

    def _launch(self, worker: TrainingWorker, run_dir: Path, max_steps: int) -> None:
        self.worker, self.run_dir, self.last_error = worker, run_dir, None
        self.rollbacks, self.warnings, self.last_score = [], [], None
        self.step, self.max_steps, self._finish_reason = 0, max_steps, ""
        worker.run_started.connect(self._on_started)
        worker.progress.connect(self._on_progress)
        worker.preview.connect(self._on_preview)
        worker.checkpoint_saved.connect(self._on_checkpoint)
        worker.rolled_back.connect(self._on_rolled_back)
        worker.warning.connect(self._on_warning)
        worker.run_finished.connect(self._on_finished)
        worker.history.connect(self._on_history)
        worker.scored.connect(self._on_scored)
        worker.failed.connect(self._on_failed)
        worker.done.connect(self._on_done)
        self.progress.setValue(0)
        self.status.setText("Preparing data and model…")
        self.run_label.setText(run_dir.name)
        self._set_state("starting")
        self.running_changed.emit(True)
        if isinstance(worker, RunFollower):  # polls the run folder on this thread
            self._thread = None
            worker.start()
            return
        self._thread = start_worker(worker, f"training {run_dir.name}")

    def resume_clicked(self) -> None:
        if self.paused:
            self.unpause()
        elif self.last_run is not None and not self.running:
            self.resume_run(self.last_run[0])

    # --- controls (GUI thread → thread-safe engine flags) --------------------------------------
    def pause(self) -> None:
        if self.worker is not None and self._state == "running":
            self.worker.pause()
            self._set_state("paused")
            self.status.setText(f"Paused at step {self.step:,}")

    def unpause(self) -> None:
        if self.worker is not None and self._state == "paused":
            self.worker.unpause()
            self._set_state("running")
            self.status.setText(f"Running from step {self.step:,}…")

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.request_stop()
            self._set_state("stopping")
            self.status.setText("Stopping after this step; saving a checkpoint…")

    def stop_and_wait(self, timeout_ms: int = 120_000) -> bool:
        """Blocking stop for shutdown: the engine saves a checkpoint and returns (a run another process trains
        is left running; only the following ends)."""
        if isinstance(self.worker, RunFollower):
            return self.worker.stop_and_wait(timeout_ms)
        if self.worker is not None:
            self.worker.request_stop()
        if self._thread is not None:
            return self._thread.wait(timeout_ms)
        return True

    # --- worker signals (all run in the GUI thread) -------------------------------------------
    def _on_started(self, event) -> None:
        self.step, self.max_steps = event.step, event.max_steps
        self.progress.setValue(round(1000 * event.step / max(1, event.max_steps)))
        if self._state == "starting":
            self._set_state("running")
        self.status.setText(f"Running on {event.device} · {event.num_params / 1e6:.2f} M parameters")
        self.status_message.emit(f"Training {Path(event.run_dir).name} on {event.device}")

    def _on_history(self, history) -> None:
        self.plot.set_history(history)
        self.last_score = last_scored(history) or self.last_score

    def _on_scored(self, event) -> None:
        self.last_score = event
        self.plot.add_score(event)
        self.status_message.emit(f"Checkpoint of step {event.step:,}: {score_text(event)}")

    def _on_progress(self, events: list) -> None:
        self.plot.append_events(events)
        e = events[-1]
        self.step = e.step
        self.progress.setValue(round(1000 * e.fraction))
        if self._state == "running":
            self.status.setText(progress_text(e))

    def _on_preview(self, event) -> None:
        self.previews.show_preview(event)

    def _on_checkpoint(self, event) -> None:
        self.status_message.emit(f"Checkpoint saved at step {event.step:,}")

    def _on_rolled_back(self, event) -> None:
        message = (f"Loss spike (×{event.ratio:.1f}) at step {event.step:,}: "
                   f"rolled back to the weights of step {event.to_step:,}")
        log.info("%s", message)
        self.rollbacks.append(event)
        self.plot.add_rollback(event.step)
        self.status_message.emit(message)

    def _on_warning(self, event) -> None:
        log.warning("training warning at step %s: %s", event.step, event.message)
        self.warnings.append(event)
        self.status_message.emit(f"Warning at step {event.step:,}: {event.message}")

    def _on_finished(self, event) -> None:
        self.step, self._finish_reason = event.step, event.reason
        if event.reason != "stopped":
            self.progress.setValue(1000)
        self.status.setText(finished_text(event, self.rollbacks, self.warnings))
        self.status.setToolTip("\n".join(f"step {w.step:,}: {w.message}" for w in self.warnings))

    def _on_failed(self, info: ErrorInfo) -> None:
        self.last_error = info
        self.status.setText(f"Failed: {info.message}")
        dialogs.show_error(self, info)

    def _on_done(self) -> None:
        run_dir, reason = self.run_dir, self._finish_reason
        if not reason and self.last_error is None:  # stopped while the images were being decoded
            self.status.setText("Stopped before the first step; nothing was saved")
        self.worker = None
        self.last_run = (run_dir, reason) if run_dir is not None and reason else self.last_run
        self._set_state("idle")
        self.running_changed.emit(False)
        if run_dir is not None:
            self.run_finished.emit(str(run_dir), reason)

    def end_summary(self) -> str:
        """One line on how the last run of this pane ended (finished, stopped or failed; its last score)."""
        return end_summary(self.run_dir or "", self._finish_reason, self.step, self.last_error, self.last_score)

    def _fail_now(self, exc: BaseException, context: str = "Cannot start training") -> None:
        info = describe(exc, context)
        log.warning("%s", info.details)
        self.last_error = info
        dialogs.show_error(self, info)

    def set_engine_ready(self, ready: bool) -> None:
        self._engine_ready = ready
        self._set_state(self._state)
        if not ready:
            self.status.setText("Loading the engine…")
        elif self._state == "idle" and self.last_run is None:
            self.status.setText("Ready")
