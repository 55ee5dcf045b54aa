"""A run folder: its layout, atomic writes, the `latest` pointer, metrics.jsonl, extending a run.

    RUN/config.toml                        the whole TrainConfig (resolved: what actually ran)
    RUN/metrics.jsonl                      one JSON object per logged step
    RUN/data_report.json                   what was loaded and what was skipped
    RUN/previews/                          sample grids from fixed noise
    RUN/checkpoints/step_0000500.safetensors   model / target / ema weights + metadata
    RUN/checkpoints/step_0000500.state.pt      optimizer and RNG state (loads with weights_only)
    RUN/checkpoints/latest                     the stem of the newest complete checkpoint

Free of torch: the app lists and follows runs before torch is imported. The engine and the app
both read and write run folders through these functions only.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Callable

CONFIG = "config.toml"
METRICS = "metrics.jsonl"
DATA_REPORT = "data_report.json"
PREVIEWS = "previews"
CHECKPOINTS = "checkpoints"
PREFIX = "step_"  # checkpoint stems: step_0000373.safetensors / .state.pt
WEIGHTS_SUFFIX = ".safetensors"
STATE_SUFFIX = ".state.pt"


# --- atomic writes ---------------------------------------------------------------------------------
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # mkstemp makes 0600 files; ours are ordinary files


def atomic_write_via(path: Path, write: Callable[[str], object]) -> None:
    """`write(tmp)` fills a temporary file beside `path`; fsync it, then rename it over `path`
    (so a crash at any moment leaves either the old file or the new one, never half of one).
    On any error the temporary file is removed and the error propagates."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, _FILE_MODE)
        write(tmp)
        with open(tmp, "r+b") as fh:  # writable: Windows cannot fsync a read-only handle
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write_via(path, lambda tmp: Path(tmp).write_bytes(data))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- checkpoints and the latest pointer --------------------------------------------------------------
def checkpoint_name(step: int) -> str:
    """The file stem of the checkpoint saved at `step` (and what `latest` holds): step_0000373."""
    return f"{PREFIX}{step:07d}"


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINTS


def checkpoint_files(run_dir: str | Path, step: int) -> tuple[Path, Path]:
    """(weights, state) of the checkpoint saved at `step`."""
    stem = checkpoint_dir(run_dir) / checkpoint_name(step)
    return stem.with_name(stem.name + WEIGHTS_SUFFIX), stem.with_name(stem.name + STATE_SUFFIX)


def state_file(weights: Path) -> Path:
    """The optimizer/RNG state file that belongs to a checkpoint's weights file."""
    return weights.with_name(weights.name.removesuffix(WEIGHTS_SUFFIX) + STATE_SUFFIX)


def step_of(path: Path) -> int | None:
    """The step in a checkpoint file's name, or None for a file that is not one of ours."""
    stem = path.name.removesuffix(WEIGHTS_SUFFIX).removesuffix(STATE_SUFFIX)
    digits = stem.removeprefix(PREFIX)
    return int(digits) if stem.startswith(PREFIX) and digits.isdigit() else None


def saved_steps(folder: str | Path) -> list[int]:
    """Steps with a weights file in a checkpoints folder, in numeric order."""
    steps = {step_of(p) for p in Path(folder).glob(f"{PREFIX}*{WEIGHTS_SUFFIX}")}
    return sorted(s for s in steps if s is not None)


def latest_pointer(run_dir: str | Path) -> Path:
    """The file naming a run's newest complete checkpoint; written last, so it exists only once one is complete."""
    return checkpoint_dir(run_dir) / "latest"


def latest_step(run_dir: str | Path) -> int:
    """The step of a run's newest complete checkpoint, read from its `latest` pointer; 0 when none."""
    try:
        return int(latest_pointer(run_dir).read_text().strip().removeprefix(PREFIX))
    except (OSError, ValueError):
        return 0


def has_checkpoint(run_dir: str | Path) -> bool:
    return latest_pointer(run_dir).is_file()


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint file itself, or the newest complete checkpoint of a run folder (or of a bare
    checkpoints folder): the one `latest` names, else the highest step present."""
    from .errors import CheckpointError

    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise CheckpointError(f"{path} does not exist")
    folder = path / CHECKPOINTS if (path / CHECKPOINTS).is_dir() else path
    pointer = folder / "latest"
    if pointer.is_file():
        candidate = folder / (pointer.read_text().strip() + WEIGHTS_SUFFIX)
        if candidate.is_file():
            return candidate
    steps = saved_steps(folder)
    if not steps:
        raise CheckpointError(f"no checkpoint in {path}: train first, or pick a .safetensors file")
    return folder / (checkpoint_name(steps[-1]) + WEIGHTS_SUFFIX)


def run_of(checkpoint: str | Path) -> Path | None:
    """The run folder a checkpoint file belongs to (None for a file outside any run's checkpoints/)."""
    checkpoint = Path(checkpoint)
    if checkpoint.is_dir():
        return checkpoint
    return checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINTS else None


def run_name(source: str | Path) -> str:
    """A short name for a run folder or checkpoint: the run's folder name, else the file's stem."""
    run = run_of(source)
    return run.name if run is not None else Path(source).stem


# --- metrics.jsonl ---------------------------------------------------------------------------------------
def append_metrics(run_dir: str | Path, record: dict) -> None:
    with open(Path(run_dir) / METRICS, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a run folder's (or a metrics file's) metrics.jsonl, in order. A line that is not a
    JSON object with a numeric `step` (a torn last line after a crash) is skipped; the lines after it are kept."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and _is_number(record.get("step")):
            records.append(record)
    return records


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def truncate_metrics(run_dir: str | Path, last_step: int) -> None:
    """Drop the lines logged after `last_step` (written after the checkpoint a resume starts from)."""
    kept = [r for r in read_metrics(run_dir) if r["step"] <= last_step]
    atomic_write_bytes(Path(run_dir) / METRICS, "".join(json.dumps(r) + "\n" for r in kept).encode())


# --- extending a finished run -----------------------------------------------------------------------------
def progress(run_dir: str | Path) -> tuple[int, float]:
    """(steps done, training seconds used) by the run's last log line or checkpoint, whichever is further."""
    records = read_metrics(run_dir)
    last = records[-1] if records else {}
    wall = last.get("wall", 0.0)
    return max(int(last.get("step", 0)), latest_step(run_dir)), float(wall) if _is_number(wall) else 0.0


def limit_reached(run_dir: str | Path, config) -> str | None:
    """"steps" or "minutes" when the run already used its step or time budget, else None."""
    step, wall = progress(run_dir)
    if step >= config.max_steps:
        return "steps"
    if config.max_minutes > 0 and wall >= 60 * config.max_minutes - 1:
        return "minutes"
    return None


def extended(run_dir: str | Path, config):
    """`config` with one more budget of what ran out (as many steps, or minutes, again), saved as the
    run's config.toml so the run's record says what it now trains to; `config` itself if nothing ran out."""
    reached = limit_reached(run_dir, config)
    if reached is None:
        return config
    step, wall = progress(run_dir)
    if reached == "steps":
        config = config.replace(max_steps=step + config.max_steps)
    else:
        config = config.replace(max_minutes=wall / 60 + config.max_minutes)
    config.save(Path(run_dir) / CONFIG)
    return config
