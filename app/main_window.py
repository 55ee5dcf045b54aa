"""The main window: a sidebar of panes (Data, Train, Gallery, Runs) and their wiring.

The window is shown before torch is imported: an EngineLoader thread imports the engine
and lists the devices; until it reports, work that needs the engine waits.
"""
from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (QApplication, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QMainWindow, QStackedWidget,
                               QVBoxLayout, QWidget)

from cmcore import rundir

from . import APP_NAME, __version__, dialogs, settings, workers
from .errors import ErrorInfo
from .icons import app_icon, icon, retint
from .notify import Notifier
from .panes.data_pane import DataPane
from .panes.gallery_pane import GalleryPane
from .panes.runs_pane import RunsPane, default_workspace
from .panes.train_pane import TrainPane
from .panes.train_status import main_score, outcome
from .theme import apply_theme
from .timing import seconds_since_start

log = logging.getLogger(__name__)

PANES = [("data", "Data", "data"), ("train", "Train", "train"), ("gallery", "Gallery", "gallery"),
         ("runs", "Runs", "runs")]


class MainWindow(QMainWindow):
    engine_loaded = Signal(list)  # DeviceInfo list
    first_shown = Signal(float)  # seconds from process start to the window on screen

    def __init__(self, workspace: str | Path | None = None, data: str | None = None) -> None:
        super().__init__()
        self.setWindowTitle(APP_NAME)
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self.engine_ready = False
        self.devices: list = []
        self.first_window_s: float | None = None
        self._closing = False
        self._shut_down = False
        self._initial_data = data
        self._engine_thread = None
        self.notifier = Notifier(self)
        self.last_run_summary = ""  # how the last training run of this window ended
        self._last_outcome = ""  # the short form of it, on the permanent status label

        workspace = Path(workspace) if workspace else Path(settings.get_str("workspace") or default_workspace())
        self.data_pane = DataPane()
        self.train_pane = TrainPane(workspace, self.data_pane)
        self.gallery_pane = GalleryPane()
        self.runs_pane = RunsPane(workspace)
        self.panes = {"data": self.data_pane, "train": self.train_pane, "gallery": self.gallery_pane,
                      "runs": self.runs_pane}

        self.nav = QListWidget()
        self.nav.setObjectName("nav")
        self.nav.setIconSize(QSize(20, 20))
        self.stack = QStackedWidget()
        for key, label, icon_name in PANES:
            item = QListWidgetItem(icon(icon_name), label)
            item.setData(Qt.ItemDataRole.UserRole, key)
            item.setSizeHint(QSize(150, 42))
            self.nav.addItem(item)
            self.stack.addWidget(self.panes[key])
        self.nav.currentRowChanged.connect(self.stack.setCurrentIndex)
        central = QWidget()
        layout = QHBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self._sidebar())
        layout.addWidget(self.stack, 1)
        self.setCentralWidget(central)

        self.train_status = QLabel("Idle")
        self.train_status.setContentsMargins(0, 0, 16, 0)
        self.engine_status = QLabel("Loading engine…")
        self.engine_status.setContentsMargins(0, 0, 8, 0)
        self.engine_status.setObjectName("muted")
        self.statusBar().addPermanentWidget(self.train_status)
        self.statusBar().addPermanentWidget(self.engine_status)

        self._wire()
        hints = QGuiApplication.styleHints()
        if hasattr(hints, "colorSchemeChanged"):  # Qt >= 6.5: follow the system switching dark/light
            hints.colorSchemeChanged.connect(self.refresh_theme)
        for keys, _what, action in self.shortcuts():
            QShortcut(QKeySequence(keys), self, activated=action)
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction("Keyboard shortcuts", self.show_shortcuts, QKeySequence("F1"))
        self.show_pane("data" if data or not self.data_pane.spec else "train")
        self._set_engine_ready(False)
        geometry = settings.get("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1320, 840)

    def shortcuts(self) -> list[tuple[str, str, object]]:
        """(keys, what they do, the action): bound in the window and listed by Help ▸ Keyboard shortcuts."""
        tp, gp = self.train_pane, self.gallery_pane

        def press(*buttons):  # the first enabled button: the same checks as a click
            return lambda: next((b.click() for b in buttons if b.isEnabled()), None)

        panes = [(f"Ctrl+{i + 1}", f"Show the {label} pane", lambda i=i: self.nav.setCurrentRow(i))
                 for i, (_key, label, _icon) in enumerate(PANES)]
        return panes + [
            ("Ctrl+Return", "Start training", press(tp.start_button)),
            ("Ctrl+P", "Pause or resume training", press(tp.pause_button, tp.resume_button)),
            ("Ctrl+.", "Stop training (saves a checkpoint)", press(tp.stop_button)),
            ("Ctrl+]", "Gallery: one more sampling step", lambda: gp.step_by(1)),
            ("Ctrl+[", "Gallery: one sampling step fewer", lambda: gp.step_by(-1)),
            ("F5", "Refresh the runs list", self.runs_pane.refresh),
            ("Ctrl+Q", "Quit", self.close),
        ]

    def show_shortcuts(self) -> None:
        rows = "".join(f"<tr><td><b>{keys}</b>&nbsp;&nbsp;</td><td>{what}</td></tr>" for keys, what, _ in self.shortcuts())
        dialogs.show_info(self, "Keyboard shortcuts", f"<table>{rows}<tr><td><b>F1</b></td><td>This list</td></tr></table>"
                          "<p>Drop a folder onto the window to train on it; drop an exported PNG to open its model "
                          "in the Gallery with its steps, sampler and seed.</p>")

    def _sidebar(self) -> QWidget:
        sidebar = QWidget()
        sidebar.setObjectName("sidebar")
        sidebar.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        sidebar.setFixedWidth(200)
        logo = QLabel()
        logo.setPixmap(app_icon().pixmap(28, 28))
        name = QLabel(APP_NAME.replace(" ", "\n", 1))
        name.setObjectName("brand")
        brand = QHBoxLayout()
        brand.setContentsMargins(16, 16, 8, 10)
        brand.addWidget(logo)
        brand.addWidget(name, 1)
        version = QLabel(f"version {__version__}")
        version.setObjectName("muted")
        version.setToolTip("Ctrl+1…4 switch panes · F5 refreshes the runs · drop a folder to train on it")
        version.setContentsMargins(16, 0, 8, 10)
        layout = QVBoxLayout(sidebar)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(brand)
        layout.addWidget(self.nav, 1)
        layout.addWidget(version)
        return sidebar

    def _wire(self) -> None:
        tp, gp, rp, dp = self.train_pane, self.gallery_pane, self.runs_pane, self.data_pane
        rp.runs_listed.connect(tp.set_runs)
        rp.runs_listed.connect(gp.set_runs)
        rp.resume_requested.connect(self.resume_run)
        rp.open_requested.connect(self.open_in_gallery)
        rp.workspace_changed.connect(self._workspace_changed)
        rp.before_delete = gp.release  # the gallery lets go of a run before its folder is deleted
        tp.running_changed.connect(self._running_changed)
        tp.run_finished.connect(self._run_finished)
        tp.status_message.connect(self.show_message)
        tp.progress.valueChanged.connect(self._update_train_status)
        tp.form.device_changed.connect(self._device_changed)
        gp.status_message.connect(self.show_message)
        dp.dataset_changed.connect(self._dataset_changed)

    # --- start-up -------------------------------------------------------------------------------
    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if self.first_window_s is None:
            self.first_window_s = seconds_since_start()
            log.info("time to first window: %.3f s", self.first_window_s)
            self.first_shown.emit(self.first_window_s)
            QTimer.singleShot(0, self.load_engine)
            QTimer.singleShot(0, lambda: self.train_pane.plot)  # build the loss plot now

    def load_engine(self) -> None:
        """Import the engine in the background (idempotent)."""
        if self._engine_thread is not None or self.engine_ready:
            return
        loader = workers.EngineLoader()
        loader.loaded.connect(self._on_engine_loaded)
        loader.failed.connect(self._on_engine_failed)
        self._engine_loader = loader
        self._engine_thread = workers.start_worker(loader, "engine loader")

    def _on_engine_loaded(self, devices: list) -> None:
        if self._shut_down:
            return
        self.devices = devices
        self.train_pane.set_devices(devices)
        self.engine_status.setText("Devices: " + ", ".join(d.id for d in devices))
        self.engine_status.setToolTip("\n".join(f"{d.id}: {d.name}" for d in devices))
        self._set_engine_ready(True)
        self.runs_pane.refresh()
        if self._initial_data:
            self.data_pane.set_spec(self._initial_data)
        elif self.data_pane.spec:
            self.data_pane.load()
        self.engine_loaded.emit(devices)

    def _on_engine_failed(self, info: ErrorInfo) -> None:
        self.engine_status.setText("Engine failed to load")
        dialogs.show_error(self, info)

    def _set_engine_ready(self, ready: bool) -> None:
        self.engine_ready = ready
        self.train_pane.set_engine_ready(ready)
        self.data_pane.set_engine_ready(ready)

    def refresh_theme(self, *_args) -> None:
        """Re-apply palette, icon tints and plot colours (the system scheme changed)."""
        app = QApplication.instance()
        if app is None:
            return
        apply_theme(app)
        retint(self)
        for row in range(self.nav.count()):
            item = self.nav.item(row)
            item.setIcon(icon(PANES[row][2]))
        self.train_pane.plot.apply_theme()

    # --- navigation and glue ----------------------------------------------------------------------
    def show_pane(self, key: str) -> None:
        self.nav.setCurrentRow([k for k, _, _ in PANES].index(key))

    def current_pane(self) -> str:
        return PANES[self.nav.currentRow()][0]

    def show_message(self, text: str) -> None:
        self.statusBar().showMessage(text, 6000)

    def resume_run(self, path: str) -> None:
        if self.train_pane.resume_run(path):
            self.show_pane("train")

    def open_in_gallery(self, path: str) -> None:
        self.gallery_pane.open_source(path)
        self.show_pane("gallery")

    def _workspace_changed(self, path: str) -> None:
        self.train_pane.workspace = Path(path)

    def _device_changed(self, device: str) -> None:
        self.gallery_pane.device = device

    def _dataset_changed(self, dataset) -> None:
        if dataset is not None:
            self.show_message(f"{len(dataset):,} images ready for training")

    def _running_changed(self, running: bool) -> None:
        run = str(self.train_pane.run_dir) if running and self.train_pane.run_dir else None
        self.runs_pane.set_busy_run(run)
        self._update_train_status()
        if running and not self._closing:
            self.runs_pane.refresh()

    def _update_train_status(self) -> None:
        tp = self.train_pane
        if tp.running:
            state = "Paused" if tp.paused else "Training"
            self.train_status.setText(f"● {state} · step {tp.step:,} / {tp.max_steps:,}")
        else:
            self.train_status.setText(f"Idle · last run {self._last_outcome}" if self.last_run_summary else "Idle")
            self.train_status.setToolTip(self.last_run_summary)

    def _run_finished(self, run_dir: str, reason: str) -> None:
        """A run of this window ended (finished, stopped or failed): say so where the person will see it, even
        with the window in the background, and show what the model makes now."""
        if self._closing or self._shut_down:
            return  # no new background work while the window goes away
        self.runs_pane.refresh()
        tp = self.train_pane
        ended = outcome(reason, tp.last_error)
        score = main_score(tp.last_score)
        self.last_run_summary = tp.end_summary()
        self._last_outcome = ended + (f" · score {score[1]:.3g}" if score else "")
        self.statusBar().showMessage(self.last_run_summary)  # no timeout: it stays until the next message
        self._update_train_status()
        self.notifier.announce(f"Training {ended}", self.last_run_summary, failed=ended == "failed")
        if reason and rundir.has_checkpoint(run_dir):  # finished or stopped with a checkpoint
            self.gallery_pane.open_source(run_dir)

    # --- drag and drop a folder -------------------------------------------------------------------
    @staticmethod
    def _dropped(event) -> tuple[str, str] | None:
        """("folder", path) for a folder of images, ("png", path) for an exported image; else None."""
        urls = event.mimeData().urls() if event.mimeData().hasUrls() else []
        for url in urls:
            path = Path(url.toLocalFile()) if url.isLocalFile() else None
            if path is not None and path.is_dir():
                return "folder", str(path)
            if path is not None and path.suffix.lower() == ".png" and path.is_file():
                return "png", str(path)
        return None

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if self._dropped(event):
            event.acceptProposedAction()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        if self._dropped(event):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        dropped = self._dropped(event)
        if dropped is None:
            return
        event.acceptProposedAction()
        self.drop_path(*dropped)

    def drop_path(self, kind: str, path: str) -> None:
        """A folder becomes the training data; an exported PNG opens its model in the gallery, as it was drawn."""
        if kind == "folder":
            self.data_pane.set_folder(path)
            self.show_pane("data")
        elif self.gallery_pane.restore_from_png(path):
            self.show_pane("gallery")

    # --- closing ------------------------------------------------------------------------------------
    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if self.train_pane.running and not self.train_pane.following_other_process:  # a server's run goes on
            event.ignore()
            if self._closing:
                return
            if not dialogs.confirm(self, "Training is running",
                                   "Stop training and quit? The engine finishes the current step and saves "
                                   "a checkpoint, so you can resume later.", ok="Stop and quit"):
                return
            self._closing = True
            self.train_status.setText("Stopping…")
            self.train_pane.running_changed.connect(self._close_when_stopped)
            self.train_pane.stop()
            return
        self.shutdown()
        event.accept()

    def _close_when_stopped(self, running: bool) -> None:
        if not running:  # after the other listeners of this signal have run
            QTimer.singleShot(0, self.close)

    def shutdown(self) -> None:
        """Stop every worker and join every thread (blocking, idempotent)."""
        if self._shut_down:
            return
        self._shut_down = True
        self.notifier.close()
        settings.set("window/geometry", self.saveGeometry())
        self.train_pane.remember_settings()
        self.train_pane.stop_and_wait()
        self.data_pane.shutdown()
        self.gallery_pane.shutdown()
        self.runs_pane.shutdown()
        if not workers.join_all(120_000):
            log.error("threads still running at exit: %s", [e.name for e in workers.live_threads()])
