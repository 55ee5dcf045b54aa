"""SVG icons from resources/icons, tinted to the palette's text colour.

Line icons use `currentColor`, which Qt's SVG renderer does not resolve, so the colour
is substituted before rendering; coloured icons (play, pause, stop, app) are kept as is.
"""
from __future__ import annotations

from functools import lru_cache

from PySide6.QtCore import QByteArray, QRectF, Qt
from PySide6.QtGui import QGuiApplication, QIcon, QPainter, QPalette, QPixmap
from PySide6.QtSvg import QSvgRenderer

from resources import ICONS

_SIZES = (16, 20, 24, 32, 48, 64)


def _text_color() -> str:
    app = QGuiApplication.instance()
    if app is None:
        return "#444444"
    return QGuiApplication.palette().color(QPalette.ColorRole.WindowText).name()


def icon(name: str, color: str | None = None) -> QIcon:
    return _icon(name, color or _text_color())


@lru_cache(maxsize=None)
def _icon(name: str, color: str) -> QIcon:
    path = ICONS / f"{name}.svg"
    svg = path.read_text(encoding="utf-8").replace("currentColor", color)
    renderer = QSvgRenderer(QByteArray(svg.encode()))
    result = QIcon()
    for size in _SIZES:
        for mode, opacity in ((QIcon.Mode.Normal, 1.0), (QIcon.Mode.Disabled, 0.35)):
            pm = QPixmap(size * 2, size * 2)  # 2x so HiDPI screens stay crisp
            pm.setDevicePixelRatio(2.0)
            pm.fill(Qt.GlobalColor.transparent)
            painter = QPainter(pm)
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            painter.setOpacity(opacity)
            renderer.render(painter, QRectF(0, 0, size, size))
            painter.end()
            result.addPixmap(pm, mode)
    return result


def app_icon() -> QIcon:
    return QIcon(str(ICONS / "app.svg"))


def clear_cache() -> None:
    """After a theme change the tint differs; callers re-fetch their icons."""
    _icon.cache_clear()


def icon_button(name: str, text: str = "", color: str | None = None):
    """A QPushButton whose icon is re-tinted by `retint` when the theme changes."""
    from PySide6.QtWidgets import QPushButton

    button = QPushButton(text)
    set_icon(button, name, color)
    return button


def set_icon(widget, name: str, color: str | None = None) -> None:
    widget.setProperty("iconName", name)
    widget.setProperty("iconColor", color or "")
    widget.setIcon(icon(name, color))


def retint(root) -> None:
    """Re-apply every icon set with `set_icon` under `root` (after a palette change)."""
    from PySide6.QtWidgets import QWidget

    clear_cache()
    for widget in [root, *root.findChildren(QWidget)]:
        name = widget.property("iconName")
        if name and hasattr(widget, "setIcon"):
            widget.setIcon(icon(name, widget.property("iconColor") or None))
