"""Gallery pane: sample any run or checkpoint; the steps slider re-samples at once.

A run opens at its best-scored checkpoint ("Best | Latest" switches). The Edit window and the
nearest-training-images check live in gallery_tools; the 1/2/4/8-step strip in widgets.step_strip.

Sampling runs through a LatestOnly runner that supersedes: a new request cancels the batch
being sampled (at its next sampler step) and replaces any waiting one, so dragging the slider
computes only the latest request, and closing the window never waits for a stale batch.
"""
from __future__ import annotations

import random
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QComboBox, QLabel, QSlider, QSpinBox, QWidget

from .. import dialogs, settings
from ..errors import ErrorInfo
from ..gallery_jobs import GENERATORS, STRIP_STEPS, SampleRequest, SampleResult, run_sample
from ..icons import icon_button
from ..widgets.image_dialog import ImageDialog
from ..widgets.images import ImageGrid
from ..widgets.segmented import Segmented
from ..widgets.step_strip import StepStrip
from ..workers import LatestOnly
from .common import card, muted, pane_layout, row
from .gallery_export import GalleryExport
from .gallery_tools import GalleryTools

ALL_CLASSES = -1  # the class picker's "All classes" entry (a class-conditional model)
MAX_STEPS = 16
SAMPLERS = [("multistep", "Multistep"), ("ode", "ODE (Euler)")]
ODE_MIN_STEPS = 8  # Euler steps below which an ODE sample is still a blur


