"""The gallery's Edit window (issue 24): painting a mask, and each editing mode on a tiny trained model,
run in the background."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from app import workers
from app.widgets.mask_canvas import MaskCanvas
from cmcore.editing import LUMA
from cmcore.export import read_png_metadata

from .helpers import click, open_in_gallery, train_run


def _mouse(canvas, kind, x: float, y: float, buttons=Qt.MouseButton.LeftButton) -> None:
    """A mouse event at image point (x, y): press, move (with the button held) or release."""
    pos = canvas.to_widget(x, y)
    button = Qt.MouseButton.NoButton if kind == QEvent.Type.MouseMove else Qt.MouseButton.LeftButton
    event = QMouseEvent(kind, pos, canvas.mapToGlobal(pos), button, buttons, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(canvas, event)


def stroke(canvas, points) -> None:
    """Press at the first point, drag through the others, release at the last."""
    _mouse(canvas, QEvent.Type.MouseButtonPress, *points[0])
    for p in points[1:]:
        _mouse(canvas, QEvent.Type.MouseMove, *p)
    _mouse(canvas, QEvent.Type.MouseButtonRelease, *points[-1], buttons=Qt.MouseButton.NoButton)


def test_the_mask_is_painted_with_the_brush_erased_and_cleared(qtbot):
    canvas = MaskCanvas()
    qtbot.addWidget(canvas)
    canvas.resize(320, 320)
    canvas.show()
    canvas.set_image(np.zeros((16, 16, 3), np.uint8))
    canvas.brush = 1
    stroke(canvas, [(3.5, 3.5)])
    assert canvas.painted() == 1 and canvas.mask[3, 3]
    canvas.brush = 5
    stroke(canvas, [(10.5, 10.5)])
    assert canvas.painted() == 1 + 21  # a disc 5 px across covers 21 pixels
    assert canvas.mask[10, 8:13].all() and not canvas.mask[10, 7]
    canvas.clear_mask()
    canvas.brush = 3
    stroke(canvas, [(2.5, 8.5), (13.5, 8.5)])  # a drag paints a continuous band
    assert canvas.mask[8, 2:14].all() and canvas.mask[7:10, 5].all() and not canvas.mask[5, 5]
    band = canvas.painted()
    canvas.erasing = True
    stroke(canvas, [(7.5, 8.5)])
    assert canvas.painted() < band and not canvas.mask[8, 7] and canvas.mask[8, 2]
    canvas.clear_mask()
    assert canvas.painted() == 0


@pytest.fixture
def editor(qtbot, make_window, tmp_path):
    """The Edit window on a tiny trained run, opened from the gallery with the gallery at 2 steps, seed 7."""
    run = train_run(tmp_path / "runs", "edit", score=False)
    window = make_window()
    gp = open_in_gallery(qtbot, window, run)
    gp.seed.setValue(7)
    gp.steps.setValue(2)
    qtbot.waitUntil(lambda: not gp.sampling.busy and gp.result.request.seed == 7 and gp.result.request.steps == 2,
                    timeout=60_000)
    click(qtbot, gp.tools.edit_button)
    dialog = gp.tools.edit_window
    qtbot.waitUntil(dialog.isVisible)
    assert dialog.steps.value() == 2 and dialog.seed.value() == 7
    return gp, dialog


def run_edit(qtbot, dialog):
    """Click the mode's button; the job runs in a worker, so the click returns at once."""
    with qtbot.waitSignal(dialog.result_shown, timeout=60_000):
        click(qtbot, dialog.run_button)
        assert dialog.editing.busy  # the window was handed back while the model works
    return dialog.result


def test_inpainting_keeps_every_pixel_outside_the_painted_mask(qtbot, editor, dialog_log):
    gp, dialog = editor
    assert not dialog.run_button.isEnabled()  # no picture, no mask yet
    gp.grid.tiles[1].check.setChecked(True)
    click(qtbot, dialog.sample_button)
    assert np.array_equal(dialog.input_image, gp.result.images[1]) and "#2" in dialog.input_name
    assert not dialog.run_button.isEnabled()  # nothing painted
    dialog.brush.setValue(4)
    stroke(dialog.canvas, [(4, 8), (12, 8)])
    assert dialog.run_button.isEnabled() and dialog.run_button.text() == "Fill"
    dialog.results.setValue(3)
    result = run_edit(qtbot, dialog)
    mask = dialog.canvas.mask
    assert result.images.shape == (3, 16, 16, 3) and 0 < mask.sum() < 256
    assert (result.images[:, ~mask] == dialog.input_image[~mask]).all()  # exactly, outside the mask
    assert (result.images[:, mask] != dialog.input_image[mask]).any()  # filled inside
    assert not np.array_equal(result.images[0], result.images[1])  # each result its own noise

    # export: PNGs carrying the edit's settings
    dialog_log.folder_answers.clear()
    out = dialog.export("images", gp.export_folder() / "edits")
    assert out
    qtbot.waitUntil(lambda: len(dialog.exported) == 3, timeout=30_000)
    meta = read_png_metadata(dialog.exported[0])
    assert meta["edit"] == "inpaint" and meta["steps"] == "2" and meta["seed"] == "7" and "#2" in meta["input"]
    assert np.array_equal(np.asarray(Image.open(dialog.exported[2])), result.images[2])
    assert not dialog_log.errors


