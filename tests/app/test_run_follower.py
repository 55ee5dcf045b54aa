"""Runs another process trains, followed through their folder (app/run_follower.py): "All N GPUs" starts a
torchrun child (here two gloo processes on the CPU: list_devices reports two GPUs and the launch command is
swapped for a CPU one), and "Follow a run…" watches a `cmcore train` started outside the app."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from cmcore import TrainConfig, rundir, runlock
from cmcore.devices import DeviceInfo

from app import run_follower
from app.panes import train_pane as train_pane_module

from .helpers import FAST, click, configure, control, wait_idle

ROOT = Path(__file__).resolve().parents[2]
LONG = dict(max_steps=100_000, preview_every=4, log_every=1, checkpoint_every=0)


def steps_logged(run: Path) -> int:
    return len(rundir.read_metrics(run))


def test_all_gpus_trains_in_a_torchrun_child_that_the_pane_follows_and_closing_stops_it(
        qtbot, make_window, monkeypatch, dialog_log):
    import cmcore.devices

    gpus = [DeviceInfo("cpu", "CPU", None), DeviceInfo("cuda:0", "Test GPU", 2**34), DeviceInfo("cuda:1", "Test GPU", 2**34)]
    monkeypatch.setattr(cmcore.devices, "list_devices", lambda: gpus)
    launched = []

    def on_the_cpu(run_dir, nproc, *, resume):  # the same launcher, gloo on two CPU processes
        command = run_follower.torchrun_command(run_dir, nproc, resume=resume) + ["--device", "cpu"]
        launched.append(command)
        return command

    monkeypatch.setattr(train_pane_module, "torchrun_command", on_the_cpu)
    window = make_window()
    tp = window.train_pane
    window.show_pane("train")
    configure(window, **LONG)
    assert control(tp.form, "device").findText("All 2 GPUs (one process each)") >= 0
    tp.form.set_device("cuda")
    window.gallery_pane.device = "cpu"  # (the gallery has no GPU here either)
    assert tp.form.gpu_processes() == 2
    click(qtbot, tp.start_button)
    assert "--nproc-per-node" in launched[0] and launched[0][launched[0].index("--nproc-per-node") + 1] == "2"
    follower = tp.worker
    assert isinstance(follower, run_follower.RunFollower) and follower.owns_process
    run = Path(tp.run_dir)
    assert TrainConfig.load(run / "config.toml").device == "cuda"  # the app wrote the run's config for the child

    # the pane follows the child's folder: the plot gains points, previews appear, progress moves
    qtbot.waitUntil(lambda: tp.plot.num_points >= 3 and tp.previews.step is not None, timeout=120_000)
    assert "2 GPUs (torchrun)" in tp.status.text() or "step" in tp.status.text()
    points = tp.plot.num_points
    qtbot.waitUntil(lambda: tp.plot.num_points > points, timeout=30_000)
    assert tp.progress.value() >= 0 and tp.step >= 1 and set(tp.previews.grids) == {1, 4}

    # Pause reaches the ranks through the control file: the run stops logging; Resume lets it go on
    click(qtbot, tp.pause_button)
    assert runlock.read_control(run) == {"pause": True, "stop": False}
    qtbot.wait(1500)  # the next poll of the control file, and the step in flight
    paused_at = steps_logged(run)
    qtbot.wait(1500)
    assert steps_logged(run) == paused_at and follower.proc.poll() is None
    click(qtbot, tp.resume_button)
    qtbot.waitUntil(lambda: steps_logged(run) > paused_at, timeout=30_000)

    # closing the window asks, stops the child (which saves a checkpoint) and closes
    window.close()
    assert dialog_log.confirms and dialog_log.confirms[-1][0] == "Training is running"
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=120_000)
    assert follower.proc.returncode == 0
    assert rundir.latest_step(run) == follower.final_step == steps_logged(run) and runlock.lock_owner(run) is None
    assert dialog_log.errors == []


def test_follow_a_run_that_cmcore_train_writes_and_stop_it(qtbot, make_window, dialog_log, tmp_path):
    run = tmp_path / "server-run"
    config = tmp_path / "config.toml"
    TrainConfig(data="demo", preview_count=4, **{**FAST, **LONG}).save(config)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-m", "cmcore", "train", "--out", str(run), "--config", str(config),
                              "--quiet"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        window = make_window()
        tp = window.train_pane
        deadline = time.monotonic() + 60
        while not (run / "config.toml").is_file() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)  # the run is set up: its config written
        dialog_log.folder_answers.append(str(run))
        click(qtbot, tp.follow_button)
        follower = tp.worker
        assert isinstance(follower, run_follower.RunFollower) and not follower.owns_process
        assert tp.following_other_process
        qtbot.waitUntil(lambda: tp.plot.num_points >= 3 and tp.previews.step is not None, timeout=120_000)
        points = tp.plot.num_points
        qtbot.waitUntil(lambda: tp.plot.num_points > points, timeout=30_000)
        assert f"pid {child.pid}" in tp.status.text() or "step" in tp.status.text()

        click(qtbot, tp.stop_button)  # through the control file: the run saves and ends
        wait_idle(qtbot, window, timeout=60_000)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0 and "done at step" in out, err
    step = rundir.latest_step(run)
    assert step >= 3 and tp.last_run == (run, "stopped") and tp.step == step
    assert dialog_log.errors == []


def test_a_followed_run_passes_on_its_scores_and_redraws_for_a_rollback(qtbot, tmp_path):
    import json

    run = tmp_path / "r"
    run.mkdir()
    follower = run_follower.RunFollower(run)
    follower.config = TrainConfig(max_steps=100, max_minutes=0.0)
    got = {"history": [], "progress": [], "scored": []}
    for name, found in got.items():
        getattr(follower, name).connect(found.append)

    def append(*records):
        with open(run / rundir.METRICS, "a") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in records)
        follower._read_metrics()

    append({"step": 10, "loss": 0.5, "n": 2})
    assert [len(h) for h in got["history"]] == [1]  # the first lines: the curve so far
    append({"step": 20, "loss": 0.4, "n": 2}, {"step": 20, "score": {"1": 12.5, "2": 9.0}, "gap": 0.01, "best": True})
    assert [e.step for batch in got["progress"] for e in batch] == [20]  # the score line is no loss point
    assert [(s.step, s.scores, s.gap, s.best) for s in got["scored"]] == [(20, {1: 12.5, 2: 9.0}, 0.01, True)]
    append({"step": 30, "loss": 0.9, "n": 4, "rollbacks": 1})
    assert [len(h) for h in got["history"]] == [1, 4]  # a rollback redraws the curve with its mark
    assert follower.step == 30
