"""Runs pane: the runs of a workspace folder, with resume / open / delete.

Listing reads every run's metrics, so it runs in the background; the result is also
handed to the Train pane (CD teachers) and the Gallery (run chooser) by the main window.
Deleting runs in the background too (a run folder can hold gigabytes of checkpoints).
A run being trained (in this window, or by another process: cmcore.runlock.lock_owner) can
be neither resumed nor deleted; an unreadable run is listed with the reason.
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QThread, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QWidget

from .. import dialogs, settings
from ..errors import ErrorInfo
from ..icons import icon_button
from ..workers import FunctionWorker, LatestOnly, start_worker
from .common import card, muted, pane_layout, row
from .runs_table import COLUMNS, PATH_ROLE, STATUS_COLUMN, describe_run, row_items

log = logging.getLogger(__name__)


def default_workspace() -> Path:
    from cmcore.runs import default_workspace as engine_default  # torch-free: fine before the window

    return engine_default()


def _list_runs(workspace: Path) -> list:
    from cmcore.runs import list_runs

    return list_runs(workspace)


def _remove_run(path: str) -> str:
    shutil.rmtree(path)
    return path


def lock_owner(path: str | Path) -> dict | None:
    """Who is training the run now (cmcore.runlock.lock_owner; None when nobody, or when the
    engine cannot tell)."""
    from cmcore import runlock  # torch-free

    try:
        return runlock.lock_owner(path)
    except Exception:  # noqa: BLE001 - an unreadable lock must not break the pane
        log.warning("could not read the lock of %s", path, exc_info=True)
        return None


def is_this_process(owner: Any) -> bool:
    if not isinstance(owner, dict) or owner.get("pid") != os.getpid():
        return False
    host = owner.get("host") or owner.get("hostname")
    return host is None or host == socket.gethostname()


def describe_owner(owner: Any) -> str:
    """"process 1234 on host" from a lock owner record (whatever it holds)."""
    if not isinstance(owner, dict):
        return "another process"
    pid, host = owner.get("pid"), owner.get("host") or owner.get("hostname")
    text = f"process {pid}" if pid is not None else "another process"
    return f"{text} on {host}" if host else text


class RunsPane(QWidget):
    runs_listed = Signal(list)  # list[RunInfo]
    resume_requested = Signal(str)
    open_requested = Signal(str)
    workspace_changed = Signal(str)

    def __init__(self, workspace: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.workspace = Path(workspace)
        self.runs: list = []
        self.busy_run: str | None = None  # the run this window trains: not deletable
        self.last_error: ErrorInfo | None = None
        self._sorted_once = False
        self._deleting: dict[str, QThread] = {}  # run path → the thread deleting it
        # set by the main window: called with (path, then) before a run is deleted, so the
        # gallery lets go of it; `then()` starts the deletion
        self.before_delete: Callable[[str, Callable[[], None]], None] | None = None

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
        self.details = muted("")  # the selected run: method, steps, last loss, score and its step
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.details)
        self.hint = muted("")  # why the selected run cannot be resumed or deleted
        self.hint.setWordWrap(True)
        layout.addWidget(self.hint)

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
        self.resume_button.clicked.connect(lambda: self._emit_selected("resume"))
        self.gallery_button.clicked.connect(lambda: self._emit_selected("open"))
        self.folder_button.clicked.connect(self.open_folder)
        self.delete_button.clicked.connect(self.delete_selected)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.table.doubleClicked.connect(lambda _i: self._emit_selected("open"))
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
            for c, item in enumerate(row_items(r)):
                self.table.setItem(i, c, item)
        self.table.setSortingEnabled(True)
        if not self._sorted_once:  # newest first, until the person sorts otherwise
            self.table.sortByColumn(COLUMNS.index("Updated"), Qt.SortOrder.DescendingOrder)
            self._sorted_once = True
        self.empty_label.setVisible(not runs)
        self._show_statuses()
        if selected:
            self.select_path(selected)
        self._update_buttons()
        self.runs_listed.emit(runs)

    # --- what each run is doing ------------------------------------------------------------------
    def info(self, path: str | Path | None) -> Any:
        """The RunInfo of a listed run."""
        return next((r for r in self.runs if str(r.path) == str(path)), None) if path else None

    def status(self, path: str | Path) -> tuple[str, str]:
        """(short status, the full reason) of a listed run: deleting, training here, busy in
        another process, unreadable, or ("", "")."""
        path = str(path)
        info = self.info(path)
        owner = getattr(info, "busy_by", None)
        error = getattr(info, "error", None)
        if path in self._deleting:
            return "deleting…", "This run is being deleted."
        if path == self.busy_run or (owner and is_this_process(owner)):
            return "training", "This window is training this run: stop it first."
        if owner:
            who = describe_owner(owner)
            return f"busy ({who})", f"Being trained by {who}: it cannot be resumed or deleted until that ends."
        if error:
            return "unreadable", f"Unreadable: {error}"
        return "", ""

    def _show_statuses(self) -> None:
        for i in range(self.table.rowCount()):
            item = self.table.item(i, 0)
            cell = self.table.item(i, STATUS_COLUMN)
            if item is None or cell is None:
                continue
            text, reason = self.status(item.data(PATH_ROLE))
            if text == "unreadable":  # the reason is the useful part: show it, shortened
                info = self.info(item.data(PATH_ROLE))
                short = str(getattr(info, "error", ""))
                text = f"unreadable: {short if len(short) <= 60 else short[:59] + '…'}"
            cell.setText(text)
            cell.setData(Qt.ItemDataRole.UserRole, text)
            cell.setToolTip(reason)

    def refusal(self, path: str, action: str) -> str | None:
        """Why `action` (resume | open | delete) cannot be done to the run now, or None.
        Asks the engine for the run's lock again: another process may have started since the listing."""
        text, reason = self.status(path)
        if text.startswith("deleting"):
            return reason
        if action == "open":
            return reason if text == "unreadable" else None
        if text == "training" or text.startswith("busy"):
            return reason
        owner = lock_owner(path)
        if owner and not is_this_process(owner):
            who = describe_owner(owner)
            return f"Being trained by {who}: it cannot be resumed or deleted until that ends."
        if action == "resume" and text == "unreadable":
            return reason
        return None

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

    def _emit_selected(self, action: str) -> None:
        """resume | open the selected run (unless refused, with the reason)."""
        path = self.selected_path()
        if not path:
            return
        reason = self.refusal(path, action)
        if reason:
            dialogs.show_info(self, f"Cannot {action} this run", reason)
            return
        (self.resume_requested if action == "resume" else self.open_requested).emit(path)

    def _update_buttons(self) -> None:
        path = self.selected_path()
        text, reason = self.status(path) if path else ("", "")
        deleting, unreadable = text.startswith("deleting"), text == "unreadable"
        busy = text == "training" or text.startswith("busy")
        self.resume_button.setEnabled(path is not None and not (deleting or busy or unreadable))
        self.gallery_button.setEnabled(path is not None and not (deleting or unreadable))
        self.folder_button.setEnabled(path is not None and not deleting)
        self.delete_button.setEnabled(path is not None and not (deleting or busy))
        self.hint.setText(reason)
        self.hint.setVisible(bool(reason))
        self.details.setText(self.describe(path))
        self.details.setVisible(bool(self.details.text()))

    def describe(self, path: str | Path | None) -> str:
        """The details line of a listed run ("" for none or an unreadable one)."""
        return describe_run(self.info(path))

    def set_busy_run(self, path: str | None) -> None:
        self.busy_run = path
        self._show_statuses()
        self._update_buttons()

    # --- actions -----------------------------------------------------------------------------------
    def open_folder(self) -> None:
        path = self.selected_path()
        if path:
            QDesktopServices.openUrl(QUrl.fromLocalFile(path))

    def delete_selected(self) -> bool:
        """Ask, then delete the selected run folder in the background; False if refused or declined."""
        path = self.selected_path()
        if not path:
            return False
        reason = self.refusal(path, "delete")
        if reason:
            dialogs.show_info(self, "Cannot delete this run", reason)
            return False
        if not dialogs.confirm(self, "Delete run", f"Delete the run folder\n{path}\nwith its checkpoints, "
                               "previews and exports? This cannot be undone.", ok="Delete"):
            return False
        self._deleting[path] = None  # shown as "deleting…" from now on
        self._show_statuses()
        self._update_buttons()
        if self.before_delete is not None:
            self.before_delete(path, lambda: self._start_delete(path))
        else:
            self._start_delete(path)
        return True

    @property
    def deleting(self) -> bool:
        return bool(self._deleting)

    def _start_delete(self, path: str) -> None:
        worker = FunctionWorker(_remove_run, path, context="Deleting run")
        worker.setProperty("run_path", path)
        # bound methods only: a lambda connected to a worker signal would run in the worker thread
        worker.failed.connect(self._on_delete_failed)
        worker.done.connect(self._on_deleted)
        self._deleting[path] = start_worker(worker, f"delete {Path(path).name}")

    def _on_delete_failed(self, info: ErrorInfo) -> None:
        self.last_error = info
        dialogs.show_error(self, info)

    def _on_deleted(self) -> None:
        self._deleting.pop(self.sender().property("run_path"), None)
        self.refresh()

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

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        self.refresh()  # another process may have started or ended a run meanwhile

    def shutdown(self) -> None:
        """Wait for listing and deleting (a deletion half done would leave a broken run)."""
        self.lister.shutdown()
        for thread in list(self._deleting.values()):
            if thread is not None:
                thread.wait(60_000)
