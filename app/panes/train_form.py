"""The Train pane's settings form: a widget for each TrainConfig field a person is meant to set,
read and written as a dict, so presets, remembered settings and runs share one TOML format.

A field without a widget (set in a preset TOML: p_mean, parametrization, huber_c…) keeps the
value the form was last filled with and is part of `config()`: filling the form from a preset
or from remembered settings never resets it silently. The data fields (data, resolution,
channels, hflip, classes) belong to the Data pane, which passes them to `config()`.
"""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                               QSpinBox, QToolButton, QVBoxLayout, QWidget)

from cmcore.config import (AUTO, BETA2_CONSISTENCY, BETA2_FLOW, DISTANCES, FIELD_NAMES, LR_FROM_SCRATCH,
                           LR_FROM_TEACHER, METHODS, MODELS, PRECISIONS, TrainConfig)

from ..icons import icon_button
from ..widgets.inputs import Collapsible, SciSpinBox

METHOD_LABELS = {"ct": "CT — consistency training", "cd": "CD — distil a flow teacher",
                 "flow": "Flow — train a teacher (for CD)"}
MODEL_LABELS = {"tiny": "Tiny (≈3 M params, CPU)", "small": "Small (≈7 M)", "base": "Base (≈23 M, GPU)"}
DISTANCE_LABELS = {"auto": "auto (L1 + fine detail for CD, pseudo-Huber for CT)", "pseudo_huber": "pseudo-Huber",
                   "l1_fine": "L1 + fine detail"}
PRECISION_LABELS = {"fp32": "fp32 (exact)", "bf16": "bf16 (CUDA)", "fp16": "fp16 (CUDA)"}
ADVANCED_ROWS = (("s0", "s0 (start n)"), ("s1", "s1 (final n)"), ("ema_eval", "Eval EMA"), ("distance", "Distance"),
                 ("warmup_steps", "LR warm-up steps"), ("grad_clip", "Gradient clip"), ("adam_beta2", "Adam β2"),
                 ("spike_factor", "Spike guard ×"), ("log_every", "Log every"), ("preview_every", "Preview every"),
                 ("checkpoint_every", "Checkpoint every"), ("score", "Quality score"), ("tensorboard", "TensorBoard"))


def _combo(options: tuple[str, ...], labels: dict[str, str] | None = None) -> QComboBox:
    box = QComboBox()
    for key in options:
        box.addItem((labels or {}).get(key, key.replace("_", " ")), key)
    return box


def _int(lo: int, hi: int, step: int = 1, suffix: str = "") -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setSuffix(suffix)
    box.setGroupSeparatorShown(True)
    return box


def _float(lo: float, hi: float, decimals: int, step: float, suffix: str = "") -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setDecimals(decimals)
    box.setSingleStep(step)
    box.setSuffix(suffix)
    return box


def _auto_spin(box: QDoubleSpinBox) -> QDoubleSpinBox:
    """A spin box whose lowest value reads "auto": the engine's measured choice for the method."""
    box.setSpecialValueText(AUTO)
    return box


# --- the form's boundary: widget value <-> config value ----------------------------------------
def _read(widget: QWidget) -> Any:
    """The config value a widget shows. A spin box at its "auto" minimum is the config's AUTO."""
    if isinstance(widget, QComboBox):
        return widget.currentData()
    if isinstance(widget, QCheckBox):
        return widget.isChecked()
    if widget.specialValueText() == AUTO and widget.value() == widget.minimum():
        return AUTO
    return widget.value()


def _show(widget: QWidget, value: Any) -> None:
    """Show a config value in its widget (AUTO in an "auto" spin box is its minimum)."""
    if isinstance(widget, QComboBox):
        index = widget.findData(value)
        if index >= 0:
            widget.setCurrentIndex(index)
    elif isinstance(widget, QCheckBox):
        widget.setChecked(bool(value))
    elif value == AUTO:
        widget.setValue(widget.minimum())
    else:
        widget.setValue(value)


