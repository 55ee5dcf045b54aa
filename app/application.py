"""Creating the QApplication the same way for the app, the self-test and screenshots."""
from __future__ import annotations

import os
import sys

from PySide6.QtWidgets import QApplication

from . import APP_ID, APP_NAME, __version__


def ensure_display() -> None:
    """Headless machines (CI, ssh) have no display: fall back to offscreen rendering."""
    if os.environ.get("QT_QPA_PLATFORM"):
        return
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"


def create_app(argv: list[str] | None = None) -> QApplication:
    from .icons import app_icon
    from .theme import apply_theme

    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv[:1])
    app.setApplicationName(APP_ID)
    app.setApplicationDisplayName(APP_NAME)
    app.setApplicationVersion(__version__)
    app.setOrganizationName("ConsistencyStudio")
    app.setDesktopFileName(APP_ID)
    app.setWindowIcon(app_icon())
    apply_theme(app)
    route_qt_messages()
    return app


_QUIET = ("propagateSizeHints",)  # harmless offscreen-plugin notice


def _qt_message(mode, context, message: str) -> None:
    import logging

    from PySide6.QtCore import QtMsgType

    if any(q in message for q in _QUIET):
        return
    level = {QtMsgType.QtDebugMsg: logging.DEBUG, QtMsgType.QtInfoMsg: logging.INFO,
             QtMsgType.QtWarningMsg: logging.WARNING}.get(mode, logging.ERROR)
    logging.getLogger("qt").log(level, "%s", message)
    if level >= logging.WARNING:
        print(f"qt: {message}", file=sys.stderr)


def route_qt_messages() -> None:
    """Qt's own warnings go to the log file (and stderr), minus known noise."""
    from PySide6.QtCore import qInstallMessageHandler

    qInstallMessageHandler(_qt_message)


def dispose(window) -> None:
    """Stop the window's work and delete it while the QApplication still exists.

    Leaving widgets to the interpreter's final garbage collection (after Qt is gone) is
    where PySide crashes at exit come from; one such crash was seen once here.
    """
    import gc

    from PySide6.QtCore import QCoreApplication, QEvent

    window.shutdown()
    window.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()
