"""Soak test of the app: does a long run leak memory, threads or files?

    python -m benchmarks.soak [--steps 20000] [--resolution 16] [--preview-every 250] [--threads 1]

Opens the real main window offscreen on the built-in demo data (temporary workspace and
settings), trains `tiny` for --steps steps through the Train pane (a TrainingWorker in its
QThread; progress, previews and checkpoints reach the loss plot and the preview panel as real
Qt signals), and samples the process every tenth of the run: resident memory, threads and open
files (from /proc, so Linux only). "start" is the first sample after a warm-up (a tenth of
the run, and at least past the first checkpoint and the second preview, whose buffers are
allocated once), "end" the last step, both while the training thread runs. Prints a table, then one JSON line; exits 1 if resident
memory grew by --max-growth-mb (50) or more, or the threads or open files grew.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from benchmarks import qt_session


CHECKPOINT_EVERY = 500  # TrainConfig's default, as in the app


def process_sample() -> dict:
    """Resident memory (MB), OS threads and open file descriptors of this process."""
    status = Path("/proc/self/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status if ":" in line)
    return {"rss_mb": int(fields["VmRSS"].split()[0]) / 1024, "threads": int(fields["Threads"]),
            "open_files": len(os.listdir("/proc/self/fd"))}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20_000, help="training steps (default 20000)")
    ap.add_argument("--resolution", type=int, default=16, help="demo data resolution in px (default 16)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--preview-every", type=int, default=250, help="steps between previews (default 250)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--max-growth-mb", type=float, default=50.0, help="allowed resident-memory growth (default 50)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary workspace and print where it is")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path("/proc/self/status").exists():
        print("error: the soak test reads /proc: Linux only", file=sys.stderr)
        return 2
    tmp = qt_session.isolated("consistency-studio-soak-")

    import torch

    from app.application import create_app, dispose
    from app.main_window import MainWindow

    torch.set_num_threads(args.threads)
    errors = qt_session.quiet_dialogs()
    _app = create_app()  # noqa: F841 - the QApplication lives as long as the window

    def wait(condition, what: str, timeout_s: float = 300) -> None:
        qt_session.wait(condition, what, errors, timeout_s, poll_ms=100)

    window = MainWindow(workspace=tmp / "runs", data="demo")
    window.data_pane.resolution.setValue(args.resolution)
    window.show()
    window.show_pane("train")  # the loss plot and the previews are on screen
    wait(lambda: window.engine_ready, "the engine")
    dp, tp = window.data_pane, window.train_pane
    wait(lambda: dp.dataset is not None and not dp.loading, "the demo data")

    # after the first checkpoint and two previews: their buffers are allocated once
    warmup = min(args.steps // 2, max(args.steps // 10, max(args.preview_every, CHECKPOINT_EVERY) + 10))
    every = max(1, args.steps // 10)
    rows: list[dict] = []
    t0 = time.monotonic()

    def on_progress(events: list) -> None:
        step = events[-1].step
        due = not rows or step >= rows[-1]["step"] + every or step == args.steps
        if (not rows and step >= warmup) or (rows and due):
            rows.append({"step": step, "seconds": time.monotonic() - t0, **process_sample()})

    tp.set_values(dict(method="ct", model="tiny", batch_size=args.batch_size, max_steps=args.steps,
                       max_minutes=0.0, preview_every=args.preview_every, checkpoint_every=CHECKPOINT_EVERY,
                       device="cpu", seed=0))
    if not tp.start():
        raise SystemExit(f"error: training did not start: {errors[:1]}")
    tp.worker.progress.connect(on_progress)
    wait(lambda: not tp.running, "training to finish", timeout_s=24 * 3600)
    after = {"step": tp.step, "seconds": time.monotonic() - t0, **process_sample()}
    if errors or tp.last_run is None or tp.last_run[1] != "max_steps":
        raise SystemExit(f"error: training ended with {tp.last_run}: {errors[:1]}")

    print(f"{'step':>7} {'seconds':>8} {'RSS MB':>8} {'threads':>8} {'open files':>11}")
    for r in rows:
        print(f"{r['step']:>7} {r['seconds']:>8.1f} {r['rss_mb']:>8.1f} {r['threads']:>8} {r['open_files']:>11}")
    print(f"{'joined':>7} {after['seconds']:>8.1f} {after['rss_mb']:>8.1f} {after['threads']:>8} "
          f"{after['open_files']:>11}  (training thread finished)")
    start, end = rows[0], rows[-1]
    growth = end["rss_mb"] - start["rss_mb"]
    ok = growth < args.max_growth_mb and end["threads"] <= start["threads"] and end["open_files"] <= start["open_files"]
    summary = {"steps": tp.step, "resolution": args.resolution, "batch_size": args.batch_size,
               "preview_every": args.preview_every, "points_plotted": tp.plot.num_points,
               "start_step": start["step"], "rss_start_mb": round(start["rss_mb"], 1),
               "rss_end_mb": round(end["rss_mb"], 1), "rss_growth_mb": round(growth, 1),
               "threads_start": start["threads"], "threads_end": end["threads"],
               "open_files_start": start["open_files"], "open_files_end": end["open_files"],
               "threads_after_join": after["threads"], "open_files_after_join": after["open_files"],
               "seconds": round(after["seconds"], 1), "ok": ok}
    dispose(window)
    qt_session.finish(tmp, args.keep)
    print(json.dumps(summary))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
