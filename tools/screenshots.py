"""Screenshots of every pane of the real app, trained briefly on the demo data.

    QT_QPA_PLATFORM=offscreen python tools/screenshots.py [--theme light|dark|both] [--steps N]

Writes docs/screenshots/{data,train,gallery,edit,runs}[-dark].png. Runs in a temporary
workspace with temporary settings, so the user's own runs and preferences are untouched.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def wait(app, condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        app.processEvents()
        time.sleep(0.01)


def pause(app, seconds: float) -> None:
    wait(app, lambda end=time.monotonic() + seconds: time.monotonic() > end, seconds + 1, "a pause")


def shoot_edit(app, gallery, path: Path) -> None:
    """The Edit window on the gallery's first ticked image: a band across its middle painted, filled four ways."""
    dialog = gallery.tools.open_edit()
    dialog.resize(1000, 560)
    dialog.use_gallery_sample()
    side = dialog.resolution
    dialog.brush.setValue(max(2, side // 4))
    for x in range(side // 4, 3 * side // 4 + 1):
        dialog.canvas.paint_at(x + 0.5, side / 2)
    dialog.canvas.mask_changed.emit()
    dialog.results.setValue(4)
    dialog.run()
    wait(app, lambda: dialog.result is not None and not dialog.editing.busy, 120, "the edit")
    pause(app, 0.3)
    dialog.grab().save(str(path))
    dialog.close()


def shoot(theme: str, steps: int, resolution: int, out: Path, gallery_run: Path | None = None) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["CONSISTENCY_STUDIO_THEME"] = theme
    tmp = Path(tempfile.mkdtemp(prefix="cs-screens-"))
    os.environ["CONSISTENCY_STUDIO_SETTINGS_DIR"] = str(tmp / "settings")
    os.environ.setdefault("CMCORE_CACHE_DIR", str(tmp / "cache"))

    from app import dialogs
    from app.application import create_app, dispose
    from app.main_window import MainWindow

    dialogs.confirm = lambda *a, **k: True
    errors = []
    dialogs.show_error = lambda parent, info: errors.append(info.text)
    suffix = "" if theme == "light" else "-dark"

    app = create_app()
    window = MainWindow(workspace=tmp / "runs", data="demo")
    window.data_pane.resolution.setValue(resolution)
    window.resize(1400, 880)
    window.show()
    wait(app, lambda: window.engine_ready, 120, "the engine")
    dp, tp, gp, rp = window.data_pane, window.train_pane, window.gallery_pane, window.runs_pane
    wait(app, lambda: dp.dataset is not None and not dp.loading, 120, "the demo data")
    pause(app, 0.3)
    window.grab().save(str(out / f"data{suffix}.png"))

    tp.preset_box.setCurrentIndex(max(0, tp.preset_box.findText("quick-cpu")))
    tp.apply_selected_preset()
    tp.set_values(dict(max_steps=steps, batch_size=32, resolution=resolution, log_every=2, preview_every=max(10, steps // 6),
                       checkpoint_every=0, warmup_steps=20, device="cpu"))
    window.show_pane("train")
    tp.start()
    wait(app, lambda: tp.step >= int(steps * 0.9) or not tp.running, 1800, "training")
    pause(app, 0.3)
    window.grab().save(str(out / f"train{suffix}.png"))
    wait(app, lambda: not tp.running, 600, "the end of training")
    if errors:
        raise SystemExit(f"error while training: {errors[0]}")

    wait(app, lambda: gp.result is not None and not gp.sampling.busy, 120, "the gallery")
    if gallery_run:  # a longer run than the screenshot's own, so the gallery shows what training gives
        shutil.copytree(gallery_run, tmp / "runs" / gallery_run.name, ignore=shutil.ignore_patterns("eval_*", "previews"))
        rp.refresh()
        wait(app, lambda: rp.table.rowCount() >= 2, 60, "the copied run")
        window.open_in_gallery(str(tmp / "runs" / gallery_run.name))
        wait(app, lambda: gp.result is not None and Path(gp.result.request.source).name == gallery_run.name
             and not gp.sampling.busy, 120, "the copied run's samples")
    gp.steps.setValue(4)
    wait(app, lambda: not gp.sampling.busy and gp.result.request.steps == 4, 120, "sampling")
    window.show_pane("gallery")
    gp.grid.tiles[0].check.setChecked(True)
    gp.grid.tiles[5].check.setChecked(True)
    pause(app, 0.3)
    window.grab().save(str(out / f"gallery{suffix}.png"))
    shoot_edit(app, gp, out / f"edit{suffix}.png")

    window.show_pane("runs")
    wait(app, lambda: rp.table.rowCount() >= 1, 60, "the runs list")
    rp.table.selectRow(0)
    pause(app, 0.2)
    window.grab().save(str(out / f"runs{suffix}.png"))
    window.close()
    dispose(window)
    print(f"{theme}: screenshots in {out}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--theme", choices=("light", "dark", "both"), default="both")
    p.add_argument("--steps", type=int, default=800, help="training steps before the screenshots")
    p.add_argument("--resolution", type=int, default=16, help="image size (16 trains fast on a CPU)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    p.add_argument("--gallery-run", type=Path, help="a trained run directory to show in the gallery (copied)")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.theme != "both":
        shoot(args.theme, args.steps, args.resolution, args.out, args.gallery_run)
        return 0
    for theme in ("light", "dark"):  # one process per theme: the palette is set once per QApplication
        cmd = [sys.executable, __file__, "--theme", theme, "--steps", str(args.steps),
               "--resolution", str(args.resolution), "--out", str(args.out)]
        cmd += ["--gallery-run", str(args.gallery_run)] if args.gallery_run else []
        if subprocess.call(cmd) != 0:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
