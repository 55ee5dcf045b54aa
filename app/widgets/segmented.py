"""A segmented toggle: a row of exclusive, checkable buttons (e.g. "Best | Latest")."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QButtonGroup, QHBoxLayout, QPushButton, QWidget


class Segmented(QWidget):
    changed = Signal(str)  # the chosen option's key, on a person's click or set_value

    def __init__(self, options: list[tuple[str, str]], parent: QWidget | None = None) -> None:
        """options: (key, label) pairs; the first is chosen."""
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.group = QButtonGroup(self)
        self.buttons: dict[str, QPushButton] = {}
        for key, label in options:
            button = QPushButton(label)
            button.setCheckable(True)
            button.setObjectName("segment")
            self.group.addButton(button)
            layout.addWidget(button)
            self.buttons[key] = button
            button.clicked.connect(lambda _=False, key=key: self.changed.emit(key))
        self.buttons[options[0][0]].setChecked(True)

    def value(self) -> str:
        return next(k for k, b in self.buttons.items() if b.isChecked())

    def set_value(self, key: str) -> None:
        if key != self.value():
            self.buttons[key].setChecked(True)
            self.changed.emit(key)
