"""End to end, the way a person uses the app: choose a folder, train, watch, stop,
sample in the gallery, export, resume from the Runs pane; and CD from a flow teacher."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt

from app.widgets.image_dialog import ImageDialog
from cmcore.export import read_png_metadata

from .helpers import configure, control, wait_for_data, wait_idle


def click(qtbot, button) -> None:
    assert button.isEnabled(), f"{button.text()!r} is disabled"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_train_watch_stop_sample_export_resume(qtbot, make_window, image_folder, dialog_log, tmp_path, monkeypatch):
    window = make_window(data=None)
    dp, tp, gp, rp = window.data_pane, window.train_pane, window.gallery_pane, window.runs_pane

    # choose the folder with the folder dialog
    dialog_log.folder_answers.append(str(image_folder))
    click(qtbot, dp.browse)
    wait_for_data(qtbot, window)
    assert dp.dataset is not None and len(dp.dataset) == 20
    assert dp.thumbs.count() == 20
    assert "20 images" in dp.summary.text()

    # train CT; the plot and the previews fill while it runs
    window.show_pane("train")
    configure(window, max_steps=500, preview_every=3)
    click(qtbot, tp.start_button)
    qtbot.waitUntil(lambda: tp.plot.num_points >= 4 and tp.previews.step is not None, timeout=120_000)
    assert tp.running and not tp.start_button.isEnabled()
    assert tp.progress.value() >= 1
    assert set(tp.previews.grids) == {1, 4}
    tp.plot.redraw()
    assert len(tp.plot.ema_curve.getData()[0]) == tp.plot.num_points

    # pause and go on
    click(qtbot, tp.pause_button)
    assert tp.paused and tp.resume_button.isEnabled()
    click(qtbot, tp.resume_button)
    assert not tp.paused

    click(qtbot, tp.stop_button)
    wait_idle(qtbot, window)
    assert dialog_log.errors == []
    run_dir = Path(tp.run_dir)
    stopped_at = tp.step
    assert tp.last_run == (run_dir, "stopped") and 4 <= stopped_at < 500
    assert 0 < tp.progress.value() < 1000  # per mille of the run, not of 500 steps' worth of pixels
    assert (run_dir / "checkpoints" / "latest").exists()

    # the gallery fills with the stopped run; the steps slider re-samples
    qtbot.waitUntil(lambda: gp.result is not None and not gp.sampling.busy, timeout=60_000)
    window.show_pane("gallery")
    assert gp.grid.count() == gp.count.value() and gp.result.step == stopped_at
    gp.count.setValue(4)
    gp.steps.setValue(1)
    qtbot.waitUntil(lambda: not gp.sampling.busy and gp.result.request.steps == 1
                    and gp.result.request.count == 4, timeout=60_000)
    one_step = gp.result.images.copy()
    gp.steps.setValue(3)
    qtbot.waitUntil(lambda: not gp.sampling.busy and gp.result.request.steps == 3, timeout=60_000)
    assert gp.steps_label.text() == "3 steps"
    assert one_step.shape == gp.result.images.shape == (4, 16, 16, 3)
    assert not np.array_equal(one_step, gp.result.images)
    assert all(picture.has_image() for picture in gp.strip_labels.values())  # 1, 2, 4, 8 steps

    # click an image to see it enlarged
    qtbot.mouseClick(gp.grid.tiles[1].picture, Qt.MouseButton.LeftButton)
    dialog = next(d for d in gp.findChildren(ImageDialog) if d.isVisible())
    assert "image #2" in dialog.windowTitle() and dialog.image.shape == (16, 16, 3)
    dialog.close()

    # export the ticked images: PNGs with run/step/sampler/steps/seed in text chunks
    gp.grid.tiles[0].check.setChecked(True)
    gp.grid.tiles[2].check.setChecked(True)
    export_dir = tmp_path / "exports"
    dialog_log.folder_answers.append(str(export_dir))
    click(qtbot, gp.change_folder)
    click(qtbot, gp.export_selected)
    qtbot.waitUntil(lambda: len(gp.exported) == 2, timeout=30_000)
    meta = read_png_metadata(gp.exported[0])
    assert meta["run"] == run_dir.name and meta["step"] == str(stopped_at)
    assert meta["sampler"] == "multistep" and meta["steps"] == "3" and meta["seed"] == str(gp.seed.value())
    assert meta["index"] == "0" and read_png_metadata(gp.exported[1])["index"] == "2"
    first_files = set(export_dir.iterdir())
    click(qtbot, gp.export_selected)  # again: new names, nothing overwritten
    qtbot.waitUntil(lambda: not gp.exporting.busy and set(gp.exported) - first_files == set(gp.exported),
                    timeout=30_000)
    assert len(list(export_dir.iterdir())) == 4
    click(qtbot, gp.export_grid_button)
    qtbot.waitUntil(lambda: not gp.exporting.busy and gp.exported[0].name.endswith("_grid.png"), timeout=30_000)
    click(qtbot, gp.export_gif_button)
    qtbot.waitUntil(lambda: not gp.exporting.busy and gp.exported[0].suffix == ".gif", timeout=60_000)
    assert dialog_log.errors == []

    # a new seed gives new images
    before = gp.result.images.copy()
    click(qtbot, gp.new_seed)
    qtbot.waitUntil(lambda: not gp.sampling.busy and gp.result.request.seed == gp.seed.value(), timeout=60_000)
    assert not np.array_equal(before, gp.result.images)

    # resume from the Runs pane: the step count goes on from the checkpoint, with the Data pane's images
    # (the folder is not decoded or read from the cache again)
    import cmcore.data

    loads = []
    real_load = cmcore.data.load_dataset
    monkeypatch.setattr(cmcore.data, "load_dataset", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    window.show_pane("runs")
    qtbot.waitUntil(lambda: rp.select_path(run_dir), timeout=30_000)
    row = rp.table.currentRow()
    assert rp.table.item(row, 1).text() == "CT"
    click(qtbot, rp.resume_button)
    assert window.current_pane() == "train"
    qtbot.waitUntil(lambda: tp.step > stopped_at, timeout=120_000)
    assert tp.plot.num_points >= stopped_at  # the earlier curve was loaded from metrics.jsonl
    assert loads == []
    click(qtbot, tp.stop_button)
    wait_idle(qtbot, window)
    assert tp.last_run[1] == "stopped" and tp.step > stopped_at
    assert dialog_log.errors == []


def test_cd_from_a_flow_teacher(qtbot, make_window, dialog_log):
    window = make_window(data="demo")
    tp, rp = window.train_pane, window.runs_pane
    wait_for_data(qtbot, window)
    window.show_pane("train")
    assert tp.form.teacher_row.isHidden()

    configure(window, method="flow", max_steps=3, preview_every=0)
    qtbot.mouseClick(tp.start_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window)
    assert dialog_log.errors == []
    teacher = Path(tp.run_dir)
    gp = window.gallery_pane  # shows the finished run, with the sampler the engine picks for it: the ODE
    qtbot.waitUntil(lambda: gp.result is not None and gp.result.request.source == str(teacher)
                    and gp.result.request.sampler == "ode" and not gp.sampling.busy, timeout=60_000)
    assert gp.steps.value() >= 8

    # the teacher combo lists the finished flow run
    teacher_box = control(tp.form, "teacher")
    qtbot.waitUntil(lambda: teacher_box.findData(str(teacher)) >= 0, timeout=30_000)
    configure(window, method="cd", max_steps=3, preview_every=0)
    assert tp.form.teacher_row.isVisible()
    teacher_box.setCurrentIndex(teacher_box.findData(str(teacher)))
    qtbot.mouseClick(tp.start_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window)
    assert dialog_log.errors == []
    assert tp.last_run[1] == "max_steps" and tp.step == 3
    student = Path(tp.run_dir)
    qtbot.waitUntil(lambda: gp.result is not None and gp.result.request.source == str(student)
                    and gp.result.request.sampler == "multistep" and not gp.sampling.busy, timeout=60_000)
    assert 'method = "cd"' in (student / "config.toml").read_text()
    assert str(teacher) in (student / "config.toml").read_text()
    qtbot.waitUntil(lambda: {r.method for r in rp.runs} == {"flow", "cd"}, timeout=30_000)


def test_a_loss_spike_is_rolled_back_and_reported(qtbot, make_window, dialog_log, monkeypatch):
    """The engine's spike guard, seen from the app: weights wrecked mid-run come back, and the
    status line says so (short guard windows so that the test trains for seconds)."""
    import functools

    import torch

    from cmcore import training, training_run
    from cmcore.guard import SpikeGuard

    monkeypatch.setattr(training_run, "SpikeGuard", functools.partial(SpikeGuard, window=4, history=16, snapshot_every=8))
    original = training.Trainer.train_step

    def wreck_at_step_30(trainer):
        if trainer.step == 30:
            with torch.no_grad():
                for p in trainer.model.parameters():
                    p.add_(torch.randn_like(p) * 3 * p.std().clamp_min(0.05))
        return original(trainer)

    monkeypatch.setattr(training.Trainer, "train_step", wreck_at_step_30)
    window = make_window(data="demo")
    tp = window.train_pane
    wait_for_data(qtbot, window)
    window.show_pane("train")
    configure(window, method="flow", max_steps=48, preview_every=0)
    assert control(tp.form, "spike_factor").value() == 3.0
    messages = []
    window.statusBar().messageChanged.connect(messages.append)
    qtbot.mouseClick(tp.start_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window)
    assert dialog_log.errors == []
    assert [(e.to_step, e.ratio > 3) for e in tp.rollbacks] == [(24, True)]
    assert "rolled back after 1 loss spike" in tp.status.text()
    assert any("rolled back to the weights of step 24" in m for m in messages)
