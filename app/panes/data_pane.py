"""Data pane: choose what to train on and see it exactly as the model will.

Decoding runs in a DecodeWorker; a new choice while one is decoding cancels it and the
latest choice is decoded next. The decoded dataset is handed to the trainer, so a run
starts without decoding again.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QHBoxLayout, QLineEdit, QProgressBar, QSizePolicy,
                               QSpinBox, QWidget)

from .. import dialogs, settings
from ..errors import ErrorInfo
from ..icons import icon_button
from ..workers import DecodeWorker, start_worker
from .common import card, muted, pane_layout, row
from .data_cache_controls import CacheControls, size_text
from .data_report_view import DataReportView

SOURCES = [  # (key, label); torchvision sets need a root folder
    ("folder", "Image folder"),
    ("demo", "Demo data (generated shapes)"),
    ("mnist", "MNIST (torchvision files)"),
    ("fashionmnist", "Fashion-MNIST (torchvision files)"),
    ("cifar10", "CIFAR-10 (torchvision files)"),
]
CHANNELS = [("auto", "Auto (from the images)"), ("1", "Grayscale (1)"), ("3", "RGB (3)")]


class DataPane(QWidget):
    dataset_changed = Signal(object)  # ImageDataset or None

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.dataset = None  # cmcore.data.ImageDataset of the current choice, once decoded
        self._loaded_key: tuple | None = None
        self._worker: DecodeWorker | None = None
        self._thread = None
        self._loading_key: tuple | None = None
        self._pending = False
        self.last_error: ErrorInfo | None = None
        self.engine_ready = False  # decoding needs torch; the main window loads it first

        layout = pane_layout(self, "Data", "what the model learns to generate")

        self.source = QComboBox()
        for key, label in SOURCES:
            self.source.addItem(label, key)
        self.source.setMaximumWidth(360)
        self.folder = QComboBox()
        self.folder.setEditable(True)
        self.folder.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.folder.lineEdit().setPlaceholderText("a folder of images (PNG, JPEG, WebP, …)")
        self.folder.setToolTip("Recent folders; you can also drop a folder onto the window")
        self.folder.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.browse = icon_button("folder", "Browse…")
        self.root = QLineEdit()
        self.root.setPlaceholderText("folder that holds the torchvision files")
        self.root_browse = icon_button("folder", "Browse…")
        self.resolution = QSpinBox()
        self.resolution.setRange(16, 256)
        self.resolution.setSingleStep(8)
        self.resolution.setSuffix(" px")
        self.channels = QComboBox()
        for key, label in CHANNELS:
            self.channels.addItem(label, key)
        self.hflip = QCheckBox("Random horizontal flips while training")
        # a folder whose images sit in sub-folders can train with classes (cmcore/data/classes.py)
        self.use_classes = QCheckBox("Train with classes")
        self.use_classes.setObjectName("use_classes")
        self.use_classes.setChecked(True)
        self.use_classes.setToolTip("One class per sub-folder: the gallery then draws the class you pick")
        self.classes_info = muted()
        self.classes_info.setObjectName("classes_info")
        self.classes_info.setWordWrap(True)

        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)
        form.addRow("Source", self.source)
        self.folder_row = _path_row(self.folder, self.browse)
        form.addRow("Folder", self.folder_row)
        self.root_row = _path_row(self.root, self.root_browse)
        form.addRow("Root", self.root_row)
        form.addRow("Resolution", row(self.resolution, 16, muted("Channels"), self.channels, None))
        form.addRow("", self.hflip)
        self.classes_row = QWidget()
        classes_layout = QHBoxLayout(self.classes_row)
        classes_layout.setContentsMargins(0, 0, 0, 0)
        classes_layout.addWidget(self.use_classes)
        classes_layout.addWidget(self.classes_info, 1)
        form.addRow("Classes", self.classes_row)
        self._form = form
        self.classes_row.setMinimumWidth(520)

        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.cancel = icon_button("stop", "Cancel")
        self.cancel.setVisible(False)
        self.reload = icon_button("refresh", "Reload")
        self.cache = CacheControls()  # the decoded-folder cache: its size, its limit, Clear
        self.cache.cleared.connect(self._cache_cleared)
        self.cache_label, self.cache_limit, self.clear_cache_button = (self.cache.label, self.cache.limit,
                                                                       self.cache.clear_button)
        self.report = DataReportView()
        self.summary, self.detail = self.report.summary, self.report.detail
        self.thumbs, self.skipped = self.report.thumbs, self.report.skipped

        head_card, head = card()
        head.addLayout(form)
        head.addLayout(row(self.reload, self.progress, self.cancel, None, self.cache))
        layout.addWidget(head_card)
        layout.addWidget(self.report, 1)

        # a short delay so typing a path or spinning the resolution decodes once, at the end
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(350)
        self._debounce.timeout.connect(self.load)

        self._restore()
        self.source.currentIndexChanged.connect(self._source_changed)
        self.folder.activated.connect(lambda _i: self.load())
        self.folder.lineEdit().editingFinished.connect(self._folder_edited)
        self.root.editingFinished.connect(self.load)
        self.browse.clicked.connect(self.choose_folder)
        self.root_browse.clicked.connect(self._choose_root)
        self.resolution.valueChanged.connect(lambda _v: self._debounce.start())
        self.channels.currentIndexChanged.connect(lambda _i: self._debounce.start())
        self.reload.clicked.connect(self.load)
        self.cancel.clicked.connect(self.cancel_load)
        self._update_rows()

    # --- the current choice -----------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self.source.currentData()

    @property
    def spec(self) -> str:
        """The cmcore data spec: a folder path, demo, or name:ROOT."""
        if self.kind == "folder":
            return self.folder.currentText().strip()
        if self.kind == "demo":
            return "demo"
        return f"{self.kind}:{self.root.text().strip()}"

    @property
    def channel_choice(self) -> str:
        return self.channels.currentData()

    def _key(self) -> tuple:
        return (self.spec, self.resolution.value(), self.channel_choice)

    def set_spec(self, spec: str) -> None:
        """Select a spec given on the command line or dropped onto the window."""
        name, sep, root = spec.partition(":")
        keys = [k for k, _ in SOURCES]
        if spec.strip().lower() == "demo":
            self._select_kind("demo")
        elif sep and name.lower() in keys[2:]:
            self._select_kind(name.lower())
            self.root.setText(root)
        else:
            self._select_kind("folder")
            self.folder.setEditText(str(Path(spec).expanduser()))
        self.load()

    def set_folder(self, path: str) -> None:
        self.set_spec(str(path))

    def training_values(self) -> dict:
        """The TrainConfig fields this pane owns: the data, and the resolution and channels it is decoded at."""
        return {"data": self.spec, "resolution": self.resolution.value(), "channels": self.channel_choice,
                "hflip": self.hflip.isChecked(), "classes": "auto" if self.use_classes.isChecked() else "off"}

    def dataset_for(self, config) -> object | None:
        """The decoded dataset if it matches `config` (data, resolution, channels; a resolved config's
        channel count matches the "auto" it was decoded with when the images have that many)."""
        if self.dataset is None or self._loaded_key is None:
            return None
        spec, resolution, channels = self._loaded_key
        same_channels = str(config.channels) in (channels, "auto") or (channels == "auto"
                                                                      and str(config.channels) == str(self.dataset.channels))
        same_data = spec == config.data or (self.kind == "folder" and Path(spec).expanduser().resolve() == Path(config.data))
        if not (same_data and resolution == config.resolution and same_channels):
            return None
        return dataclasses.replace(self.dataset, hflip=bool(config.hflip))

    # --- loading --------------------------------------------------------------------------------
    @property
    def loading(self) -> bool:
        return self._worker is not None

    def set_engine_ready(self, ready: bool) -> None:
        self.engine_ready = ready
        self.cache.set_engine_ready(ready)

    def clear_cache(self) -> None:
        self.cache.clear()

    def _cache_cleared(self, freed: int) -> None:
        self.detail.setText(f"Cleared the cache: {size_text(freed)} freed. The next run decodes its folder again.")

    def load(self) -> None:
        self._debounce.stop()
        if not self.engine_ready:
            return  # the main window calls load() once the engine is there
        if (self.kind == "folder" and not self.spec) or (self.kind not in ("folder", "demo")
                                                          and not self.root.text().strip()):
            self.summary.setText("Choose a folder" if self.kind == "folder" else
                                 "Choose the folder that holds the torchvision files")
            return
        if self._worker is not None:  # decode the newest choice once the current one stops
            self._pending = True
            self._worker.cancel()
            return
        self._start()

    def _start(self) -> None:
        spec, res, channels = self._key()
        self._remember()
        self.last_error = None
        worker = DecodeWorker(spec, res, channels)
        worker.progress.connect(self._on_progress)
        worker.scanned.connect(self._on_scanned)
        # bound methods only: a lambda connected to a worker signal would run in the worker thread
        worker.loaded.connect(self._on_loaded)
        worker.failed.connect(self._on_failed)
        worker.done.connect(self._on_done)
        self._worker, self._loading_key = worker, (spec, res, channels)
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self.cancel.setVisible(True)
        self.summary.setText("Reading images…")
        self.detail.setText(self._label(spec))
        self._thread = start_worker(worker, f"decode {spec}")

    def cancel_load(self) -> None:
        self._pending = False
        if self._worker is not None:
            self._worker.cancel()

    def _on_scanned(self, found: int) -> None:
        self.progress.setRange(0, 0)  # the total is not known while the folder is walked
        self.summary.setText(f"Scanning… {found:,} image files found")

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.progress.setFormat(f"{done} / {total}")

    def _on_loaded(self, dataset, thumbs) -> None:
        if self._pending:  # superseded: a newer choice is queued
            return
        key = self._loading_key
        self.dataset, self._loaded_key = dataset, key
        self.report.show_loaded(dataset, thumbs, self._label(key[0]))
        self._show_classes(dataset.report)
        if self.kind == "folder":
            settings.push_recent("data/recent", key[0])
            self._fill_recent()
        self.cache.show_size()
        self.dataset_changed.emit(dataset)

    def _on_failed(self, info: ErrorInfo) -> None:
        self.last_error = info
        self.dataset, self._loaded_key = None, None
        self.report.show_failed(info.message)
        self._show_classes(None)
        self.dataset_changed.emit(None)
        if not self._pending:
            dialogs.show_error(self, info)

    def _on_done(self) -> None:
        self._worker = None
        self.progress.setVisible(False)
        self.cancel.setVisible(False)
        if self._pending:
            self._pending = False
            self._start()
        elif self.dataset is None and self.last_error is None:
            self.summary.setText("Cancelled")

    @staticmethod
    def _label(spec: str) -> str:
        name, sep, root = spec.partition(":")
        if spec == "demo":
            return "Demo data"
        labels = dict(SOURCES)
        if sep and name in labels and name != "folder":
            return f"{labels[name].split(' (')[0]} in {root}"
        return spec

    # --- widgets --------------------------------------------------------------------------------
    def _select_kind(self, kind: str) -> None:
        self.source.blockSignals(True)
        self.source.setCurrentIndex(max(0, self.source.findData(kind)))
        self.source.blockSignals(False)
        self._update_rows()

    def _source_changed(self) -> None:
        self._update_rows()
        self.load()

    def _update_rows(self) -> None:
        self._form.setRowVisible(self.folder_row, self.kind == "folder")
        self._form.setRowVisible(self.root_row, self.kind not in ("folder", "demo"))
        self._form.setRowVisible(self.classes_row, self._classes_shown)

    _classes_shown = False  # the switch shows only for a folder with classes (or one that says why it has none)

    def _show_classes(self, report) -> None:
        """The classes a loaded folder has, with the switch; hidden for data without any."""
        found = report.classes if report is not None else {}
        note = report.classes_note if report is not None else ""
        if found:
            listed = ", ".join(f"{name} {count:,}" for name, count in found.items())
            self.classes_info.setText(f"{len(found)} classes from the sub-folders: {listed}")
        else:
            self.classes_info.setText(f"No classes: {note}" if note else "")
        self.use_classes.setVisible(bool(found))
        self._classes_shown = bool(found or note)
        self._update_rows()

    def _folder_edited(self) -> None:
        if self.folder.currentText().strip() and self._key() != self._loaded_key:
            self.load()

    def choose_folder(self) -> None:
        start = self.folder.currentText() or str(Path.home())
        path = dialogs.pick_folder(self, "Choose a folder of images", start)
        if path:
            self.set_folder(path)

    def _choose_root(self) -> None:
        path = dialogs.pick_folder(self, "Folder holding the torchvision files", self.root.text())
        if path:
            self.root.setText(path)
            self.load()

    def _fill_recent(self) -> None:
        text = self.folder.currentText()
        self.folder.blockSignals(True)
        self.folder.clear()
        self.folder.addItems(settings.get_list("data/recent"))
        self.folder.setEditText(text)
        self.folder.blockSignals(False)

    def _remember(self) -> None:
        settings.set("data/source", self.kind)
        settings.set("data/root", self.root.text())
        settings.set("data/resolution", self.resolution.value())
        settings.set("data/channels", self.channel_choice)

    def _restore(self) -> None:
        self._fill_recent()
        recent = settings.get_list("data/recent")
        self.folder.setEditText(recent[0] if recent else "")
        self.source.setCurrentIndex(max(0, self.source.findData(settings.get_str("data/source", "demo"))))
        self.root.setText(settings.get_str("data/root", ""))
        self.resolution.setValue(int(settings.get("data/resolution", 32)))
        self.channels.setCurrentIndex(max(0, self.channels.findData(settings.get_str("data/channels", "auto"))))

    def shutdown(self) -> None:
        """Cancel decoding and wait for it (blocking; used when the window closes)."""
        self.engine_ready = False  # no new decoding from now on
        self._pending = False
        if self._worker is not None:
            self._worker.cancel()
        if self._thread is not None:
            self._thread.wait(30_000)


def _path_row(edit: QWidget, button: QWidget) -> QWidget:
    """A wide path field with its Browse button, as one form row."""
    holder = QWidget()
    layout = QHBoxLayout(holder)
    layout.setContentsMargins(0, 0, 0, 0)
    edit.setMinimumWidth(520)
    layout.addWidget(edit, 1)
    layout.addWidget(button)
    return holder
