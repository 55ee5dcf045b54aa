"""The Train pane's settings form: one widget per TrainConfig field, read and written as
a dict, so presets, remembered settings and runs all use the same TrainConfig TOML."""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout,
                               QSpinBox, QVBoxLayout, QWidget)

from cmcore.config import (CURRICULA, DISTANCES, K_SAMPLINGS, LR_FROM_SCRATCH, LR_FROM_TEACHER, METHODS, MODELS,
                           PARAMETRIZATIONS, PRECISIONS, SPACINGS, WEIGHTINGS, TrainConfig)

from ..icons import icon_button
from ..widgets.inputs import Collapsible, SciSpinBox

METHOD_LABELS = {"ct": "CT — consistency training", "cd": "CD — distil a flow teacher",
                 "flow": "Flow — train a teacher (for CD)"}
MODEL_LABELS = {"tiny": "Tiny (≈3 M params, CPU)", "small": "Small (≈7 M)", "base": "Base (≈23 M, GPU)"}
PARAM_LABELS = {"auto": "auto (best measured per method)", "reflow": "reflow: f = x − t·v",
                "blend": "blend: f = (1−t)·x + t·F", "edm": "EDM c_skip / c_out"}
DISTANCE_LABELS = {"auto": "auto (L1 + fine detail for CD, pseudo-Huber for CT)", "pseudo_huber": "pseudo-Huber", "l2": "L2", "l1": "L1",
                   "l1_fine": "L1 + fine detail"}
PRECISION_LABELS = {"fp32": "fp32 (exact)", "bf16": "bf16 (CUDA)", "fp16": "fp16 (CUDA)"}
AUTO_DEVICE = "auto"


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


