"""A run folder: its layout, atomic writes, the `latest` pointer, metrics.jsonl, extending a run.

    RUN/config.toml                        the whole TrainConfig (resolved: what actually ran)
    RUN/metrics.jsonl                      one JSON object per logged step
    RUN/data_report.json                   what was loaded and what was skipped
    RUN/previews/                          sample grids from fixed noise
    RUN/checkpoints/step_0000500.safetensors   model / target / ema weights + metadata
    RUN/checkpoints/step_0000500.state.pt      optimizer and RNG state (loads with weights_only)
    RUN/checkpoints/latest                     the stem of the newest complete checkpoint
    RUN/checkpoints/best                       the stem of the best-scored checkpoint (kept when older ones are pruned)
    RUN/.lock, RUN/control.json            who trains the run, and what a front end asks of it (cmcore.runlock)

Free of torch: the app lists and follows runs before torch is imported. The engine and the app
both read and write run folders through these functions only.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Callable

from .errors import CheckpointError

CONFIG = "config.toml"
METRICS = "metrics.jsonl"
DATA_REPORT = "data_report.json"
PREVIEWS = "previews"
CHECKPOINTS = "checkpoints"
LOCK = ".lock"  # {"pid", "host", "started", ...} of the process training the run
CONTROL = "control.json"  # {"pause": bool, "stop": bool}: what a front end asks of the process(es) training the run
LATEST, BEST = "latest", "best"  # RUN/checkpoints/latest and best: pointers holding a checkpoint's stem
PREFIX = "step_"  # checkpoint stems: step_0000373.safetensors / .state.pt
WEIGHTS_SUFFIX = ".safetensors"
STATE_SUFFIX = ".state.pt"
PORTABLE_WEIGHTS = "model.safetensors"  # the weights of an exported model folder (cmcore/portable.py)


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
    """Steps with a weights file in a checkpoints folder, in numeric order (complete or not: see complete_steps)."""
    steps = {step_of(p) for p in Path(folder).glob(f"{PREFIX}*{WEIGHTS_SUFFIX}")}
    return sorted(s for s in steps if s is not None)


def complete_steps(folder: str | Path) -> list[int]:
    """Steps whose weights and state files are both present, in numeric order. A checkpoint is one unit:
    a weights file without its state (a process killed between the two renames) is not a checkpoint."""
    folder = Path(folder)
    return [s for s in saved_steps(folder) if (folder / (checkpoint_name(s) + STATE_SUFFIX)).is_file()]


def latest_pointer(run_dir: str | Path) -> Path:
    """The file naming a run's newest complete checkpoint; written last, so it exists only once one is complete."""
    return checkpoint_dir(run_dir) / LATEST


def best_pointer(run_dir: str | Path) -> Path:
    """The file naming a run's best-scored checkpoint (cmcore.evaluation writes it after scoring a checkpoint)."""
    return checkpoint_dir(run_dir) / BEST


_POINTER = re.compile(r"step_(\d{1,12})")


def _pointed_step(folder: Path, pointer: str = LATEST) -> int | None:
    """The step a checkpoints folder's `latest` (or `best`) names, if it holds nothing but a checkpoint stem
    (never a path: a pointer can only name a file of its own folder) and that checkpoint is complete."""
    try:
        with open(folder / pointer, "rb") as fh:
            raw = fh.read(64)
        match = _POINTER.fullmatch(raw.decode("ascii").strip())
    except (OSError, UnicodeDecodeError):
        return None
    if match is None:
        return None
    step = int(match.group(1))
    stem = folder / checkpoint_name(step)
    complete = all(stem.with_name(stem.name + sfx).is_file() for sfx in (WEIGHTS_SUFFIX, STATE_SUFFIX))
    return step if complete else None


def _checkpoints_folder(path: str | Path) -> Path:
    path = Path(path)
    return path / CHECKPOINTS if (path / CHECKPOINTS).is_dir() else path


def committed_step(path: str | Path) -> int | None:
    """The step of the newest complete checkpoint of a run folder (or bare checkpoints folder): the one a
    valid `latest` names, else (no pointer, or one naming nothing usable) the highest complete pair; None
    when there is none."""
    folder = _checkpoints_folder(path)
    step = _pointed_step(folder)
    if step is None:
        steps = complete_steps(folder)
        step = steps[-1] if steps else None
    return step


def latest_step(run_dir: str | Path) -> int:
    """The step of a run's newest complete checkpoint (`committed_step`); 0 when none."""
    step = committed_step(run_dir)
    return 0 if step is None else step


def has_checkpoint(run_dir: str | Path) -> bool:
    return committed_step(run_dir) is not None


def best_step(path: str | Path) -> int | None:
    """The step of a run's best-scored checkpoint, if `best` names a complete one; else None."""
    return _pointed_step(_checkpoints_folder(path), BEST)


