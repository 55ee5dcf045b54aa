"""Live previews: the engine's sample grids (same noise each time) at 1 and a few steps."""
from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGridLayout, QLabel, QVBoxLayout, QWidget

from .image_dialog import ImageDialog
from .images import ImageLabel

if TYPE_CHECKING:  # numpy loads after the window is shown
    import numpy as np


class PreviewPanel(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel("Previews appear here while training")
        self.title.setObjectName("muted")
        self._grid = QGridLayout()
        self._grid.setSpacing(8)
        self._labels: dict[int, tuple[ImageLabel, QLabel]] = {}
        self.step: int | None = None
        self.grids: dict[int, np.ndarray] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addLayout(self._grid, 1)

    def show_preview(self, event) -> None:
        """`event`: cmcore.events.Preview(step, grids={steps: uint8 HxWxC})."""
        self.step, self.grids = event.step, dict(event.grids)
        self.title.setText(f"Previews at step {event.step:,} — same noise every time; click to enlarge")
        for key in list(self._labels):
            if key not in self.grids:
                for widget in self._labels.pop(key):
                    widget.deleteLater()
        for column, (steps, grid) in enumerate(sorted(self.grids.items())):
            if steps not in self._labels:
                picture = ImageLabel(min_size=120)
                picture.setCursor(Qt.CursorShape.PointingHandCursor)
                picture.clicked.connect(lambda s=steps: self._enlarge(s))
                caption = QLabel()
                caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
                self._labels[steps] = (picture, caption)
            picture, caption = self._labels[steps]
            self._grid.addWidget(picture, 0, column)
            self._grid.addWidget(caption, 1, column)
            picture.set_image(grid)
            caption.setText(f"{steps} step" + ("s" if steps != 1 else ""))

    def clear(self) -> None:
        for picture, caption in self._labels.values():
            picture.deleteLater()
            caption.deleteLater()
        self._labels.clear()
        self.grids, self.step = {}, None
        self.title.setText("Previews appear here while training")

    def _enlarge(self, steps: int) -> None:
        if steps in self.grids:
            ImageDialog(self.grids[steps], f"Preview at step {self.step:,}, {steps} sampling step(s)", self).show()
