"""The runs in a workspace folder, for the Runs pane and the CLI.

Listing never fails because of one run: a folder whose files cannot be read (not UTF-8, values out of
range, a vanished file) is listed with `error` saying why, and a run that a process is training now
carries that process's lock record in `busy_by`. Free of torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from .config import TrainConfig
from .errors import ConfigError
from .rundir import CONFIG, METRICS, best_step, has_checkpoint, score_at, latest_pointer, progress, read_metrics
from .runlock import lock_owner


@dataclass
class RunInfo:
    path: Path
    name: str
    method: str
    step: int
    max_steps: int
    last_loss: float | None
    updated: float
    has_checkpoint: bool = False
    busy_by: dict | None = None  # the lock record ({"pid", "host", "started"}) of the process training it now
    error: str | None = None  # why the run cannot be read (then method is "", step and max_steps 0)
    score: float | None = None  # the best checkpoint's 1-step score on the held-out images (lower is better)
    best_step: int | None = None  # the step of that checkpoint (RUN/checkpoints/best)


def default_workspace() -> Path:
    return Path(platformdirs.user_data_dir("consistency-studio")) / "runs"


def read_run(path: Path) -> RunInfo:
    """What the Runs pane shows of one run folder; never raises: an unreadable run has `error` set."""
    path = Path(path)
    try:
        busy = lock_owner(path)
    except Exception:  # noqa: BLE001 - an unreadable lock must not hide the run
        busy = None
    updated = _updated(path)
    try:
        config = TrainConfig.load(path / CONFIG)
        records = read_metrics(path)
        # A stop between two log lines saves steps the metrics do not show yet; resuming starts there.
        step, _ = progress(path)
        losses = [r["loss"] for r in records if _number(r.get("loss"))]
        best = best_step(path)
        return RunInfo(path, path.name, config.method, step, config.max_steps, losses[-1] if losses else None,
                       updated, has_checkpoint(path), busy, score=score_at(records, best), best_step=best)
    except (ConfigError, OSError, ValueError, TypeError, OverflowError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return RunInfo(path, path.name, "", 0, 0, None, updated, False, busy, error=reason)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _updated(path: Path) -> float:
    stamps = []
    for p in (path / CONFIG, path / METRICS, latest_pointer(path)):
        try:
            stamps.append(p.stat().st_mtime)
        except OSError:
            pass
    return max(stamps, default=0.0)


def list_runs(workspace: str | Path) -> list[RunInfo]:
    """Runs (folders with a config.toml), newest first; unreadable ones included, with their `error`."""
    workspace = Path(workspace)
    try:
        folders = [p for p in workspace.iterdir() if _has_config(p)]
    except OSError:
        return []
    runs = [read_run(p) for p in folders]
    return sorted(runs, key=lambda r: r.updated, reverse=True)


def _has_config(folder: Path) -> bool:
    try:
        return (folder / CONFIG).is_file()
    except OSError:
        return False