class ClassRowsGrid(ImageGrid):
    """The gallery's grid: tiles flow as they fit, or (`set_columns`) a fixed number per row, so that each row
    of an "All classes" sample is one class."""

    columns = 0

    def set_columns(self, columns: int) -> None:
        if columns != self.columns:
            self.columns, self._columns = columns, 0
            self._reflow()

    def _reflow(self) -> None:
        if not self.columns:
            super()._reflow()
            return
        if self._columns == self.columns:
            return
        self._columns = self.columns
        for i, tile in enumerate(self.tiles):
            self._grid.addWidget(tile, i // self.columns, i % self.columns)


class GalleryPane(GalleryExport, QWidget):
    result_shown = Signal(object)  # SampleResult
    status_message = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source: str | None = None
        self.device = "cpu"
        self.result: SampleResult | None = None
        self.exported: list[Path] = []
        self.last_error: ErrorInfo | None = None
        self._strip_key: tuple | None = None
        self._auto_sampler_for: str | None = None
        self._after_release: list = []  # callbacks waiting for the cancelled jobs to end (release)

        layout = pane_layout(self, "Gallery", "sample a trained model; drag the steps slider")

        self.run_box = QComboBox()
        self.run_box.setMinimumWidth(280)
        self.run_box.setPlaceholderText("choose a run")
        self.open_button = icon_button("folder", "Open checkpoint…")
        self.info = muted("")
        self.steps = QSlider(Qt.Orientation.Horizontal)
        self.steps.setRange(1, MAX_STEPS)
        self.steps.setValue(1)
        self.steps.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.steps.setTickInterval(1)
        self.steps.setPageStep(1)
        self.steps.setMinimumWidth(160)
        self.steps_label = QLabel("1 step")
        self.steps_label.setMinimumWidth(60)
        self.sampler = QComboBox()
        for key, label in SAMPLERS:
            self.sampler.addItem(label, key)
        self.sampler.setToolTip("Multistep: the consistency sampler (denoise, add noise, denoise…).\n"
                                "ODE: integrate the probability-flow ODE, the way flow teachers sample.")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setMinimumWidth(100)
        self.new_seed = icon_button("dice", "New seed")
        self.count = QSpinBox()
        self.count.setRange(1, 256)
        self.count.setValue(int(settings.get("gallery/count", 16)))
        self.busy = muted("")
        self.which = Segmented([("best", "Best"), ("latest", "Latest")])
        self.which.setToolTip("Best: the checkpoint that scored best on the held-out images (the newest until "
                              "one is scored). Latest: the newest checkpoint.")
        self.which_label = muted("")
        # a class-conditional model: draw one class, or all of them one row each; hidden for other models
        self.class_box = QComboBox()
        self.class_box.setObjectName("class_picker")
        self.class_box.setMinimumWidth(200)
        self.class_box.setToolTip("The class the images are drawn from (the model was trained with classes)")
        self.class_label = muted("Class")
        self.class_names: tuple[str, ...] = ()
        self._show_classes(())
        self.grid = ClassRowsGrid(tile_size=112, checkable=True)
        self.tools = GalleryTools(self)

        source_card, sc = card()
        sc.addLayout(row(muted("Model"), self.run_box, self.open_button, 12, self.info, None, self.busy))
        sc.addLayout(row(muted("Checkpoint"), self.which, self.which_label, 16, self.class_label, self.class_box, None,
                         self.tools.edit_button, self.tools.nearest_button))
        sc.addLayout(row(muted("Steps"), self.steps, self.steps_label, 16, muted("Sampler"), self.sampler, 16,
                         muted("Seed"), self.seed, self.new_seed, 16, muted("Images"), self.count, None))
        layout.addWidget(source_card)
        self.grid.tile_clicked.connect(self._enlarge)
        layout.addWidget(self.grid, 1)
        self.strip = StepStrip(STRIP_STEPS)  # the same noise at 1, 2, 4, 8 steps, side by side
        self.strip.clicked.connect(self._enlarge_strip)
        self.strip_labels = self.strip.labels
        layout.addWidget(self.strip)

        self._build_export_card(layout)

        self.sampling = LatestOnly("gallery sampling", self, supersede=True)
        self.sampling.result.connect(self._on_result)
        self.sampling.failed.connect(self._on_failed)
        self.sampling.busy_changed.connect(self._on_busy)
        self.exporting = LatestOnly("gallery export", self)
        self.exporting.result.connect(self._on_exported)
        self.exporting.failed.connect(self._on_failed)
        self.exporting.busy_changed.connect(self._update_buttons)
        self.sampling.busy_changed.connect(self._maybe_released)
        self.exporting.busy_changed.connect(self._maybe_released)

        # a 30 ms debounce merges the burst of signals from one slider drag gesture
        self._resample_timer = QTimer(self)
        self._resample_timer.setSingleShot(True)
        self._resample_timer.setInterval(30)
        self._resample_timer.timeout.connect(self.resample)

        self.run_box.activated.connect(self._run_chosen)
        self.open_button.clicked.connect(self._open_checkpoint)
        self.steps.valueChanged.connect(self._steps_changed)
        self.sampler.currentIndexChanged.connect(self._schedule)
        self.which.changed.connect(self._schedule)
        self.seed.valueChanged.connect(self._schedule)
        self.count.valueChanged.connect(self._schedule)
        self.class_box.currentIndexChanged.connect(self._schedule)
        self.new_seed.clicked.connect(self.roll_seed)
        self._update_buttons()

    # --- sources ---------------------------------------------------------------------------------
    def set_runs(self, runs: list) -> None:
        if self.source and not Path(self.source).exists():
            self.clear()  # the run was deleted
        current = self.source
        self.run_box.blockSignals(True)
        self.run_box.clear()
        for r in runs:
            if getattr(r, "has_checkpoint", True) and not getattr(r, "error", None):  # unreadable runs: not offered
                self.run_box.addItem(f"{r.name}  ·  {(r.method or '?').upper()}  ·  step {r.step or 0:,}", str(r.path))
        self.run_box.setCurrentIndex(self.run_box.findData(current) if current else -1)
        self.run_box.blockSignals(False)

    def open_source(self, path: str | Path) -> None:
        """Show a run directory or checkpoint file (a newer checkpoint is picked up)."""
        self.source = str(path)
        index = self.run_box.findData(self.source)
        if index >= 0:
            self.run_box.setCurrentIndex(index)
        self._strip_key = None
        self.info.setText(f"Loading {Path(self.source).name}…")
        self.resample()

    def clear(self) -> None:
        self.source, self.result, self._strip_key = None, None, None
        self.grid.set_images([])
        self.strip.set_images(None)
        self.info.setText("")
        self.which_label.setText("")
        self.busy.setText("")
        self._update_buttons()

    def shows(self, folder: str | Path) -> bool:
        """True if the gallery's model is `folder` or a checkpoint inside it."""
        if not self.source:
            return False
        source, folder = Path(self.source), Path(folder)
        return source == folder or folder in source.parents

    def release(self, folder: str | Path, then) -> None:
        """Let go of a run about to be deleted: forget its loaded model and, if the gallery shows
        it, clear the view and cancel its sampling and export; call `then()` once those jobs
        have ended (at once when none runs)."""
        GENERATORS.drop(folder)
        self.tools.release(folder)
        if not self.shows(folder):
            then()  # the gallery's jobs (of another model) do not touch that folder
            return
        self.clear()
        self.sampling.cancel()
        self.exporting.cancel()
        if self.sampling.busy or self.exporting.busy:
            self._after_release.append(then)  # they end at their next sampler step or file
        else:
            then()

    def _maybe_released(self, *_args) -> None:
        if self._after_release and not self.sampling.busy and not self.exporting.busy:
            callbacks, self._after_release = self._after_release, []
            for then in callbacks:
                then()

    def _run_chosen(self, index: int) -> None:
        path = self.run_box.itemData(index)
        if path:
            self.open_source(path)

    def _open_checkpoint(self) -> None:
        path = dialogs.pick_open_file(self, "Open a checkpoint", self.source or "",
                                      "Checkpoints (*.safetensors);;All files (*)")
        if path:
            self.open_source(path)

    # --- sampling ----------------------------------------------------------------------------------
    def request(self) -> SampleRequest | None:
        if not self.source:
            return None
        sampler, which = self.sampler.currentData(), self.which.value()
        label = self.class_box.currentData() if self.class_names else None
        label = None if label is None or label == ALL_CLASSES else int(label)
        key = (self.source, self.seed.value(), sampler, which, label)
        return SampleRequest(self.source, self.device, self.count.value(), self.steps.value(), self.seed.value(),
                             sampler, strip=key != self._strip_key, which=which, label=label)

    def resample(self) -> None:
        self._resample_timer.stop()
        request = self.request()
        if request is not None:
            self.sampling.submit(run_sample, request, context="Sampling", cancellable=True)

    def _schedule(self) -> None:
        settings.set("gallery/count", self.count.value())
        self._resample_timer.start()

    def _steps_changed(self, value: int) -> None:
        self.steps_label.setText(f"{value} step" + ("s" if value > 1 else ""))
        self._resample_timer.start()

    def step_by(self, delta: int) -> None:
        """One more (or fewer) sampling step: the steps slider's keyboard shortcuts."""
        self.steps.setValue(self.steps.value() + delta)

    def restore_from_png(self, path: str | Path) -> bool:
        """Open the model an exported PNG names and show its settings (steps, sampler, seed); False if the
        PNG carries none of ours or its model is gone."""
        from cmcore.export import read_png_metadata
        from cmcore.rundir import run_of

        try:
            meta = read_png_metadata(path)
            checkpoint = meta["checkpoint"]  # a pruned checkpoint's run folder will do
            source = next(str(p) for p in (Path(checkpoint), run_of(checkpoint)) if p is not None and p.exists())
            steps, seed = int(meta["steps"]), int(meta["seed"])
        except (OSError, KeyError, ValueError, StopIteration):
            dialogs.show_info(self, "Cannot restore", f"{Path(path).name} does not name a model that is here: "
                              "drop a PNG exported by Consistency Studio whose run still exists.")
            return False
        self.sampler.setCurrentIndex(max(0, self.sampler.findData(meta.get("sampler", "multistep"))))
        self.steps.blockSignals(True)
        self.steps.setValue(steps)
        self.steps.blockSignals(False)
        self._steps_changed(steps)
        self.seed.blockSignals(True)
        self.seed.setValue(seed)
        self.seed.blockSignals(False)
        self._auto_sampler_for = source  # the PNG's sampler stands, not the model's default
        self.open_source(source)
        return True

    def roll_seed(self) -> None:
        self.seed.setValue(random.randrange(0, 2**31 - 1))

    def _on_result(self, result: SampleResult) -> None:
        r = result.request
        if r.source != self.source:
            return  # the gallery moved on (another model, or a run deleted) while this was computed
        if self._auto_sampler_for != r.source:
            # the first result of a model: switch once to the sampler the engine chooses for it (a flow
            # teacher integrates its ODE); after that the person's choice stands
            self._auto_sampler_for = r.source
            if r.sampler != result.default_sampler:
                self.sampler.setCurrentIndex(self.sampler.findData(result.default_sampler))
                if result.default_sampler == "ode":
                    self.steps.setValue(max(self.steps.value(), ODE_MIN_STEPS))
        self.result, self.last_error = result, None
        self._show_classes(result.class_names)
        if self.request() is not None and self.request().label != r.label:
            self._resample_timer.start()  # another model's classes: the picker's class is drawn next
        if result.strip is not None:
            self._strip_key = (r.source, r.seed, r.sampler, r.which, r.label)
            self.strip.set_images(result.strip)
        self.grid.set_columns(result.per_row)
        self.grid.set_images(result.images, [result.caption(i) for i in range(len(result.images))])
        self.info.setText(f"{result.run_name} · {result.method.upper()} · step {result.step:,} · "
                          f"{result.resolution} px")
        self._show_which(result)
        self.busy.setText(f"{r.count} images, {r.steps} step(s), {result.seconds:.2f} s")
        if not settings.get_str("gallery/export_dir"):
            self._show_export_folder(self.export_folder())
        self._update_buttons()
        self.result_shown.emit(result)

    def _show_classes(self, names: tuple[str, ...]) -> None:
        """The class picker for a model's classes (kept on the same class by name); hidden without classes."""
        if tuple(names) != self.class_names:
            chosen = self.class_box.currentText()
            self.class_box.blockSignals(True)
            self.class_box.clear()
            self.class_box.addItem("All classes (one row per class)", ALL_CLASSES)
            for index, name in enumerate(names):
                self.class_box.addItem(name, index)
            self.class_box.setCurrentIndex(max(0, self.class_box.findText(chosen)))
            self.class_box.blockSignals(False)
            self.class_names = tuple(names)
        self.class_box.setVisible(bool(names))
        self.class_label.setVisible(bool(names))

    def _show_which(self, result: SampleResult) -> None:
        """Which checkpoint is shown, and its score; the switch only means something for a run folder."""
        self.which.setEnabled(result.latest_step is not None)
        score = "" if result.score is None else f" · score {result.score:.3g} (lower is better)"
        if result.latest_step is None:
            text = f"this checkpoint file, step {result.step:,}"
        elif result.request.which == "best" and result.best_step is None:
            text = f"none scored yet: the latest, step {result.step:,}"
        else:
            text = f"{result.request.which}: step {result.step:,}{score}"
            if result.request.which == "latest" and result.best_step is not None and result.best_step != result.step:
                text += f" (best: step {result.best_step:,})"
        self.which_label.setText(text)

    def _on_failed(self, info: ErrorInfo) -> None:
        self.last_error = info
        self.busy.setText("")
        dialogs.show_error(self, info)

    def _on_busy(self, busy: bool) -> None:
        if busy:
            self.busy.setText("Sampling…")
        self._update_buttons()

    # --- enlarge -----------------------------------------------------------------------------------
    def _enlarge(self, index: int) -> None:
        if self.result is None:
            return
        r = self.result.request
        caption = (f"{self.result.run_name}, image {self.result.caption(index)}\nstep {self.result.step:,} · {r.sampler} · "
                   f"{r.steps} step(s) · seed {r.seed}")
        ImageDialog(self.result.images[index], caption, self).show()

    def _enlarge_strip(self, steps: int) -> None:
        if self.result is not None and self.result.strip:
            r = self.result.request
            ImageDialog(self.result.strip[steps], f"{self.result.run_name}\nSame noise (seed {r.seed}) at "
                                                  f"{steps} step(s)", self).show()

    def _update_buttons(self, *_args) -> None:
        have = self.result is not None and not self.exporting.busy
        for b in (self.export_all, self.export_grid_button, self.export_gif_button, self.export_model_button,
                  self.select_all, self.select_none):
            b.setEnabled(have)
        self.export_selected.setEnabled(have and bool(self.grid.selected_indices()))
        self.tools.update()

    def shutdown(self) -> None:
        """Cancel sampling and export and wait for them (blocking; on close: within a sampler step)."""
        self._resample_timer.stop()
        self._after_release = []
        self.tools.shutdown()
        self.sampling.shutdown()
        self.exporting.shutdown()
