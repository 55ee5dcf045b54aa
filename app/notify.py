"""Tell the person that something long has ended even when the window is not in front: the window asks for
attention (a flashing task-bar entry, a bouncing dock icon) and, where the desktop has a system tray, a tray
message pops up; clicking it brings the window back."""
from __future__ import annotations

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QApplication, QSystemTrayIcon, QWidget

from . import APP_NAME

MESSAGE_MS = 10_000


class Notifier(QObject):
    def __init__(self, window: QWidget) -> None:
        super().__init__(window)
        self.window = window
        self.tray: QSystemTrayIcon | None = None  # made on the first message, where there is a tray

    def announce(self, title: str, text: str, *, failed: bool = False) -> None:
        QApplication.alert(self.window)  # returns at once; nothing happens when the window is active
        if not QSystemTrayIcon.isSystemTrayAvailable():
            return
        icon = QSystemTrayIcon.MessageIcon.Warning if failed else QSystemTrayIcon.MessageIcon.Information
        self._tray().showMessage(title, text, icon, MESSAGE_MS)

    def _tray(self) -> QSystemTrayIcon:
        if self.tray is None:
            self.tray = QSystemTrayIcon(self.window.windowIcon(), self)
            self.tray.setToolTip(APP_NAME)
            self.tray.messageClicked.connect(self._bring_back)
            self.tray.activated.connect(self._bring_back)
            self.tray.show()
        return self.tray

    def _bring_back(self, *_args) -> None:
        self.window.showNormal()
        self.window.raise_()
        self.window.activateWindow()

    def close(self) -> None:
        """Take the tray icon away (at shutdown: a tray icon outliving the window would be a stray)."""
        if self.tray is not None:
            self.tray.hide()
