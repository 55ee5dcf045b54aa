"""Class-conditional training in the app (issue 24): the Data pane's switch and class list, the Train config it
sets, and the gallery's class picker with its one-row-per-class grid."""
from __future__ import annotations

import numpy as np
from PIL import Image
from PySide6.QtWidgets import QCheckBox, QComboBox

from .helpers import FAST, open_in_gallery, train_run, wait_for_data

COLOURS = {"blue": (20, 40, 230), "red": (230, 30, 20), "zgreen": (30, 200, 40)}


def _class_folder(root, counts):
    for name, count in counts.items():
        (root / name).mkdir(parents=True)
        for k in range(count):
            Image.fromarray(np.full((8, 8, 3), COLOURS[name], np.uint8)).save(root / name / f"img_{k}.png")
    return root


def _train_classes(run, folder):
    from cmcore import TrainConfig, Trainer

    Trainer(TrainConfig(**{**FAST, "data": str(folder), "max_steps": 2, "preview_every": 0}), run).run()
    return run


def test_the_data_pane_lists_the_classes_and_its_switch_sets_the_config(qtbot, make_window, tmp_path):
    folder = _class_folder(tmp_path / "shapes", {"red": 3, "blue": 2, "zgreen": 1})
    window = make_window()
    dp = window.data_pane
    wait_for_data(qtbot, window)
    switch = dp.findChild(QCheckBox, "use_classes")
    assert not dp.classes_row.isVisibleTo(dp)  # the demo set: no classes, no switch
    dp.set_folder(str(folder))
    qtbot.waitUntil(lambda: not dp.loading and dp.dataset is not None and len(dp.dataset) == 6, timeout=60_000)
    assert dp.classes_row.isVisibleTo(dp) and switch.isVisibleTo(dp) and switch.isChecked()
    assert dp.classes_info.text() == "3 classes from the sub-folders: blue 2, red 3, zgreen 1"
    assert window.train_pane.current_config().classes == "auto"
    switch.setChecked(False)
    assert window.train_pane.current_config().classes == "off"


def test_a_folder_with_loose_images_says_why_it_has_no_classes(qtbot, make_window, tmp_path):
    folder = _class_folder(tmp_path / "shapes", {"red": 1, "blue": 1})
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "loose.png")
    window = make_window(data=str(folder))
    wait_for_data(qtbot, window)
    dp = window.data_pane
    assert dp.classes_row.isVisibleTo(dp) and not dp.use_classes.isVisibleTo(dp)
    assert dp.classes_info.text().startswith("No classes: 1 image(s) sit directly in the folder")


def test_the_gallery_picks_a_class_or_shows_one_row_per_class(qtbot, make_window, tmp_path):
    folder = _class_folder(tmp_path / "shapes", {"red": 3, "blue": 2, "zgreen": 2})
    run = _train_classes(tmp_path / "runs" / "classes", folder)
    plain = train_run(tmp_path / "runs", "plain")
    window = make_window()
    gp = open_in_gallery(qtbot, window, run)  # 4 images asked
    picker = gp.findChild(QComboBox, "class_picker")
    assert picker.isVisibleTo(gp)
    assert [picker.itemText(i) for i in range(picker.count())] == [
        "All classes (one row per class)", "blue", "red", "zgreen"]
    # all classes: ceil(4 / 3) = 2 images per class, one class per grid row
    r = gp.result
    assert r.per_row == 2 and r.labels == [0, 0, 1, 1, 2, 2] and len(r.images) == 6
    rows = {gp.grid._grid.getItemPosition(gp.grid._grid.indexOf(t))[0] for t in gp.grid.tiles[:2]}
    assert rows == {0} and gp.grid._grid.getItemPosition(gp.grid._grid.indexOf(gp.grid.tiles[2]))[:2] == (1, 0)
    assert r.caption(2) == "#3 · red"  # captions name the class

    picker.setCurrentIndex(picker.findText("zgreen"))
    qtbot.waitUntil(lambda: not gp.sampling.busy and gp.result.request.label == 2, timeout=60_000)
    assert gp.result.labels == [2, 2, 2, 2] and gp.result.per_row == 0
    assert gp.result.metadata(0)["class"] == "zgreen"
    edit = gp.tools.open_edit()  # the Edit window edits towards the gallery's class
    assert edit.request().label == 2
    edit.close()

    gp.open_source(plain)  # an unconditional model: no picker
    qtbot.waitUntil(lambda: not gp.sampling.busy and gp.result.request.source == str(plain), timeout=60_000)
    assert not picker.isVisibleTo(gp) and gp.result.labels is None and len(gp.result.images) == 4
    assert FAST["resolution"] == gp.result.resolution
