"""The gallery opens a run's best checkpoint, switches to the latest (issue 23), and finds a sample's nearest
training images (the memorisation check)."""
from __future__ import annotations

import json

import numpy as np

from app.nearest import TRAINING, training_images
from cmcore.rundir import best_pointer, checkpoint_name
from cmcore.split import read_split, write_split

from .helpers import click, open_in_gallery, train_run


def _two_checkpoints(tmp_path):
    """A run with checkpoints at steps 2 and 4 whose `best` names the older, scored 12.5 (1 step)."""
    run = train_run(tmp_path / "runs", "two", max_steps=4, checkpoint_every=2, score=False)
    best_pointer(run).write_text(checkpoint_name(2))
    with open(run / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"step": 2, "score": {"1": 12.5, "2": 10.1}, "gap": 0.004}) + "\n")
    return run


def test_the_gallery_shows_the_best_checkpoint_and_the_switch_shows_the_latest(qtbot, make_window, tmp_path):
    run = _two_checkpoints(tmp_path)
    window = make_window()
    gp = open_in_gallery(qtbot, window, run)
    assert gp.which.value() == "best" and gp.which.isEnabled()
    assert gp.result.step == 2 and gp.result.checkpoint.endswith(checkpoint_name(2) + ".safetensors")
    assert "best: step 2" in gp.which_label.text() and "score 12.5" in gp.which_label.text()
    best_images = gp.result.images.copy()

    click(qtbot, gp.which.buttons["latest"])
    qtbot.waitUntil(lambda: not gp.sampling.busy and gp.result.request.which == "latest", timeout=60_000)
    assert gp.result.step == 4 and gp.result.checkpoint.endswith(checkpoint_name(4) + ".safetensors")
    assert "latest: step 4" in gp.which_label.text() and "best: step 2" in gp.which_label.text()
    assert not np.array_equal(best_images, gp.result.images)  # another model, same seed

    click(qtbot, gp.which.buttons["best"])
    qtbot.waitUntil(lambda: not gp.sampling.busy and gp.result.request.which == "best", timeout=60_000)
    assert gp.result.step == 2 and np.array_equal(best_images, gp.result.images)


def test_a_run_without_a_scored_checkpoint_shows_its_newest_and_says_so(qtbot, make_window, tmp_path):
    run = train_run(tmp_path / "runs", "unscored", max_steps=4, checkpoint_every=2, score=False)
    window = make_window()
    gp = open_in_gallery(qtbot, window, run)
    assert gp.result.step == 4 and "none scored yet" in gp.which_label.text()


def test_a_checkpoint_file_has_no_best_or_latest(qtbot, make_window, tmp_path):
    run = _two_checkpoints(tmp_path)
    window = make_window()
    gp = open_in_gallery(qtbot, window, run / "checkpoints" / (checkpoint_name(4) + ".safetensors"))
    assert gp.result.step == 4 and not gp.which.isEnabled() and "checkpoint file" in gp.which_label.text()


def test_a_training_image_finds_itself_first_at_distance_zero(qtbot, make_window, tmp_path, dialog_log):
    run = train_run(tmp_path / "runs", "near", score=False)
    write_split(run, 4096, 0)  # the demo set's 4096 images, 82 of them held out
    held = set(read_split(run)["held_out"])
    TRAINING.clear()
    train = training_images(run, 16, 3)
    assert len(train.images) == 4096 - len(held) and not held & set(train.indices)
    assert training_images(run, 16, 3) is train  # cached per run

    window = make_window()
    gp = open_in_gallery(qtbot, window, run)
    assert not gp.tools.nearest_button.isEnabled()  # nothing ticked yet
    own = train.indices[123]
    gp.result.images[0] = train.images[123].permute(1, 2, 0).numpy()  # sample #1 IS a training image
    gp.grid.tiles[0].check.setChecked(True)
    gp.grid.tiles[2].check.setChecked(True)
    click(qtbot, gp.tools.nearest_button)
    qtbot.waitUntil(lambda: gp.tools.nearest_window is not None and gp.tools.nearest_window.isVisible(),
                    timeout=60_000)
    found = gp.tools.nearest_window.result
    assert found.indices.shape == found.distances.shape == (2, 5)
    assert found.indices[0, 0] == own and found.distances[0, 0] < 1e-6
    assert gp.tools.nearest_window.captions[0][0] == f"#{own} · 0.000"
    assert (np.diff(found.distances, axis=1) >= 0).all()  # nearest first
    assert found.distances[1, 0] > 1e-3 and not held & set(found.indices.flatten().tolist())
    assert np.array_equal(found.neighbours[0, 0], gp.result.images[0])
    assert not dialog_log.errors


def test_the_checkpoints_score_is_read_once_per_change_of_the_metrics(tmp_path, monkeypatch):
    """A long run's metrics.jsonl is not read again on every move of the steps slider."""
    import json
    import os

    import cmcore.rundir
    from app import gallery_jobs

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    metrics = run / "metrics.jsonl"
    metrics.write_text(json.dumps({"step": 2, "loss": 0.5}) + "\n" + json.dumps({"step": 2, "score": {"1": 7.5}}) + "\n")
    reads = []
    real = cmcore.rundir.read_metrics
    monkeypatch.setattr(cmcore.rundir, "read_metrics", lambda path: reads.append(path) or real(path))
    checkpoint = str(run / "checkpoints" / "step_0000002.safetensors")
    assert gallery_jobs.scored(checkpoint)[2] == 7.5
    assert gallery_jobs.scored(checkpoint)[2] == 7.5 and len(reads) == 1  # unchanged file: the cached table
    with open(metrics, "a") as fh:
        fh.write(json.dumps({"step": 2, "score": {"1": 6.0}}) + "\n")
    os.utime(metrics, ns=(1, 10**18))  # a new mtime even on a coarse clock
    assert gallery_jobs.scored(checkpoint)[2] == 6.0 and len(reads) == 2
