"""Fixtures for the app tests: isolated settings, non-blocking dialogs, a real main
window in a temporary workspace, and a check that no test leaves a QThread running."""
from __future__ import annotations

import gc

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app import dialogs, workers


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # On a busy 2-core machine two OpenMP threads spin against each other: one forward
    # pass of the tiny model took 1 s instead of 10 ms.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """QSettings, presets, the log and the data cache go to this test's own folder."""
    monkeypatch.setenv("CONSISTENCY_STUDIO_SETTINGS_DIR", str(tmp_path / "settings"))
    monkeypatch.setenv("CONSISTENCY_STUDIO_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("CMCORE_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="session", autouse=True)
def _themed(qapp):
    from app.theme import apply_theme

    apply_theme(qapp)


class DialogRecorder:
    """Stands in for app.dialogs: records what would have been shown, answers for the user."""

    def __init__(self) -> None:
        self.errors: list = []  # ErrorInfo
        self.infos: list[tuple[str, str]] = []
        self.confirms: list[tuple[str, str]] = []
        self.confirm_answer = True
        self.folder_answers: list[str | None] = []
        self.save_answers: list[str | None] = []
        self.open_answers: list[str | None] = []

    def show_error(self, parent, info) -> None:
        self.errors.append(info)

    def show_info(self, parent, title, text) -> None:
        self.infos.append((title, text))

    def confirm(self, parent, title, text, ok="OK") -> bool:
        self.confirms.append((title, text))
        return self.confirm_answer

    def pick_folder(self, parent, title, start=""):
        return self.folder_answers.pop(0) if self.folder_answers else None

    def pick_save_file(self, parent, title, start="", filters=""):
        return self.save_answers.pop(0) if self.save_answers else None

    def pick_open_file(self, parent, title, start="", filters=""):
        return self.open_answers.pop(0) if self.open_answers else None


@pytest.fixture(autouse=True)
def dialog_log(monkeypatch) -> DialogRecorder:
    recorder = DialogRecorder()
    for name in ("show_error", "show_info", "confirm", "pick_folder", "pick_save_file", "pick_open_file"):
        monkeypatch.setattr(dialogs, name, getattr(recorder, name))
    return recorder


def _python_threads() -> set[threading.Thread]:
    # a QThread that ran Python code shows up as a _DummyThread, forever: the registry covers those
    return {t for t in threading.enumerate() if not isinstance(t, threading._DummyThread)}


def leftover_threads(before: set[threading.Thread], grace_s: float = 3.0) -> str | None:
    """What a test left running: QThreads of app.workers' registry, and Python threads that
    were not there before it (a decoder pool, a helper thread). None when nothing is left;
    waits up to `grace_s` for threads that are just ending."""
    deadline = time.monotonic() + grace_s
    qthreads = [e for e in workers.live_threads()
                if not e.thread.wait(max(0, int((deadline - time.monotonic()) * 1000)))]
    others = []
    for t in _python_threads() - before:
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            others.append(t)
    if not qthreads and not others:
        return None
    lines = [f"- QThread {e.name!r}, started at:\n{e.origin}" for e in qthreads]
    lines += [f"- Python thread {t.name!r} (daemon={t.daemon})" for t in others]
    return "thread(s) still running after the test:\n" + "\n".join(lines)


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """Fail a test that leaves a thread running: a QThread started by the app (whose Python
    object, destroyed while running, would abort the process with "QThread: Destroyed while
    thread is still running") or a Python thread it started. Stops the QThreads it finds."""
    before = _python_threads()
    yield
    report = leftover_threads(before)
    if report is None:
        return
    for e in workers.live_threads():  # clean up so the next tests are not affected
        for method in ("request_stop", "cancel"):
            if hasattr(e.worker, method):
                getattr(e.worker, method)()
        e.thread.wait(120_000)
    pytest.fail(report)


@pytest.fixture
def make_window(qtbot, tmp_path, dialog_log):
    """Opens the real main window in a temporary workspace; closes it the user's way."""
    from app.main_window import MainWindow

    windows = []

    def make(data: str | None = "demo", workspace: Path | None | str = "tmp") -> MainWindow:
        """workspace None: the remembered one, as when a person starts the app again."""
        # A window closed earlier in the test is collected now, while no worker thread runs: collected later,
        # inside a paint, its Qt objects' destructors can wait on a Qt lock that a worker thread holds while it
        # waits for the GIL (seen once: a deadlock). The app itself has one window per process.
        gc.collect()
        window = MainWindow(workspace=tmp_path / "runs" if workspace == "tmp" else workspace, data=data)
        window.data_pane.resolution.setValue(16)
        window.show()
        windows.append(window)
        qtbot.waitUntil(lambda: window.engine_ready, timeout=60_000)
        return window

    yield make
    dialog_log.confirm_answer = True  # "Stop and quit" if a test left training running
    for window in windows:
        window.close()  # asks (answered yes), stops training, joins threads
        qtbot.waitUntil(lambda w=window: not w.isVisible(), timeout=120_000)
        window.deleteLater()


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """20 small RGB PNGs of coloured rectangles."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        img = np.full((24, 24, 3), rng.integers(0, 80, 3), dtype=np.uint8)
        y, x = rng.integers(0, 12, 2)
        img[y:y + 10, x:x + 10] = rng.integers(120, 255, 3)
        Image.fromarray(img).save(folder / f"img_{i:02d}.png")
    return folder
