"""The window never hangs (issue 22): closing it while the data decodes, the gallery samples or
exports, or the engine trains returns within seconds and leaves no thread running; rapid or
conflicting clicks never start two trainers; the steps slider computes only the latest request.
(Deleting runs: test_runs_pane.py.)"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

from app import workers
from app.gallery_jobs import GENERATORS
from app.panes import gallery_pane as gallery_module

from .conftest import leftover_threads
from .helpers import click, configure, open_in_gallery, train_run, wait_for_data, wait_idle

CLOSE_WITHIN_S = 5.0


def close_timed(qtbot, window) -> float:
    """Close the window the way a person does; seconds until it is gone."""
    t0 = time.monotonic()
    window.close()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=60_000)
    return time.monotonic() - t0


def training_threads() -> list:
    return [e for e in workers.live_threads() if e.name.startswith("training")]


@pytest.fixture
def slow_models(monkeypatch):
    """Every model the gallery loads takes `delay["s"]` seconds more per network evaluation
    (a big model on a slow CPU), so a sampling or export job lasts long enough to be interrupted."""
    import cmcore.generator as generator_module

    delay = {"s": 0.0}
    real = generator_module.load_generator

    class Slow:
        def __init__(self, model) -> None:
            self.model = model

        def __call__(self, *args, **kwargs):
            time.sleep(delay["s"])
            return self.model(*args, **kwargs)

        def velocity(self, *args, **kwargs):
            time.sleep(delay["s"])
            return self.model.velocity(*args, **kwargs)

    def load(path, device="cpu"):
        generator = real(path, device)
        generator.model = Slow(generator.model)
        return generator

    monkeypatch.setattr(generator_module, "load_generator", load)
    GENERATORS.clear()
    yield delay
    GENERATORS.clear()


@pytest.fixture
def counted_samples(monkeypatch) -> list:
    """The gallery's sampling requests that were computed to the end."""
    computed = []
    real = gallery_module.run_sample

    def run_sample(request, cancel=None):
        result = real(request, cancel=cancel) if cancel is not None else real(request)
        computed.append(request)
        return result

    monkeypatch.setattr(gallery_module, "run_sample", run_sample)
    return computed


# --- 1. closing never hangs -----------------------------------------------------------------------

def test_the_thread_check_fails_a_test_that_leaves_a_thread_running(qtbot):
    """The autouse fixture's check, on a QThread and a Python thread left running on purpose."""
    before = set(threading.enumerate())
    release = threading.Event()
    worker = workers.FunctionWorker(release.wait, 30)
    workers.start_worker(worker, "left running")
    helper = threading.Thread(target=release.wait, args=(30,), name="helper left running")
    helper.start()
    try:
        report = leftover_threads(before, grace_s=0.2)
        assert report is not None and "'left running'" in report and "'helper left running'" in report
    finally:
        release.set()
        helper.join()
        assert workers.join_all(10_000)
    assert leftover_threads(before, grace_s=0.2) is None


def test_closing_while_the_data_decodes_returns_at_once(qtbot, make_window, tmp_path, monkeypatch):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(300):
        Image.fromarray(np.full((8, 8, 3), i % 256, np.uint8)).save(folder / f"{i:03d}.png")
    real = workers.DecodeWorker._on_progress

    def slow_progress(self, done, total):  # a slow disk: 50 ms a file, 15 s for the folder
        time.sleep(0.05)
        real(self, done, total)

    monkeypatch.setattr(workers.DecodeWorker, "_on_progress", slow_progress)
    window = make_window(data=str(folder))
    dp = window.data_pane
    qtbot.waitUntil(lambda: dp.loading and dp.progress.value() > 0, timeout=30_000)
    assert close_timed(qtbot, window) < CLOSE_WITHIN_S
    assert dp.dataset is None and workers.live_threads() == []


def test_closing_while_the_gallery_samples_returns_at_once(qtbot, make_window, tmp_path, slow_models):
    run = train_run(tmp_path / "runs", "ct-run")
    window = make_window(workspace=tmp_path / "runs")
    gp = open_in_gallery(qtbot, window, run)
    slow_models["s"] = 0.5  # 16 steps: 8 s
    gp.steps.setValue(16)
    qtbot.waitUntil(lambda: gp.sampling.busy, timeout=5_000)
    qtbot.wait(300)  # the 16-step batch is being sampled now
    assert gp.sampling.busy
    assert close_timed(qtbot, window) < CLOSE_WITHIN_S
    assert workers.live_threads() == []


