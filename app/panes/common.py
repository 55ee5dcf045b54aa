"""Layout helpers shared by the panes, so they all look alike."""
from __future__ import annotations

from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QVBoxLayout, QWidget


def pane_layout(widget: QWidget, title: str, subtitle: str = "") -> QVBoxLayout:
    layout = QVBoxLayout(widget)
    layout.setContentsMargins(20, 16, 20, 16)
    layout.setSpacing(10)
    head = QHBoxLayout()
    label = QLabel(title)
    label.setObjectName("paneTitle")
    head.addWidget(label)
    if subtitle:
        sub = QLabel(subtitle)
        sub.setObjectName("muted")
        head.addSpacing(12)
        head.addWidget(sub, 0)
    head.addStretch(1)
    layout.addLayout(head)
    return layout


def card(parent: QWidget | None = None) -> tuple[QFrame, QVBoxLayout]:
    frame = QFrame(parent)
    frame.setObjectName("card")
    layout = QVBoxLayout(frame)
    layout.setContentsMargins(12, 10, 12, 10)
    return frame, layout


def muted(text: str = "") -> QLabel:
    label = QLabel(text)
    label.setObjectName("muted")
    return label


def row(*widgets: QWidget | int | None, stretch_last: bool = False) -> QHBoxLayout:
    """A horizontal row; an int adds that much spacing, None adds a stretch."""
    layout = QHBoxLayout()
    for w in widgets:
        if w is None:
            layout.addStretch(1)
        elif isinstance(w, int):
            layout.addSpacing(w)
        else:
            layout.addWidget(w)
    if stretch_last:
        layout.addStretch(1)
    return layout
