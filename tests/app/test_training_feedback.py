"""Issue 23 in the app: a loss plot that does not mislead (the held-out score on its own axis, marks at
curriculum changes and rollbacks, a per-stage view), the score in the Runs list, and the end of a training
run made visible (status bar, QApplication.alert, a tray message, the gallery switching to the run)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QApplication, QSystemTrayIcon

from cmcore import events, rundir
from cmcore.runs import RunInfo

from app import workers
from app.panes import runs_pane as runs_pane_module
from app.panes.runs_pane import RunsPane
from app.panes.runs_table import COLUMNS
from app.widgets.loss_plot import LossPlot
from app.widgets.loss_stages import REFERENCE_POINTS

from .helpers import click, configure, wait_for_data, wait_idle

SCORE = COLUMNS.index("Score")


def metrics_file(tmp_path: Path) -> Path:
    """30 logged steps in three curriculum stages (n = 2, 4, 8), spike-guard rollbacks counted at steps 15 and
    25, and three score records (no "loss") as cmcore.evaluation writes them."""
    lines = []
    for step in range(1, 31):
        n = 2 if step <= 10 else 4 if step <= 20 else 8
        record = {"step": step, "loss": float(n) * (1.0 - 0.01 * step), "lr": 1e-3, "n": n, "images_per_s": 100.0,
                  "wall": step * 0.1}
        if step >= 15:
            record["rollbacks"] = 1 if step < 25 else 2
        lines.append(record)
        if step % 10 == 0:
            score = {10: 12.3, 20: 9.0, 30: 9.5}[step]
            lines.append({"step": step, "score": {"1": score, "2": score - 1}, "gap": 0.004, "best": step != 30})
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def pair_xs(item) -> list[float]:
    """The x of each vertical mark (a segment drawn as a pair of points)."""
    return [] if item.xData is None else item.xData[::2].tolist()


def test_the_plot_marks_curriculum_changes_rollbacks_and_scores_from_a_metrics_file(qtbot, tmp_path):
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.set_history(rundir.read_metrics(metrics_file(tmp_path)))
    plot.redraw()
    # score records are not loss points: 30 points, none of them a NaN that would poison the smoothed curve
    assert plot.num_points == 30 and np.isfinite(plot.loss.smooth.view()).all()
    assert pair_xs(plot.stage_marks) == [11.0, 21.0]
    assert [label.toPlainText() for label in plot._labels] == ["n=4", "n=8"]
    assert pair_xs(plot.rollback_marks) == [15.0, 25.0]
    x, y = plot.score_curve.xData, plot.score_curve.yData
    assert x.tolist() == [10, 20, 30] and y.tolist() == [12.3, 9.0, 9.5]  # the 1-step score, on the right axis
    assert plot.score_curve.getViewBox() is plot.score_view
    assert plot.log_box.isChecked() and not plot.loss_plot.getAxis("right").logMode  # the score axis is linear
    best = plot.best_point.getData()
    assert best[0].tolist() == [20] and best[1].tolist() == [9.0]
    assert "best score 9 @ 20" in plot.readout.text()

    # a live rollback and a live curriculum change add marks; clearing drops them and their labels
    plot.add_rollback(31)
    plot.append([31, 32], [20.0, 19.0], [1e-3, 1e-3], [8, 16])
    plot.redraw()
    assert pair_xs(plot.rollback_marks) == [15.0, 25.0, 31.0] and pair_xs(plot.stage_marks) == [11.0, 21.0, 32.0]
    assert plot._labels[-1].toPlainText() == "n=16"
    plot.clear()
    plot.redraw()
    assert pair_xs(plot.stage_marks) == [] and plot._labels == [] and plot.best_point.getData()[0].tolist() == []


def test_the_per_stage_view_starts_every_stage_at_1_and_the_raw_view_is_one_click_away(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    assert plot.stage_box.isChecked()  # the default view
    rng = np.random.default_rng(0)
    ns = np.repeat([2, 4, 8], [40, 40, 40])
    level = {2: 1.0, 4: 3.0, 8: 7.0}  # a consistency loss steps up when n doubles
    losses = np.array([level[n] for n in ns]) * np.exp(-0.01 * np.tile(np.arange(40), 3)) * rng.uniform(0.95, 1.05, 120)
    steps = np.arange(1, 121)
    for chunk in np.array_split(np.arange(120), [1, 3, 41, 44, 90]):  # live batches, cut across stage changes
        plot.append(steps[chunk], losses[chunk], np.full(len(chunk), 1e-3), ns[chunk])
        plot.redraw()
    y = plot.raw_curve.yData  # the data given, not its log-scale display
    for start in (0, 40, 80):  # each stage ÷ the median of its first values: its start is 1
        assert np.median(y[start:start + REFERENCE_POINTS]) == pytest.approx(1.0)
        assert y[start + 39] < 0.8  # and the learning shows as a fall below 1 in every stage
        assert plot.ema_curve.yData[start] == pytest.approx(y[start])  # the smoothing restarts per stage
    assert plot.loss_plot.getAxis("left").labelText == "loss ÷ stage start"
    assert "starts at 1" in plot.hint.text()

    plot.stage_box.setChecked(False)
    plot.redraw()
    np.testing.assert_allclose(plot.raw_curve.yData, losses)
    assert plot.loss_plot.getAxis("left").labelText == "loss" and "steps up when n doubles" in plot.hint.text()


def test_scored_events_add_score_points_and_the_best_follows_the_engine(qtbot, tmp_path):
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.add_score(events.Scored(100, {1: 5.0, 2: 4.0}, 0.01, True))
    plot.add_score(events.Scored(200, {1: 6.0, 2: 3.0}, 0.02, False))
    plot.redraw()
    x, y = plot.score_curve.xData, plot.score_curve.yData
    assert x.tolist() == [100, 200] and y.tolist() == [5.0, 6.0]
    assert plot.best_point.getData()[0].tolist() == [100]
    plot.add_score(events.Scored(300, {1: 4.5}, None, True))
    plot.redraw()
    assert plot.best_point.getData()[0].tolist() == [300] and plot.score_curve.xData.tolist() == [100, 200, 300]

    # the training worker forwards the engine's Scored event as its `scored` signal
    worker = workers.TrainingWorker(None, tmp_path / "run")
    event = events.Scored(10, {1: 7.0}, None, True)
    with qtbot.waitSignal(worker.scored) as got:
        worker._on_event(event)
    assert got.args == [event]


def run_info(tmp_path: Path, name: str, score: float | None, best_step: int | None = None) -> RunInfo:
    return RunInfo(tmp_path / name, name, "ct", 1000, 1000, 0.05, 1.0e9, True, score=score, best_step=best_step)


def test_the_runs_list_sorts_the_score_as_a_number_with_blanks_last(qtbot, tmp_path, monkeypatch):
    runs = [run_info(tmp_path, "a", 9.5, 500), run_info(tmp_path, "b", None), run_info(tmp_path, "c", 100.0, 900),
            run_info(tmp_path, "d", 10.2345, 700)]
    monkeypatch.setattr(runs_pane_module, "_list_runs", lambda workspace: runs)
    rp = RunsPane(tmp_path)
    qtbot.addWidget(rp)
    with qtbot.waitSignal(rp.runs_listed, timeout=10_000):
        rp.refresh()

    def column(c: int) -> list[str]:
        return [rp.table.item(i, c).text() for i in range(rp.table.rowCount())]

    header = rp.table.horizontalHeader()
    expected = {Qt.SortOrder.AscendingOrder: ["9.5", "10.2", "100", ""],  # as numbers ("100" after "10.2")
                Qt.SortOrder.DescendingOrder: ["100", "10.2", "9.5", ""]}  # the run without a score last either way
    orders = set()
    for _ in range(2):  # a person clicks the column's header, then again for the other order
        qtbot.mouseClick(header.viewport(), Qt.MouseButton.LeftButton,
                         pos=QPoint(header.sectionViewportPosition(SCORE) + 5, header.height() // 2))
        assert header.sortIndicatorSection() == SCORE
        assert column(SCORE) == expected[header.sortIndicatorOrder()]
        orders.add(header.sortIndicatorOrder())
    assert len(orders) == 2
    rp.table.sortByColumn(SCORE, Qt.SortOrder.DescendingOrder)
    assert column(0) == ["c", "d", "a", "b"]

    rp.select_path(tmp_path / "a")
    assert "score 9.5 at step 500" in rp.details.text() and "lower is better" in rp.details.text()
    rp.select_path(tmp_path / "b")
    assert "no score yet" in rp.details.text()
    assert "at step 900" in rp.table.item(0, SCORE).toolTip()


@pytest.fixture
def announced(monkeypatch):
    """QApplication.alert and the tray's messages, recorded (a tray is made available for the test)."""
    calls = {"alert": [], "tray": []}
    monkeypatch.setattr(QApplication, "alert", lambda widget, msec=0: calls["alert"].append(widget))
    monkeypatch.setattr(QSystemTrayIcon, "isSystemTrayAvailable", lambda: True)
    monkeypatch.setattr(QSystemTrayIcon, "showMessage",
                        lambda self, title, text, *rest: calls["tray"].append((title, text)))
    return calls


