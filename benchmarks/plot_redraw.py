"""Does the live loss plot stay quick with a long run's history? Load and update times at 10k–1M points.

    python -m benchmarks.plot_redraw [--sizes 0,10000,100000,1000000] [--repeats 15] [--batch 10]

For each size, app/widgets/loss_plot.py's LossPlot (offscreen, 1000×500 px) is given that many
logged points the way a resumed run gives them (metrics.jsonl records through `set_history`),
then drawn once: "load" is set_history, "first draw" the push to pyqtgraph (`redraw`) plus a
full paint (`grab`). Then --repeats times a batch of --batch new points arrives as training
adds them (`append`), and the update is timed the same way: append, redraw, paint; medians.
Size 0 is the empty plot: its update is the floor (painting axes, grid and legend) that every
size pays. The sizes run side by side in one process. Prints a table, then one JSON line.
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import time

import numpy as np

from benchmarks import qt_session

SLOW_UPDATE_MS = 50.0  # an update slower than this at 10 Hz takes half the GUI thread's time


def records(count: int, seed: int = 0) -> list[dict]:
    """`count` metrics.jsonl records of a plausible run: a decaying noisy loss, a cosine lr, n doubling."""
    rng = np.random.default_rng(seed)
    step = np.arange(1, count + 1)
    loss = 0.05 + 0.5 / np.sqrt(step) * np.exp(rng.normal(0, 0.3, count))
    lr = 1e-4 + 1e-3 * (1 + np.cos(np.pi * step / count)) / 2
    n = 2.0 ** np.minimum(6, 1 + (6 * step) // count)
    wall = step * 0.05
    return [{"step": int(s), "loss": float(a), "lr": float(b), "n": float(c), "images_per_s": 320.0,
             "wall": float(w)} for s, a, b, c, w in zip(step, loss, lr, n, wall)]


def timed(fn) -> float:
    """Milliseconds `fn()` took."""
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def measure(size: int, repeats: int, batch: int) -> dict:
    from app.widgets.loss_plot import LossPlot

    history = records(size)
    plot = LossPlot()
    plot.resize(1000, 500)
    plot.show()
    qt_session.run_events(0.05)
    plot._timer.stop()  # only the benchmark redraws, so each redraw is timed alone
    gc.collect()
    load = timed(lambda: plot.set_history(history))
    first = timed(lambda: (plot.redraw(), plot.grab()))
    history = None  # the records are let go before the updates are timed
    if plot.num_points != size:
        raise SystemExit(f"error: the plot holds {plot.num_points} points, {size} were loaded")

    appends, redraws, paints = [], [], []
    step = size
    for i in range(repeats + 2):  # the first two warm pyqtgraph's caches
        steps = np.arange(step + 1, step + batch + 1, dtype=np.float64)
        step += batch
        a = timed(lambda s=steps: plot.append(s, np.full(batch, 0.06), np.full(batch, 1e-4), np.full(batch, 64.0)))
        r = timed(plot.redraw)
        p = timed(plot.grab)
        if i >= 2:
            appends.append(a)
            redraws.append(r)
            paints.append(p)
    totals = [a + r + p for a, r, p in zip(appends, redraws, paints)]
    plot.close()
    plot.deleteLater()
    qt_session.run_events(0.01)
    return {"points": size, "load_ms": round(load, 1), "first_draw_ms": round(first, 1),
            "append_ms": round(qt_session.median(appends), 2), "redraw_ms": round(qt_session.median(redraws), 2),
            "paint_ms": round(qt_session.median(paints), 2), "update_ms": round(qt_session.median(totals), 2),
            "update_max_ms": round(max(totals), 2)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.plot_redraw", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="0,10000,100000,1000000",
                    help="points, comma-separated (default 0,10k,100k,1M; 0: the empty plot's floor)")
    ap.add_argument("--repeats", type=int, default=15, help="timed updates per size (default 15)")
    ap.add_argument("--batch", type=int, default=10, help="new points per update (default 10)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary settings folder and print where it is")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        print(f"error: --sizes takes whole numbers separated by commas, got {args.sizes!r}", file=sys.stderr)
        return 2
    tmp = qt_session.isolated("consistency-studio-plot-")
    from app.application import create_app

    app = create_app()  # noqa: F841 - the QApplication must outlive the plots
    rows = [measure(size, args.repeats, args.batch) for size in sizes]
    qt_session.finish(tmp, args.keep)

    print(f"LossPlot, 1000×500 px offscreen; updates of {args.batch} points, median of {args.repeats}")
    print(f"{'points':>9} {'load ms':>9} {'1st draw':>9} {'append':>8} {'redraw':>8} {'paint':>8} "
          f"{'update':>8} {'max':>8}")
    for r in rows:
        print(f"{r['points']:>9,} {r['load_ms']:>9.1f} {r['first_draw_ms']:>9.1f} {r['append_ms']:>8.2f} "
              f"{r['redraw_ms']:>8.2f} {r['paint_ms']:>8.2f} {r['update_ms']:>8.2f} {r['update_max_ms']:>8.2f}")
    slow = [r["points"] for r in rows if r["points"] and r["update_ms"] > SLOW_UPDATE_MS]
    if slow:
        print(f"slow: an update takes over {SLOW_UPDATE_MS:g} ms at {', '.join(f'{p:,}' for p in slow)} points")
    base = rows[0]["update_ms"]
    print(json.dumps({"batch": args.batch, "repeats": args.repeats, "rows": rows,
                      "update_ratio_to_first": [round(r["update_ms"] / max(base, 0.01), 2) for r in rows],
                      "slow_sizes": slow}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
