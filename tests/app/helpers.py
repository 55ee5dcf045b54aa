"""Helpers shared by the app tests (the way a person waits and sets the form)."""
from __future__ import annotations

# Few, cheap steps: a test trains for a second or two, not minutes.
FAST = dict(method="ct", model="tiny", resolution=16, batch_size=8, max_steps=10, max_minutes=0.0, log_every=1,
            preview_every=4, checkpoint_every=0, warmup_steps=2, lr=1e-3, device="cpu", seed=0, score=False)


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


def train_run(workspace, name: str, **kw):
    """A finished run trained by the engine directly (no window): 2 tiny steps on the demo data."""
    from cmcore import TrainConfig, Trainer

    config = TrainConfig(data="demo", preview_count=4, **{**FAST, "max_steps": 2, "preview_every": 0, **kw})
    Trainer(config, workspace / name).run()
    return workspace / name


def click(qtbot, button) -> None:
    """A person's click: only on an enabled button."""
    from PySide6.QtCore import Qt

    assert button.isEnabled(), f"{button.text()!r} is disabled"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def open_in_gallery(qtbot, window, run):
    """Show `run` in the gallery (4 images) and wait for its first result."""
    gp = window.gallery_pane
    gp.count.setValue(4)
    gp.open_source(run)
    qtbot.waitUntil(lambda: gp.result is not None and not gp.sampling.busy, timeout=60_000)
    return gp