def test_closing_while_the_gallery_exports_returns_at_once(qtbot, make_window, tmp_path, slow_models):
    run = train_run(tmp_path / "runs", "ct-run")
    window = make_window(workspace=tmp_path / "runs")
    gp = open_in_gallery(qtbot, window, run)
    gp.steps.setValue(16)
    qtbot.waitUntil(lambda: not gp.sampling.busy and gp.result.request.steps == 16, timeout=60_000)
    slow_models["s"] = 0.5  # the GIF re-samples 16 steps: 8 s
    click(qtbot, gp.export_gif_button)
    qtbot.wait(300)
    assert gp.exporting.busy
    assert close_timed(qtbot, window) < CLOSE_WITHIN_S
    assert workers.live_threads() == [] and not list((run / "exports").glob("*.gif"))


def test_closing_while_training_asks_stops_saves_and_returns_at_once(qtbot, make_window, dialog_log):
    window = make_window()
    wait_for_data(qtbot, window)
    tp = window.train_pane
    configure(window, max_steps=100_000, preview_every=5)
    click(qtbot, tp.start_button)
    qtbot.waitUntil(lambda: tp.step >= 3, timeout=60_000)
    run_dir = Path(tp.run_dir)
    assert close_timed(qtbot, window) < CLOSE_WITHIN_S
    assert dialog_log.confirms and dialog_log.confirms[-1][0] == "Training is running"
    assert tp.last_run == (run_dir, "stopped") and (run_dir / "checkpoints" / "latest").exists()
    assert workers.live_threads() == []


def test_closing_while_training_decodes_its_data_returns_at_once(qtbot, make_window, monkeypatch):
    """Start before the Data pane has the images: the training thread decodes them itself, and
    a stop must not wait for a large folder to finish."""
    import cmcore.data
    from cmcore import DataError

    window = make_window()
    wait_for_data(qtbot, window)
    real = cmcore.data.load_dataset

    def slow_load(spec, resolution=32, channels="auto", hflip=False, *args, cancel=None, **kwargs):
        for _ in range(400):  # 20 s of decoding
            if cancel is not None and cancel():
                raise DataError("cancelled")
            time.sleep(0.05)
        return real(spec, resolution, channels, hflip, *args, cancel=cancel, **kwargs)

    monkeypatch.setattr(cmcore.data, "load_dataset", slow_load)
    monkeypatch.setattr(window.data_pane, "dataset_for", lambda config: None)
    configure(window, max_steps=100)
    tp = window.train_pane
    click(qtbot, tp.start_button)
    qtbot.wait(500)
    assert tp.running and tp.step == 0
    assert close_timed(qtbot, window) < CLOSE_WITHIN_S
    assert workers.live_threads() == [] and not tp.running


# --- 3. stress ---------------------------------------------------------------------------------------

def test_double_clicking_start_starts_one_run(qtbot, make_window, tmp_path):
    window = make_window()
    wait_for_data(qtbot, window)
    tp = window.train_pane
    configure(window, max_steps=8, preview_every=0)
    most = []
    tp.running_changed.connect(lambda _r: most.append(len(training_threads())))
    # a person's double click: press, release, press (a double-click event), release
    qtbot.mouseClick(tp.start_button, Qt.MouseButton.LeftButton)
    qtbot.mouseDClick(tp.start_button, Qt.MouseButton.LeftButton)
    qtbot.mouseRelease(tp.start_button, Qt.MouseButton.LeftButton)
    assert tp.start() is False  # a third click, by keyboard or code, while it runs
    wait_idle(qtbot, window)
    assert tp.last_run[1] == "max_steps"
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [tp.run_dir.name]
    assert max(most) <= 1


def test_a_second_training_is_refused_while_one_runs(qtbot, make_window, tmp_path, dialog_log):
    workspace = tmp_path / "runs"
    old = train_run(workspace, "ct-old")
    window = make_window(workspace=workspace)
    wait_for_data(qtbot, window)
    tp, rp = window.train_pane, window.runs_pane
    configure(window, max_steps=100_000, preview_every=0)
    click(qtbot, tp.start_button)
    qtbot.waitUntil(lambda: tp.step >= 1, timeout=60_000)
    current = tp.run_dir

    window.show_pane("runs")  # resume another run from the Runs pane
    qtbot.waitUntil(lambda: rp.select_path(old), timeout=30_000)
    dialog_log.confirm_answer = True  # "Train more" if it asked
    rp.resume_button.click()
    assert dialog_log.infos and "Stop the current run" in dialog_log.infos[-1][1]
    assert tp.start() is False and tp.resume_run(old) is False
    assert tp.run_dir == current and len(training_threads()) == 1
    click(qtbot, tp.stop_button)
    wait_idle(qtbot, window)
    assert tp.last_run == (current, "stopped") and dialog_log.errors == []


