"""The memorisation check's window: each chosen sample beside its nearest training images, with distances."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QGridLayout, QLabel, QScrollArea, QVBoxLayout,
                               QWidget)

from .images import ImageLabel

TILE = 96


def _muted(text: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName("muted")
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    return label


class NearestDialog(QDialog):
    def __init__(self, result, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result = result
        self.setWindowTitle(f"Nearest training images: {title}")
        self.captions: list[list[str]] = []  # per sample: its neighbours' captions (the tests read them)
        inner = QWidget()
        grid = QGridLayout(inner)
        grid.setSpacing(6)
        k = result.distances.shape[1] if len(result.distances) else 0
        grid.addWidget(_muted("sample"), 0, 0)
        for j in range(k):
            grid.addWidget(_muted("nearest" if j == 0 else f"{j + 1}."), 0, j + 1)
        for i, sample in enumerate(result.samples):
            grid.addWidget(self._tile(sample, result.labels[i]), 2 * i + 1, 0, 2, 1)
            row = []
            for j in range(k):
                caption = f"#{int(result.indices[i, j])} · {float(result.distances[i, j]):.3f}"
                row.append(caption)
                grid.addWidget(self._tile(result.neighbours[i, j], caption), 2 * i + 1, j + 1, 2, 1)
            self.captions.append(row)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(inner)
        note = QLabel(f"Searched {result.description}. Distance: RMS difference of the 16×16 averaged images "
                      "(0 = identical, −1…1 pixel range); a sample much closer to a training image than the "
                      "others are to theirs may be a copy of it. #N is the image's index in the run's data.")
        note.setObjectName("muted")
        note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(scroll, 1)
        layout.addWidget(note)
        layout.addWidget(buttons)
        self.resize(min(1100, (k + 1) * (TILE + 12) + 60), min(800, len(result.samples) * (TILE + 34) + 150))

    @staticmethod
    def _tile(image, caption: str) -> QWidget:
        box = QWidget()
        column = QVBoxLayout(box)
        column.setContentsMargins(0, 0, 0, 0)
        picture = ImageLabel(min_size=TILE)
        picture.setFixedSize(TILE, TILE)
        picture.set_image(image)
        column.addWidget(picture)
        column.addWidget(_muted(caption))
        return box
