"""The Runs pane under stress (issue 22): deleting happens in the background and never under the
gallery's or the trainer's feet; runs trained by another process are shown busy and kept from
resume and delete; an unreadable run is listed with its reason without hiding the others."""
from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from app.panes import runs_pane as runs_module
from app.panes.runs_pane import STATUS_COLUMN

from .helpers import click, configure, control, open_in_gallery, train_run, wait_for_data


def test_deleting_runs_in_the_background_and_the_gallery_lets_go_first(qtbot, make_window, tmp_path,
                                                                        dialog_log, monkeypatch):
    workspace = tmp_path / "runs"
    shown, other = train_run(workspace, "ct-shown"), train_run(workspace, "ct-other")
    window = make_window(workspace=workspace)
    gp, rp = window.gallery_pane, window.runs_pane
    gp_open = open_in_gallery(qtbot, window, shown)
    assert gp_open.run_box.findData(str(shown)) >= 0

    real_rmtree = shutil.rmtree
    seen = []

    def slow_rmtree(path, *args, **kwargs):  # a run folder with gigabytes of checkpoints
        seen.append(threading.current_thread() is threading.main_thread())
        time.sleep(1.0)
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", slow_rmtree)
    window.show_pane("runs")
    qtbot.waitUntil(lambda: rp.table.rowCount() == 2, timeout=30_000)
    assert rp.select_path(shown)
    t0 = time.monotonic()
    click(qtbot, rp.delete_button)
    assert time.monotonic() - t0 < 0.5, "the GUI thread waited for the deletion"
    assert gp.result is None and gp.source is None  # the gallery closed the run first
    qtbot.waitUntil(lambda: not shown.exists() and rp.table.rowCount() == 1, timeout=30_000)
    assert seen == [False]  # deleted in a worker thread
    assert other.exists() and gp.run_box.findData(str(shown)) < 0 and gp.run_box.findData(str(other)) >= 0
    assert dialog_log.errors == []


def test_deleting_the_run_being_trained_is_refused_with_a_message(qtbot, make_window, dialog_log):
    window = make_window()
    wait_for_data(qtbot, window)
    tp, rp = window.train_pane, window.runs_pane
    configure(window, max_steps=100_000, preview_every=0)
    click(qtbot, tp.start_button)
    qtbot.waitUntil(lambda: tp.step >= 1, timeout=60_000)
    run_dir = Path(tp.run_dir)
    window.show_pane("runs")
    qtbot.waitUntil(lambda: rp.select_path(run_dir), timeout=30_000)
    assert not rp.delete_button.isEnabled() and not rp.resume_button.isEnabled()
    assert rp.delete_selected() is False
    assert dialog_log.infos and dialog_log.infos[-1][0] == "Cannot delete this run"
    assert "training" in dialog_log.infos[-1][1] and run_dir.exists() and tp.running


# --- runs of other processes, unreadable runs -----------------------------------------------------

def _as_listed(info, **extra):
    """A RunInfo as the engine lists it, with the fields of issue 22 (busy_by, error)."""
    fields = {k: getattr(info, k) for k in ("path", "name", "method", "step", "max_steps", "last_loss", "updated",
                                             "has_checkpoint")}
    return SimpleNamespace(**{"busy_by": None, "error": None, **fields, **extra})


def _unreadable(path: Path, reason: str):
    return SimpleNamespace(path=path, name=path.name, method=None, step=None, max_steps=None, last_loss=None,
                           updated=path.stat().st_mtime, has_checkpoint=False, busy_by=None, error=reason)


@pytest.fixture
def listed(monkeypatch):
    """Replace what the engine lists: a function of the real list."""
    rewrite = {"fn": lambda runs: runs}
    real = runs_module._list_runs
    monkeypatch.setattr(runs_module, "_list_runs", lambda workspace: rewrite["fn"](real(workspace)))
    return rewrite


