"""Entry point: `python -m app` / `consistency-studio`.

    consistency-studio [--data demo|PATH|mnist:ROOT] [--workspace DIR] [--self-test] [--startup-time]

Only Qt is imported before the window is shown; torch loads in the background.
"""
from __future__ import annotations

import argparse
import logging
import sys

from .timing import seconds_since_start  # first: keeps the process-start reference cheap


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="consistency-studio",
                                description="Train consistency models on your own images, by clicking.")
    p.add_argument("--data", help="data to open: demo, a folder of images, mnist:ROOT, fashionmnist:ROOT, cifar10:ROOT")
    p.add_argument("--workspace", help="folder that holds the runs (default: remembered, else the user data folder)")
    p.add_argument("--self-test", action="store_true",
                   help="headless check: train a few CT steps on the demo data, sample, export; exit 0 on success")
    p.add_argument("--startup-time", action="store_true",
                   help="print the seconds from process start to the window shown, then quit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from .application import create_app, dispose, ensure_display
    from .log import setup_logging

    log_path = setup_logging()
    log = logging.getLogger("app")
    ensure_display()
    from .system_check import check_before_qt

    missing = check_before_qt()  # Qt would abort on a missing xcb library: say which, and the fix
    if missing:
        log.error("missing system libraries for Qt's xcb platform plugin; see the message on stderr")
        return missing
    if args.self_test:
        from .selftest import run_self_test

        return run_self_test(data=args.data or "demo", workspace=args.workspace)

    app = create_app()
    from PySide6.QtCore import QTimer

    from .main_window import MainWindow
    window = MainWindow(workspace=args.workspace, data=args.data)
    app.aboutToQuit.connect(window.shutdown)
    install_excepthook(window)
    window.show()
    log.info("started (log file %s); window after %.3f s", log_path, seconds_since_start())
    if args.startup_time:
        def report() -> None:
            print(f"time to first window: {window.first_window_s:.3f} s")
            window.close()

        QTimer.singleShot(0, report)
    code = app.exec()
    dispose(window)
    return code


def install_excepthook(parent) -> None:
    """An exception escaping a slot is logged and shown instead of being lost on stderr."""
    from . import dialogs
    from .errors import describe

    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        if issubclass(exc_type, KeyboardInterrupt):
            return previous(exc_type, exc, tb)
        logging.getLogger("app").error("uncaught exception", exc_info=(exc_type, exc, tb))
        try:
            dialogs.show_error(parent, describe(exc.with_traceback(tb)))
        except Exception:  # noqa: BLE001 - never let the hook itself raise
            previous(exc_type, exc, tb)

    sys.excepthook = hook


if __name__ == "__main__":
    sys.exit(main())
