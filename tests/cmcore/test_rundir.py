"""cmcore/rundir.py: the run folder's layout, atomic writes, the latest pointer, metrics, extending a run."""
import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest

from cmcore import rundir, runlock
from cmcore.config import TrainConfig
from cmcore.errors import CheckpointError, RunBusyError


def test_atomic_write_leaves_the_old_file_or_the_new_one(tmp_path):
    path = tmp_path / "f.txt"
    rundir.atomic_write_bytes(path, b"old")

    def fail(tmp):
        open(tmp, "wb").write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        rundir.atomic_write_via(path, fail)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.txt"]  # no temporary file left
    rundir.atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"


def test_checkpoint_names_and_steps_in_numeric_order(tmp_path):
    assert rundir.checkpoint_name(373) == "step_0000373"
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for step in (9_999_999, 10_000_000, 500, 20_000_000):
        for file in rundir.checkpoint_files(tmp_path, step):
            file.write_bytes(b"x")
    (folder / "step_junk.safetensors").write_bytes(b"x")
    assert rundir.saved_steps(folder) == [500, 9_999_999, 10_000_000, 20_000_000]  # as numbers, not strings
    assert rundir.find_checkpoint(tmp_path).name == "step_20000000.safetensors"  # no pointer: the highest step
    rundir.atomic_write_bytes(rundir.latest_pointer(tmp_path), b"step_0000500")
    assert rundir.latest_step(tmp_path) == 500 and rundir.find_checkpoint(tmp_path).name == "step_0000500.safetensors"
    assert rundir.state_file(folder / "step_0000500.safetensors").name == "step_0000500.state.pt"
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint"):
        rundir.find_checkpoint(tmp_path / "empty")


def test_run_names_of_folders_and_checkpoints(tmp_path):
    ckpt = tmp_path / "my-run" / "checkpoints" / "step_0000010.safetensors"
    assert rundir.run_of(ckpt) == tmp_path / "my-run" and rundir.run_name(ckpt) == "my-run"
    assert rundir.run_of(tmp_path / "exported.safetensors") is None and rundir.run_name(tmp_path / "exported.safetensors") == "exported"


def test_metrics_reader_skips_a_torn_line_and_keeps_the_rest(tmp_path):
    rundir.append_metrics(tmp_path, {"step": 10, "loss": 1.0})
    with open(tmp_path / rundir.METRICS, "a") as fh:
        fh.write('{"step": 20, "lo\n1\n["a"]\n{"loss": 3}\n{"step": "x"}\n\xff\n')
    rundir.append_metrics(tmp_path, {"step": 30, "loss": 0.5, "wall": 12.5})
    assert [r["step"] for r in rundir.read_metrics(tmp_path)] == [10, 30]
    assert rundir.read_metrics(tmp_path / "missing") == []
    rundir.truncate_metrics(tmp_path, 20)
    assert rundir.read_metrics(tmp_path) == [{"step": 10, "loss": 1.0}]


def test_a_finished_run_is_extended_by_one_more_budget(tmp_path):
    config = TrainConfig(max_steps=100, max_minutes=0)
    rundir.append_metrics(tmp_path, {"step": 50, "loss": 1.0, "wall": 30.0})
    assert rundir.limit_reached(tmp_path, config) is None and rundir.extended(tmp_path, config) is config
    rundir.append_metrics(tmp_path, {"step": 100, "loss": 1.0, "wall": 60.0})
    assert rundir.limit_reached(tmp_path, config) == "steps"
    longer = rundir.extended(tmp_path, config)
    assert longer.max_steps == 200 and TrainConfig.load(tmp_path / rundir.CONFIG) == longer
    timed = TrainConfig(max_steps=10_000, max_minutes=1.0)
    assert rundir.limit_reached(tmp_path, timed) == "minutes"
    assert rundir.extended(tmp_path, timed).max_minutes == pytest.approx(2.0)


