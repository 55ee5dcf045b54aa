"""Each pane on its own: devices, presets, remembered settings, data report, drag and
drop, runs (delete, workspace), and the gallery's error path."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QCheckBox

from app import settings
from cmcore import TrainConfig

from .helpers import configure, control, train_run, wait_for_data


def test_device_picker_lists_the_cpu(qtbot, make_window):
    window = make_window()
    ids = window.train_pane.form.device_ids()
    assert ids[0] == "auto" and "cpu" in ids
    box = control(window.train_pane.form, "device")
    assert "CPU" in box.itemText(ids.index("cpu"))
    box.setCurrentIndex(ids.index("cpu"))
    assert window.train_pane.form.device() == "cpu" and window.gallery_pane.device == "cpu"
    assert window.train_pane.current_config().device == "cpu"
    box.setCurrentIndex(0)
    assert window.gallery_pane.device == "auto" == window.train_pane.current_config().device


def test_learning_rate_shows_auto_and_accepts_a_typed_value(qtbot, make_window):
    form = make_window().train_pane.form
    box = control(form, "lr")
    assert box.text() == "auto" and form.config().lr == "auto"
    box.lineEdit().selectAll()
    qtbot.keyClicks(box.lineEdit(), "3e-4")
    box.interpretText()
    assert box.value() == 3e-4 and form.config().lr == 3e-4
    box.stepBy(1)
    assert box.value() == 6e-4
    box.lineEdit().setText("auto")
    box.interpretText()
    assert box.text() == "auto" and form.config().lr == "auto"


def test_automatic_choices_are_written_as_auto(qtbot, make_window):
    """lr and Adam β2 show "auto" for the config's "auto" (and for the 0 of configs before 0.2)."""
    form = make_window().train_pane.form
    beta2 = control(form, "adam_beta2")
    assert beta2.text() == "auto" and form.values()["adam_beta2"] == "auto"
    form.set_values({"adam_beta2": 0.95, "lr": 0.0})  # 0: an old spelling of auto
    assert form.values()["adam_beta2"] == 0.95 and control(form, "lr").text() == "auto"
    form.set_values({"adam_beta2": "auto"})
    assert beta2.text() == "auto" and 'adam_beta2 = "auto"' in form.config().to_toml()
    assert 'lr = "auto"' in form.config().to_toml()


def test_builtin_presets_are_listed_and_applied(qtbot, make_window, dialog_log, tmp_path):
    window = make_window()
    tp = window.train_pane
    names = [tp.preset_box.itemText(i) for i in range(tp.preset_box.count())]
    assert {"quick-cpu", "quality"} <= set(names)
    tp.preset_box.setCurrentIndex(names.index("quality"))
    tp.load_preset_button.click()
    values = tp.form.values()
    assert values["model"] == "base" and values["precision"] == "bf16"
    assert window.data_pane.resolution.value() == 64  # the one resolution: the data is decoded at it
    assert tp.current_config().resolution == 64
    assert window.data_pane.spec == "demo"  # presets never change the data

    # save your own preset and apply it again later
    configure(window, batch_size=24, lr=5e-4)
    dialog_log.save_answers.append(str(tmp_path / "settings" / "presets" / "mine"))
    tp.save_preset_button.click()
    saved = tmp_path / "settings" / "presets" / "mine.toml"
    assert TrainConfig.load(saved).batch_size == 24
    assert tp.preset_box.currentData() == str(saved)
    configure(window, batch_size=8)
    tp.load_preset_button.click()
    assert tp.form.values()["batch_size"] == 24 and tp.form.values()["lr"] == 5e-4


def test_a_preset_keeps_the_settings_the_form_has_no_control_for(qtbot, make_window, tmp_path):
    window = make_window()
    wait_for_data(qtbot, window)
    tp = window.train_pane
    preset = tmp_path / "tuned.toml"
    preset.write_text('[train]\np_mean = -0.8\nparametrization = "reflow"\nhuber_c = 0.01\nbatch_size = 24\n')
    assert tp.apply_preset(preset)
    config = tp.current_config()
    assert (config.p_mean, config.parametrization, config.huber_c, config.batch_size) == (-0.8, "reflow", 0.01, 24)
    assert not tp.form.kept_box.isHidden()  # shown, not a hidden surprise
    assert all(f"{k} = {v}" in tp.form.kept_label.text() for k, v in (("p_mean", -0.8), ("huber_c", 0.01)))

    configure(window, max_steps=1, preview_every=0)  # changing the form's own settings keeps them too
    qtbot.mouseClick(tp.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not tp.running, timeout=60_000)
    assert tp.last_run[1] == "max_steps"
    saved = TrainConfig.load(tp.run_dir / "config.toml")
    assert (saved.p_mean, saved.parametrization, saved.huber_c, saved.batch_size) == (-0.8, "reflow", 0.01, 8)

    qtbot.mouseClick(tp.form.kept_reset, Qt.MouseButton.LeftButton)  # "Use defaults"
    config, defaults = tp.current_config(), TrainConfig()
    assert (config.p_mean, config.parametrization, config.huber_c) == (defaults.p_mean, "auto", "auto")
    assert tp.form.kept_box.isHidden()


