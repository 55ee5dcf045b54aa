"""Live loss plot: faint raw loss, bias-corrected EMA on top, the held-out score on its own right-hand axis,
vertical marks at curriculum changes and spike-guard rollbacks; lr and curriculum n below.

Data arrives in batches from the training worker and is only appended to numpy buffers;
a 10 Hz timer pushes it to pyqtgraph when something changed, with peak downsampling and
clip-to-view so a million points still redraw quickly. The marks are two items in all (vertical
segments drawn as pairs), whatever their number; only the few "n=…" labels are items of their own.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QCheckBox, QDoubleSpinBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from .. import theme
from .growing import GrowingArray, SmoothedSeries
from .loss_stages import StageNormalised, loss_records, rollback_steps, score_records, stage_changes

REDRAW_MS = 100  # at most ~10 redraws per second

HINTS = {
    True: "Healthy: each stage (the n=… marks) starts at 1 and its loss falls and settles below that; the score "
          "(right axis, lower is better) falls. Red dashed marks: the spike guard rolled the run back.",
    False: "Healthy: the loss steps up when n doubles (the n=… marks) and settles within each stage; the score "
           "(right axis, lower is better) falls. Red dashed marks: the spike guard rolled the run back.",
}


def _array(values: Iterable[float]) -> np.ndarray:
    if isinstance(values, (np.ndarray, list, tuple)):
        return np.asarray(values, dtype=np.float64)
    return np.fromiter(values, dtype=np.float64)


def _column(records: list[dict], key: str, missing: float = np.nan) -> np.ndarray:
    """One field of metrics records as floats; `missing` (NaN: a gap in the curve) where a record lacks a number."""
    values = (r.get(key) for r in records)
    return np.fromiter((v if isinstance(v, (int, float)) else missing for v in values), dtype=np.float64)


def _pairs(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertical segments from the bottom (0) to the top (1) of the marks' view at each x."""
    return np.repeat(xs, 2), np.tile([0.0, 1.0], len(xs))


def _overlay(plot: pg.PlotItem) -> pg.ViewBox:
    """A view box over `plot`'s own, sharing its x axis; it takes no mouse input, so dragging and zooming
    still move the loss."""
    view = pg.ViewBox(enableMenu=False)
    view.setMouseEnabled(False, False)
    view.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
    plot.scene().addItem(view)
    view.setXLink(plot)
    return view


