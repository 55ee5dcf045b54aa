"""Keyboard shortcuts (listed in Help), dropping an exported PNG onto the window, and Export model."""
import numpy as np
from PIL import Image

from cmcore.cli import main as cmcore_main

from .helpers import click, configure, open_in_gallery, train_run, wait_for_data, wait_idle


def press(window, keys: str) -> None:
    """A key combination pressed in the window: the QShortcut bound to it fires (the offscreen platform
    has no active window to deliver real key events to)."""
    from PySide6.QtGui import QKeySequence, QShortcut

    [shortcut] = [s for s in window.findChildren(QShortcut) if s.key() == QKeySequence(keys)]
    shortcut.activated.emit()


def test_shortcuts_drive_training_and_the_steps_slider_and_help_lists_them(qtbot, make_window, dialog_log):
    window = make_window()
    wait_for_data(qtbot, window)
    tp, gp = window.train_pane, window.gallery_pane
    configure(window, max_steps=100_000)
    press(window, "Ctrl+Return")
    qtbot.waitUntil(lambda: tp.running and tp.step >= 1, timeout=60_000)
    press(window, "Ctrl+P")
    qtbot.waitUntil(lambda: tp.paused, timeout=30_000)
    press(window, "Ctrl+P")
    qtbot.waitUntil(lambda: not tp.paused, timeout=30_000)
    press(window, "Ctrl+.")
    wait_idle(qtbot, window)
    assert tp.last_run[1] == "stopped"
    before = gp.steps.value()
    press(window, "Ctrl+]")
    press(window, "Ctrl+]")
    press(window, "Ctrl+[")
    assert gp.steps.value() == before + 1
    window.show_shortcuts()
    title, text = dialog_log.infos[-1][:2]
    assert title == "Keyboard shortcuts" and all(keys in text for keys, _, _ in window.shortcuts())
    assert window.menuBar().actions()[0].text() == "&Help"


def test_dropping_an_exported_png_reopens_its_model_with_its_settings(qtbot, make_window, tmp_path, dialog_log):
    """The image a PNG shows comes back: same model, steps, sampler and seed; with every image drawn from
    its own seed, the gallery's image #index is that PNG's picture exactly."""
    run = train_run(tmp_path / "runs", "r")
    assert cmcore_main(["sample", str(run), "--steps", "3", "--num", "3", "--seed", "41", "--out", str(tmp_path / "s")]) == 0
    png = sorted((tmp_path / "s").glob("*.png"))[2]  # image #3 of seed 41
    window = make_window(data=None)
    gp = window.gallery_pane
    gp.count.setValue(4)
    window.drop_path("png", str(png))
    assert window.current_pane() == "gallery"
    qtbot.waitUntil(lambda: gp.result is not None and not gp.sampling.busy, timeout=60_000)
    assert (gp.steps.value(), gp.seed.value(), gp.sampler.currentData()) == (3, 41, "multistep")
    assert np.array_equal(gp.result.images[2], np.asarray(Image.open(png).convert("RGB")))
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    window.drop_path("png", str(plain))
    assert dialog_log.infos[-1][0] == "Cannot restore"


def test_export_model_writes_the_portable_folder(qtbot, make_window, tmp_path, monkeypatch):
    import cmcore.portable

    # the ONNX export itself is checked against ONNX Runtime in tests/cmcore/test_portable.py; here the wiring
    monkeypatch.setattr(cmcore.portable, "export_onnx", lambda model, c, r, path, num_classes=0: path.write_bytes(b"onnx"))
    run = train_run(tmp_path / "runs", "r")
    window = make_window(data=None)
    gp = open_in_gallery(qtbot, window, run)
    click(qtbot, gp.export_model_button)
    qtbot.waitUntil(lambda: not gp.exporting.busy and bool(gp.exported), timeout=60_000)
    [folder] = gp.exported
    assert {"model.safetensors", "config.toml", "model.onnx", "samples.png", "README.md"} <= {p.name for p in folder.iterdir()}
    gp.open_source(folder)  # the gallery opens an exported folder like a run
    qtbot.waitUntil(lambda: gp.result is not None and gp.result.request.source == str(folder) and not gp.sampling.busy,
                    timeout=60_000)
    assert gp.result.images.shape[0] == 4