def test_a_bad_preset_is_reported(qtbot, make_window, dialog_log, tmp_path):
    window = make_window()
    bad = tmp_path / "bad.toml"
    bad.write_text('[train]\nmodel = "huge"\n')
    assert window.train_pane.apply_preset(bad) is False
    assert dialog_log.errors[-1].kind == "ConfigError" and "model" in dialog_log.errors[-1].message


def test_settings_are_remembered_between_sessions(qtbot, make_window, image_folder, tmp_path):
    window = make_window(data=str(image_folder))
    wait_for_data(qtbot, window)
    configure(window, batch_size=40, max_steps=1, p_mean=-0.9)  # p_mean: a preset's, without a control
    window.train_pane.start()
    qtbot.waitUntil(lambda: not window.train_pane.running, timeout=60_000)
    window.runs_pane.set_workspace(tmp_path / "other-runs")
    window.close()
    qtbot.waitUntil(lambda: not window.isVisible())

    again = make_window(data=None, workspace=None)
    assert again.runs_pane.workspace == tmp_path / "other-runs" == again.train_pane.workspace
    assert again.data_pane.folder.itemText(0) == str(image_folder)
    assert again.data_pane.spec == str(image_folder)
    assert again.train_pane.form.values()["batch_size"] == 40
    assert again.train_pane.current_config().p_mean == -0.9


def test_data_pane_lists_skipped_files_and_can_cancel(qtbot, make_window, image_folder):
    (image_folder / "broken.png").write_bytes(b"\x89PNG not really")
    (image_folder / "gray.png").write_bytes(b"")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(image_folder / "small_gray.png")
    window = make_window(data=str(image_folder))
    wait_for_data(qtbot, window)
    dp = window.data_pane
    assert len(dp.dataset) == 21
    reasons = {Path(dp.skipped.topLevelItem(i).text(0)).name: dp.skipped.topLevelItem(i).text(1)
               for i in range(dp.skipped.topLevelItemCount())}
    assert set(reasons) == {"broken.png", "gray.png"} and reasons["gray.png"] == "empty file"
    assert not dp.skipped.isHidden() and "2 skipped" in dp.detail.text()

    dp.channels.setCurrentIndex(dp.channels.findData("1"))
    dp.load()
    wait_for_data(qtbot, window)
    assert dp.dataset.channels == 1 and "grayscale" in dp.summary.text()

    dp.set_spec("demo")  # then cancel at once: no error, nothing loaded
    dp.cancel_load()
    qtbot.waitUntil(lambda: not dp.loading, timeout=30_000)
    assert dp.last_error is None


def test_dropping_a_folder_on_the_window_selects_it(qtbot, make_window, image_folder):
    window = make_window()
    window.show_pane("runs")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(image_folder))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    assert window.current_pane() == "data" and window.data_pane.spec == str(image_folder)
    wait_for_data(qtbot, window)
    assert len(window.data_pane.dataset) == 20
    assert settings.get_list("data/recent")[0] == str(image_folder)


def test_runs_pane_lists_opens_and_deletes(qtbot, make_window, tmp_path, dialog_log):
    workspace = tmp_path / "runs"
    run = train_run(workspace, "ct-first")
    window = make_window(workspace=workspace)
    rp = window.runs_pane
    qtbot.waitUntil(lambda: rp.table.rowCount() == 1, timeout=30_000)
    assert [rp.table.item(0, c).text() for c in range(3)] == ["ct-first", "CT", "2 / 2"]
    assert window.gallery_pane.run_box.count() == 1

    assert rp.select_path(run)
    rp.gallery_button.click()
    assert window.current_pane() == "gallery"
    qtbot.waitUntil(lambda: window.gallery_pane.result is not None, timeout=60_000)

    # resuming a complete run asks before training more
    dialog_log.confirm_answer = False
    rp.resume_button.click()
    assert dialog_log.confirms[-1][0] == "Run is complete" and not window.train_pane.running
    dialog_log.confirm_answer = True  # "Train more": the run goes on to twice its length
    rp.resume_button.click()
    qtbot.waitUntil(lambda: not window.train_pane.running, timeout=60_000)
    assert window.train_pane.last_run == (run, "max_steps") and window.train_pane.step == 4
    assert TrainConfig.load(run / "config.toml").max_steps == 4
    window.show_pane("runs")
    qtbot.waitUntil(lambda: rp.table.rowCount() == 1 and rp.table.item(0, 2).text() == "4 / 4", timeout=30_000)
    assert rp.select_path(run)

    dialog_log.confirm_answer = False
    rp.delete_button.click()
    assert run.exists()
    dialog_log.confirm_answer = True
    rp.delete_button.click()  # deleted in the background
    qtbot.waitUntil(lambda: not run.exists() and rp.table.rowCount() == 0, timeout=30_000)
    assert not rp.empty_label.isHidden()
    qtbot.waitUntil(lambda: window.gallery_pane.result is None)  # the gallery let go of it too