def test_stop_during_the_first_step(qtbot, make_window, monkeypatch):
    from cmcore import training

    entered, release = threading.Event(), threading.Event()
    real = training.Trainer.train_step

    def first_step_waits(trainer):
        if trainer.step == 0:
            entered.set()
            release.wait(10)
        return real(trainer)

    monkeypatch.setattr(training.Trainer, "train_step", first_step_waits)
    window = make_window()
    wait_for_data(qtbot, window)
    tp = window.train_pane
    configure(window, max_steps=1000, preview_every=0)
    click(qtbot, tp.start_button)
    qtbot.waitUntil(entered.is_set, timeout=60_000)
    click(qtbot, tp.stop_button)
    assert not tp.stop_button.isEnabled() and not tp.start_button.isEnabled()
    release.set()
    wait_idle(qtbot, window)
    run_dir = Path(tp.run_dir)
    assert tp.last_run == (run_dir, "stopped") and tp.step == 1
    assert (run_dir / "checkpoints" / "latest").exists() and tp.start_button.isEnabled()


def test_stop_while_the_training_decodes_its_data(qtbot, make_window, monkeypatch, dialog_log):
    import cmcore.data
    from cmcore import DataError

    window = make_window()
    wait_for_data(qtbot, window)
    real = cmcore.data.load_dataset

    def slow_load(spec, resolution=32, channels="auto", hflip=False, *args, cancel=None, **kwargs):
        for _ in range(400):
            if cancel is not None and cancel():
                raise DataError("cancelled")
            time.sleep(0.05)
        return real(spec, resolution, channels, hflip, *args, cancel=cancel, **kwargs)

    monkeypatch.setattr(cmcore.data, "load_dataset", slow_load)
    monkeypatch.setattr(window.data_pane, "dataset_for", lambda config: None)
    tp = window.train_pane
    configure(window, max_steps=100)
    click(qtbot, tp.start_button)
    qtbot.wait(300)
    t0 = time.monotonic()
    click(qtbot, tp.stop_button)
    wait_idle(qtbot, window, timeout=10_000)
    assert time.monotonic() - t0 < CLOSE_WITHIN_S
    assert dialog_log.errors == [] and tp.start_button.isEnabled()
    assert "before the first step" in tp.status.text()


def test_dragging_the_steps_slider_computes_only_the_latest_request(qtbot, make_window, tmp_path, slow_models,
                                                                    counted_samples):
    run = train_run(tmp_path / "runs", "ct-run")
    window = make_window(workspace=tmp_path / "runs")
    gp = open_in_gallery(qtbot, window, run)
    window.show_pane("gallery")
    slow_models["s"] = 0.25  # each request takes at least 0.25 s; the slider moves every 50 ms
    counted_samples.clear()
    gp.steps.setFocus()
    end, key = time.monotonic() + 3.0, Qt.Key.Key_Right
    while time.monotonic() < end:  # drag back and forth for 3 s
        if gp.steps.value() == gp.steps.maximum():
            key = Qt.Key.Key_Left
        elif gp.steps.value() == gp.steps.minimum():
            key = Qt.Key.Key_Right
        qtbot.keyClick(gp.steps, key)
        qtbot.wait(50)
    final = gp.steps.value()
    qtbot.waitUntil(lambda: not gp.sampling.busy, timeout=60_000)
    assert gp.result.request.steps == final
    assert counted_samples[-1].steps == final
    assert len(counted_samples) <= 2, [r.steps for r in counted_samples]


def test_changing_the_workspace_while_training(qtbot, make_window, tmp_path, dialog_log):
    first, second = tmp_path / "runs", tmp_path / "elsewhere"
    there = train_run(second, "ct-there")
    window = make_window(workspace=first)
    wait_for_data(qtbot, window)
    tp, rp = window.train_pane, window.runs_pane
    configure(window, max_steps=100_000, preview_every=0)
    click(qtbot, tp.start_button)
    qtbot.waitUntil(lambda: tp.step >= 1, timeout=60_000)
    running = Path(tp.run_dir)

    window.show_pane("runs")
    dialog_log.folder_answers.append(str(second))
    click(qtbot, rp.change_workspace)
    qtbot.waitUntil(lambda: [r.path for r in rp.runs] == [there], timeout=30_000)
    assert tp.running and tp.workspace == second
    qtbot.wait(200)
    click(qtbot, tp.stop_button)
    wait_idle(qtbot, window)
    assert tp.last_run == (running, "stopped") and running.parent == first
    assert (running / "checkpoints" / "latest").exists()
    qtbot.waitUntil(lambda: not rp.lister.busy, timeout=30_000)
    assert [r.path for r in rp.runs] == [there]  # the pane stays on the new workspace

    configure(window, max_steps=2, preview_every=0)  # the next run goes to the new one
    click(qtbot, tp.start_button)
    wait_idle(qtbot, window)
    assert Path(tp.run_dir).parent == second and tp.last_run[1] == "max_steps"
    assert dialog_log.errors == []