ALL_GPUS = "cuda"  # the device of a run on all GPUs: each of its processes takes the GPU of its LOCAL_RANK


class TrainForm(QWidget):
    method_changed = Signal(str)
    device_changed = Signal(str)  # a device id, or "auto"
    browse_teacher = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._kept: dict[str, Any] = {}  # fields without a widget, as last filled in
        w: dict[str, QWidget] = {}
        w["method"] = _combo(METHODS, METHOD_LABELS)
        w["teacher"] = QComboBox()
        w["teacher"].setEditable(True)
        w["teacher"].lineEdit().setPlaceholderText("a finished flow run")
        w["model"] = _combo(MODELS, MODEL_LABELS)
        w["batch_size"] = _int(1, 4096, 8)
        w["lr"] = _auto_spin(SciSpinBox(0.0, 1e30))
        w["max_steps"] = _int(1, 100_000_000, 100)
        w["max_minutes"] = _float(0, 100_000, 1, 5, " min")
        w["max_minutes"].setSpecialValueText("no limit")
        w["device"] = QComboBox()
        w["precision"] = _combo(PRECISIONS, PRECISION_LABELS)
        w["seed"] = _int(0, 2**31 - 1)
        # advanced
        w["s0"] = _int(1, 100_000)
        w["s1"] = _int(1, 100_000)
        w["ema_eval"] = _float(0, 0.99999, 5, 0.0005)
        w["distance"] = _combo(DISTANCES, DISTANCE_LABELS)
        w["warmup_steps"] = _int(0, 1_000_000, 50)
        w["grad_clip"] = _float(0, 1000, 2, 0.5)
        w["adam_beta2"] = _auto_spin(_float(0, 0.99999, 5, 0.001))
        w["spike_factor"] = _float(0, 100, 1, 0.5)
        w["spike_factor"].setSpecialValueText("off")
        w["log_every"] = _int(1, 100_000)
        w["preview_every"] = _int(0, 10_000_000, 50)
        w["checkpoint_every"] = _int(0, 10_000_000, 100)
        w["score"] = QCheckBox("hold out 2 % and score each checkpoint")
        w["tensorboard"] = QCheckBox("also write the metrics for TensorBoard")
        for name, widget in w.items():
            widget.setObjectName(name)  # tests and tools find a control by its field's name
        self._widgets = w
        self.set_devices([])

        self.teacher_browse = icon_button("folder", "")
        self.teacher_browse.setToolTip("Choose a flow run folder or checkpoint")
        self.teacher_browse.clicked.connect(self.browse_teacher)
        teacher_row = QHBoxLayout()
        teacher_row.setContentsMargins(0, 0, 0, 0)
        teacher_row.addWidget(w["teacher"], 1)
        teacher_row.addWidget(self.teacher_browse)
        self.teacher_row = QWidget()
        self.teacher_row.setLayout(teacher_row)

        tips = {
            "method": "CT learns from data alone; CD learns from a flow teacher trained first",
            "lr": f"Learning rate (type e.g. 3e-4; arrows halve or double). auto: {LR_FROM_SCRATCH:g} from "
                  f"scratch, {LR_FROM_TEACHER:g} for a CD student that starts from its teacher",
            "max_minutes": "Stop after this much training time (0 = only max steps)",
            "s0": "The curriculum (CT, CD): after a warm-up with n = 1, the number of steps n doubles from s0…",
            "s1": "…to s1, each stage getting an equal share of the run",
            "ema_eval": "EMA of the weights used for previews and sampling",
            "distance": "Distance between the student's and the target's outputs (CT, CD)",
            "preview_every": "Steps between preview grids (0 = only at the end)",
            "checkpoint_every": "Steps between checkpoints (0 = only at the end)",
            "adam_beta2": f"Optimizer second-moment rate. auto: {BETA2_CONSISTENCY:g} for CT/CD (long runs recover "
                          f"from loss spikes with it), {BETA2_FLOW:g} for a flow teacher",
            "score": "Hold out 2 % of the images (at least 32) and score each checkpoint's samples against them: the "
                     "score on the loss plot and in Runs, and the best checkpoint kept. Off: train on every image",
            "tensorboard": "Copy the loss and scores to RUN/tensorboard for `tensorboard --logdir` (needs the "
                           "tensorboard package)",
            "spike_factor": "Roll back to recent good weights when the loss of the last 50 steps exceeds this many times "
                            "that of the 500 before (a spike that can ruin a consistency run). off: never",
        }
        for name, tip in tips.items():
            w[name].setToolTip(tip)

        basics = QGroupBox("Method and model")
        f = self._form(basics)
        f.addRow("Method", w["method"])
        f.addRow("Teacher", self.teacher_row)
        self._basics_form = f
        f.addRow("Model size", w["model"])
        run = QGroupBox("Optimisation")
        f = self._form(run)
        f.addRow("Batch size", w["batch_size"])
        f.addRow("Learning rate", w["lr"])
        f.addRow("Max steps", w["max_steps"])
        f.addRow("Max time", w["max_minutes"])
        hw = QGroupBox("Hardware")
        f = self._form(hw)
        f.addRow("Device", w["device"])
        f.addRow("Precision", w["precision"])
        f.addRow("Seed", w["seed"])
        adv_body = QWidget()
        f = self._form(adv_body)
        for name, label in ADVANCED_ROWS:
            f.addRow(label, w[name])
        self.advanced = Collapsible("Advanced", adv_body)

        # what a preset set that has no control here: shown, so it is never a hidden surprise
        self.kept_label = QLabel()
        self.kept_label.setObjectName("muted")
        self.kept_label.setWordWrap(True)
        self.kept_reset = QToolButton()
        self.kept_reset.setText("Use defaults")
        self.kept_reset.setToolTip("Forget these settings: use the engine's defaults for them")
        self.kept_reset.clicked.connect(self.reset_kept)
        kept_row = QHBoxLayout()
        kept_row.setContentsMargins(0, 0, 0, 0)
        kept_row.addWidget(self.kept_label, 1)
        kept_row.addWidget(self.kept_reset, 0, Qt.AlignmentFlag.AlignTop)
        self.kept_box = QWidget()
        self.kept_box.setLayout(kept_row)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for part in (basics, run, hw, self.advanced, self.kept_box):
            layout.addWidget(part)
        layout.addStretch(1)

        w["method"].currentIndexChanged.connect(self._method_changed)
        w["device"].currentIndexChanged.connect(lambda _i: self.device_changed.emit(self.device()))
        defaults = TrainConfig().to_dict()
        self.set_values({name: defaults[name] for name in w})

    @staticmethod
    def _form(parent: QWidget) -> QFormLayout:
        f = QFormLayout(parent)
        f.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        f.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        return f

    def _method_changed(self) -> None:
        method = self._widgets["method"].currentData()
        self._basics_form.setRowVisible(self.teacher_row, method == "cd")
        self.method_changed.emit(method)

    # --- values ---------------------------------------------------------------------------
    def values(self) -> dict[str, Any]:
        """The fields the form has a widget for, as config values."""
        out = {name: _read(widget) for name, widget in self._widgets.items()}
        out["teacher"] = self.teacher_path()
        return out

    def set_values(self, values: dict[str, Any]) -> None:
        """Show these config values; a field without a widget is kept for `config()`."""
        for name, value in values.items():
            if name == "teacher":
                self.set_teacher(str(value))
            elif name == "device":
                self.set_device(str(value))
            elif name in self._widgets:
                _show(self._widgets[name], value)
            elif name in FIELD_NAMES and name != "classes":  # classes: the Data pane's switch decides
                self._kept[name] = value
        self._method_changed()
        self._show_kept()

    def kept_values(self) -> dict[str, Any]:
        """Fields without a widget that were filled in (from a preset or remembered settings)."""
        return dict(self._kept)

    def reset_kept(self) -> None:
        self._kept.clear()
        self._show_kept()

    def config(self, **extra: Any) -> TrainConfig:
        """The TrainConfig this form describes: defaults, then the kept fields, then the widgets,
        then `extra` (the Data pane's fields)."""
        return TrainConfig().replace(**{**self._kept, **self.values(), **extra})

    def _show_kept(self) -> None:
        defaults = TrainConfig().to_dict()
        changed = {k: v for k, v in self._kept.items() if v != defaults.get(k)}
        self.kept_label.setText("Also set by a preset (no control here): " + ", ".join(
            f"{k} = {v}" for k, v in sorted(changed.items())))
        self.kept_box.setVisible(bool(changed))

    # --- device and teacher lists -----------------------------------------------------------------
    def device(self) -> str:
        """The chosen device id, or "auto" ("cuda" for all GPUs: each process of the run its own)."""
        return self._widgets["device"].currentData() or AUTO

    def gpu_processes(self) -> int:
        """How many processes train a run started with this choice: all GPUs (torchrun), else 1 (this app)."""
        return self.gpu_count() if self.device() == ALL_GPUS and self.gpu_count() > 1 else 1

    def gpu_count(self) -> int:
        """The GPUs of this machine (the CUDA devices in the list)."""
        return getattr(self, "_gpu_count", 0)

    def set_device(self, device: str) -> None:
        """Choose a device by id; one not found on this machine is listed as such."""
        box: QComboBox = self._widgets["device"]
        index = box.findData(device)
        if index < 0:
            box.addItem(f"{device} (not found here)", device)
            index = box.count() - 1
        box.setCurrentIndex(index)

    def set_devices(self, devices: list) -> None:
        box: QComboBox = self._widgets["device"]
        current = box.currentData() or AUTO
        box.blockSignals(True)
        box.clear()
        box.addItem("Auto (best available)" if devices else "Auto (detecting devices…)", AUTO)
        for d in devices:
            box.addItem(d.label if hasattr(d, "label") else d.name, d.id)
            box.setItemData(box.count() - 1, f"{d.id}: {d.name}", Qt.ItemDataRole.ToolTipRole)
        self._gpu_count = sum(1 for d in devices if str(d.id).startswith("cuda:"))
        if self._gpu_count > 1:  # one run on every GPU: torchrun starts a process per GPU (README, several GPUs)
            box.addItem(f"All {self._gpu_count} GPUs (one process each)", ALL_GPUS)
            box.setItemData(box.count() - 1, "torchrun trains the run on every GPU; the batch size is the whole "
                            "step's, split across them", Qt.ItemDataRole.ToolTipRole)
        index = box.findData(current)
        box.setCurrentIndex(max(index, 0))
        box.blockSignals(False)
        if self.device() != current:
            self.device_changed.emit(self.device())

    def device_ids(self) -> list[str]:
        box: QComboBox = self._widgets["device"]
        return [box.itemData(i) for i in range(box.count())]

    def set_teachers(self, runs: list) -> None:
        """`runs`: RunInfo of the workspace; the finished-enough `flow` runs become choices."""
        box: QComboBox = self._widgets["teacher"]
        current = self.teacher_path()
        box.blockSignals(True)
        box.clear()
        for r in runs:
            if r.method == "flow" and getattr(r, "has_checkpoint", True) and not getattr(r, "error", None):
                box.addItem(f"{r.name}  (step {r.step:,})", str(r.path))
        self.set_teacher(current)
        box.blockSignals(False)

    def set_teacher(self, path: str) -> None:
        box: QComboBox = self._widgets["teacher"]
        index = box.findData(path) if path else -1
        if index >= 0:
            box.setCurrentIndex(index)
        elif path:
            box.setEditText(path)
        elif box.count():
            box.setCurrentIndex(0)

    def teacher_path(self) -> str:
        box: QComboBox = self._widgets["teacher"]
        index = box.findText(box.currentText())
        if index >= 0 and box.itemData(index):
            return str(box.itemData(index))
        return box.currentText().strip()
