"""A picture with a paintable mask on top: the Edit window's inpainting input.

The mask has the picture's own pixels (the model's resolution), so what is painted is exactly what the
model fills. The brush is a disc whose diameter is given in those pixels; a drag paints a continuous
stroke (discs along the segment between mouse positions). Without a picture it only shows a hint.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QSizePolicy, QWidget

from .images import to_qimage

if TYPE_CHECKING:  # numpy loads after the window is shown
    import numpy as np


class MaskCanvas(QWidget):
    mask_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.image: np.ndarray | None = None
        self.mask: np.ndarray | None = None  # bool H×W, True = fill here
        self.brush = 3  # diameter in image pixels
        self.erasing = False
        self.painting_enabled = True
        self.hint = "Open an image or use a gallery sample"
        self._last: tuple[float, float] | None = None
        self.setMinimumSize(192, 192)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setCursor(Qt.CursorShape.CrossCursor)

    # --- state ----------------------------------------------------------------------------------
    def set_image(self, image: np.ndarray | None, keep_mask: bool = False) -> None:
        import numpy as np

        shape = None if self.image is None else self.image.shape[:2]
        self.image = None if image is None else np.ascontiguousarray(image, dtype=np.uint8)
        if self.image is None:
            self.mask = None
        elif not (keep_mask and shape == self.image.shape[:2] and self.mask is not None):
            self.mask = np.zeros(self.image.shape[:2], dtype=bool)
        self.update()
        self.mask_changed.emit()

    def clear_mask(self) -> None:
        if self.mask is not None:
            self.mask[:] = False
            self.update()
            self.mask_changed.emit()

    def painted(self) -> int:
        """How many pixels are marked to fill."""
        return 0 if self.mask is None else int(self.mask.sum())

    # --- geometry -------------------------------------------------------------------------------
    def image_rect(self) -> QRectF:
        """Where the picture is drawn: as large as fits, square pixels, centred."""
        if self.image is None:
            return QRectF()
        h, w = self.image.shape[:2]
        scale = min(self.width() / w, self.height() / h)
        return QRectF((self.width() - w * scale) / 2, (self.height() - h * scale) / 2, w * scale, h * scale)

    def to_image(self, pos: QPointF) -> tuple[float, float]:
        """Widget coordinates → image coordinates (x, y), in pixels (centre of pixel i at i + 0.5)."""
        rect = self.image_rect()
        h, w = self.image.shape[:2]
        return ((pos.x() - rect.x()) * w / rect.width(), (pos.y() - rect.y()) * h / rect.height())

    def to_widget(self, x: float, y: float) -> QPointF:
        """Image coordinates → widget coordinates (the inverse of to_image; tests click with it)."""
        rect = self.image_rect()
        h, w = self.image.shape[:2]
        return QPointF(rect.x() + x * rect.width() / w, rect.y() + y * rect.height() / h)

    # --- painting -------------------------------------------------------------------------------
    def paint_at(self, x: float, y: float) -> None:
        """A disc of the brush's diameter centred at image point (x, y)."""
        import numpy as np

        h, w = self.mask.shape
        r = self.brush / 2
        ys, xs = np.ogrid[:h, :w]
        disc = (xs + 0.5 - x) ** 2 + (ys + 0.5 - y) ** 2 <= r * r
        if not disc.any() and 0 <= x < w and 0 <= y < h:  # a 1 px brush between pixel centres: the pixel under it
            disc[int(y), int(x)] = True
        self.mask[disc] = not self.erasing

    def _stroke(self, pos: QPointF) -> None:
        x, y = self.to_image(pos)
        if self._last is None:
            self.paint_at(x, y)
        else:  # discs every half brush along the segment, so a fast drag leaves no gaps
            x0, y0 = self._last
            n = max(1, int(max(abs(x - x0), abs(y - y0)) / max(0.5, self.brush / 4)))
            for i in range(1, n + 1):
                self.paint_at(x0 + (x - x0) * i / n, y0 + (y - y0) * i / n)
        self._last = (x, y)
        self.update()

    def mousePressEvent(self, event) -> None:  # noqa: N802
        if self.mask is None or not self.painting_enabled or event.button() != Qt.MouseButton.LeftButton:
            return super().mousePressEvent(event)
        self._last = None
        self._stroke(event.position())

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if self._last is not None and event.buttons() & Qt.MouseButton.LeftButton:
            self._stroke(event.position())

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if self._last is not None:
            self._last = None
            self.mask_changed.emit()

    def paintEvent(self, event) -> None:  # noqa: N802
        import numpy as np

        painter = QPainter(self)
        if self.image is None:
            painter.setPen(self.palette().placeholderText().color())
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.hint)
            return
        rect = self.image_rect()
        painter.drawImage(rect, to_qimage(self.image))  # QPainter scales with nearest neighbour by default
        if self.painting_enabled and self.mask is not None and self.mask.any():
            overlay = np.zeros((*self.mask.shape, 4), dtype=np.uint8)
            overlay[self.mask] = (255, 255, 255, 220)  # white, as in a mask file: the part that will be filled
            from PySide6.QtGui import QImage

            h, w = self.mask.shape
            qimage = QImage(overlay.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()
            painter.drawImage(rect, qimage)
        painter.setPen(QColor(128, 128, 128))
        painter.drawRect(rect.adjusted(0, 0, -1, -1))
