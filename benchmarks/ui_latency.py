"""How late does the window answer while training runs? Event-loop latency, idle and training.

    python -m benchmarks.ui_latency [--seconds 20] [--resolution 16] [--preview-every 20] [--threads 1]

Opens the real main window offscreen on the built-in demo data (temporary workspace and
settings), with the Train pane on screen, and runs a 10 ms precise timer that is re-armed at
every shot: its lateness (when it ran minus when it was due) is how long a click or a key would
have waited. Measured for --seconds idle, then for --seconds while `tiny` trains in the
TrainingWorker thread started through the Train pane (progress batches reach the loss plot and
previews reach the preview panel as real Qt signals), side by side in one run. To say what the
late shots were waiting for, the loss plot's paints are timed (pyqtgraph's GraphicsView.paintEvent,
wrapped for this process only) and every shot later than --late-ms is checked for one overlapping
it. Prints a table, then one JSON line.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from benchmarks import qt_session


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.ui_latency", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="seconds measured in each phase (default 20)")
    ap.add_argument("--interval-ms", type=int, default=10, help="the probe timer's interval (default 10)")
    ap.add_argument("--resolution", type=int, default=16, help="demo data resolution in px (default 16)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--preview-every", type=int, default=20, help="steps between previews (default 20)")
    ap.add_argument("--log-every", type=int, default=10, help="steps between progress events (default 10, the app's)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--late-ms", type=float, default=20.0, help="a shot this late is looked into (default 20)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary workspace and print where it is")
    return ap.parse_args(argv)


def time_plot_paints() -> list[tuple[float, float]]:
    """(start, end) of every paint of a pyqtgraph view from now on (the loss plot is the window's only one)."""
    import pyqtgraph as pg

    spans: list[tuple[float, float]] = []
    paint = pg.GraphicsView.paintEvent

    def timed_paint(self, event):
        start = time.perf_counter()
        try:
            return paint(self, event)
        finally:
            spans.append((start, time.perf_counter()))

    pg.GraphicsView.paintEvent = timed_paint
    return spans


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = qt_session.isolated("consistency-studio-ui-latency-")

    import torch

    from app.application import create_app, dispose
    from app.main_window import MainWindow

    torch.set_num_threads(args.threads)
    errors = qt_session.quiet_dialogs()
    app = create_app()  # noqa: F841 - the QApplication must outlive the window
    paints = time_plot_paints()

    window = MainWindow(workspace=tmp / "runs", data="demo")
    window.data_pane.resolution.setValue(args.resolution)
    window.show()
    window.show_pane("train")  # the loss plot and the previews are on screen
    dp, tp = window.data_pane, window.train_pane
    qt_session.wait(lambda: window.engine_ready, "the engine", errors)
    qt_session.wait(lambda: dp.dataset is not None and not dp.loading, "the demo data", errors)
    tp.plot  # noqa: B018 - build the loss plot (pyqtgraph) before measuring, as the first run would
    qt_session.run_events(1.0)  # let start-up work settle

    probe = qt_session.LatenessProbe(args.interval_ms)
    idle = probe.measure(args.seconds)

    tp.set_values({"method": "ct", "model": "tiny", "batch_size": args.batch_size, "max_steps": 10**7,
                   "max_minutes": 0.0, "preview_every": args.preview_every, "log_every": args.log_every,
                   "device": "cpu", "seed": 0})
    if not tp.start():
        raise SystemExit(f"error: training did not start: {errors[:1]}")
    counts = {"previews": 0, "progress_batches": 0}
    tp.worker.preview.connect(lambda _e: counts.__setitem__("previews", counts["previews"] + 1))
    tp.worker.progress.connect(lambda _e: counts.__setitem__("progress_batches", counts["progress_batches"] + 1))
    qt_session.wait(lambda: tp.step > 0, "the first training step", errors)
    first_step, redraws = tp.step, tp.plot.redraw_count
    counts.update(previews=0, progress_batches=0)
    paints.clear()
    started = time.monotonic()
    training = probe.measure(args.seconds)
    late = [w for w in probe.late if (w[1] - w[0]) * 1000 > args.late_ms]
    painting = qt_session.overlapping(late, paints)
    paint_ms = sorted((e - s) * 1000 for s, e in paints)
    elapsed = time.monotonic() - started
    steps = tp.step - first_step
    seen = dict(counts, redraws=tp.plot.redraw_count - redraws, plot_paints=len(paint_ms),
                plot_paint_p50_ms=round(qt_session.median(paint_ms), 1) if paint_ms else None,
                late_shots=len(late), late_during_plot_paint=painting)
    tp.stop()
    qt_session.wait(lambda: not tp.running, "training to stop", errors, timeout_s=120)
    dispose(window)
    qt_session.finish(tmp, args.keep)

    phases = {"idle": qt_session.summary(idle), "training": qt_session.summary(training)}
    print(f"event-loop lateness of a {args.interval_ms} ms timer, {args.seconds:g} s each, "
          f"{torch.get_num_threads()} torch thread(s)")
    print(f"{'phase':<10} {'ticks':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, s in phases.items():
        print(f"{name:<10} {s['ticks']:>6} {s['p50_ms']:>8.2f} {s['p95_ms']:>8.2f} {s['p99_ms']:>8.2f} "
              f"{s['max_ms']:>8.2f}")
    print(f"while training: {steps} steps ({steps / elapsed:.1f}/s), {seen['previews']} previews, "
          f"{seen['progress_batches']} progress batches, {seen['redraws']} loss-plot redraws, "
          f"{seen['plot_paints']} plot paints (median {seen['plot_paint_p50_ms']} ms)")
    print(f"shots over {args.late_ms:g} ms late while training: {len(late)}, of which {painting} overlap a "
          "loss-plot paint")
    ratios = {f"ratio_{k}": round(phases["training"][k] / max(phases["idle"][k], 0.01), 2)
              for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")}
    print("training ÷ idle: " + ", ".join(f"{k[6:-3]} ×{v:g}" for k, v in ratios.items()))
    print(json.dumps({"seconds": args.seconds, "interval_ms": args.interval_ms, "resolution": args.resolution,
                      "batch_size": args.batch_size, "preview_every": args.preview_every, "log_every": args.log_every,
                      "threads": args.threads, "late_ms": args.late_ms,
                      **phases, "training_steps": steps, **seen, **ratios}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