class LossPlot(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.steps = GrowingArray()
        self.loss = SmoothedSeries(beta=0.98)
        self.lr = GrowingArray()
        self.n = GrowingArray()
        self.normalised = StageNormalised(self.loss.beta)
        self.stage_steps: list[float] = []  # where the curriculum's n changed, and to what
        self.stage_ns: list[float] = []
        self.rollback_steps: list[float] = []  # where the spike guard rolled back
        self.scores: dict[int, tuple[float, bool]] = {}  # step -> (score at the fewest sampling steps, best)
        self._labels: list[pg.TextItem] = []
        self._dirty = False
        self.redraw_count = 0

        self.log_box = QCheckBox("Log scale")
        self.log_box.setChecked(True)
        self.log_box.toggled.connect(self._set_log)
        # Per stage is the default: the raw curve rises at every doubling of n, which reads as "getting worse"
        # when it is not; relative to each stage's start, learning shows as a fall below 1 in every stage, and
        # the marks still say where n changed. The raw loss is one click away.
        self.stage_box = QCheckBox("Per stage")
        self.stage_box.setChecked(True)
        self.stage_box.setToolTip("Each curriculum stage's loss divided by its first logged values, so every stage "
                                  "starts at 1 (a consistency loss steps up when n doubles). Off: the raw loss.")
        self.stage_box.toggled.connect(self._set_per_stage)
        self.smoothing = QDoubleSpinBox()
        self.smoothing.setRange(0.5, 0.999)
        self.smoothing.setDecimals(3)
        self.smoothing.setSingleStep(0.01)
        self.smoothing.setValue(self.loss.beta)
        self.smoothing.setToolTip("EMA factor β of the smoothed curve (bias-corrected)")
        self.smoothing.valueChanged.connect(self._set_beta)
        self.readout = QLabel("no data yet")
        self.readout.setObjectName("muted")
        self.hint = QLabel(HINTS[True])
        self.hint.setObjectName("muted")
        self.hint.setWordWrap(True)

        bar = QHBoxLayout()
        bar.addWidget(QLabel("Smoothing"))
        bar.addWidget(self.smoothing)
        bar.addWidget(self.log_box)
        bar.addWidget(self.stage_box)
        bar.addStretch(1)
        bar.addWidget(self.readout)

        self.view = pg.GraphicsLayoutWidget()
        self.view.setMinimumHeight(220)
        self.loss_plot = self.view.addPlot(row=0, col=0)
        self.sched_plot = self.view.addPlot(row=1, col=0)
        self.view.ci.layout.setRowStretchFactor(0, 3)
        self.view.ci.layout.setRowStretchFactor(1, 1)
        self.sched_plot.setXLink(self.loss_plot)
        self.sched_plot.setLabel("left", "lr")
        self.sched_plot.setLabel("bottom", "step")
        self.legend = self.loss_plot.addLegend(offset=(-10, 10))

        # the marks (fixed 0..1 tall), then the score with its own right-hand axis, over the loss
        self.marks_view = _overlay(self.loss_plot)
        self.marks_view.setRange(yRange=(0, 1), padding=0)
        self.marks_view.enableAutoRange(y=False)
        self.score_view = _overlay(self.loss_plot)
        self.loss_plot.showAxis("right")
        self.loss_plot.getAxis("right").linkToView(self.score_view)
        self.loss_plot.getAxis("right").setLabel("score")
        # curriculum n shares the x axis but has its own right-hand axis
        self.n_view = pg.ViewBox()
        self.sched_plot.showAxis("right")
        self.sched_plot.scene().addItem(self.n_view)
        self.sched_plot.getAxis("right").linkToView(self.n_view)
        self.sched_plot.getAxis("right").setLabel("n")
        self.n_view.setXLink(self.sched_plot)
        self.loss_plot.vb.sigResized.connect(self._sync_views)
        self.sched_plot.vb.sigResized.connect(self._sync_views)

        colors = theme.plot_colors()
        self.raw_curve = self._curve(self.loss_plot, colors["raw"], 1, "loss")
        self.ema_curve = self._curve(self.loss_plot, colors["ema"], 2, "smoothed")
        self.lr_curve = self._curve(self.sched_plot, colors["lr"], 1.5, None)
        self.n_curve = pg.PlotDataItem(pen=pg.mkPen(colors["n"], width=1.5), skipFiniteCheck=True)
        self.n_curve.setDownsampling(auto=True, method="peak")
        self.n_curve.setClipToView(True)
        self.n_view.addItem(self.n_curve)
        self.stage_marks = pg.PlotDataItem(connect="pairs", skipFiniteCheck=True)
        self.rollback_marks = pg.PlotDataItem(connect="pairs", skipFiniteCheck=True)
        self.score_curve = pg.PlotDataItem(symbol="o", symbolSize=7)
        self.best_point = pg.ScatterPlotItem(symbol="star", size=16)
        for item in (self.stage_marks, self.rollback_marks):
            self.marks_view.addItem(item)
        for item in (self.score_curve, self.best_point):
            self.score_view.addItem(item)
        self.legend.addItem(self.score_curve, "score (right)")
        self.legend.addItem(self.best_point, "best")
        for p in (self.loss_plot, self.sched_plot):
            p.showGrid(x=True, y=True, alpha=colors["grid"] / 255)
            p.getAxis("bottom").setStyle(maxTickLevel=1)  # fewer grid lines: calmer
        self.sched_plot.getAxis("left").setStyle(maxTickLevel=1)
        self._set_log(True)
        self._set_per_stage(True)
        self.apply_theme()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.hint)

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

    def _sync_views(self) -> None:
        for view, plot in ((self.marks_view, self.loss_plot), (self.score_view, self.loss_plot),
                           (self.n_view, self.sched_plot)):
            view.setGeometry(plot.vb.sceneBoundingRect())
            view.linkedViewChanged(plot.vb, view.XAxis)

    # --- data -----------------------------------------------------------------------------
    @property
    def num_points(self) -> int:
        return len(self.steps)

    @property
    def per_stage(self) -> bool:
        return self.stage_box.isChecked()

    def append(self, steps: Iterable[float], losses: Iterable[float], lrs: Iterable[float],
               ns: Iterable[float]) -> None:
        before = len(self.n)
        self.steps.extend(_array(steps))
        self.loss.extend(_array(losses))
        self.lr.extend(_array(lrs))
        self.n.extend(_array(ns))
        # curriculum changes among the new points (and between the last old point and the first new one)
        start = max(0, before - 1)
        at, to = stage_changes(self.steps.view()[start:], self.n.view()[start:])
        self.stage_steps.extend(at.tolist())
        self.stage_ns.extend(to.tolist())
        self._dirty = True

    def append_events(self, events: list) -> None:
        """Progress events (cmcore.events.Progress) from the training worker."""
        self.append([e.step for e in events], [e.loss for e in events], [e.lr for e in events],
                    [e.n for e in events])

    def add_rollback(self, step: float) -> None:
        """A spike-guard rollback at `step` (a live cmcore.events.RolledBack)."""
        self.rollback_steps.append(float(step))
        self._dirty = True

    def add_score(self, event) -> None:
        """A checkpoint's score (cmcore.events.Scored); the score at the fewest sampling steps is plotted."""
        if event.scores:
            self._set_score(int(event.step), {int(k): float(v) for k, v in event.scores.items()}, bool(event.best))

    def _set_score(self, step: int, scores: dict[int, float], best: bool) -> None:
        if best:  # the engine names one best checkpoint: a newer best replaces the mark
            self.scores = {s: (v, False) for s, (v, _) in self.scores.items()}
        self.scores[step] = (scores[min(scores)], best)
        self._dirty = True

    def set_history(self, records: list[dict]) -> None:
        """The curve so far of a resumed run: its metrics.jsonl records (cmcore.rundir.read_metrics); score
        records (no "loss") become score points, a growing "rollbacks" count becomes a rollback mark."""
        self.clear()
        losses = loss_records(records)
        self.append(*(_column(losses, key) for key in ("step", "loss", "lr", "n")))
        self.rollback_steps = rollback_steps(_column(losses, "step"), _column(losses, "rollbacks", 0.0)).tolist()
        for step, scores, best in score_records(records):
            self._set_score(step, scores, best)

    def clear(self) -> None:
        for buf in (self.steps, self.loss, self.lr, self.n):
            buf.clear()
        self.normalised.reset()
        self.stage_steps, self.stage_ns, self.rollback_steps, self.scores = [], [], [], {}
        self._dirty = True

    # --- drawing ---------------------------------------------------------------------------
    def loss_shown(self) -> tuple[np.ndarray, np.ndarray]:
        """(raw, smoothed) as drawn: per stage (each stage ÷ its start) or the raw loss."""
        if not self.per_stage:
            return self.loss.raw.view(), self.loss.smooth.view()
        self.normalised.update(self.loss.raw.view(), self.n.view())
        return self.normalised.raw.view(), self.normalised.smooth.view()

    def best_score(self) -> tuple[int, float] | None:
        """(step, score) of the best checkpoint: the one the engine marked last, else the lowest score."""
        if not self.scores:
            return None
        marked = [s for s, (_, best) in self.scores.items() if best]
        step = marked[-1] if marked else min(self.scores, key=lambda s: self.scores[s][0])
        return step, self.scores[step][0]

    def redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        self.redraw_count += 1
        x = self.steps.view()
        raw, smooth = self.loss_shown()
        self.raw_curve.setData(x, raw)
        self.ema_curve.setData(x, smooth)
        self.lr_curve.setData(x, self.lr.view())
        self.n_curve.setData(x, self.n.view())
        self.stage_marks.setData(*_pairs(np.asarray(self.stage_steps, dtype=np.float64)))
        self.rollback_marks.setData(*_pairs(np.asarray(self.rollback_steps, dtype=np.float64)))
        self._draw_scores()
        self._draw_labels()
        self._update_readout(x, raw, smooth)

    def _draw_scores(self) -> None:
        steps = sorted(self.scores)
        self.score_curve.setData(np.asarray(steps, dtype=np.float64),
                                 np.asarray([self.scores[s][0] for s in steps], dtype=np.float64))
        best = self.best_score()
        self.best_point.setData([best[0]] if best else [], [best[1]] if best else [])

    def _draw_labels(self) -> None:
        """One "n=…" label per curriculum change: made only for new changes, dropped on clear."""
        while len(self._labels) > len(self.stage_steps):
            self.marks_view.removeItem(self._labels.pop())
        color = theme.plot_colors()["n"]
        for step, n in list(zip(self.stage_steps, self.stage_ns))[len(self._labels):]:
            label = pg.TextItem(f"n={n:.0f}", color=color, anchor=(0, 0))
            label.setPos(step, 1.0)
            self.marks_view.addItem(label)
            self._labels.append(label)

    def _update_readout(self, x: np.ndarray, raw: np.ndarray, smooth: np.ndarray) -> None:
        if not len(x):
            self.readout.setText("no data yet")
            return
        what = "loss ÷ stage start" if self.per_stage else "loss"
        text = (f"step {int(x[-1]):,}   {what} {raw[-1]:.4g}   smoothed {smooth[-1]:.4g}   "
                f"lr {self.lr.view()[-1]:.2g}   n {self.n.view()[-1]:.0f}")
        best = self.best_score()
        if best is not None:
            text += f"   best score {best[1]:.3g} @ {best[0]:,}"
        self.readout.setText(text)

    def _set_log(self, on: bool) -> None:
        self.loss_plot.setLogMode(y=on)
        self.loss_plot.getAxis("right").setLogMode(False, False)  # the score's own axis stays linear
        self._dirty = True

    def _set_per_stage(self, on: bool) -> None:
        self.loss_plot.setLabel("left", "loss ÷ stage start" if on else "loss")
        self.hint.setText(HINTS[bool(on)])
        self._dirty = True

    def _set_beta(self, beta: float) -> None:
        self.loss.set_beta(float(beta))
        self.normalised.reset(float(beta))
        self._dirty = True

    def apply_theme(self) -> None:
        colors = theme.plot_colors()
        self.view.setBackground(colors["background"])
        backdrop = QColor(colors["background"])
        backdrop.setAlpha(210)  # the legend stays readable over the curves
        self.legend.setBrush(pg.mkBrush(backdrop))
        self.legend.setLabelTextColor(colors["foreground"])
        for curve, key, width in ((self.raw_curve, "raw", 1), (self.ema_curve, "ema", 2),
                                  (self.lr_curve, "lr", 1.5), (self.n_curve, "n", 1.5)):
            curve.setPen(pg.mkPen(colors[key], width=width))
        dark = theme.is_dark()
        score, best, spike = (QColor("#38bdf8"), QColor("#facc15"), QColor("#f87171")) if dark else \
            (QColor("#0369a1"), QColor("#ca8a04"), QColor("#dc2626"))
        stage = QColor(colors["n"])
        stage.setAlpha(150)
        self.stage_marks.setPen(pg.mkPen(stage, width=1))
        self.rollback_marks.setPen(pg.mkPen(spike, width=1.5, style=Qt.PenStyle.DashLine))
        self.score_curve.setPen(pg.mkPen(score, width=1.5))
        self.score_curve.setSymbolBrush(score)
        self.score_curve.setSymbolPen(score)
        self.best_point.setBrush(best)
        self.best_point.setPen(pg.mkPen(best.darker(150)))
        for label in self._labels:
            label.setColor(colors["n"])
        for p in (self.loss_plot, self.sched_plot):
            for side in ("left", "bottom", "right"):
                axis = p.getAxis(side)
                axis.setPen(colors["foreground"])
                axis.setTextPen(colors["foreground"])

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt API
        if event.key() == Qt.Key.Key_A:  # "A" = auto-range, as in pyqtgraph's own menu
            self.loss_plot.enableAutoRange()
            self.sched_plot.enableAutoRange()
            self.score_view.enableAutoRange(y=True)
        super().keyPressEvent(event)