def find_checkpoint(path: str | Path, which: str = LATEST) -> Path:
    """A checkpoint file itself, or a checkpoint of a run folder (or of a bare checkpoints folder): with
    which="latest" the newest complete one (the one `latest` names, else the highest step whose weights and
    state are both there); with which="best" the best-scored one, or the newest when none was scored."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise CheckpointError(f"{path} does not exist")
    if (path / PORTABLE_WEIGHTS).is_file():  # a folder written by `cmcore export`
        return path / PORTABLE_WEIGHTS
    folder = _checkpoints_folder(path)
    step = best_step(folder) if which == BEST else None
    if step is None:
        step = committed_step(folder)
    if step is None:
        raise CheckpointError(f"no checkpoint in {path}: train first, or pick a .safetensors file")
    return folder / (checkpoint_name(step) + WEIGHTS_SUFFIX)


def clean_orphans(run_dir: str | Path) -> list[Path]:
    """Remove what killed writes leave behind: temporary files (in the run folder, its checkpoints and
    previews) and a checkpoint's weights or state file without its partner.
    Called by the one process that holds the run's lock, after a checkpoint is complete. The removed paths."""
    run_dir = Path(run_dir)
    removed = []
    for folder in (run_dir, run_dir / CHECKPOINTS, run_dir / PREVIEWS):
        for tmp in folder.glob(".*.tmp"):
            removed.append(tmp)
    folder = run_dir / CHECKPOINTS
    complete = set(complete_steps(folder))
    for pattern in (f"{PREFIX}*{WEIGHTS_SUFFIX}", f"{PREFIX}*{STATE_SUFFIX}"):
        for file in folder.glob(pattern):
            step = step_of(file)
            if step is not None and step not in complete:
                removed.append(file)
    for file in removed:
        try:
            file.unlink()
        except FileNotFoundError:
            pass
    return removed


def remove_checkpoints_after(run_dir: str | Path, step: int) -> None:
    """Delete the checkpoint files of steps after `step`: left by a process killed after writing them but
    before `latest` named them. A run resumed from `step` trains those steps again."""
    folder = checkpoint_dir(run_dir)
    steps = {step_of(p) for p in folder.glob(f"{PREFIX}*")} - {None}
    for later in sorted(s for s in steps if s > step):
        for file in checkpoint_files(run_dir, later):
            file.unlink(missing_ok=True)


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes, hex (a teacher checkpoint's identity: the same file, unchanged)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
    """Append one line. A write that fails (full disk) is cut off again, so the file never holds half a line
    that the next one would be glued to; the error propagates. A torn last line (a killed process) is ended first."""
    line = (json.dumps(record) + "\n").encode()
    with open(Path(run_dir) / METRICS, "a+b") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size:
            fh.seek(size - 1)
            if fh.read(1) != b"\n":
                line = b"\n" + line
        try:
            fh.write(line)
            fh.flush()
        except BaseException:
            try:
                fh.truncate(size)
            except OSError:
                pass
            raise


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


def loss_records(path: str | Path) -> list[dict]:
    """The lines of logged steps (with a "loss"), without the score lines of scored checkpoints."""
    return [r for r in read_metrics(path) if "loss" in r]


def scored(records: list[dict]) -> list[dict]:
    """The score lines of metrics records (cmcore.evaluation), cleaned, in order: {"step": int, "score":
    {sampler steps (int): score}, "gap": float or None, "best": bool}; a line without a usable score is left out."""
    found = []
    for r in records:
        table = r.get("score")
        if "loss" in r or not isinstance(table, dict) or not _is_number(r.get("step")):
            continue
        score = {int(k): float(v) for k, v in table.items() if str(k).isdigit() and _is_number(v)}
        if score:
            gap = r.get("gap")
            found.append({"step": int(r["step"]), "score": score, "gap": float(gap) if _is_number(gap) else None,
                          "best": r.get("best") is True})
    return found


def score_at(records: list[dict], step: int | None, steps: int = 1) -> float | None:
    """The `steps`-step score logged for the checkpoint of `step` (its last score line), or None."""
    found = [s["score"][steps] for s in scored(records) if s["step"] == step and steps in s["score"]]
    return found[-1] if found else None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def truncate_metrics(run_dir: str | Path, last_step: int) -> None:
    """Drop the lines logged after `last_step` (written after the checkpoint a resume starts from)."""
    kept = [r for r in read_metrics(run_dir) if r["step"] <= last_step]
    atomic_write_bytes(Path(run_dir) / METRICS, "".join(json.dumps(r) + "\n" for r in kept).encode())


# --- extending a finished run -----------------------------------------------------------------------------
def progress(run_dir: str | Path) -> tuple[int, float]:
    """(steps done, training seconds used) by the run's last log line or checkpoint, whichever is further."""
    records = loss_records(run_dir)
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
