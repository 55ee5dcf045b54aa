"""The gallery's tools on its model: the Edit window and the nearest-training-images check.

Both work on the checkpoint the gallery shows (best or latest): the Edit window with the gallery's
steps and seed; the check with the ticked samples. Their jobs run in the background; the gallery lets
go of them (release, shutdown) as it does of its own.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QPushButton

from .. import dialogs
from ..errors import ErrorInfo
from ..nearest import K, find_nearest
from ..widgets.nearest_dialog import NearestDialog
from ..workers import LatestOnly
from .edit_dialog import EditDialog

MAX_NEAREST = 8  # ticked samples looked up at once


class GalleryTools(QObject):
    def __init__(self, pane) -> None:
        super().__init__(pane)
        self.pane = pane
        self.edit_window: EditDialog | None = None
        self.nearest_window: NearestDialog | None = None
        self.edit_button = QPushButton("Edit…")
        self.edit_button.setToolTip("Inpaint, interpolate, image to image, colourise or upscale with this model")
        self.nearest_button = QPushButton("Nearest training images")
        self.nearest_button.setToolTip(f"The {K} training images closest to each ticked sample: does the model "
                                       "copy its training data?")
        self.nearest = LatestOnly("nearest training images", self, supersede=True)
        self.nearest.result.connect(self._show_nearest)
        self.nearest.failed.connect(self._failed)
        self.nearest.busy_changed.connect(self._busy)
        self.edit_button.clicked.connect(self.open_edit)
        self.nearest_button.clicked.connect(self.find_nearest)
        self.update()

    def update(self) -> None:
        have = self.pane.result is not None
        self.edit_button.setEnabled(have)
        self.nearest_button.setEnabled(have and bool(self.pane.grid.selected_indices()) and not self.nearest.busy)

    # --- the Edit window ----------------------------------------------------------------------------
    def open_edit(self) -> EditDialog | None:
        if self.pane.result is None:
            return None
        self._close_edit()
        self.edit_window = EditDialog(self.pane.result, self.pane.device, self.pick_sample, self.pane.export_folder,
                                      self.pane)
        self.edit_window.show()
        return self.edit_window

    def pick_sample(self) -> tuple | None:
        """The gallery's first ticked image (else image #1) and its label."""
        result = self.pane.result
        if result is None or not len(result.images):
            return None
        index = (self.pane.grid.selected_indices() or [0])[0]
        return result.images[index].copy(), f"gallery image #{index + 1} (seed {result.request.seed})"

    def _close_edit(self) -> None:
        if self.edit_window is not None:
            self.edit_window.close()  # cancels and waits for its jobs
            self.edit_window.deleteLater()
            self.edit_window = None

    # --- nearest training images --------------------------------------------------------------------
    def find_nearest(self) -> bool:
        result, indices = self.pane.result, self.pane.grid.selected_indices()[:MAX_NEAREST]
        if result is None or not indices:
            return False
        labels = [f"image #{i + 1}" for i in indices]
        self.pane.busy.setText("Loading the training images…")
        self.nearest.submit(find_nearest, result.checkpoint, result.images[indices], labels, K,
                            context="Nearest training images", cancellable=True)
        return True

    def _show_nearest(self, result) -> None:
        self.pane.busy.setText("")
        if self.nearest_window is not None:
            self.nearest_window.close()
        title = self.pane.result.run_name if self.pane.result is not None else ""
        self.nearest_window = NearestDialog(result, title, self.pane)
        self.nearest_window.show()

    def _failed(self, info: ErrorInfo) -> None:
        self.pane.busy.setText("")
        dialogs.show_error(self.pane, info)

    def _busy(self, busy: bool) -> None:
        self.update()

    # --- letting go ---------------------------------------------------------------------------------
    def release(self, folder: str | Path) -> None:
        """A run is about to be deleted: close the Edit window if it edits one of its checkpoints and stop
        looking up its training images (both wait for their job's next check)."""
        folder = Path(folder)
        if self.edit_window is not None and folder in Path(self.edit_window.checkpoint).parents:
            self._close_edit()
        self.nearest.cancel()

    def shutdown(self) -> None:
        self._close_edit()
        self.nearest.shutdown()
