"""`consistency-studio --self-test`: drive the real window headless through the whole
workflow (demo data → a few CT steps → sampling at 1 and 3 steps → PNG export) in a
temporary workspace, print each step, and return 0 only if all of it worked."""
from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable


class SelfTestError(RuntimeError):
    pass


def _wait(app, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    from PySide6.QtCore import QEventLoop

    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise SelfTestError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        time.sleep(0.005)


def run_self_test(data: str = "demo", workspace: str | None = None, timeout_s: float = 600) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="consistency-studio-selftest-"))
    os.environ.setdefault("CONSISTENCY_STUDIO_SETTINGS_DIR", str(tmp / "settings"))  # leave the user's alone
    workspace_dir = Path(workspace) if workspace else tmp / "runs"
    export_dir = tmp / "exports"
    errors: list[str] = []

    def say(text: str) -> None:
        print(f"[self-test] {text}", flush=True)

    from . import dialogs
    from .application import create_app, dispose
    from .main_window import MainWindow

    # nothing may block: record messages instead of showing them
    dialogs.show_error = lambda parent, info: errors.append(f"{info.title}: {info.message}")  # type: ignore[assignment]
    dialogs.show_info = lambda parent, title, text: None  # type: ignore[assignment]
    dialogs.confirm = lambda *a, **k: True  # type: ignore[assignment]

    def check_errors() -> None:
        if errors:
            raise SelfTestError(errors[0])

    from .system_check import check_xcb

    xcb = check_xcb()  # reported whichever platform runs now: a bundle copied to a desktop needs them
    app = create_app()
    window = None
    t0 = time.monotonic()
    try:
        say(f"Qt platform {app.platformName()}, workspace {workspace_dir}")
        say(xcb.summary())
        window = MainWindow(workspace=workspace_dir, data=data)
        window.data_pane.resolution.setValue(16)
        window.show()
        say(f"window shown after {window.first_window_s:.2f} s from process start")
        _wait(app, lambda: window.engine_ready or bool(errors), 120, "the engine to load")
        check_errors()
        say(f"engine loaded; devices: {', '.join(d.id for d in window.devices)}")
        dp = window.data_pane
        _wait(app, lambda: (dp.dataset is not None and not dp.loading) or bool(errors), 120, "the data")
        check_errors()
        say(f"data: {dp.summary.text()}")

        tp = window.train_pane
        gp = window.gallery_pane
        gp.count.setValue(4)  # the gallery samples the run as soon as it ends
        tp.set_values(dict(method="ct", model="tiny", resolution=16, batch_size=8, max_steps=5,
                           max_minutes=0.0, log_every=1, preview_every=5, checkpoint_every=5, device="cpu"))
        if not tp.start():
            check_errors()
            raise SelfTestError("training did not start")
        _wait(app, lambda: not tp.running, timeout_s, "training to finish")
        check_errors()
        if tp.last_run is None or tp.last_run[1] != "max_steps":
            raise SelfTestError(f"training ended unexpectedly: {tp.last_run}")
        say(f"trained CT for {tp.step} steps in {tp.run_dir}; loss plot has {tp.plot.num_points} points")

        if gp.source is None:
            gp.open_source(tp.run_dir)
        shown: dict[int, object] = {}
        gp.result_shown.connect(lambda r: shown.__setitem__(r.request.steps, r))
        for steps in (1, 3):
            gp.steps.setValue(steps)
            gp.resample()
            _wait(app, lambda s=steps: (s in shown and not gp.sampling.busy) or bool(errors), 120,
                  f"sampling at {steps} step(s)")
            check_errors()
            say(f"sampled {len(shown[steps].images)} images with {steps} step(s) "
                f"in {shown[steps].seconds:.2f} s")
        if (shown[1].images == shown[3].images).all():
            raise SelfTestError("1-step and 3-step images are identical")

        gp.export("all", export_dir)
        _wait(app, lambda: bool(gp.exported) or bool(errors), 60, "the export")
        check_errors()
        from cmcore.export import read_png_metadata

        meta = read_png_metadata(gp.exported[0])
        missing = {"run", "step", "sampler", "steps", "seed"} - set(meta)
        if missing:
            raise SelfTestError(f"exported PNG lacks metadata {sorted(missing)}")
        say(f"exported {len(gp.exported)} PNG(s) to {export_dir} (metadata: steps={meta['steps']}, seed={meta['seed']})")
        say(f"OK in {time.monotonic() - t0:.1f} s")
        return 0
    except Exception as exc:  # noqa: BLE001 - the reason is the output
        say(f"FAILED: {exc}")
        traceback.print_exc(file=sys.stderr)
        return 1
    finally:
        if window is not None:
            dispose(window)
