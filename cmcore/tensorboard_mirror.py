"""Mirror a run's metrics to TensorBoard (optional: `pip install tensorboard`; off by default).

With TrainConfig.tensorboard on, rank 0 writes RUN/tensorboard/ as it trains: the loss, learning rate,
curriculum n and images/s at every log line, the score per step count and the denoising gap at every scored
checkpoint, and a text line for each rollback and warning. `tensorboard --logdir WORKSPACE` then compares
these runs with other projects' runs. metrics.jsonl stays the record the app reads; this is a copy.
"""
from __future__ import annotations

from pathlib import Path

from . import events
from .errors import ConfigError

FOLDER = "tensorboard"


def require_tensorboard() -> None:
    """ConfigError (one line) when the tensorboard package is missing."""
    _summary_writer()


def _summary_writer():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch raises ImportError naming tensorboard when it is missing
        raise ConfigError("tensorboard: the TensorBoard mirror needs the tensorboard package: "
                          "pip install tensorboard (or turn the mirror off)") from None
    return SummaryWriter


class TensorBoardMirror:
    """An event consumer (chained after the Trainer's own on_event) that writes TensorBoard summaries."""

    def __init__(self, run_dir: str | Path):
        self.writer = _summary_writer()(log_dir=str(Path(run_dir) / FOLDER))

    def __call__(self, event) -> None:
        w = self.writer
        if isinstance(event, events.Progress):
            for name, value in (("loss", event.loss), ("lr", event.lr), ("curriculum_n", event.n),
                                ("images_per_s", event.images_per_s)):
                w.add_scalar(f"train/{name}", value, event.step)
        elif isinstance(event, events.Scored):
            for steps, value in event.scores.items():
                w.add_scalar(f"score/{steps}_step{'s' if steps > 1 else ''}", value, event.step)
            if event.gap is not None:
                w.add_scalar("score/denoising_gap", event.gap, event.step)
            w.flush()
        elif isinstance(event, events.RolledBack):
            w.add_text("events", f"loss spike (x{event.ratio:.1f}): rolled back to step {event.to_step}", event.step)
        elif isinstance(event, events.Warning):
            w.add_text("events", event.message, event.step)
        elif isinstance(event, (events.CheckpointSaved, events.Finished)):
            w.flush()

    def close(self) -> None:
        self.writer.close()