def test_a_run_trained_by_another_process_is_busy(qtbot, make_window, tmp_path, dialog_log, listed):
    workspace = tmp_path / "runs"
    free, busy = train_run(workspace, "ct-free"), train_run(workspace, "flow-busy", method="flow")
    owner = {"pid": 4242, "host": "lab-pc", "since": time.time()}
    listed["fn"] = lambda runs: [_as_listed(r, busy_by=owner if r.path == busy else None) for r in runs]
    window = make_window(workspace=workspace)
    rp, tp = window.runs_pane, window.train_pane
    window.show_pane("runs")
    qtbot.waitUntil(lambda: rp.table.rowCount() == 2, timeout=30_000)

    assert rp.select_path(busy)
    row = rp.table.currentRow()
    assert rp.table.item(row, STATUS_COLUMN).text() == "busy (process 4242 on lab-pc)"
    assert not rp.resume_button.isEnabled() and not rp.delete_button.isEnabled()
    assert rp.gallery_button.isEnabled()  # its checkpoints can still be sampled
    assert "process 4242 on lab-pc" in rp.hint.text() and rp.hint.isVisibleTo(rp)
    assert rp.delete_selected() is False and busy.exists()
    assert dialog_log.infos[-1][0] == "Cannot delete this run" and "4242" in dialog_log.infos[-1][1]
    rp.resume_button.click()  # disabled: nothing happens
    rp._emit_selected("resume")  # and if it were reached anyway: refused with the reason
    assert dialog_log.infos[-1][0] == "Cannot resume this run" and not tp.running

    assert rp.select_path(free)
    assert rp.resume_button.isEnabled() and rp.delete_button.isEnabled() and not rp.hint.isVisibleTo(rp)
    assert window.gallery_pane.run_box.count() == 2
    assert control(tp.form, "teacher").findData(str(busy)) >= 0  # a teacher being trained further is still a teacher


def test_the_train_pane_refuses_to_resume_a_run_another_process_trains(qtbot, make_window, tmp_path, dialog_log,
                                                                        monkeypatch):
    run = train_run(tmp_path / "runs", "ct-run")
    window = make_window(workspace=tmp_path / "runs")
    monkeypatch.setattr(runs_module, "lock_owner", lambda path: {"pid": 4242} if Path(path) == run else None)
    import app.panes.train_pane as train_module

    monkeypatch.setattr(train_module, "lock_owner", runs_module.lock_owner)
    assert window.train_pane.resume_run(run) is False and not window.train_pane.running
    assert dialog_log.infos[-1][0] == "Run is busy" and "process 4242" in dialog_log.infos[-1][1]
    # its own process's lock (this window training it) is not "another process"
    monkeypatch.setattr(train_module, "lock_owner", lambda path: {"pid": os.getpid()})
    dialog_log.confirm_answer = False  # "Run is complete: train more?" → no
    assert window.train_pane.resume_run(run) is False
    assert dialog_log.confirms[-1][0] == "Run is complete"