def test_the_interpolation_row_ends_are_the_two_seeds_samples(qtbot, editor, tmp_path):
    gp, dialog = editor
    dialog.set_mode("interpolate")
    assert dialog.run_button.isEnabled()  # no picture needed
    assert (dialog.seed_a.value(), dialog.seed_b.value()) == (7, 8)
    dialog.row_count.setValue(6)
    row = run_edit(qtbot, dialog).images
    assert row.shape == (6, 16, 16, 3)
    # the gallery's image #1 is seed 7's first image and #2 uses seed 8's stream: the row's two ends
    assert np.abs(row[0].astype(int) - gp.result.images[0]).max() <= 1
    assert np.abs(row[-1].astype(int) - gp.result.images[1]).max() <= 1
    assert not np.array_equal(row[2], row[0]) and not np.array_equal(row[2], row[-1])

    assert dialog.export_gif.isEnabled()
    dialog.export("grid", tmp_path / "out")
    qtbot.waitUntil(lambda: not dialog.exporting.busy and len(dialog.exported) == 1, timeout=30_000)
    grid = dialog.exported[0]
    assert grid.name.endswith("_row.png") and Image.open(grid).size == (6 * 18 + 2, 20)
    assert read_png_metadata(grid)["seeds"] == "7,8"
    dialog.export("gif", tmp_path / "out")
    qtbot.waitUntil(lambda: not dialog.exporting.busy and dialog.exported[0].suffix == ".gif", timeout=30_000)
    assert Image.open(dialog.exported[0]).n_frames == 10  # there and back


def test_image_to_image_at_strength_zero_returns_the_picture(qtbot, editor, tmp_path, dialog_log):
    gp, dialog = editor
    dialog.set_mode("img2img")
    picture = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)  # any size
    Image.fromarray(picture).save(tmp_path / "photo.png")
    dialog_log.open_answers.append(str(tmp_path / "photo.png"))
    click(qtbot, dialog.open_button)
    qtbot.waitUntil(lambda: dialog.input_image is not None, timeout=30_000)
    assert dialog.input_image.shape == (16, 16, 3) and dialog.input_name == "photo.png"
    dialog.strength.setValue(0)
    assert dialog.strength_label.text() == "0.00"
    zero = run_edit(qtbot, dialog)
    assert (zero.images == dialog.input_image).all()
    dialog.strength.setValue(80)
    strong = run_edit(qtbot, dialog)
    assert strong.request.strength == 0.8 and not np.array_equal(strong.images[0], dialog.input_image)


def test_colourising_keeps_the_grey_levels_and_upscaling_the_patch_means(qtbot, editor):
    gp, dialog = editor
    click(qtbot, dialog.sample_button)
    dialog.set_mode("colorize")
    shown = dialog.canvas.image
    assert (shown[..., 0] == shown[..., 1]).all()  # the canvas shows what is kept: grey levels
    result = run_edit(qtbot, dialog)
    luma = result.images.astype(float) @ np.array(LUMA)
    assert np.abs(luma - dialog.input_image.astype(float) @ np.array(LUMA)).max() <= 2  # up to rounding
    assert (result.images[..., 0] != result.images[..., 1]).any()  # colours drawn

    dialog.set_mode("upscale")
    assert [dialog.factor.itemData(i) for i in range(dialog.factor.count())] == [2, 4]
    dialog.factor.setCurrentIndex(1)
    result = run_edit(qtbot, dialog)
    means = result.images.astype(float).reshape(-1, 4, 4, 4, 4, 3).mean(axis=(2, 4))
    assert result.low.shape == (4, 4, 3) and np.abs(means - result.low).max() <= 1.5


def test_a_grey_model_says_it_cannot_colourise(qtbot, make_window, tmp_path):
    run = train_run(tmp_path / "runs", "grey", channels=1, score=False)
    window = make_window()
    gp = open_in_gallery(qtbot, window, run)
    click(qtbot, gp.tools.edit_button)
    dialog = gp.tools.edit_window
    click(qtbot, dialog.sample_button)
    dialog.set_mode("colorize")
    assert not dialog.run_button.isEnabled()
    assert any("needs a model trained on colour images" in label.text()
               for label in dialog.options.currentWidget().findChildren(type(dialog.brush_label)))


def test_deleting_the_run_closes_its_edit_window(qtbot, editor):
    gp, dialog = editor
    dialog.set_mode("interpolate")
    click(qtbot, dialog.run_button)  # a job in flight: the release cancels it and waits for it
    released = []
    gp.release(gp.source, lambda: released.append(True))
    qtbot.waitUntil(lambda: bool(released), timeout=30_000)
    assert gp.tools.edit_window is None and not dialog.isVisible()
    assert not [e for e in workers.live_threads() if e.name == "edit"]  # its job has ended
    assert not gp.tools.edit_button.isEnabled()  # the gallery shows nothing now
