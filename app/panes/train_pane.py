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
from PySide6.QtWidgets import (QComboBox, QProgressBar, QPushButton, QScrollArea, QSplitter, QVBoxLayout,
                               QWidget)

from cmcore import rundir
from cmcore.config import TrainConfig

from .. import dialogs, presets, settings
from ..errors import ErrorInfo, describe
from ..icons import icon_button
from ..run_follower import RunFollower, torchrun_command
from ..widgets.previews import PreviewPanel
from ..workers import TrainingWorker, start_worker
from .common import card, muted, pane_layout, row
from .runs_pane import describe_owner, is_this_process, lock_owner
from .train_form import TrainForm

if TYPE_CHECKING:
    from ..widgets.loss_plot import LossPlot

log = logging.getLogger(__name__)

DATA_FIELDS = ("data", "resolution", "channels", "hflip")  # TrainConfig fields the Data pane owns


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def new_run_dir(workspace: Path, method: str) -> Path:
    base = Path(workspace) / f"{method}-{time.strftime('%Y%m%d-%H%M%S')}"
    candidate, i = base, 1
    while candidate.exists():  # never reuse a folder: a run dir belongs to one run
        candidate = base.with_name(f"{base.name}-{i}")
        i += 1
    return candidate


class TrainPane(QWidget):
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
        self.step = 0
        self.max_steps = 0
        self._finish_reason = ""
        self._engine_ready = False

        layout = pane_layout(self, "Train", "click Start; watch the loss and previews")

        # left: presets + form
        self.form = TrainForm()
        self.preset_box = QComboBox()
        self.preset_box.setToolTip("Training presets (TOML, same format as a run's config.toml)")
        self.load_preset_button = QPushButton("Apply")
        self.save_preset_button = icon_button("save", "Save…")
        self.save_preset_button.setToolTip("Save these settings as a preset")
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 8, 0)
        left_layout.addLayout(row(muted("Preset"), self.preset_box, self.load_preset_button, self.save_preset_button))
        left_layout.addWidget(self.form)
        scroll = QScrollArea()
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(360)

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
        self.load_preset_button.clicked.connect(self.apply_selected_preset)
        self.save_preset_button.clicked.connect(self.save_preset)
        self.form.browse_teacher.connect(self._browse_teacher)
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
    def current_config(self) -> TrainConfig:
        """The form's settings with the Data pane's choice of data (and its resolution)."""
        return self.form.config(**self.data_pane.training_values())

    def set_values(self, values: dict[str, Any]) -> None:
        """Fill the settings from a preset or config: the resolution and flips go to the Data pane
        (the data is decoded at that resolution), the rest to the form. The data itself never changes here."""
        if "resolution" in values:
            self.data_pane.resolution.setValue(int(values["resolution"]))
        if "hflip" in values:
            self.data_pane.hflip.setChecked(bool(values["hflip"]))
        self.form.set_values({k: v for k, v in values.items() if k not in DATA_FIELDS})

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
        return RunFollower(run_dir, torchrun_command(run_dir, processes, resume=resume),
                           label=f"{processes} GPUs (torchrun)")

    def follow_clicked(self) -> None:
        path = dialogs.pick_folder(self, "Follow a run folder", str(self.workspace))
        if path:
            self.follow_run(path)

    def follow_run(self, run_dir: Path | str) -> bool:
        """Show a run that another process trains (or trained), as it goes; Pause/Stop reach it through its
        control file. False (and a message) for a folder that holds no run."""
        run_dir = Path(run_dir)
        if self.running:
            dialogs.show_info(self, "Training is running", "Stop the current run before following another.")
            return False
        if not (run_dir / rundir.CONFIG).is_file():
            dialogs.show_info(self, "Not a run folder", f"{run_dir} holds no {rundir.CONFIG}: choose the folder "
                              "that `cmcore train --out` writes.")
            return False
        self.plot.clear()
        self.previews.clear()
        self._launch(RunFollower(run_dir), run_dir, TrainConfig.load(run_dir / rundir.CONFIG).max_steps)
        return True

    @property
    def following_other_process(self) -> bool:
        """The pane shows a run that a process outside this app trains (closing the app leaves it running)."""
        return isinstance(self.worker, RunFollower) and not self.worker.owns_process

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

    def _agree_to_extend(self, run_dir: Path, config: TrainConfig) -> bool:
        """True unless the run already used its step or time budget and the person does not want
        one more (cmcore.rundir.extended then adds it)."""
        reached = rundir.limit_reached(run_dir, config)
        if reached == "steps":
            return dialogs.confirm(self, "Run is complete", f"{run_dir.name} reached its {config.max_steps:,} "
                                   f"steps.\nTrain {config.max_steps:,} more steps?", ok="Train more")
        if reached == "minutes":
            return dialogs.confirm(self, "Time limit reached", f"{run_dir.name} used its {config.max_minutes:g} "
                                   f"minutes.\nTrain {config.max_minutes:g} more minutes?", ok="Train more")
        return True

    def _launch(self, worker: TrainingWorker, run_dir: Path, max_steps: int) -> None:
        self.worker, self.run_dir, self.last_error = worker, run_dir, None
        self.rollbacks, self.warnings = [], []
        self.step, self.max_steps, self._finish_reason = 0, max_steps, ""
        worker.run_started.connect(self._on_started)
        worker.progress.connect(self._on_progress)
        worker.preview.connect(self._on_preview)
        worker.checkpoint_saved.connect(self._on_checkpoint)
        worker.rolled_back.connect(self._on_rolled_back)
        worker.warning.connect(self._on_warning)
        worker.run_finished.connect(self._on_finished)
        worker.history.connect(self._on_history)
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

    def _on_progress(self, events: list) -> None:
        self.plot.append_events(events)
        e = events[-1]
        self.step = e.step
        self.progress.setValue(round(1000 * e.fraction))
        if self._state == "running":
            self.status.setText(f"step {e.step:,} / {e.max_steps:,} · {e.images_per_s:,.0f} img/s · "
                                f"elapsed {_duration(e.elapsed_s)} · ETA {_duration(e.eta_s)}")

    def _on_preview(self, event) -> None:
        self.previews.show_preview(event)

    def _on_checkpoint(self, event) -> None:
        self.status_message.emit(f"Checkpoint saved at step {event.step:,}")

    def _on_rolled_back(self, event) -> None:
        message = (f"Loss spike (×{event.ratio:.1f}) at step {event.step:,}: "
                   f"rolled back to the weights of step {event.to_step:,}")
        log.info("%s", message)
        self.rollbacks.append(event)
        self.status_message.emit(message)

    def _on_warning(self, event) -> None:
        log.warning("training warning at step %s: %s", event.step, event.message)
        self.warnings.append(event)
        self.status_message.emit(f"Warning at step {event.step:,}: {event.message}")

    def _on_finished(self, event) -> None:
        self.step, self._finish_reason = event.step, event.reason
        if event.reason != "stopped":
            self.progress.setValue(1000)
        words = {"max_steps": "finished", "max_minutes": "time limit reached", "stopped": "stopped"}
        spikes = f"; rolled back after {len(self.rollbacks)} loss spike(s)" if self.rollbacks else ""
        warned = f"; {len(self.warnings)} warning(s), the last: {self.warnings[-1].message}" if self.warnings else ""
        self.status.setText(f"{words.get(event.reason, event.reason).capitalize()} at step {event.step:,}; "
                            f"checkpoint saved{spikes}{warned}")
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

    def _fail_now(self, exc: BaseException, context: str = "Cannot start training") -> None:
        info = describe(exc, context)
        log.warning("%s", info.details)
        self.last_error = info
        dialogs.show_error(self, info)

    # --- presets and remembered settings --------------------------------------------------------
    def fill_presets(self, select: str = "") -> None:
        self.preset_box.clear()
        for p in presets.list_presets():
            self.preset_box.addItem(p.name + ("" if p.builtin else "  (yours)"), str(p.path))
        if select:
            self.preset_box.setCurrentIndex(max(0, self.preset_box.findData(select)))

    def apply_selected_preset(self) -> None:
        path = self.preset_box.currentData()
        if path:
            self.apply_preset(Path(path))

    def apply_preset(self, path: Path) -> bool:
        try:
            values = presets.read_preset(path)
        except Exception as exc:  # noqa: BLE001 - ConfigError for a bad file
            self._fail_now(exc, "Preset")
            return False
        self.set_values(values)
        self.status_message.emit(f"Preset {path.stem} applied")
        return True

    def save_preset(self) -> None:
        presets.user_dir().mkdir(parents=True, exist_ok=True)
        path = dialogs.pick_save_file(self, "Save preset", str(presets.user_dir() / "my-preset.toml"),
                                      "Presets (*.toml)")
        if not path:
            return
        try:
            saved = presets.save_preset(Path(path), self.current_config())
        except Exception as exc:  # noqa: BLE001
            self._fail_now(exc, "Saving preset")
            return
        self.fill_presets(select=str(saved))
        self.status_message.emit(f"Preset saved to {saved}")

    def remember_settings(self) -> None:
        try:
            settings.set("train/last", self.current_config().to_toml())
        except Exception:  # noqa: BLE001 - a half-typed form must not break closing
            log.warning("could not remember the training settings", exc_info=True)

    def _restore(self) -> None:
        text = settings.get_str("train/last", "")
        if not text:
            return
        try:
            values = TrainConfig.from_toml(text).to_dict()
        except Exception:  # noqa: BLE001 - settings from an older version: ignore them
            return
        # the Data pane remembers its own fields
        self.form.set_values({k: v for k, v in values.items() if k not in DATA_FIELDS})

    def set_engine_ready(self, ready: bool) -> None:
        self._engine_ready = ready
        self._set_state(self._state)
        if not ready:
            self.status.setText("Loading the engine…")
        elif self._state == "idle" and self.last_run is None:
            self.status.setText("Ready")

    # --- glue --------------------------------------------------------------------------------------
    def set_devices(self, devices: list) -> None:
        self.form.set_devices(devices)

    def set_runs(self, runs: list) -> None:
        self.form.set_teachers(runs)

    def _browse_teacher(self) -> None:
        path = dialogs.pick_folder(self, "Choose a flow run folder", str(self.workspace))
        if path:
            self.form.set_teacher(path)
