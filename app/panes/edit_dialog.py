"""The Edit window: zero-shot editing with the gallery's model (cmcore.editing), off the GUI thread.

Modes: inpaint (paint a mask, fill it), interpolate (two seeds, a row between them), image to image
(a strength), colourise (a grey picture) and upscale (a picture averaged down, then enlarged). The
input canvas shows what the model is given: the picture, its grey levels, or its small version.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QDialog, QHBoxLayout, QLabel, QPushButton, QSlider, QSpinBox,
                               QStackedWidget, QTabBar, QVBoxLayout, QWidget)

from .. import dialogs
from ..edit_jobs import EditRequest, EditResult, export_edit, gray_of, load_input, run_edit, upscale_factors
from ..errors import ErrorInfo
from ..icons import icon_button
from ..widgets.image_dialog import ImageDialog
from ..widgets.images import ImageGrid
from ..widgets.mask_canvas import MaskCanvas
from ..workers import LatestOnly
from .common import card, muted, row

# (mode, tab label, run button label)
MODES = [("inpaint", "Inpaint", "Fill"), ("interpolate", "Interpolate", "Interpolate"),
         ("img2img", "Image to image", "Transform"), ("colorize", "Colourise", "Colourise"),
         ("upscale", "Upscale", "Upscale")]


def _spin(low: int, high: int, value: int, width: int = 80) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    box.setMinimumWidth(width)
    return box


class EditDialog(QDialog):
    result_shown = Signal(object)  # EditResult

    def __init__(self, sample_result, device: str, pick_sample: Callable[[], tuple | None],
                 export_folder: Callable[[], Path], parent: QWidget | None = None) -> None:
        """sample_result: the gallery's SampleResult (its checkpoint, steps and seed); pick_sample() → the
        gallery's selected image and its label, or None; export_folder() → where exports go."""
        super().__init__(parent)
        self.checkpoint, self.device = str(sample_result.checkpoint), device
        self.label = sample_result.request.label  # the gallery's class, for a class-conditional model
        self.resolution, self.channels = sample_result.resolution, sample_result.channels
        self._pick_sample, self._export_folder = pick_sample, export_folder
        self.input_image = None  # uint8 H×W×C at the model's resolution
        self.input_name = ""
        self.result: EditResult | None = None
        self.exported: list[Path] = []
        self.last_error: ErrorInfo | None = None
        r = sample_result.request
        self.setWindowTitle(f"Edit · {sample_result.run_name} · step {sample_result.step:,}")

        self.steps = _spin(1, 16, r.steps, 60)
        self.seed = _spin(0, 2**31 - 1, r.seed, 100)
        self.results = _spin(1, 16, 4, 60)
        self.results.setToolTip("How many results to draw (each with its own noise)")
        self.tabs = QTabBar()
        for _, label, _ in MODES:
            self.tabs.addTab(label)
        colour = "RGB" if self.channels == 3 else "grey"
        head = row(self.tabs, None, muted(f"{sample_result.run_name} · step {sample_result.step:,} · "
                                          f"{self.resolution} px {colour}"))

        # the input: a picture (with its mask) and the mode's own settings
        self.open_button = icon_button("folder", "Open image…")
        self.sample_button = QPushButton("Use gallery sample")
        self.sample_button.setToolTip("The gallery's selected image (or its first one)")
        self.canvas = MaskCanvas()
        self.options = QStackedWidget()
        self.brush = QSlider(Qt.Orientation.Horizontal)
        self.brush.setRange(1, max(2, self.resolution // 2))
        self.brush.setValue(max(1, self.resolution // 8))
        self.brush_label = QLabel()
        self.erase = QPushButton("Erase")
        self.erase.setCheckable(True)
        self.erase.setToolTip("Paint to remove from the mask")
        self.clear_button = QPushButton("Clear")
        self.options.addWidget(self._page(muted("Brush"), self.brush, self.brush_label, self.erase, self.clear_button))
        self.seed_a = _spin(0, 2**31 - 1, r.seed, 100)
        self.seed_b = _spin(0, 2**31 - 1, min(r.seed + 1, 2**31 - 1), 100)
        self.row_count = _spin(2, 32, 8, 60)
        self.options.addWidget(self._page(muted("From seed"), self.seed_a, muted("to seed"), self.seed_b,
                                          muted("Images"), self.row_count))
        self.strength = QSlider(Qt.Orientation.Horizontal)
        self.strength.setRange(0, 100)
        self.strength.setValue(50)
        self.strength_label = QLabel()
        self.strength.setToolTip("0 returns the picture itself; 1 draws a new image that ignores it")
        self.options.addWidget(self._page(muted("Strength"), self.strength, self.strength_label))
        colour_note = ("Keeps the picture's grey levels and draws the colours" if self.channels == 3 else
                       "Colourising needs a model trained on colour images; this one is greyscale")
        self.options.addWidget(self._page(muted(colour_note)))
        self.factor = QComboBox()
        for f in upscale_factors(self.resolution):
            self.factor.addItem(f"×{f}  ({self.resolution // f} → {self.resolution} px)", f)
        upscale_note = ("The picture is averaged down by the factor, then enlarged back with new detail"
                        if self.factor.count() else
                        f"A {self.resolution} px model is too small to upscale (the small picture would be under 4 px)")
        self.options.addWidget(self._page(muted("Factor"), self.factor, muted(upscale_note)))
        self.run_button = QPushButton("Fill")
        self.run_button.setDefault(True)
        input_card, ic = card()
        ic.addLayout(row(self.open_button, self.sample_button, None))
        ic.addWidget(self.canvas, 1)
        ic.addWidget(self.options)
        ic.addLayout(row(muted("Steps"), self.steps, 8, muted("Seed"), self.seed, 8, muted("Results"), self.results,
                         None, self.run_button))

        self.grid = ImageGrid(tile_size=112)
        self.grid.tile_clicked.connect(self._enlarge)
        self.status = muted("")
        self.status.setWordWrap(True)
        self.export_images = icon_button("export", "Export PNGs")
        self.export_row = icon_button("grid", "Export row")
        self.export_gif = icon_button("film", "Export GIF")
        self.export_gif.setToolTip("The interpolation row as an animation, there and back")
        results_card, rc = card()
        rc.addWidget(self.grid, 1)
        rc.addWidget(self.status)
        rc.addLayout(row(self.export_images, self.export_row, self.export_gif, None))

        body = QHBoxLayout()
        body.addWidget(input_card, 1)
        body.addWidget(results_card, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(head)
        layout.addLayout(body, 1)

        self.editing = LatestOnly("edit", self, supersede=True)
        self.editing.result.connect(self._on_result)
        self.editing.failed.connect(self._on_failed)
        self.editing.busy_changed.connect(self._on_busy)
        self.loading = LatestOnly("edit input", self, supersede=True)
        self.loading.result.connect(self._on_loaded)
        self.loading.failed.connect(self._on_failed)
        self.exporting = LatestOnly("edit export", self)
        self.exporting.result.connect(self._on_exported)
        self.exporting.failed.connect(self._on_failed)
        self.exporting.busy_changed.connect(self._update)

        self.tabs.currentChanged.connect(self._mode_changed)
        self.open_button.clicked.connect(self.open_image)
        self.sample_button.clicked.connect(self.use_gallery_sample)
        self.brush.valueChanged.connect(self._brush_changed)
        self.erase.toggled.connect(lambda on: setattr(self.canvas, "erasing", on))
        self.clear_button.clicked.connect(self.canvas.clear_mask)
        self.canvas.mask_changed.connect(self._update)
        self.strength.valueChanged.connect(lambda v: self.strength_label.setText(f"{v / 100:.2f}"))
        self.factor.currentIndexChanged.connect(self._show_input)
        self.run_button.clicked.connect(self.run)
        self.export_images.clicked.connect(lambda: self.export("images"))
        self.export_row.clicked.connect(lambda: self.export("grid"))
        self.export_gif.clicked.connect(lambda: self.export("gif"))
        self._brush_changed(self.brush.value())
        self.strength_label.setText(f"{self.strength.value() / 100:.2f}")
        self._mode_changed(0)
        self.resize(980, 620)

    @staticmethod
    def _page(*widgets) -> QWidget:
        page = QWidget()
        page.setLayout(row(*widgets, None))
        page.layout().setContentsMargins(0, 0, 0, 0)
        return page

    # --- the mode and its input ---------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return MODES[self.tabs.currentIndex()][0]

    def set_mode(self, mode: str) -> None:
        self.tabs.setCurrentIndex([m for m, _, _ in MODES].index(mode))

    def _mode_changed(self, index: int) -> None:
        self.options.setCurrentIndex(index)
        self.run_button.setText(MODES[index][2])
        self.results.setEnabled(self.mode != "interpolate")
        self.canvas.painting_enabled = self.mode == "inpaint"
        self.canvas.hint = ("Interpolation needs no picture: it walks from one seed's sample to the other's"
                            if self.mode == "interpolate" else "Open an image or use a gallery sample")
        self._show_input()

    def _show_input(self, *_args) -> None:
        """The canvas shows what the model is given in this mode."""
        import numpy as np

        image = None if self.mode == "interpolate" else self.input_image
        if image is not None and self.mode == "colorize" and self.channels == 3:
            image = gray_of(image)
        elif image is not None and self.mode == "upscale" and self.factor.count():
            f = int(self.factor.currentData())
            h, w, c = image.shape
            small = image.reshape(h // f, f, w // f, f, c).mean(axis=(1, 3)).round().astype(np.uint8)
            image = small.repeat(f, 0).repeat(f, 1)
        self.canvas.set_image(image, keep_mask=True)
        self._update()

    def set_input(self, image, name: str) -> None:
        """A picture at the model's resolution becomes the input (a new mask)."""
        self.input_image, self.input_name = image, name
        self.canvas.set_image(None)
        self._show_input()

    def open_image(self) -> None:
        path = dialogs.pick_open_file(self, "Open a picture to edit", "",
                                      "Images (*.png *.jpg *.jpeg *.bmp *.gif *.webp *.tif *.tiff);;All files (*)")
        if path:
            self.status.setText(f"Reading {Path(path).name}…")
            self.loading.submit(self._read, path, context="Reading the picture")

    def _read(self, path: str) -> tuple:
        return load_input(path, self.resolution, self.channels), Path(path).name

    def _on_loaded(self, value: tuple) -> None:
        self.set_input(*value)
        self.status.setText(f"{value[1]}, fitted to {self.resolution} px")

    def use_gallery_sample(self) -> None:
        picked = self._pick_sample()
        if picked is None:
            dialogs.show_info(self, "No gallery image", "Sample some images in the gallery first.")
            return
        self.set_input(*picked)

    def _brush_changed(self, value: int) -> None:
        self.canvas.brush = value
        self.brush_label.setText(f"{value} px")

    # --- running ------------------------------------------------------------------------------------
    def request(self) -> EditRequest:
        mode = self.mode
        num = self.row_count.value() if mode == "interpolate" else self.results.value()
        mask = None if self.canvas.mask is None else self.canvas.mask.copy()
        return EditRequest(self.checkpoint, self.device, mode, self.steps.value(), self.seed.value(), num,
                           image=None if mode == "interpolate" else self.input_image, mask=mask,
                           seeds=(self.seed_a.value(), self.seed_b.value()), strength=self.strength.value() / 100,
                           factor=int(self.factor.currentData() or 2), input_name=self.input_name,
                           label=self.label)

    def run(self) -> None:
        self.last_error = None
        self.editing.submit(run_edit, self.request(), context="Editing", cancellable=True)

    def _on_result(self, result: EditResult) -> None:
        self.result = result
        r = result.request
        if r.mode == "interpolate":
            captions = [f"seed {r.seeds[0]}"] + [f"{i / (r.num - 1):.2f}" for i in range(1, r.num - 1)] + \
                       [f"seed {r.seeds[1]}"]
        else:
            captions = [f"#{i + 1}" for i in range(len(result.images))]
        self.grid.set_images(result.images, captions)
        self.status.setText(f"{len(result.images)} result(s): {MODES[[m for m, _, _ in MODES].index(r.mode)][1].lower()}, "
                            f"{r.steps} step(s), seed {r.seed}")
        self._update()
        self.result_shown.emit(result)

    def _on_failed(self, info: ErrorInfo) -> None:
        self.last_error = info
        self.status.setText("")
        dialogs.show_error(self, info)

    def _on_busy(self, busy: bool) -> None:
        if busy:
            self.status.setText("Working…")
        self._update()

    def _update(self, *_args) -> None:
        mode = self.mode
        ready = {"interpolate": True, "inpaint": self.input_image is not None and self.canvas.painted() > 0,
                 "colorize": self.input_image is not None and self.channels == 3,
                 "upscale": self.input_image is not None and self.factor.count() > 0}.get(mode, self.input_image is not None)
        self.run_button.setEnabled(ready)
        have = self.result is not None and not self.exporting.busy
        self.export_images.setEnabled(have)
        self.export_row.setEnabled(have)
        self.export_gif.setEnabled(have and self.result.request.mode == "interpolate")

    def _enlarge(self, index: int) -> None:
        if self.result is not None:
            r = self.result.request
            ImageDialog(self.result.images[index], f"{r.mode}, result #{index + 1}\n{r.steps} step(s) · seed {r.seed}",
                        self).show()

    # --- export -------------------------------------------------------------------------------------
    def export(self, what: str, folder: Path | None = None) -> bool:
        """what: images | grid | gif. In the background; False when there is nothing to export."""
        if self.result is None or self.exporting.busy:
            return False
        self.exporting.submit(export_edit, self.result, what, Path(folder or self._export_folder()),
                              context="Export", cancellable=True)
        self.status.setText("Exporting…")
        return True

    def _on_exported(self, paths: list[Path]) -> None:
        self.exported = list(paths)
        self.status.setText(f"Exported {len(paths)} file(s) to {paths[0].parent if paths else ''}")

    # --- closing ------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Cancel and wait for this window's jobs (blocking: within one network evaluation)."""
        for runner in (self.editing, self.loading, self.exporting):
            runner.shutdown()

    def closeEvent(self, event) -> None:  # noqa: N802
        self.shutdown()
        super().closeEvent(event)
