"""The training worker on its own: rate-limited progress, stop/pause before the engine
has started, and the metrics history sent on resume."""
from __future__ import annotations

import time

from cmcore import TrainConfig

from app import workers

from .helpers import FAST


def _config(**kw) -> TrainConfig:
    return TrainConfig(data="demo", preview_count=4, **{**FAST, "preview_every": 0, **kw})


class Collector:
    def __init__(self, worker: workers.TrainingWorker) -> None:
        self.batches, self.finished, self.failed, self.history, self.done = [], [], [], [], False
        worker.progress.connect(self.batches.append)
        worker.run_finished.connect(self.finished.append)
        worker.failed.connect(self.failed.append)
        worker.history.connect(self.history.append)
        worker.done.connect(self.on_done)

    def on_done(self) -> None:
        self.done = True


def run_worker(qtbot, worker) -> Collector:
    got = Collector(worker)
    workers.start_worker(worker, "test training")
    qtbot.waitUntil(lambda: got.done, timeout=120_000)
    assert workers.join_all(10_000)
    return got


def test_progress_is_batched_to_about_ten_signals_a_second(qtbot, tmp_path):
    worker = workers.TrainingWorker(_config(max_steps=40), tmp_path / "run")
    t0 = time.monotonic()
    got = run_worker(qtbot, worker)
    seconds = time.monotonic() - t0
    steps = [e.step for batch in got.batches for e in batch]
    assert steps == list(range(1, 41))  # every logged step arrives, in order
    assert len(got.batches) <= seconds / workers.TrainingWorker.EMIT_INTERVAL_S + 2
    assert got.finished[0].reason == "max_steps" and worker.final_step == 40 and not got.failed


def test_stop_and_pause_work_before_the_engine_exists(qtbot, tmp_path):
    worker = workers.TrainingWorker(_config(max_steps=1000), tmp_path / "stopped")
    worker.request_stop()  # clicked while data and model were still being prepared
    got = run_worker(qtbot, worker)
    assert got.finished[0].reason == "stopped" and got.finished[0].step == 0
    assert (tmp_path / "stopped" / "checkpoints" / "latest").exists()

    worker = workers.TrainingWorker(_config(max_steps=3), tmp_path / "paused")
    worker.pause()
    got = Collector(worker)
    workers.start_worker(worker, "test training")
    qtbot.wait(1500)
    assert not got.done and not got.batches  # held before the first step
    worker.unpause()
    qtbot.waitUntil(lambda: got.done, timeout=60_000)
    assert got.finished[0].reason == "max_steps"


def test_resume_sends_the_earlier_curve_first(qtbot, tmp_path):
    run_dir = tmp_path / "run"
    first = workers.TrainingWorker(_config(max_steps=6), run_dir)
    run_worker(qtbot, first)
    (run_dir / "config.toml").write_text(_config(max_steps=9).to_toml())
    again = run_worker(qtbot, workers.TrainingWorker(None, run_dir, resume=True))
    assert [r["step"] for r in again.history[0]] == [1, 2, 3, 4, 5, 6]
    assert [e.step for batch in again.batches for e in batch] == [7, 8, 9]



def test_quick_refusals_come_before_the_training_thread_decodes(qtbot, tmp_path, monkeypatch):
    """The worker decodes the data itself (stoppably) when it is given none: a missing folder or a
    run another process trains is refused first, in the engine's words, not after the decoding."""
    import cmcore.runlock

    worker = workers.TrainingWorker(_config().replace(data=str(tmp_path / "gone")), tmp_path / "run")
    got = run_worker(qtbot, worker)
    assert [i.kind for i in got.failed] == ["ConfigError"] and got.failed[0].message.startswith("data: the folder")

    monkeypatch.setattr(cmcore.runlock, "lock_owner", lambda run_dir: {"pid": 4242, "host": "lab-pc"})
    got = run_worker(qtbot, workers.TrainingWorker(_config(), tmp_path / "busy"))
    assert [i.kind for i in got.failed] == ["RunBusyError"] and "pid 4242 on lab-pc" in got.failed[0].message
