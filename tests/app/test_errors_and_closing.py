"""Error paths reach the user as a message and leave the app usable; closing during
training stops the engine (which saves a checkpoint) and joins the thread."""
from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from app import workers
from app.errors import describe

from .helpers import configure, control, wait_for_data, wait_idle


def start(qtbot, window) -> None:
    qtbot.mouseClick(window.train_pane.start_button, Qt.MouseButton.LeftButton)


def test_empty_folder_shows_a_message_and_the_app_stays_usable(qtbot, make_window, tmp_path, dialog_log):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    window = make_window(data=str(empty))
    wait_for_data(qtbot, window)
    dp = window.data_pane
    assert dp.dataset is None
    assert len(dialog_log.errors) == 1 and dialog_log.errors[0].kind == "DataError"
    assert "No image files" in dialog_log.errors[0].message and dialog_log.errors[0].hint

    # clicking Start anyway: the trainer reports the same problem, nothing crashes
    configure(window, max_steps=2)
    start(qtbot, window)
    wait_idle(qtbot, window)
    assert len(dialog_log.errors) == 2 and dialog_log.errors[1].kind == "DataError"
    assert window.train_pane.start_button.isEnabled()

    # still alive: switch to the demo data and train
    dp.set_spec("demo")
    wait_for_data(qtbot, window)
    assert dp.dataset is not None
    start(qtbot, window)
    wait_idle(qtbot, window)
    assert window.train_pane.last_run[1] == "max_steps" and len(dialog_log.errors) == 2


def test_nan_loss_shows_a_message_and_training_can_start_again(qtbot, make_window, dialog_log):
    window = make_window()
    wait_for_data(qtbot, window)
    tp = window.train_pane
    configure(window, lr=1e30, max_steps=50, warmup_steps=0, preview_every=0)
    assert control(tp.form, "lr").value() == 1e30
    start(qtbot, window)
    wait_idle(qtbot, window)
    assert [e.kind for e in dialog_log.errors] == ["TrainingError"]
    info = dialog_log.errors[0]
    assert "step" in info.message and "learning rate" in info.hint
    assert tp.status.text().startswith("Failed")
    assert tp.start_button.isEnabled()

    configure(window, lr=1e-3, max_steps=2, preview_every=0)
    start(qtbot, window)
    wait_idle(qtbot, window)
    assert tp.last_run[1] == "max_steps" and len(dialog_log.errors) == 1


def test_a_full_disk_is_explained_and_the_app_stays_usable(qtbot, make_window, dialog_log, monkeypatch):
    import cmcore.checkpoint as ck
    from safetensors import SafetensorError

    def full(tensors, path, metadata=None):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    window = make_window()
    wait_for_data(qtbot, window)
    tp = window.train_pane
    monkeypatch.setattr(ck, "save_file", full)
    configure(window, max_steps=3, preview_every=0)
    start(qtbot, window)
    wait_idle(qtbot, window)
    assert [e.kind for e in dialog_log.errors] == ["SaveError"]
    info = dialog_log.errors[0]
    assert "No space left on device" in info.message and "Free disk space" in info.hint
    assert tp.status.text().startswith("Failed") and tp.start_button.isEnabled()


def test_invalid_setting_is_explained_before_starting(qtbot, make_window, dialog_log):
    window = make_window()
    configure(window, method="cd")  # CD without a teacher
    window.train_pane.form.set_teacher("")
    assert window.train_pane.start() is False
    assert dialog_log.errors[-1].kind == "ConfigError" and "teacher" in dialog_log.errors[-1].message
    assert not window.train_pane.running
    assert not any(e.name.startswith("training") for e in workers.live_threads())