def test_an_unreadable_run_is_listed_with_the_reason(qtbot, make_window, tmp_path, dialog_log, listed):
    workspace = tmp_path / "runs"
    good = train_run(workspace, "flow-good", method="flow")
    broken = workspace / "ct-broken"
    broken.mkdir()
    (broken / "config.toml").write_text("[train\nthis is not TOML")
    reason = "config.toml: Expected ']' at the end of a table declaration (line 1, column 7)"
    listed["fn"] = lambda runs: ([_as_listed(r) for r in runs if r.path != broken]
                                 + ([_unreadable(broken, reason)] if broken.exists() else []))
    window = make_window(workspace=workspace)
    rp = window.runs_pane
    window.show_pane("runs")
    qtbot.waitUntil(lambda: rp.table.rowCount() == 2, timeout=30_000)
    assert dialog_log.errors == []

    assert rp.select_path(broken)
    row = rp.table.currentRow()
    assert rp.table.item(row, STATUS_COLUMN).text().startswith("unreadable: config.toml: Expected")
    assert reason in rp.table.item(row, STATUS_COLUMN).toolTip() and reason in rp.hint.text()
    assert rp.table.item(row, 1).text() == "—" and rp.table.item(row, 2).text() == "—"
    assert not rp.resume_button.isEnabled() and not rp.gallery_button.isEnabled()
    assert rp.delete_button.isEnabled() and rp.folder_button.isEnabled()  # a broken run can be cleaned up

    # the other run is listed as usual, in the gallery's run list and as a CD teacher
    assert rp.select_path(good)
    assert rp.table.item(rp.table.currentRow(), 2).text() == "2 / 2"
    gp, form = window.gallery_pane, window.train_pane.form
    assert [gp.run_box.itemData(i) for i in range(gp.run_box.count())] == [str(good)]
    assert control(form, "teacher").findData(str(good)) >= 0

    assert rp.select_path(broken)
    dialog_log.confirm_answer = True
    click(qtbot, rp.delete_button)
    qtbot.waitUntil(lambda: not broken.exists() and rp.table.rowCount() == 1, timeout=30_000)
    assert dialog_log.errors == []


# --- the same, with the engine's own lock and listing ---------------------------------------------

def _engine_has(module, name: str) -> bool:
    import importlib

    return hasattr(importlib.import_module(module), name)


@pytest.mark.skipif(not _engine_has("cmcore.runlock", "acquire_lock"), reason="engine without run locks")
def test_a_run_locked_by_another_process_is_busy_end_to_end(qtbot, make_window, tmp_path, dialog_log):
    import subprocess
    import sys

    workspace = tmp_path / "runs"
    run = train_run(workspace, "ct-locked")
    code = ("import sys, time\nfrom cmcore.runlock import acquire_lock\nacquire_lock(sys.argv[1])\n"
            "print('locked', flush=True)\ntime.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        window = make_window(workspace=workspace)
        rp = window.runs_pane
        window.show_pane("runs")
        qtbot.waitUntil(lambda: rp.select_path(run), timeout=30_000)
        row = rp.table.currentRow()
        assert rp.table.item(row, STATUS_COLUMN).text().startswith(f"busy (process {holder.pid} on ")
        assert not rp.resume_button.isEnabled() and not rp.delete_button.isEnabled()
        assert window.train_pane.resume_run(run) is False and "Run is busy" == dialog_log.infos[-1][0]
    finally:
        holder.kill()
        holder.wait()
    rp.refresh()  # the process is gone: the run is free again
    qtbot.waitUntil(lambda: rp.delete_button.isEnabled() and rp.table.item(rp.table.currentRow(), STATUS_COLUMN)
                    .text() == "", timeout=30_000)


@pytest.mark.skipif("error" not in getattr(__import__("cmcore.runs").runs.RunInfo, "__dataclass_fields__", {}),
                    reason="engine without RunInfo.error")
def test_an_unreadable_run_end_to_end(qtbot, make_window, tmp_path, dialog_log):
    workspace = tmp_path / "runs"
    good = train_run(workspace, "ct-good")
    broken = train_run(workspace, "ct-broken")
    (broken / "config.toml").write_bytes(b"\xff\xfe not text")
    window = make_window(workspace=workspace)
    rp = window.runs_pane
    window.show_pane("runs")
    qtbot.waitUntil(lambda: rp.table.rowCount() == 2, timeout=30_000)
    assert rp.select_path(broken)
    assert rp.table.item(rp.table.currentRow(), STATUS_COLUMN).text().startswith("unreadable: ")
    assert not rp.resume_button.isEnabled() and rp.hint.text().startswith("Unreadable: ")
    gp = window.gallery_pane
    assert [gp.run_box.itemData(i) for i in range(gp.run_box.count())] == [str(good)]
    assert dialog_log.errors == []
