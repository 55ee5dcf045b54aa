"""Helpers shared by the app tests (the way a person waits and sets the form)."""
from __future__ import annotations

# Few, cheap steps: a test trains for a second or two, not minutes.
FAST = dict(method="ct", model="tiny", resolution=16, batch_size=8, max_steps=10, max_minutes=0.0, log_every=1,
            preview_every=4, checkpoint_every=0, warmup_steps=2, lr=1e-3, device="cpu", seed=0)


def wait_for_data(qtbot, window, timeout: int = 60_000) -> None:
    dp = window.data_pane
    qtbot.waitUntil(lambda: not dp.loading and (dp.dataset is not None or dp.last_error is not None),
                    timeout=timeout)


def configure(window, **overrides) -> None:
    window.train_pane.set_values({**FAST, **overrides})


def control(form, name: str):
    """The Train form's widget for a config field, found the way Qt tools find one: by its name."""
    from PySide6.QtWidgets import QWidget

    widget = form.findChild(QWidget, name)
    assert widget is not None, f"no control named {name!r}"
    return widget


def wait_idle(qtbot, window, timeout: int = 120_000) -> None:
    qtbot.waitUntil(lambda: not window.train_pane.running, timeout=timeout)
