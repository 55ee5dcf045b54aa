"""The reusable widgets: loss plot (EMA, speed with a million points), image views,
the learning-rate spin box, and the latest-only background runner."""
from __future__ import annotations

import time

import numpy as np
import pytest
from PySide6.QtGui import QImage

from app import workers
from app.widgets.growing import GrowingArray, SmoothedSeries, ema_raw
from app.widgets.images import ImageGrid, to_qimage
from app.widgets.inputs import SciSpinBox
from app.widgets.loss_plot import LossPlot


def reference_ema(x, beta):
    out, e = [], 0.0
    for t, v in enumerate(x, start=1):
        e = beta * e + (1 - beta) * v
        out.append(e / (1 - beta**t))
    return np.array(out)


@pytest.mark.parametrize("beta", [0.5, 0.9, 0.98, 0.999])
def test_bias_corrected_ema_matches_the_definition_across_appends(beta):
    rng = np.random.default_rng(1)
    x = rng.lognormal(size=1000)
    series = SmoothedSeries(beta)
    for chunk in np.array_split(x, [1, 5, 300, 301, 777]):
        series.extend(chunk)
    np.testing.assert_allclose(series.smooth.view(), reference_ema(x, beta), rtol=1e-9)
    assert series.smooth.view()[0] == pytest.approx(x[0])  # bias correction: no start-up dip
    series.set_beta(0.9)
    np.testing.assert_allclose(series.smooth.view(), reference_ema(x, 0.9), rtol=1e-9)


def test_ema_raw_is_stable_over_long_chunks():
    x = np.ones(10_000)
    assert np.all(np.isfinite(ema_raw(x, 0.5))) and ema_raw(x, 0.5)[-1] == pytest.approx(1.0)


def test_growing_array_keeps_values_and_grows():
    a = GrowingArray(capacity=2)
    for i in range(100):
        a.extend([i, i + 0.5])
    assert len(a) == 200 and a.view()[-1] == 99.5 and a.view()[0] == 0


def test_loss_plot_redraws_a_million_points_quickly(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(900, 500)
    plot.show()
    n = 1_000_000
    steps = np.arange(1, n + 1)
    t0 = time.perf_counter()
    plot.append(steps, np.exp(-steps / 2e5) + 0.01 * np.random.default_rng(0).random(n), np.full(n, 1e-3),
                np.minimum(2 + steps // 1000, 64))
    append_s = time.perf_counter() - t0
    plot.redraw()
    plot.grab()  # paint once (pyqtgraph downsamples lazily)
    t0 = time.perf_counter()
    for i in range(5):
        plot.append([n + i + 1], [0.01], [1e-3], [64])
        plot.redraw()
        plot.grab()
    per_frame = (time.perf_counter() - t0) / 5
    assert plot.num_points == n + 5
    assert append_s < 2.0
    assert per_frame < 1.0, f"{per_frame:.2f} s per redraw of 1e6 points"
    # the options that keep it fast
    assert plot.raw_curve.opts["autoDownsample"] and plot.raw_curve.opts["downsampleMethod"] == "peak"
    assert plot.raw_curve.opts["clipToView"] and plot.raw_curve.opts["skipFiniteCheck"]


def test_loss_plot_redraw_is_rate_limited(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    for i in range(200):  # 200 batches arriving at once: drawn at most every 100 ms
        plot.append([i], [1.0], [1e-3], [2])
    before = plot.redraw_count
    qtbot.wait(350)
    assert 1 <= plot.redraw_count - before <= 5
    plot.log_box.setChecked(False)
    assert not plot.loss_plot.getAxis("left").logMode


def test_loss_plot_shows_a_resumed_runs_metrics_records(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.append([99], [5.0], [1e-3], [2])  # replaced: the history is the whole curve so far
    plot.set_history([{"step": 1, "loss": 2.0, "lr": 1e-4, "n": 1, "wall": 0.5},
                      {"step": 2, "loss": 1.5, "n": 2}])  # a line without lr: a gap, not an error
    assert list(plot.steps.view()) == [1, 2] and list(plot.loss.raw.view()) == [2.0, 1.5]
    assert plot.lr.view()[0] == 1e-4 and np.isnan(plot.lr.view()[1])


def test_images_convert_for_gray_and_rgb(qtbot):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4, 1)
    rgb = np.zeros((3, 4, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    q = to_qimage(gray)
    assert (q.width(), q.height(), q.format()) == (4, 3, QImage.Format.Format_Grayscale8)
    assert q.pixelColor(1, 0).red() == 1
    assert to_qimage(rgb).pixelColor(3, 2).red() == 200

    grid = ImageGrid(tile_size=32, checkable=True)
    qtbot.addWidget(grid)
    grid.set_images(np.zeros((6, 8, 8, 3), dtype=np.uint8), [str(i) for i in range(6)])
    grid.set_all_selected(True)
    assert grid.selected_indices() == list(range(6))
    with qtbot.waitSignal(grid.tile_clicked) as blocker:
        grid.tiles[4].clicked.emit(4)
    assert blocker.args == [4]


def test_sci_spin_box_reads_and_steps_decades(qtbot):
    box = SciSpinBox(1e-8, 1e30)
    qtbot.addWidget(box)
    box.setValue(3e-4)
    assert box.text() == "0.0003" and box.value() == pytest.approx(3e-4)
    box.lineEdit().setText("1e30")
    box.interpretText()
    assert box.value() == 1e30
    box.setValue(1e-3)
    box.stepBy(1)
    assert box.value() == pytest.approx(2e-3)


def test_latest_only_coalesces_rapid_requests(qtbot):
    runner = workers.LatestOnly("test jobs")
    ran, results = [], []
    runner.result.connect(results.append)

    def job(i):
        ran.append(i)
        time.sleep(0.05)
        return i

    for i in range(20):  # like a slider dragged across 20 positions
        runner.submit(job, i)
    qtbot.waitUntil(lambda: not runner.busy, timeout=10_000)
    assert ran == [0, 19] and results == [0, 19]
    runner.shutdown()
    runner.submit(job, 99)  # refused once shut down
    assert not runner.busy


def test_every_icon_renders(qtbot):
    from app.icons import app_icon, icon
    from resources import ICONS

    names = [p.stem for p in ICONS.glob("*.svg")]
    assert {"app", "play", "pause", "stop", "folder", "export"} <= set(names)
    for name in names:
        assert not icon(name).pixmap(24, 24).isNull(), name
    assert not app_icon().isNull()
