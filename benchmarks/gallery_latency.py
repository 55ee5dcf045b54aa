"""How long from moving the gallery's steps slider to the new images on screen? 1, 2, 4, 8 steps.

    python -m benchmarks.gallery_latency [--resolution 32] [--images 16] [--repeats 7] [--history 0]

Trains a tiny CT checkpoint on the demo data (--train-steps, a few seconds), opens it in the
real Gallery pane (offscreen; temporary settings), waits for the first result (the model is
loaded and the 1/2/4/8 strip drawn once), then sets the steps slider to 1, 2, 4, 8 in turn,
--repeats times round robin (the first round warms up and is not counted), and times each
change until the pane has shown the new images and painted them. "engine" is the sampling job's
own time (SampleResult.seconds, in the worker thread); the rest is the pane: the slider's 30 ms
debounce, the thread hand-over and putting the images on screen. --history N pads the run's
metrics.jsonl to N records, as a long run has: each request reads it. Prints a table, then one
JSON line.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmarks import qt_session

STEPS = (1, 2, 4, 8)


def train_checkpoint(run: Path, resolution: int, steps: int) -> None:
    from cmcore import TrainConfig, Trainer

    config = TrainConfig(data="demo", method="ct", model="tiny", resolution=resolution, batch_size=8,
                         max_steps=steps, max_minutes=0.0, preview_every=0, checkpoint_every=0, device="cpu", seed=0)
    Trainer(config, run).run()


def pad_history(run: Path, records: int) -> None:
    """Append made-up loss records to the run's metrics.jsonl up to `records` lines (steps after its last)."""
    from cmcore.rundir import METRICS, read_metrics

    have = read_metrics(run)
    last = int(have[-1]["step"]) if have else 0
    lines = [json.dumps({"step": last + i + 1, "loss": 0.05, "lr": 1e-4, "n": 64.0, "images_per_s": 300.0,
                         "wall": 0.05 * (last + i)}) for i in range(max(0, records - len(have)))]
    with open(run / METRICS, "a", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gallery_latency", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolution", type=int, default=32, help="demo data resolution in px (default 32)")
    ap.add_argument("--images", type=int, default=16, help="images in the gallery (default 16)")
    ap.add_argument("--repeats", type=int, default=7, help="timed rounds of 1, 2, 4, 8 steps (default 7)")
    ap.add_argument("--train-steps", type=int, default=20, help="training steps of the checkpoint (default 20)")
    ap.add_argument("--history", type=int, default=0, help="pad metrics.jsonl to this many records (default 0)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary run and print where it is")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = qt_session.isolated("consistency-studio-gallery-")

    import torch

    from app.application import create_app
    from app.panes.gallery_pane import GalleryPane

    torch.set_num_threads(args.threads)
    run = tmp / "runs" / "tiny-ct"
    train_checkpoint(run, args.resolution, args.train_steps)
    if args.history:
        pad_history(run, args.history)
    errors = qt_session.quiet_dialogs()
    app = create_app()  # noqa: F841 - the QApplication must outlive the pane

    pane = GalleryPane()
    pane.device = "cpu"
    pane.count.setValue(args.images)
    pane.resize(1100, 800)
    pane.show()
    shown: list = []

    def on_shown(result) -> None:
        pane.repaint()  # paint now: "shown" means on screen, not just handed to the widgets
        shown.append((time.perf_counter(), result))

    pane.result_shown.connect(on_shown)
    pane.steps.setValue(STEPS[-1])  # so that the first timed change, to 1 step, is a change
    pane.open_source(run)
    qt_session.wait(lambda: bool(shown), "the first gallery result", errors, timeout_s=300, poll_ms=1)

    totals: dict[int, list[float]] = {k: [] for k in STEPS}
    engine: dict[int, list[float]] = {k: [] for k in STEPS}
    for round_ in range(args.repeats + 1):
        for k in STEPS:
            shown.clear()
            start = time.perf_counter()
            pane.steps.setValue(k)
            qt_session.wait(lambda: bool(shown), f"the images at {k} steps", errors, timeout_s=300, poll_ms=1)
            at, result = shown[-1]
            if result.request.steps != k or len(result.images) != args.images:
                raise SystemExit(f"error: the gallery showed {result.request.steps} steps, {k} were asked for")
            if round_:  # the first round warms up
                totals[k].append((at - start) * 1000)
                engine[k].append(result.seconds * 1000)
    pane.shutdown()
    pane.deleteLater()
    qt_session.finish(tmp, args.keep)

    rows = [{"steps": k, "shown_ms": round(qt_session.median(totals[k]), 1),
             "engine_ms": round(qt_session.median(engine[k]), 1),
             "pane_ms": round(qt_session.median([t - e for t, e in zip(totals[k], engine[k])]), 1),
             "max_ms": round(max(totals[k]), 1)} for k in STEPS]
    print(f"steps slider → images shown: tiny CT at {args.resolution} px, {args.images} images, "
          f"{torch.get_num_threads()} torch thread(s), median of {args.repeats}")
    print(f"{'steps':>5} {'shown ms':>9} {'engine ms':>10} {'pane ms':>8} {'max ms':>8} {'÷ 1 step':>9}")
    for r in rows:
        print(f"{r['steps']:>5} {r['shown_ms']:>9.1f} {r['engine_ms']:>10.1f} {r['pane_ms']:>8.1f} "
              f"{r['max_ms']:>8.1f} {r['shown_ms'] / max(rows[0]['shown_ms'], 0.1):>9.2f}")
    print(json.dumps({"resolution": args.resolution, "images": args.images, "repeats": args.repeats,
                      "train_steps": args.train_steps, "history": args.history, "threads": args.threads,
                      "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