class TrainForm(QWidget):
    method_changed = Signal(str)
    browse_teacher = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        w: dict[str, QWidget] = {}
        w["method"] = _combo(METHODS, METHOD_LABELS)
        w["teacher"] = QComboBox()
        w["teacher"].setEditable(True)
        w["teacher"].lineEdit().setPlaceholderText("a finished flow run")
        w["model"] = _combo(MODELS, MODEL_LABELS)
        w["resolution"] = _int(16, 256, 8, " px")
        w["batch_size"] = _int(1, 4096, 8)
        w["lr"] = SciSpinBox(0.0, 1e30)
        w["lr"].setSpecialValueText("auto")  # 0: the engine's measured default for the method
        w["max_steps"] = _int(1, 100_000_000, 100)
        w["max_minutes"] = _float(0, 100_000, 1, 5, " min")
        w["max_minutes"].setSpecialValueText("no limit")
        w["device"] = QComboBox()
        w["precision"] = _combo(PRECISIONS, PRECISION_LABELS)
        w["seed"] = _int(0, 2**31 - 1)
        # advanced
        w["parametrization"] = _combo(PARAMETRIZATIONS, PARAM_LABELS)
        w["curriculum"] = _combo(CURRICULA)
        w["s0"] = _int(1, 100_000)
        w["s1"] = _int(1, 100_000)
        w["target_ema"] = _float(0, 0.99999, 5, 0.001)
        w["ema_eval"] = _float(0, 0.99999, 5, 0.0005)
        w["distance"] = _combo(DISTANCES, DISTANCE_LABELS)
        w["weighting"] = _combo(WEIGHTINGS)
        w["spacing"] = _combo(SPACINGS)
        w["k_sampling"] = _combo(K_SAMPLINGS)
        w["warmup_steps"] = _int(0, 1_000_000, 50)
        w["grad_clip"] = _float(0, 1000, 2, 0.5)
        w["adam_beta2"] = _float(0, 0.99999, 5, 0.001)
        w["adam_beta2"].setSpecialValueText("auto")  # 0: 0.99 for CT/CD, 0.999 for a flow teacher
        w["spike_factor"] = _float(0, 100, 1, 0.5)
        w["spike_factor"].setSpecialValueText("off")
        w["log_every"] = _int(1, 100_000)
        w["preview_every"] = _int(0, 10_000_000, 50)
        w["checkpoint_every"] = _int(0, 10_000_000, 100)
        self.widgets = w
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
            "parametrization": "How the network's output becomes f(x, t); all keep f(x, 0) = x exactly",
            "curriculum": "How the number of discretisation steps n grows during training",
            "s0": "Initial number of steps n", "s1": "Final number of steps n",
            "target_ema": "EMA of the target network (0 = stop-gradient copy, as in iCT/ECT)",
            "ema_eval": "EMA of the weights used for previews and sampling",
            "distance": "Distance between student and target outputs",
            "weighting": "Loss weight per noise level", "spacing": "Placement of the n noise levels",
            "k_sampling": "How the noise level of each example is drawn",
            "preview_every": "Steps between preview grids (0 = only at the end)",
            "adam_beta2": "Optimizer second-moment rate. auto: 0.99 for CT/CD (long runs recover from loss spikes with it), 0.999 for a flow teacher",
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
        f.addRow("Resolution", w["resolution"])
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
        for name, label in (("parametrization", "Parametrization"), ("curriculum", "Curriculum"), ("s0", "s0 (start n)"), ("s1", "s1 (final n)"),
                            ("target_ema", "Target EMA"), ("ema_eval", "Eval EMA"), ("distance", "Distance"),
                            ("weighting", "Weighting"), ("spacing", "Spacing"), ("k_sampling", "k sampling"),
                            ("warmup_steps", "LR warm-up steps"), ("grad_clip", "Gradient clip"),
                            ("adam_beta2", "Adam β2"), ("spike_factor", "Spike guard ×"),
                            ("log_every", "Log every"), ("preview_every", "Preview every"),
                            ("checkpoint_every", "Checkpoint every")):
            f.addRow(label, w[name])
        self.advanced = Collapsible("Advanced (consistency options)", adv_body)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for part in (basics, run, hw, self.advanced):
            layout.addWidget(part)
        layout.addStretch(1)

        w["method"].currentIndexChanged.connect(self._method_changed)
        self.set_values(TrainConfig().to_dict())

    @staticmethod
    def _form(parent: QWidget) -> QFormLayout:
        f = QFormLayout(parent)
        f.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        f.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        return f

    def _method_changed(self) -> None:
        method = self.widgets["method"].currentData()
        self._basics_form.setRowVisible(self.teacher_row, method == "cd")
        self.method_changed.emit(method)

    # --- values ---------------------------------------------------------------------------
    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, widget in self.widgets.items():
            if name == "teacher":
                out[name] = self.teacher_path()
            elif isinstance(widget, QComboBox):
                out[name] = widget.currentData()
            else:
                out[name] = widget.value()
        return out

    def set_values(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            widget = self.widgets.get(name)
            if widget is None:
                continue
            if name == "teacher":
                self.set_teacher(str(value))
            elif isinstance(widget, QComboBox):
                index = widget.findData(value)
                if index < 0 and name == "device":
                    widget.addItem(f"{value} (not found here)", value)
                    index = widget.count() - 1
                if index >= 0:
                    widget.setCurrentIndex(index)
            else:
                widget.setValue(value)
        self._method_changed()

    def config(self, base: TrainConfig, **extra: Any) -> TrainConfig:
        return base.replace(**{**self.values(), **extra})

    # --- device and teacher lists -----------------------------------------------------------------
    def set_devices(self, devices: list) -> None:
        box: QComboBox = self.widgets["device"]
        current = box.currentData() or AUTO_DEVICE
        box.blockSignals(True)
        box.clear()
        box.addItem("Auto (best available)" if devices else "Auto (detecting devices…)", AUTO_DEVICE)
        for d in devices:
            box.addItem(d.label if hasattr(d, "label") else d.name, d.id)
            box.setItemData(box.count() - 1, f"{d.id}: {d.name}", Qt.ItemDataRole.ToolTipRole)
        index = box.findData(current)
        box.setCurrentIndex(max(index, 0))
        box.blockSignals(False)

    def device_ids(self) -> list[str]:
        box: QComboBox = self.widgets["device"]
        return [box.itemData(i) for i in range(box.count())]

    def set_teachers(self, runs: list) -> None:
        """`runs`: RunInfo of the workspace; the finished-enough `flow` runs become choices."""
        box: QComboBox = self.widgets["teacher"]
        current = self.teacher_path()
        box.blockSignals(True)
        box.clear()
        for r in runs:
            if r.method == "flow" and getattr(r, "has_checkpoint", True):
                box.addItem(f"{r.name}  (step {r.step:,})", str(r.path))
        self.set_teacher(current)
        box.blockSignals(False)

    def set_teacher(self, path: str) -> None:
        box: QComboBox = self.widgets["teacher"]
        index = box.findData(path) if path else -1
        if index >= 0:
            box.setCurrentIndex(index)
        elif path:
            box.setEditText(path)
        elif box.count():
            box.setCurrentIndex(0)

    def teacher_path(self) -> str:
        box: QComboBox = self.widgets["teacher"]
        index = box.findText(box.currentText())
        if index >= 0 and box.itemData(index):
            return str(box.itemData(index))
        return box.currentText().strip()
