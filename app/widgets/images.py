"""Showing uint8 numpy images: conversion, an aspect-keeping label, clickable tiles and a
reflowing grid of tiles (data thumbnails, gallery)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (QCheckBox, QFrame, QGridLayout, QLabel, QScrollArea, QSizePolicy,
                               QVBoxLayout, QWidget)

if TYPE_CHECKING:  # numpy loads after the window is shown
    import numpy as np


def to_qimage(image: np.ndarray) -> QImage:
    """HxWxC (C = 1 or 3) or HxW uint8 → QImage (a copy: Qt must not see freed numpy memory)."""
    import numpy as np

    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim == 3 and image.shape[2] == 1:
        image = np.ascontiguousarray(image[..., 0])
    h, w = image.shape[:2]
    if image.ndim == 2:
        return QImage(image.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
    return QImage(image.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def to_pixmap(image: np.ndarray) -> QPixmap:
    return QPixmap.fromImage(to_qimage(image))


def scaled(pixmap: QPixmap, size: QSize) -> QPixmap:
    # nearest neighbour when enlarging: tiny generated images should look crisp, not blurred
    enlarging = pixmap.width() < size.width() and pixmap.height() < size.height()
    mode = Qt.TransformationMode.FastTransformation if enlarging else Qt.TransformationMode.SmoothTransformation
    return pixmap.scaled(size, Qt.AspectRatioMode.KeepAspectRatio, mode)


class ImageLabel(QLabel):
    """Shows one image as large as the label allows, keeping its aspect ratio."""

    clicked = Signal()

    def __init__(self, parent: QWidget | None = None, min_size: int = 64) -> None:
        super().__init__(parent)
        self._pixmap: QPixmap | None = None
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(min_size, min_size)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_image(self, image: np.ndarray | None) -> None:
        self._pixmap = None if image is None else to_pixmap(image)
        self._rescale()

    def has_image(self) -> bool:
        return self._pixmap is not None

    def _rescale(self) -> None:
        if self._pixmap is None:
            self.clear()
        else:
            self.setPixmap(scaled(self._pixmap, self.contentsRect().size()))

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._rescale()

    def mousePressEvent(self, event) -> None:  # noqa: N802
        event.accept()  # accepting the press is what makes the release come here

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton and self.rect().contains(event.position().toPoint()):
            self.clicked.emit()


class ImageTile(QFrame):
    """A fixed-size thumbnail with an optional caption and selection checkbox."""

    clicked = Signal(int)

    def __init__(self, index: int, image: np.ndarray, size: int, caption: str = "",
                 checkable: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.index = index
        self.setObjectName("tile")
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.picture = QLabel()
        self.picture.setFixedSize(size, size)
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.picture.setPixmap(scaled(to_pixmap(image), QSize(size, size)))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(3, 3, 3, 3)
        layout.setSpacing(2)
        layout.addWidget(self.picture, 0, Qt.AlignmentFlag.AlignHCenter)
        self.check: QCheckBox | None = None
        if checkable:
            self.check = QCheckBox(caption)
            self.check.setToolTip("Select for export")
            layout.addWidget(self.check, 0, Qt.AlignmentFlag.AlignHCenter)
        elif caption:
            label = QLabel(caption)
            label.setObjectName("muted")
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            label.setMaximumWidth(size)
            layout.addWidget(label)

    def mousePressEvent(self, event) -> None:  # noqa: N802
        event.accept()

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton and self.picture.geometry().contains(event.position().toPoint()):
            self.clicked.emit(self.index)

    @property
    def selected(self) -> bool:
        return bool(self.check and self.check.isChecked())


class ImageGrid(QScrollArea):
    """Tiles laid out in as many columns as fit; re-flows when resized."""

    tile_clicked = Signal(int)
    selection_changed = Signal()

    def __init__(self, tile_size: int = 80, checkable: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tile_size, self.checkable = tile_size, checkable
        self.tiles: list[ImageTile] = []
        self._columns = 0
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._inner = QWidget()
        self._grid = QGridLayout(self._inner)
        self._grid.setSpacing(6)
        self._grid.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.setWidget(self._inner)

    def set_images(self, images: np.ndarray | list[np.ndarray], captions: list[str] | None = None) -> None:
        for tile in self.tiles:
            tile.setParent(None)
            tile.deleteLater()
        self.tiles = []
        for i, image in enumerate(images):
            tile = ImageTile(i, image, self.tile_size, captions[i] if captions else "", self.checkable)
            tile.clicked.connect(self.tile_clicked)
            if tile.check is not None:
                tile.check.toggled.connect(self.selection_changed)
            self.tiles.append(tile)
        self._columns = 0
        self._reflow()

    def count(self) -> int:
        return len(self.tiles)

    def selected_indices(self) -> list[int]:
        return [t.index for t in self.tiles if t.selected]

    def set_all_selected(self, on: bool) -> None:
        for tile in self.tiles:
            if tile.check is not None:
                tile.check.setChecked(on)

    def _reflow(self) -> None:
        spacing = self._grid.spacing()
        margins = self._grid.contentsMargins()
        tile = self.tiles[0].sizeHint().width() if self.tiles else self.tile_size + 8
        usable = self.viewport().width() - margins.left() - margins.right() + spacing
        columns = max(1, usable // (tile + spacing))
        if columns == self._columns:
            return
        self._columns = columns
        for i, tile in enumerate(self.tiles):
            self._grid.addWidget(tile, i // columns, i % columns)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._reflow()
