"""Click-to-enlarge: a non-modal window showing one image big, with its settings."""
from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QVBoxLayout, QWidget

from .images import ImageLabel

if TYPE_CHECKING:  # numpy loads after the window is shown
    import numpy as np


class ImageDialog(QDialog):
    def __init__(self, image: np.ndarray, caption: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(caption.splitlines()[0] if caption else "Image")
        self.image = image
        self.picture = ImageLabel(min_size=256)
        self.picture.set_image(image)
        info = QLabel(caption)
        info.setObjectName("muted")
        info.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.picture, 1)
        layout.addWidget(info)
        layout.addWidget(buttons)
        h, w = image.shape[:2]
        scale = max(1, 384 // max(h, w))
        self.resize(max(320, w * scale + 40), max(320, h * scale + 110))