def test_gallery_reports_a_bad_checkpoint(qtbot, make_window, tmp_path, dialog_log):
    window = make_window()
    bogus = tmp_path / "bogus.safetensors"
    bogus.write_bytes(b"nope")
    dialog_log.open_answers.append(str(bogus))
    window.gallery_pane.open_button.click()
    qtbot.waitUntil(lambda: bool(dialog_log.errors), timeout=30_000)
    assert dialog_log.errors[0].kind == "CheckpointError"
    assert window.gallery_pane.result is None


def test_default_workspace_is_in_the_user_data_folder_and_needs_no_torch():
    import subprocess
    import sys

    code = "import sys; from app.panes.runs_pane import default_workspace as d; print(d()); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0].endswith("consistency-studio/runs") and out[1] == "False"


def test_theme_follows_dark_and_light(qtbot, make_window, monkeypatch, qapp):
    from PySide6.QtGui import QPalette

    from app import theme

    window = make_window()
    try:
        monkeypatch.setenv("CONSISTENCY_STUDIO_THEME", "dark")
        window.refresh_theme()
        assert theme.is_dark() and qapp.palette().color(QPalette.ColorRole.Window).lightness() < 80
        background = window.train_pane.plot.view.backgroundBrush().color()
        assert background.lightness() < 80  # the plot follows the palette
        assert window.data_pane.browse.property("iconName") == "folder"
        monkeypatch.setenv("CONSISTENCY_STUDIO_THEME", "light")
        window.refresh_theme()
        assert not theme.is_dark() and qapp.palette().color(QPalette.ColorRole.Window).lightness() > 200
    finally:
        monkeypatch.setenv("CONSISTENCY_STUDIO_THEME", "light")
        theme.apply_theme(qapp)


def test_torchvision_set_without_files_explains_where_they_go(qtbot, make_window, tmp_path, dialog_log):
    window = make_window()
    wait_for_data(qtbot, window)
    dp = window.data_pane
    dp.source.setCurrentIndex(dp.source.findData("mnist"))  # no root yet: no error, a hint
    assert dp.root_row.isVisibleTo(dp) and not dp.folder_row.isVisibleTo(dp)
    assert "torchvision" in dp.summary.text() and not dialog_log.errors
    dialog_log.folder_answers.append(str(tmp_path))
    dp.root_browse.click()
    wait_for_data(qtbot, window)
    assert dp.spec == f"mnist:{tmp_path}"
    assert dialog_log.errors and dialog_log.errors[0].kind == "DataError"
    assert "never downloads" in dialog_log.errors[0].message


def test_data_pane_shows_the_cache_and_its_limit_and_can_clear_it(qtbot, make_window, image_folder, monkeypatch):
    """The decoded-folder cache is visible, bounded by a limit set in the pane (kept in the settings and
    handed to the engine) and emptied by one click; a folder's scan reports how many files it found."""
    import cmcore.data as data

    window = make_window(data=None)
    pane = window.data_pane
    scans, shown = [], type(pane)._on_scanned

    def on_scanned(self, found):
        shown(self, found)
        scans.append(self.summary.text())

    monkeypatch.setattr(type(pane), "_on_scanned", on_scanned)
    pane.set_folder(str(image_folder))
    qtbot.waitUntil(lambda: pane.dataset is not None and not pane.loading, timeout=60_000)
    assert scans and scans[-1] == "Scanning… 20 image files found"  # the walk's final count, as the pane shows it
    assert data.cache_size() > 0 and pane.cache_label.text() == f"cache {data.cache_size() / 1024:,.1f} KB"
    pane.cache_limit.setValue(2.5)
    assert data.cache_limit() == int(2.5 * 1024**3)
    from app import settings

    assert float(settings.get("data/cache_limit_gb", 0)) == 2.5
    qtbot.mouseClick(pane.clear_cache_button, __import__("PySide6.QtCore", fromlist=["Qt"]).Qt.MouseButton.LeftButton)
    assert data.cache_size() == 0 and pane.cache_label.text() == "cache 0 bytes"
    assert "Cleared the cache" in pane.detail.text()
    pane.cache_limit.setValue(4.0)  # leave the process-wide limit as the other tests expect


def test_the_score_and_tensorboard_switches_set_the_run_config(qtbot, make_window):
    form = make_window().train_pane.form
    score, mirror = form.findChild(QCheckBox, "score"), form.findChild(QCheckBox, "tensorboard")
    assert score.isChecked() and not mirror.isChecked()  # the defaults: scored, no TensorBoard copy
    qtbot.mouseClick(score, Qt.MouseButton.LeftButton, pos=QPoint(4, score.height() // 2))
    mirror.setChecked(True)
    values = form.values()
    assert values["score"] is False and values["tensorboard"] is True
    form.set_values({"score": True, "tensorboard": False})
    assert score.isChecked() and not mirror.isChecked()