# --- a checkpoint is one unit; the pointer names only its own folder's files (issue 22) ------------------
def _pair(run, step, weights=True, state=True):
    w, s = rundir.checkpoint_files(run, step)
    w.parent.mkdir(parents=True, exist_ok=True)
    if weights:
        w.write_bytes(b"w")
    if state:
        s.write_bytes(b"s")


def test_the_fallback_search_only_considers_complete_pairs(tmp_path):
    """A process killed between the weights' and the state's rename leaves weights without a state:
    neither `latest` nor the search without a pointer may pick them."""
    _pair(tmp_path, 9)
    _pair(tmp_path, 12, state=False)  # killed between the two renames
    _pair(tmp_path, 15, weights=False)  # half of a pruned pair
    assert rundir.complete_steps(tmp_path / "checkpoints") == [9]
    assert rundir.find_checkpoint(tmp_path).name == "step_0000009.safetensors"
    assert rundir.latest_step(tmp_path) == 9 and rundir.has_checkpoint(tmp_path)
    rundir.atomic_write_bytes(rundir.latest_pointer(tmp_path), b"step_0000012")  # names an incomplete pair
    assert rundir.find_checkpoint(tmp_path).name == "step_0000009.safetensors" and rundir.latest_step(tmp_path) == 9
    (tmp_path / "only-halves").mkdir()
    _pair(tmp_path / "only-halves", 3, state=False)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        rundir.find_checkpoint(tmp_path / "only-halves")


@pytest.mark.parametrize("pointer", [b"../../outside/step_0000009", b"/etc/passwd", b"step_0000009/../../x",
                                     b"step_9.safetensors", b"step_0000003", b"\xff\xfe", b"step_" + b"9" * 5000])
def test_latest_may_only_name_a_checkpoint_of_its_own_folder(tmp_path, pointer):
    """Anything but `step_<digits>` naming a complete pair of the same folder is ignored: the search
    without a pointer is used."""
    (tmp_path / "outside").mkdir()
    _pair(tmp_path / "outside", 9)  # a checkpoint outside the run, where a crafted pointer would lead
    _pair(tmp_path / "run", 5)
    rundir.latest_pointer(tmp_path / "run").write_bytes(pointer)
    assert rundir.find_checkpoint(tmp_path / "run") == tmp_path / "run" / "checkpoints" / "step_0000005.safetensors"
    assert rundir.latest_step(tmp_path / "run") == 5


def test_orphans_of_killed_writes_are_cleaned(tmp_path):
    _pair(tmp_path, 3)
    _pair(tmp_path, 6, state=False)
    _pair(tmp_path, 2, weights=False)
    tmps = [tmp_path / "checkpoints" / ".step_0000009.safetensors.x1.tmp", tmp_path / ".metrics.jsonl.x2.tmp",
            tmp_path / "previews" / ".step_0000009_1steps.png.x3.tmp"]
    for tmp in tmps:
        tmp.parent.mkdir(exist_ok=True)
        tmp.write_bytes(b"half")
    (tmp_path / "checkpoints" / "notes.txt").write_text("mine")  # not ours: kept
    removed = rundir.clean_orphans(tmp_path)
    assert sorted(p.name for p in removed) == sorted([t.name for t in tmps] + ["step_0000006.safetensors",
                                                                              "step_0000002.state.pt"])
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "notes.txt", "step_0000003.safetensors", "step_0000003.state.pt"]
    _pair(tmp_path, 9)
    _pair(tmp_path, 12, state=False)
    rundir.remove_checkpoints_after(tmp_path, 3)  # a resume from step 3 drops what came after
    assert rundir.saved_steps(tmp_path / "checkpoints") == [3]


