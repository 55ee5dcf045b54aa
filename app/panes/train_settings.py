"""The Train pane's settings column: the preset bar above the form, presets applied and saved, the
settings remembered between sessions, and the split of a config between the form and the Data pane.

A mixin of TrainPane (it needs the pane's `form`, `data_pane`, `workspace`, `status_message` and
`_fail_now`), so the pane keeps one interface for the tests and the main window.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QPushButton, QScrollArea, QVBoxLayout, QWidget

from cmcore.config import TrainConfig

from .. import dialogs, presets, settings
from ..icons import icon_button
from .common import muted, row
from .train_form import TrainForm

log = logging.getLogger(__name__)

DATA_FIELDS = ("data", "resolution", "channels", "hflip")  # TrainConfig fields the Data pane owns


class TrainSettings:
    """Mixed into TrainPane: builds and runs the settings column."""

    def _settings_column(self) -> QScrollArea:
        self.form = TrainForm()
        self.preset_box = QComboBox()
        self.preset_box.setToolTip("Training presets (TOML, same format as a run's config.toml)")
        self.load_preset_button = QPushButton("Apply")
        self.save_preset_button = icon_button("save", "Save…")
        self.save_preset_button.setToolTip("Save these settings as a preset")
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 8, 0)
        left_layout.addLayout(row(muted("Preset"), self.preset_box, self.load_preset_button, self.save_preset_button))
        left_layout.addWidget(self.form)
        scroll = QScrollArea()
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(360)
        self.load_preset_button.clicked.connect(self.apply_selected_preset)
        self.save_preset_button.clicked.connect(self.save_preset)
        self.form.browse_teacher.connect(self._browse_teacher)
        return scroll

    def current_config(self) -> TrainConfig:
        """The form's settings with the Data pane's choice of data (and its resolution)."""
        return self.form.config(**self.data_pane.training_values())

    def set_values(self, values: dict[str, Any]) -> None:
        """Fill the settings from a preset or config: the resolution and flips go to the Data pane
        (the data is decoded at that resolution), the rest to the form. The data itself never changes here."""
        if "resolution" in values:
            self.data_pane.resolution.setValue(int(values["resolution"]))
        if "hflip" in values:
            self.data_pane.hflip.setChecked(bool(values["hflip"]))
        self.form.set_values({k: v for k, v in values.items() if k not in DATA_FIELDS})

    # --- presets ---------------------------------------------------------------------------------
    def fill_presets(self, select: str = "") -> None:
        self.preset_box.clear()
        for p in presets.list_presets():
            self.preset_box.addItem(p.name + ("" if p.builtin else "  (yours)"), str(p.path))
        if select:
            self.preset_box.setCurrentIndex(max(0, self.preset_box.findData(select)))

    def apply_selected_preset(self) -> None:
        path = self.preset_box.currentData()
        if path:
            self.apply_preset(Path(path))

    def apply_preset(self, path: Path) -> bool:
        try:
            values = presets.read_preset(path)
        except Exception as exc:  # noqa: BLE001 - ConfigError for a bad file
            self._fail_now(exc, "Preset")
            return False
        self.set_values(values)
        self.status_message.emit(f"Preset {path.stem} applied")
        return True

    def save_preset(self) -> None:
        presets.user_dir().mkdir(parents=True, exist_ok=True)
        path = dialogs.pick_save_file(self, "Save preset", str(presets.user_dir() / "my-preset.toml"),
                                      "Presets (*.toml)")
        if not path:
            return
        try:
            saved = presets.save_preset(Path(path), self.current_config())
        except Exception as exc:  # noqa: BLE001
            self._fail_now(exc, "Saving preset")
            return
        self.fill_presets(select=str(saved))
        self.status_message.emit(f"Preset saved to {saved}")

    # --- remembered settings -----------------------------------------------------------------------
    def remember_settings(self) -> None:
        try:
            settings.set("train/last", self.current_config().to_toml())
        except Exception:  # noqa: BLE001 - a half-typed form must not break closing
            log.warning("could not remember the training settings", exc_info=True)

    def _restore(self) -> None:
        text = settings.get_str("train/last", "")
        if not text:
            return
        try:
            values = TrainConfig.from_toml(text).to_dict()
        except Exception:  # noqa: BLE001 - settings from an older version: ignore them
            return
        # the Data pane remembers its own fields
        self.form.set_values({k: v for k, v in values.items() if k not in DATA_FIELDS})

    # --- what the form offers ------------------------------------------------------------------------
    def set_devices(self, devices: list) -> None:
        self.form.set_devices(devices)

    def set_runs(self, runs: list) -> None:
        self.form.set_teachers(runs)

    def _browse_teacher(self) -> None:
        path = dialogs.pick_folder(self, "Choose a flow run folder", str(self.workspace))
        if path:
            self.form.set_teacher(path)
