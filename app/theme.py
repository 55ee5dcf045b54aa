"""Fusion style with a light or dark palette that follows the system colour scheme.

`CONSISTENCY_STUDIO_THEME=dark|light` forces one (screenshots, platforms that do not
report a scheme). pyqtgraph colours are derived from the same palette.
"""
from __future__ import annotations

import os

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

ACCENT = QColor("#7c6cf2")
ACCENT_DARK_TEXT = QColor("#ffffff")


def system_is_dark() -> bool:
    forced = os.environ.get("CONSISTENCY_STUDIO_THEME", "").lower()
    if forced in ("dark", "light"):
        return forced == "dark"
    hints = QGuiApplication.styleHints()
    scheme = getattr(hints, "colorScheme", None)  # Qt >= 6.5
    if scheme is not None:
        value = scheme()
        if value == Qt.ColorScheme.Dark:
            return True
        if value == Qt.ColorScheme.Light:
            return False
    # Unknown: guess from the platform palette's window colour
    return QGuiApplication.palette().color(QPalette.ColorRole.Window).lightness() < 128


def dark_palette() -> QPalette:
    p = QPalette()
    window, base, alt, text = QColor("#1f2126"), QColor("#17181c"), QColor("#25272d"), QColor("#e6e7ea")
    button, mid = QColor("#2b2e35"), QColor("#3a3d45")
    roles = QPalette.ColorRole
    for role, color in {
        roles.Window: window, roles.WindowText: text, roles.Base: base, roles.AlternateBase: alt,
        roles.ToolTipBase: alt, roles.ToolTipText: text, roles.Text: text, roles.Button: button,
        roles.ButtonText: text, roles.BrightText: QColor("#ff6b6b"), roles.Link: ACCENT.lighter(130),
        roles.Highlight: ACCENT, roles.HighlightedText: ACCENT_DARK_TEXT, roles.Mid: mid,
        roles.Midlight: QColor("#34373f"), roles.Dark: QColor("#141518"), roles.Shadow: QColor("#000000"),
        roles.Light: QColor("#40434b"), roles.PlaceholderText: QColor("#8b8f98"),
    }.items():
        p.setColor(role, color)
    disabled = QPalette.ColorGroup.Disabled
    for role in (roles.WindowText, roles.Text, roles.ButtonText):
        p.setColor(disabled, role, QColor("#6b6f78"))
    p.setColor(disabled, roles.Highlight, QColor("#4a4d55"))
    return p


def light_palette(app: QApplication) -> QPalette:
    p = app.style().standardPalette()
    p.setColor(QPalette.ColorRole.Highlight, ACCENT)
    p.setColor(QPalette.ColorRole.HighlightedText, ACCENT_DARK_TEXT)
    p.setColor(QPalette.ColorRole.Window, QColor("#f3f3f6"))
    p.setColor(QPalette.ColorRole.AlternateBase, QColor("#f0f0f4"))
    return p


_STYLE = """
QWidget#sidebar { background: %(sidebar)s; }
QLabel#brand { font-size: 11pt; font-weight: 600; }
QListWidget#nav { border: none; background: transparent; padding-top: 4px; outline: 0; }
QListWidget#nav::item { padding: 10px 12px; margin: 2px 8px; border-radius: 8px; color: %(text)s; }
QListWidget#nav::item:selected { background: %(accent)s; color: white; }
QListWidget#nav::item:hover:!selected { background: %(hover)s; }
QLabel#paneTitle { font-size: 17pt; font-weight: 600; }
QLabel#muted { color: %(muted)s; }
QLabel#bigNumber { font-size: 15pt; font-weight: 600; }
QGroupBox { font-weight: 600; border: 1px solid %(border)s; border-radius: 8px; margin-top: 14px; padding: 10px 8px 8px 8px; }
QGroupBox::title { subcontrol-origin: margin; left: 10px; padding: 0 4px; }
QPushButton { padding: 5px 12px; }
QPushButton#primary { background: %(accent)s; color: white; border: none; border-radius: 6px; padding: 6px 16px; font-weight: 600; }
QPushButton#primary:disabled { background: %(border)s; color: %(muted)s; }
QPushButton#primary:hover:!disabled { background: %(accent_hover)s; }
QFrame#card { background: %(card)s; border: 1px solid %(border)s; border-radius: 8px; }
QFrame#tile { border: 1px solid transparent; border-radius: 6px; }
QFrame#tile:hover { border: 1px solid %(accent)s; }
QProgressBar { border: 1px solid %(border)s; border-radius: 5px; text-align: center; height: 16px; }
QProgressBar::chunk { background: %(accent)s; border-radius: 4px; }
"""


def apply_theme(app: QApplication) -> bool:
    """Apply Fusion + palette + a small stylesheet; return whether the theme is dark."""
    app.setStyle("Fusion")
    dark = system_is_dark()
    palette = dark_palette() if dark else light_palette(app)
    app.setPalette(palette)
    text = palette.color(QPalette.ColorRole.WindowText)
    colors = {
        "accent": ACCENT.name(),
        "accent_hover": ACCENT.lighter(112).name(),
        "text": text.name(),
        "muted": palette.color(QPalette.ColorRole.PlaceholderText).name(),
        "sidebar": QColor("#18191d").name() if dark else QColor("#e8e8ee").name(),
        "hover": QColor("#2c2e35").name() if dark else QColor("#dcdce4").name(),
        "border": QColor("#3a3d45").name() if dark else QColor("#d0d0d8").name(),
        # cards stand out from the window, and inputs (Base) stand out from cards
        "card": QColor("#282a31").name() if dark else QColor("#ffffff").name(),
    }
    app.setStyleSheet(_STYLE % colors)
    app.setProperty("darkTheme", dark)
    return dark


def is_dark() -> bool:
    app = QApplication.instance()
    return bool(app and app.property("darkTheme"))


def plot_colors() -> dict[str, QColor]:
    palette = QGuiApplication.palette()
    dark = is_dark()
    text = palette.color(QPalette.ColorRole.WindowText)
    raw = QColor(text)
    raw.setAlpha(60)
    return {
        "background": palette.color(QPalette.ColorRole.Base),
        "foreground": text,
        "raw": raw,
        "ema": QColor("#a99cff") if dark else QColor("#5b4bdb"),
        "lr": QColor("#4cc38a") if dark else QColor("#1f9d55"),
        "n": QColor("#f5a524") if dark else QColor("#c27803"),
        "grid": 50 if dark else 45,
    }

