"""The Data pane's parts on their own: the report view (loaded, failed, click to enlarge) and the
cache controls (nothing touches the engine before it is ready; the limit is kept; Clear reports)."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from app import settings
from app.panes.data_cache_controls import CacheControls, size_text
from app.panes.data_report_view import DataReportView
from app.widgets.image_dialog import ImageDialog


def _demo():
    from cmcore.data import load_dataset

    return load_dataset("demo", 16)


def test_report_view_shows_a_dataset_then_a_failure(qtbot):
    view = DataReportView()
    qtbot.addWidget(view)
    view.show()
    dataset = _demo()
    thumbs = [dataset.images[i].permute(1, 2, 0).numpy() for i in range(4)]
    view.show_loaded(dataset, thumbs, "Demo data")
    report = dataset.report
    assert view.summary.text().startswith(f"{report.num_images:,} images · 16×16 · ")
    assert view.detail.text().startswith("Demo data — ") and view.thumbs.count() == 4
    assert view.skipped.isHidden()  # nothing skipped: no empty list on screen

    view.thumbs.tile_clicked.emit(2)  # as a click on the third tile does
    dialogs = [w for w in QApplication.topLevelWidgets() if isinstance(w, ImageDialog) and w.isVisible()]
    assert dialogs and "Training image 3" in dialogs[-1].windowTitle()
    for d in dialogs:
        d.close()

    view.show_failed("No image files found in /nowhere")
    assert view.summary.text() == "No usable images" and view.detail.text() == "No image files found in /nowhere"
    assert view.thumbs.count() == 0 and view.dataset is None
    view.thumbs.tile_clicked.emit(0)  # a stale click after a failure opens nothing
    assert not [w for w in QApplication.topLevelWidgets() if isinstance(w, ImageDialog) and w.isVisible()]


def test_cache_controls_wait_for_the_engine_then_apply_the_limit_and_clear(qtbot, image_folder):
    import cmcore.data as data

    data.load_dataset(str(image_folder), 8)  # one cache entry (this test's own cache folder)
    held = data.cache_size()
    assert held > 0

    settings.set("data/cache_limit_gb", 1.5)
    controls = CacheControls()
    qtbot.addWidget(controls)
    assert controls.limit.value() == 1.5  # the remembered limit
    before = data.cache_limit()
    controls.limit.setValue(3.0)  # not ready: kept in the settings, not applied to the engine
    assert float(settings.get("data/cache_limit_gb", 0)) == 3.0 and data.cache_limit() == before
    controls.clear()  # not ready: does nothing, says nothing
    assert controls.label.text() == ""
    try:
        controls.set_engine_ready(True)
        assert data.cache_limit() == int(3.0 * 1024**3) and controls.label.text() == f"cache {size_text(held)}"
        with qtbot.waitSignal(controls.cleared, timeout=5_000) as freed:
            qtbot.mouseClick(controls.clear_button, Qt.MouseButton.LeftButton)
        assert freed.args == [held]
        assert controls.label.text() == "cache 0 bytes" and data.cache_size() == 0
    finally:
        data.set_cache_limit(before)


def test_sizes_are_written_for_people():
    assert [size_text(n) for n in (0, 1023, 2048, 5 * 2**20, 3 * 2**30 // 2)] == [
        "0 bytes", "1023 bytes", "2.0 KB", "5.0 MB", "1.5 GB"]
