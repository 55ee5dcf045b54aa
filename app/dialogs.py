"""Every dialog the app opens goes through these functions, so tests can monkeypatch
them (modal dialogs would block a test) and the look stays consistent."""
from __future__ import annotations

import logging

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from .errors import ErrorInfo

log = logging.getLogger(__name__)


def show_error(parent: QWidget | None, info: ErrorInfo) -> None:
    """Non-blocking error box (window-modal via open(), so the app keeps running)."""
    log.warning("shown to user: %s: %s", info.title, info.message)
    box = QMessageBox(QMessageBox.Icon.Critical, info.title, info.message, QMessageBox.StandardButton.Ok, parent)
    box.setInformativeText(info.hint)
    if info.details:
        box.setDetailedText(info.details)
    box.setObjectName("errorBox")
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()


def show_info(parent: QWidget | None, title: str, text: str) -> None:
    box = QMessageBox(QMessageBox.Icon.Information, title, text, QMessageBox.StandardButton.Ok, parent)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()


def confirm(parent: QWidget | None, title: str, text: str, ok: str = "OK") -> bool:
    box = QMessageBox(QMessageBox.Icon.Question, title, text, QMessageBox.StandardButton.Cancel, parent)
    yes = box.addButton(ok, QMessageBox.ButtonRole.AcceptRole)
    box.setDefaultButton(yes)
    box.exec()
    return box.clickedButton() is yes


def pick_folder(parent: QWidget | None, title: str, start: str = "") -> str | None:
    path = QFileDialog.getExistingDirectory(parent, title, start)
    return path or None


def pick_open_file(parent: QWidget | None, title: str, start: str = "", filters: str = "") -> str | None:
    path, _ = QFileDialog.getOpenFileName(parent, title, start, filters)
    return path or None


def pick_save_file(parent: QWidget | None, title: str, start: str = "", filters: str = "") -> str | None:
    # QFileDialog asks before replacing an existing file, so nothing is overwritten silently
    path, _ = QFileDialog.getSaveFileName(parent, title, start, filters)
    return path or None
