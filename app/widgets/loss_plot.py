"""Live loss plot: faint raw loss, bias-corrected EMA on top, lr and curriculum n below.

Data arrives in batches from the training worker and is only appended to numpy buffers;
a 10 Hz timer pushes it to pyqtgraph when something changed, with peak downsampling and
clip-to-view so a million points still redraw quickly.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QCheckBox, QDoubleSpinBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from .. import theme
from .growing import GrowingArray, SmoothedSeries

REDRAW_MS = 100  # at most ~10 redraws per second


def _array(values: Iterable[float]) -> np.ndarray:
    if isinstance(values, (np.ndarray, list, tuple)):
        return np.asarray(values, dtype=np.float64)
    return np.fromiter(values, dtype=np.float64)


def _column(records: list[dict], key: str) -> np.ndarray:
    """One field of metrics records as floats; NaN (a gap in the curve) where a record lacks a number."""
    values = (r.get(key) for r in records)
    return np.fromiter((v if isinstance(v, (int, float)) else np.nan for v in values), dtype=np.float64)


class LossPlot(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.steps = GrowingArray()
        self.loss = SmoothedSeries(beta=0.98)
        self.lr = GrowingArray()
        self.n = GrowingArray()
        self._dirty = False
        self.redraw_count = 0

        self.log_box = QCheckBox("Log scale")
        self.log_box.setChecked(True)
        self.log_box.toggled.connect(self._set_log)
        self.smoothing = QDoubleSpinBox()
        self.smoothing.setRange(0.5, 0.999)
        self.smoothing.setDecimals(3)
        self.smoothing.setSingleStep(0.01)
        self.smoothing.setValue(self.loss.beta)
        self.smoothing.setToolTip("EMA factor β of the smoothed curve (bias-corrected)")
        self.smoothing.valueChanged.connect(self._set_beta)
        self.readout = QLabel("no data yet")
        self.readout.setObjectName("muted")

        bar = QHBoxLayout()
        bar.addWidget(QLabel("Smoothing"))
        bar.addWidget(self.smoothing)
        bar.addWidget(self.log_box)
        bar.addStretch(1)
        bar.addWidget(self.readout)

        self.view = pg.GraphicsLayoutWidget()
        self.view.setMinimumHeight(220)
        self.loss_plot = self.view.addPlot(row=0, col=0)
        self.sched_plot = self.view.addPlot(row=1, col=0)
        self.view.ci.layout.setRowStretchFactor(0, 3)
        self.view.ci.layout.setRowStretchFactor(1, 1)
        self.sched_plot.setXLink(self.loss_plot)
        self.loss_plot.setLabel("left", "loss")
        self.sched_plot.setLabel("left", "lr")
        self.sched_plot.setLabel("bottom", "step")
        self.loss_plot.addLegend(offset=(-10, 10))

        # curriculum n shares the x axis but has its own right-hand axis
        self.n_view = pg.ViewBox()
        self.sched_plot.showAxis("right")
        self.sched_plot.scene().addItem(self.n_view)
        self.sched_plot.getAxis("right").linkToView(self.n_view)
        self.sched_plot.getAxis("right").setLabel("n")
        self.n_view.setXLink(self.sched_plot)
        self.sched_plot.vb.sigResized.connect(self._sync_n_view)

        colors = theme.plot_colors()
        self.raw_curve = self._curve(self.loss_plot, colors["raw"], 1, "loss")
        self.ema_curve = self._curve(self.loss_plot, colors["ema"], 2, "smoothed")
        self.lr_curve = self._curve(self.sched_plot, colors["lr"], 1.5, None)
        self.n_curve = pg.PlotDataItem(pen=pg.mkPen(colors["n"], width=1.5), skipFiniteCheck=True)
        self.n_curve.setDownsampling(auto=True, method="peak")
        self.n_curve.setClipToView(True)
        self.n_view.addItem(self.n_curve)
        for p in (self.loss_plot, self.sched_plot):
            p.showGrid(x=True, y=True, alpha=colors["grid"] / 255)
            p.getAxis("bottom").setStyle(maxTickLevel=1)  # fewer grid lines: calmer
        self.sched_plot.getAxis("left").setStyle(maxTickLevel=1)
        self._set_log(True)
        self.apply_theme()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.view, 1)

        self._timer = QTimer(self)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self.redraw)
        self._timer.start()

    @staticmethod
    def _curve(plot: pg.PlotItem, color, width: float, name: str | None) -> pg.PlotDataItem:
        curve = plot.plot(pen=pg.mkPen(color, width=width), name=name, skipFiniteCheck=True)
        curve.setDownsampling(auto=True, method="peak")
        curve.setClipToView(True)
        return curve

    def _sync_n_view(self) -> None:
        self.n_view.setGeometry(self.sched_plot.vb.sceneBoundingRect())
        self.n_view.linkedViewChanged(self.sched_plot.vb, self.n_view.XAxis)

    # --- data -----------------------------------------------------------------------------
    @property
    def num_points(self) -> int:
        return len(self.steps)

    def append(self, steps: Iterable[float], losses: Iterable[float], lrs: Iterable[float],
               ns: Iterable[float]) -> None:
        self.steps.extend(_array(steps))
        self.loss.extend(_array(losses))
        self.lr.extend(_array(lrs))
        self.n.extend(_array(ns))
        self._dirty = True

    def append_events(self, events: list) -> None:
        """Progress events (cmcore.events.Progress) from the training worker."""
        self.append([e.step for e in events], [e.loss for e in events], [e.lr for e in events],
                    [e.n for e in events])

    def set_history(self, records: list[dict]) -> None:
        """The curve so far of a resumed run: its metrics.jsonl records (cmcore.rundir.read_metrics)."""
        self.clear()
        self.append(*(_column(records, key) for key in ("step", "loss", "lr", "n")))

    def clear(self) -> None:
        for buf in (self.steps, self.loss, self.lr, self.n):
            buf.clear()
        self._dirty = True

    # --- drawing ---------------------------------------------------------------------------
    def redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        self.redraw_count += 1
        x = self.steps.view()
        self.raw_curve.setData(x, self.loss.raw.view())
        self.ema_curve.setData(x, self.loss.smooth.view())
        self.lr_curve.setData(x, self.lr.view())
        self.n_curve.setData(x, self.n.view())
        if len(x):
            self.readout.setText(
                f"step {int(x[-1]):,}   loss {self.loss.raw.view()[-1]:.4g}   smoothed "
                f"{self.loss.smooth.view()[-1]:.4g}   lr {self.lr.view()[-1]:.2g}   n {self.n.view()[-1]:.0f}")
        else:
            self.readout.setText("no data yet")

    def _set_log(self, on: bool) -> None:
        self.loss_plot.setLogMode(y=on)
        self._dirty = True

    def _set_beta(self, beta: float) -> None:
        self.loss.set_beta(float(beta))
        self._dirty = True

    def apply_theme(self) -> None:
        colors = theme.plot_colors()
        self.view.setBackground(colors["background"])
        for curve, key, width in ((self.raw_curve, "raw", 1), (self.ema_curve, "ema", 2),
                                  (self.lr_curve, "lr", 1.5), (self.n_curve, "n", 1.5)):
            curve.setPen(pg.mkPen(colors[key], width=width))
        for p in (self.loss_plot, self.sched_plot):
            for side in ("left", "bottom", "right"):
                axis = p.getAxis(side)
                axis.setPen(colors["foreground"])
                axis.setTextPen(colors["foreground"])

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt API
        if event.key() == Qt.Key.Key_A:  # "A" = auto-range, as in pyqtgraph's own menu
            self.loss_plot.enableAutoRange()
            self.sched_plot.enableAutoRange()
        super().keyPressEvent(event)