def test_the_end_of_a_run_is_announced_and_the_gallery_switches_to_it(qtbot, make_window, announced, monkeypatch):
    window = make_window()
    wait_for_data(qtbot, window)
    tp = window.train_pane
    opened = []
    monkeypatch.setattr(window.gallery_pane, "open_source", lambda path: opened.append(str(path)))
    configure(window, max_steps=10, preview_every=0)
    click(qtbot, tp.start_button)
    qtbot.waitUntil(lambda: tp.step >= 1, timeout=60_000)
    # a checkpoint scored while it trains (as cmcore.evaluation reports it): a point on the plot
    tp.worker.scored.emit(events.Scored(1, {1: 7.25, 2: 6.5}, 0.001, True))
    assert 1 in tp.plot.scores
    wait_idle(qtbot, window)

    name = Path(tp.run_dir).name
    message = window.statusBar().currentMessage()
    assert message.startswith(f"Training {name} finished at step 10")
    score = tp.last_score  # ours, or the engine's own score at the end of the run
    assert f"score {score.scores[min(score.scores)]:.3g} (1 step" in message
    assert announced["alert"] == [window]
    assert announced["tray"] == [("Training finished", message)]
    assert opened == [str(tp.run_dir)]  # a checkpoint exists: the gallery shows what the model makes now
    assert window.train_status.text().startswith("Idle · last run finished · score")


