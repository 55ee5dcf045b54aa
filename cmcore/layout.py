"""Names inside a run directory that both the trainer and the runs list need.

Kept free of torch: the app's Runs pane lists runs at start-up, before torch is imported.
"""
from __future__ import annotations

from pathlib import Path


def checkpoint_name(step: int) -> str:
    """The file stem of the checkpoint saved at `step` (and what `latest` holds): step_0000373."""
    return f"step_{step:07d}"


def latest_step(run_dir: str | Path) -> int:
    """The step of a run's newest complete checkpoint, read from its `latest` pointer; 0 when none."""
    try:
        return int((Path(run_dir) / "checkpoints" / "latest").read_text().strip().removeprefix("step_"))
    except (OSError, ValueError):
        return 0