def test_closing_during_training_stops_saves_and_joins(qtbot, make_window, dialog_log):
    window = make_window()
    wait_for_data(qtbot, window)
    tp = window.train_pane
    configure(window, max_steps=100_000, preview_every=0)
    start(qtbot, window)
    qtbot.waitUntil(lambda: tp.step >= 2, timeout=60_000)
    run_dir = Path(tp.run_dir)

    dialog_log.confirm_answer = False  # "Cancel": keep training
    window.close()
    assert window.isVisible() and tp.running and len(dialog_log.confirms) == 1

    dialog_log.confirm_answer = True
    window.close()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=60_000)
    assert not tp.running and tp.last_run == (run_dir, "stopped")
    assert (run_dir / "checkpoints" / "latest").exists()
    assert workers.live_threads() == []


def test_shutdown_joins_a_running_training_thread(qtbot, make_window):
    """What happens on app quit (aboutToQuit → shutdown): a blocking, clean stop."""
    window = make_window()
    wait_for_data(qtbot, window)
    configure(window, max_steps=100_000, preview_every=0)
    start(qtbot, window)
    qtbot.waitUntil(lambda: window.train_pane.step >= 1, timeout=60_000)
    window.shutdown()
    assert workers.live_threads() == []
    qtbot.waitUntil(lambda: not window.train_pane.running, timeout=10_000)  # queued signals arrive


@pytest.mark.parametrize("exc, kind_title", [
    (MemoryError(), "Out of memory"),
    (RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), "Out of memory"),
    (ZeroDivisionError("division by zero"), "Unexpected error"),
])
def test_errors_are_explained(exc, kind_title):
    info = describe(exc, "Training")
    assert info.title == f"Training: {kind_title}" and info.hint
    if kind_title == "Unexpected error":
        assert "log file" in info.hint and "ZeroDivisionError" in info.message


def _busy_error() -> list:
    import cmcore.errors

    busy = getattr(cmcore.errors, "RunBusyError", None)  # the engine's one-writer-per-run error
    return [(busy("x"), "busy")] if busy else []


def test_engine_errors_are_explained():
    from cmcore import CheckpointError, ConfigError, DataError, TrainingError

    for exc, word in ((DataError("x"), "images"), (ConfigError("x"), "setting"), *_busy_error(),
                      (CheckpointError("x"), "checkpoint"), (TrainingError("x"), "Training")):
        info = describe(exc)
        assert word.lower() in info.title.lower() and info.message == "x" and info.hint


def test_worker_exceptions_are_logged_with_traceback(qtbot, tmp_path):
    from app.log import log_file, setup_logging

    setup_logging()
    worker = workers.FunctionWorker(lambda: 1 / 0, context="Testing")
    with qtbot.waitSignal(worker.failed, timeout=10_000) as blocker:
        workers.start_worker(worker, "failing job")
    info = blocker.args[0]
    assert info.title.startswith("Testing") and "ZeroDivisionError" in info.details
    assert workers.join_all(10_000)
    assert "ZeroDivisionError" in log_file().read_text()
    assert str(tmp_path) in str(log_file())


def test_a_warning_from_the_engine_is_shown_and_training_goes_on(qtbot, make_window, dialog_log, monkeypatch):
    """events.Warning (a preview or metrics line not written, ...): a status message, and the
    finished run says how many there were; no error box, training is not interrupted."""
    from cmcore import events, training

    if not hasattr(events, "Warning"):
        pytest.skip("engine without events.Warning")
    real = training.Trainer.train_step

    def warn_at_step_3(trainer):
        if trainer.step == 3:
            trainer.on_event(events.Warning(3, "no preview at step 3: No space left on device"))
        return real(trainer)

    monkeypatch.setattr(training.Trainer, "train_step", warn_at_step_3)
    window = make_window()
    wait_for_data(qtbot, window)
    messages = []
    window.statusBar().messageChanged.connect(messages.append)
    configure(window, max_steps=6, preview_every=0)
    start(qtbot, window)
    wait_idle(qtbot, window)
    tp = window.train_pane
    assert tp.last_run[1] == "max_steps" and tp.step == 6 and dialog_log.errors == []
    assert [w.step for w in tp.warnings] == [3]
    assert any(m == "Warning at step 3: no preview at step 3: No space left on device" for m in messages)
    assert "1 warning(s)" in tp.status.text() and "No space left" in tp.status.toolTip()
