"""Names inside a run directory that the trainer, the checkpoint code and the runs list share.

Kept free of torch: the app's Runs pane lists runs at start-up, before torch is imported.
"""
from __future__ import annotations

from pathlib import Path

PREFIX = "step_"  # checkpoint stems: step_0000373.safetensors / .state.pt


def checkpoint_name(step: int) -> str:
    """The file stem of the checkpoint saved at `step` (and what `latest` holds): step_0000373."""
    return f"{PREFIX}{step:07d}"


def latest_pointer(run_dir: str | Path) -> Path:
    """The file naming a run's newest complete checkpoint; written last, so it exists only once one is complete."""
    return Path(run_dir) / "checkpoints" / "latest"


def latest_step(run_dir: str | Path) -> int:
    """The step of a run's newest complete checkpoint, read from its `latest` pointer; 0 when none."""
    try:
        return int(latest_pointer(run_dir).read_text().strip().removeprefix(PREFIX))
    except (OSError, ValueError):
        return 0