def test_a_stopped_run_is_announced_and_the_gallery_shows_its_checkpoint(qtbot, make_window, announced, monkeypatch):
    window = make_window()
    wait_for_data(qtbot, window)
    tp = window.train_pane
    opened = []
    monkeypatch.setattr(window.gallery_pane, "open_source", lambda path: opened.append(str(path)))
    configure(window, max_steps=100_000, preview_every=0)
    click(qtbot, tp.start_button)
    qtbot.waitUntil(lambda: tp.step >= 2, timeout=60_000)
    click(qtbot, tp.stop_button)
    wait_idle(qtbot, window)
    message = window.statusBar().currentMessage()
    assert message.startswith(f"Training {Path(tp.run_dir).name} stopped at step ")
    assert announced["alert"] == [window] and announced["tray"] == [("Training stopped", message)]
    assert opened == [str(tp.run_dir)]


def test_a_failed_run_is_announced_and_the_gallery_stays(qtbot, make_window, announced, dialog_log, monkeypatch):
    window = make_window()
    wait_for_data(qtbot, window)
    opened = []
    monkeypatch.setattr(window.gallery_pane, "open_source", lambda path: opened.append(str(path)))
    configure(window, lr=1e30, max_steps=50, warmup_steps=0, preview_every=0)  # the loss turns NaN: it fails
    click(qtbot, window.train_pane.start_button)
    wait_idle(qtbot, window)
    assert [e.kind for e in dialog_log.errors] == ["TrainingError"]
    message = window.statusBar().currentMessage()
    assert message.startswith(f"Training {Path(window.train_pane.run_dir).name} failed: ")
    assert announced["alert"] == [window] and announced["tray"] == [("Training failed", message)]
    assert opened == []
