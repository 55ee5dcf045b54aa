"""cmcore/rundir.py: the run folder's layout, atomic writes, the latest pointer, metrics, extending a run."""
import os

import pytest

from cmcore import rundir
from cmcore.config import TrainConfig
from cmcore.errors import CheckpointError


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
