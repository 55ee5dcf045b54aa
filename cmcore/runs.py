"""The runs in a workspace folder, for the Runs pane and the CLI."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import platformdirs

from .config import TrainConfig
from .errors import ConfigError
from .rundir import CONFIG, METRICS, latest_pointer, progress, read_metrics


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


def default_workspace() -> Path:
    return Path(platformdirs.user_data_dir("consistency-studio")) / "runs"


def read_run(path: Path) -> RunInfo | None:
    try:
        config = TrainConfig.load(path / CONFIG)
    except ConfigError:
        return None
    records = read_metrics(path)
    latest = latest_pointer(path)
    stamps = [p.stat().st_mtime for p in (path / CONFIG, path / METRICS, latest) if p.exists()]
    # A stop between two log lines saves steps the metrics do not show yet; resuming starts there.
    step, _ = progress(path)
    loss = records[-1].get("loss") if records else None
    return RunInfo(path, path.name, config.method, step, config.max_steps, loss, max(stamps), latest.exists())


def list_runs(workspace: str | Path) -> list[RunInfo]:
    """Runs (folders with a config.toml), newest first."""
    workspace = Path(workspace)
    if not workspace.is_dir():
        return []
    runs = [info for p in workspace.iterdir() if (p / CONFIG).is_file() and (info := read_run(p))]
    return sorted(runs, key=lambda r: r.updated, reverse=True)