# --- one run, one writer ---------------------------------------------------------------------------------
def test_the_lock_names_its_owner_and_refuses_a_second_writer(tmp_path):
    assert runlock.lock_owner(tmp_path) is None
    record = runlock.acquire_lock(tmp_path)
    owner = runlock.lock_owner(tmp_path)
    assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname() and owner["started"] > 0
    with pytest.raises(RunBusyError, match=rf"this run \(.*\) is being trained by pid {os.getpid()} on "
                                           rf"{re.escape(socket.gethostname())}") as caught:
        runlock.acquire_lock(tmp_path)
    assert "\n" not in str(caught.value)
    runlock.release_lock(tmp_path, {"token": "someone else's"})  # never removes another owner's lock
    assert runlock.lock_owner(tmp_path) is not None
    runlock.release_lock(tmp_path, record)
    assert runlock.lock_owner(tmp_path) is None and not (tmp_path / rundir.LOCK).exists()


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # exited and reaped: its pid names no process (until reused)
    path = tmp_path / rundir.LOCK
    path.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": time.time()}))
    assert runlock.lock_owner(tmp_path) is None
    record = runlock.acquire_lock(tmp_path)
    assert json.loads(path.read_text())["pid"] == os.getpid()
    runlock.release_lock(tmp_path, record)
    # a reused pid: alive, but started at another time than the lock's owner did
    if sys.platform.startswith("linux"):
        assert runlock._alive(os.getppid(), -1) is False and runlock._alive(os.getppid(), None) is True
    # a process on another host cannot be asked: busy, with what to do if it is gone
    path.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": time.time()}))
    with pytest.raises(RunBusyError, match=r"pid 1 on elsewhere .*\(if that process is gone, delete .*\.lock\)$"):
        runlock.acquire_lock(tmp_path)
    # an empty lock (killed between creating and writing it) is busy for a moment, then stale
    path.write_text("")
    assert runlock.lock_owner(tmp_path) == {"pid": None}
    old = time.time() - 60
    os.utime(path, (old, old))
    assert runlock.lock_owner(tmp_path) is None
    runlock.release_lock(tmp_path, runlock.acquire_lock(tmp_path))


# --- metrics.jsonl on a full disk -------------------------------------------------------------------------
def test_a_metrics_line_that_cannot_be_written_leaves_no_half_line(tmp_path, monkeypatch):
    import builtins

    rundir.append_metrics(tmp_path, {"step": 1, "loss": 1.0})
    real_open = builtins.open

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            self.fh.write(data[: len(data) // 2])  # half of it reached the disk
            self.fh.flush()
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(builtins, "open", lambda *a, **k: Full(real_open(*a, **k)) if str(a[0]).endswith(
        rundir.METRICS) and "a" in (a[1] if len(a) > 1 else k.get("mode", "")) else real_open(*a, **k))
    with pytest.raises(OSError, match="No space"):
        rundir.append_metrics(tmp_path, {"step": 2, "loss": 0.5})
    monkeypatch.undo()
    assert (tmp_path / rundir.METRICS).read_text() == '{"step": 1, "loss": 1.0}\n'
    with open(tmp_path / rundir.METRICS, "a") as fh:
        fh.write('{"step": 3, "lo')  # a process killed mid-line
    rundir.append_metrics(tmp_path, {"step": 4, "loss": 0.25})
    assert [r["step"] for r in rundir.read_metrics(tmp_path)] == [1, 4]


def test_score_lines_are_read_apart_from_loss_lines():
    records = [{"step": 10, "loss": 0.5}, {"step": 10, "score": {"1": 12.5, "2": "x", "n": 3}, "gap": 0.01, "best": True},
               {"step": 20, "score": {}}, {"step": 20, "score": {"1": 11.0}}, {"step": 20, "score": {"1": 9.0}}]
    assert rundir.scored(records) == [{"step": 10, "score": {1: 12.5}, "gap": 0.01, "best": True},
                                      {"step": 20, "score": {1: 11.0}, "gap": None, "best": False},
                                      {"step": 20, "score": {1: 9.0}, "gap": None, "best": False}]
    assert rundir.score_at(records, 20) == 9.0 and rundir.score_at(records, 10, steps=2) is None
    assert rundir.score_at(records, None) is None
