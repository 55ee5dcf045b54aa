"""The runs in a workspace folder, for the Runs pane and the CLI."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import platformdirs

from .config import TrainConfig
from .errors import ConfigError
from .layout import latest_pointer, latest_step
from .metrics import read_jsonl


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
        config = TrainConfig.load(path / "config.toml")
    except ConfigError:
        return None
    records = read_jsonl(path / "metrics.jsonl")
    last = records[-1] if records else {}
    latest = latest_pointer(path)
    stamps = [p.stat().st_mtime for p in (path / "config.toml", path / "metrics.jsonl", latest) if p.exists()]
    # A stop between two log lines saves steps the metrics do not show yet; resuming starts there.
    step = max(int(last.get("step", 0)), latest_step(path))
    return RunInfo(path, path.name, config.method, step, config.max_steps, last.get("loss"), max(stamps), latest.exists())


def list_runs(workspace: str | Path) -> list[RunInfo]:
    """Runs (folders with a config.toml), newest first."""
    workspace = Path(workspace)
    if not workspace.is_dir():
        return []
    runs = [info for p in workspace.iterdir() if (p / "config.toml").is_file() and (info := read_run(p))]
    return sorted(runs, key=lambda r: r.updated, reverse=True)
