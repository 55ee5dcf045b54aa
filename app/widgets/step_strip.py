"""The gallery's strip: the same starting noise sampled with 1, 2, 4 and 8 steps, side by side."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from .images import ImageLabel

if TYPE_CHECKING:  # numpy loads after the window is shown
    import numpy as np


def _muted(text: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName("muted")
    return label


class StepStrip(QFrame):
    clicked = Signal(int)  # the step count whose picture was clicked

    def __init__(self, steps: Sequence[int], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("card")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(12, 10, 12, 10)
        outer.addWidget(_muted("Same starting noise as image #1, sampled with 1, 2, 4 and 8 steps (click to enlarge)"))
        strip = QHBoxLayout()
        outer.addLayout(strip)
        self.labels: dict[int, ImageLabel] = {}
        for s in steps:
            column = QVBoxLayout()
            picture = ImageLabel(min_size=88)
            picture.setMaximumSize(120, 120)
            picture.setCursor(Qt.CursorShape.PointingHandCursor)
            picture.clicked.connect(lambda s=s: self.clicked.emit(s))
            column.addWidget(picture)
            caption = _muted(f"{s} step" + ("s" if s > 1 else ""))
            caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
            column.addWidget(caption)
            strip.addLayout(column)
            self.labels[s] = picture
        strip.addStretch(1)

    def set_images(self, images: dict[int, np.ndarray] | None) -> None:
        for s, picture in self.labels.items():
            picture.set_image(None if images is None else images.get(s))
