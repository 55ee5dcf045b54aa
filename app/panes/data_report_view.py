"""What the Data pane loaded: a summary, the details, thumbnails as the model sees them, the skipped files."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QSplitter, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from ..widgets.image_dialog import ImageDialog
from ..widgets.images import ImageGrid
from .common import muted

PROMPT = "Choose a folder, the demo data or a torchvision set."


class DataReportView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.dataset = None  # the dataset shown, so a click enlarges its image
        self.summary = muted(PROMPT)
        self.summary.setObjectName("bigNumber")
        self.detail = muted("")
        self.detail.setWordWrap(True)
        self.thumbs = ImageGrid(tile_size=56)
        self.thumbs.tile_clicked.connect(self._enlarge)
        self.skipped = QTreeWidget()
        self.skipped.setHeaderLabels(["Skipped file", "Reason"])
        self.skipped.setRootIsDecorated(False)
        self.skipped.setColumnWidth(0, 420)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.thumbs)
        split.addWidget(self.skipped)
        split.setStretchFactor(0, 4)
        split.setStretchFactor(1, 1)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.summary)
        layout.addWidget(self.detail)
        layout.addWidget(split, 1)

    def show_loaded(self, dataset, thumbs, label: str) -> None:
        """A decoded dataset (cmcore.data.ImageDataset), its thumbnails and what it was loaded from."""
        self.dataset = dataset
        report = dataset.report
        kind = "grayscale" if report.channels == 1 else "RGB"
        self.summary.setText(f"{report.num_images:,} images · {report.resolution}×{report.resolution} · {kind}")
        how = "read from cache" if report.cache_hit else "decoded"
        skipped = f" · {len(report.skipped)} skipped (listed below)" if report.skipped else ""
        self.detail.setText(f"{label} — {how} in {report.seconds:.2f} s{skipped}. "
                            "Thumbnails show the images exactly as the model sees them.")
        self.thumbs.set_images(thumbs)
        self._show_skipped(report.skipped)

    def show_failed(self, message: str) -> None:
        self.dataset = None
        self.summary.setText("No usable images")
        self.detail.setText(message)
        self.thumbs.set_images([])
        self._show_skipped([])

    def _show_skipped(self, skipped) -> None:
        self.skipped.clear()
        for s in skipped:
            item = QTreeWidgetItem([s.path, s.reason])
            item.setToolTip(0, s.path)
            self.skipped.addTopLevelItem(item)
        self.skipped.setVisible(bool(skipped))

    def _enlarge(self, index: int) -> None:
        if self.dataset is None:
            return
        image = self.dataset.images[index].permute(1, 2, 0).numpy()
        ImageDialog(image, f"Training image {index + 1} as the model sees it", self).show()
