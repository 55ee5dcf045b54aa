"""Runs pane: the runs of a workspace folder, with resume / open / delete.

Listing reads every run's metrics, so it runs in the background; the result is also
handed to the Train pane (CD teachers) and the Gallery (run chooser) by the main window.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QWidget

from .. import dialogs, settings
from ..errors import ErrorInfo, describe
from ..icons import icon_button
from ..workers import LatestOnly
from .common import card, muted, pane_layout, row

PATH_ROLE = int(Qt.ItemDataRole.UserRole) + 1
COLUMNS = ["Run", "Method", "Steps", "Last loss", "Updated"]


def default_workspace() -> Path:
    from cmcore.runs import default_workspace as engine_default  # torch-free: fine before the window

    return engine_default()


def _list_runs(workspace: Path) -> list:
    from cmcore.runs import list_runs

    return list_runs(workspace)


class _SortItem(QTableWidgetItem):
    """Sorts by a number stored in UserRole instead of the displayed text."""

    def __lt__(self, other: QTableWidgetItem) -> bool:
        a, b = self.data(Qt.ItemDataRole.UserRole), other.data(Qt.ItemDataRole.UserRole)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            return a < b
        # not super().__lt__: the C++ operator is virtual and would call back into this method
        return self.text().lower() < other.text().lower()


class RunsPane(QWidget):
    runs_listed = Signal(list)  # list[RunInfo]
    resume_requested = Signal(str)
    open_requested = Signal(str)
    workspace_changed = Signal(str)

    def __init__(self, workspace: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.workspace = Path(workspace)
        self.runs: list = []
        self.busy_run: str | None = None  # the run being trained: not deletable
        self.last_error: ErrorInfo | None = None
        self._sorted_once = False

        layout = pane_layout(self, "Runs", "every training run in the workspace folder")
        self.workspace_label = muted(str(self.workspace))
        self.workspace_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.change_workspace = icon_button("folder", "Change…")
        self.refresh_button = icon_button("refresh", "Refresh")
        top, tl = card()
        tl.addLayout(row(muted("Workspace"), self.workspace_label, None, self.change_workspace, self.refresh_button))
        layout.addWidget(top)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for c in range(1, len(COLUMNS)):
            header.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        layout.addWidget(self.table, 1)
        self.empty_label = muted("No runs yet: train one in the Train pane.")
        layout.addWidget(self.empty_label)

        self.resume_button = icon_button("play", "Resume")
        self.gallery_button = icon_button("gallery", "Open in gallery")
        self.folder_button = icon_button("open-external", "Open folder")
        self.delete_button = icon_button("trash", "Delete…")
        layout.addLayout(row(self.resume_button, self.gallery_button, self.folder_button, None, self.delete_button))

        self.lister = LatestOnly("list runs", self)
        self.lister.result.connect(self._on_listed)
        self.lister.failed.connect(self._on_failed)

        self.refresh_button.clicked.connect(self.refresh)
        self.change_workspace.clicked.connect(self._choose_workspace)
        self.resume_button.clicked.connect(lambda: self._emit_selected(self.resume_requested))
        self.gallery_button.clicked.connect(lambda: self._emit_selected(self.open_requested))
        self.folder_button.clicked.connect(self.open_folder)
        self.delete_button.clicked.connect(self.delete_selected)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.table.doubleClicked.connect(lambda _i: self._emit_selected(self.open_requested))
        self._update_buttons()

    # --- listing ---------------------------------------------------------------------------------
    def refresh(self) -> None:
        self.lister.submit(_list_runs, self.workspace, context="Listing runs")

    def _on_listed(self, runs: list) -> None:
        selected = self.selected_path()
        self.runs = runs
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(runs))
        for i, r in enumerate(runs):
            loss = "—" if r.last_loss is None else f"{r.last_loss:.4g}"
            cells = [
                (r.name, r.name), (r.method.upper(), r.method),
                (f"{r.step:,} / {r.max_steps:,}", r.step / max(1, r.max_steps)),
                (loss, r.last_loss if r.last_loss is not None else float("inf")),
                (time.strftime("%Y-%m-%d %H:%M", time.localtime(r.updated)), r.updated),
            ]
            for c, (text, key) in enumerate(cells):
                item = _SortItem(text)
                item.setData(Qt.ItemDataRole.UserRole, key)
                if c == 0:
                    item.setData(PATH_ROLE, str(r.path))
                    item.setToolTip(str(r.path))
                if c in (2, 3):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(i, c, item)
        self.table.setSortingEnabled(True)
        if not self._sorted_once:  # newest first, until the person sorts otherwise
            self.table.sortByColumn(4, Qt.SortOrder.DescendingOrder)
            self._sorted_once = True
        self.empty_label.setVisible(not runs)
        if selected:
            self.select_path(selected)
        self._update_buttons()
        self.runs_listed.emit(runs)

    def _on_failed(self, info: ErrorInfo) -> None:
        self.last_error = info
        dialogs.show_error(self, info)

    # --- selection ---------------------------------------------------------------------------------
    def selected_path(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        return self.table.item(rows[0].row(), 0).data(PATH_ROLE)

    def select_path(self, path: str | Path) -> bool:
        for i in range(self.table.rowCount()):
            if self.table.item(i, 0).data(PATH_ROLE) == str(path):
                self.table.selectRow(i)
                return True
        return False

    def _emit_selected(self, signal) -> None:
        path = self.selected_path()
        if path:
            signal.emit(path)

    def _update_buttons(self) -> None:
        path = self.selected_path()
        for b in (self.resume_button, self.gallery_button, self.folder_button):
            b.setEnabled(path is not None)
        self.delete_button.setEnabled(path is not None and path != self.busy_run)

    def set_busy_run(self, path: str | None) -> None:
        self.busy_run = path
        self._update_buttons()

    # --- actions -----------------------------------------------------------------------------------
    def open_folder(self) -> None:
        path = self.selected_path()
        if path:
            QDesktopServices.openUrl(QUrl.fromLocalFile(path))

    def delete_selected(self) -> bool:
        path = self.selected_path()
        if not path or path == self.busy_run:
            return False
        if not dialogs.confirm(self, "Delete run", f"Delete the run folder\n{path}\nwith its checkpoints, "
                               "previews and exports? This cannot be undone.", ok="Delete"):
            return False
        try:
            shutil.rmtree(path)
        except OSError as exc:
            self.last_error = describe(exc, "Deleting run")
            dialogs.show_error(self, self.last_error)
        self.refresh()
        return True

    def set_workspace(self, path: str | Path) -> None:
        self.workspace = Path(path)
        self.workspace_label.setText(str(self.workspace))
        settings.set("workspace", str(self.workspace))
        self.workspace_changed.emit(str(self.workspace))
        self.refresh()

    def _choose_workspace(self) -> None:
        path = dialogs.pick_folder(self, "Choose the workspace folder", str(self.workspace))
        if path:
            self.set_workspace(path)

    def shutdown(self) -> None:
        self.lister.shutdown()
