"""Small input widgets: a spin box for values spanning decades (learning rate) and a
collapsible section (the "Advanced" options)."""
from __future__ import annotations

import math

from PySide6.QtCore import Qt
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QDoubleSpinBox, QToolButton, QVBoxLayout, QWidget

from ..icons import set_icon


class SciSpinBox(QDoubleSpinBox):
    """Shows and accepts 3e-4 style numbers; the arrows multiply/divide by ~2."""

    def __init__(self, minimum: float = 1e-8, maximum: float = 1e30, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setDecimals(323)  # never round: the displayed text decides the precision
        self.setRange(minimum, maximum)

    def textFromValue(self, value: float) -> str:  # noqa: N802
        return f"{value:.3g}"

    def valueFromText(self, text: str) -> float:  # noqa: N802
        if self.specialValueText() and text.strip() == self.specialValueText():
            return self.minimum()
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):
        special = self.specialValueText()
        if special and text.strip() == special:
            return QValidator.State.Acceptable, text, pos
        if special and special.startswith(text.strip()) and text.strip():
            return QValidator.State.Intermediate, text, pos
        try:
            value = float(text)
        except ValueError:
            partial = text.strip().lower()
            ok = partial == "" or partial[-1] in "e.-+" or partial.replace(".", "", 1).isdigit()
            return (QValidator.State.Intermediate if ok else QValidator.State.Invalid), text, pos
        state = QValidator.State.Acceptable if self.minimum() <= value <= self.maximum() else QValidator.State.Intermediate
        return state, text, pos

    def stepBy(self, steps: int) -> None:  # noqa: N802
        if self.value() <= 0:  # from "auto" (0) the arrows start at a typical value
            self.setValue(1e-3)
            return
        value = self.value() * math.pow(2.0, steps)
        self.setValue(min(max(value, self.minimum()), self.maximum()))


class Collapsible(QWidget):
    """A header button that shows or hides its content widget (collapsed by default)."""

    def __init__(self, title: str, content: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.content = content
        self.toggle = QToolButton()
        self.toggle.setText(title)
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setAutoRaise(True)
        self.toggle.toggled.connect(self.set_expanded)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.toggle)
        layout.addWidget(content)
        self.set_expanded(False)

    def set_expanded(self, on: bool) -> None:
        self.toggle.setChecked(on)
        set_icon(self.toggle, "chevron-down" if on else "chevron-right")
        self.content.setVisible(on)

    @property
    def expanded(self) -> bool:
        return self.toggle.isChecked()
