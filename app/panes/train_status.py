"""What the Train pane and the window's status bar say about a run: progress, the end of a run
(finished, stopped or failed, with the last score), and how the score reads. Plain functions over
cmcore.events, no widgets, so the words are the same wherever they appear.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

FINISH_WORDS = {"max_steps": "finished", "max_minutes": "time limit reached", "stopped": "stopped"}


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def progress_text(e: Any) -> str:
    """One events.Progress as the status line shows it."""
    return (f"step {e.step:,} / {e.max_steps:,} · {e.images_per_s:,.0f} img/s · "
            f"elapsed {duration(e.elapsed_s)} · ETA {duration(e.eta_s)}")


def main_score(scored: Any) -> tuple[int, float] | None:
    """(sampling steps, score) of an events.Scored: the fewest steps scored (1 step, the one the Runs list
    shows), or None when nothing was scored."""
    if scored is None or not scored.scores:
        return None
    steps = min(scored.scores, key=int)
    return int(steps), float(scored.scores[steps])


def score_text(scored: Any) -> str:
    """"score 12.3 (1 step, best)" for an events.Scored; "" without one."""
    found = main_score(scored)
    if found is None:
        return ""
    steps, value = found
    best = ", best so far" if scored.best else ""
    return f"score {value:.3g} ({steps} step{'s' if steps != 1 else ''}{best}; lower is better)"


def finished_text(event: Any, rollbacks: list, warnings: list) -> str:
    """The Train pane's status line for an events.Finished."""
    spikes = f"; rolled back after {len(rollbacks)} loss spike(s)" if rollbacks else ""
    warned = f"; {len(warnings)} warning(s), the last: {warnings[-1].message}" if warnings else ""
    return (f"{FINISH_WORDS.get(event.reason, event.reason).capitalize()} at step {event.step:,}; "
            f"checkpoint saved{spikes}{warned}")


def outcome(reason: str, error: Any) -> str:
    """finished | stopped | failed, for a run that ended with Finished.reason `reason` ("" when none came)."""
    if error is not None:
        return "failed"
    return "finished" if reason in ("max_steps", "max_minutes") else "stopped"


def end_summary(run_dir: Path | str, reason: str, step: int, error: Any, scored: Any) -> str:
    """One line for the status bar and the notification when a run of this window ends."""
    name = Path(run_dir).name
    if error is not None:
        return f"Training {name} failed: {error.message}"
    if not reason:
        return f"Training {name} stopped before the first step; nothing was saved"
    what = {"max_steps": "finished", "max_minutes": "reached its time limit", "stopped": "stopped"}.get(reason, reason)
    score = score_text(scored)
    return f"Training {name} {what} at step {step:,}" + (f"; {score}" if score else "")


def last_scored(records: list[dict]) -> Any:
    """The last score record of a run's metrics (cmcore.rundir.read_metrics) as an events.Scored, or None."""
    from cmcore import events

    from ..widgets.loss_stages import score_records

    found = score_records(records)
    if not found:
        return None
    step, scores, best = found[-1]
    return events.Scored(step, scores, None, best)
