"""What a resumed or distilling run must check before it trains: the checkpoint it resumes fits what it is
asked to train, and a cd run's teacher is the very file it started with (path, step and sha256)."""
from __future__ import annotations

from pathlib import Path

from .checkpoint import Checkpoint, load_checkpoint
from .config import TrainConfig
from .errors import CheckpointError, ConfigError
from .model import load_model
from .precond import ConsistencyFunction
from .rundir import file_digest, find_checkpoint, has_checkpoint


def resume_checkpoint(run_dir: Path, config: TrainConfig) -> Checkpoint:
    """The checkpoint a resume starts from, checked against what the Trainer was asked to train before any
    data is loaded or model built."""
    if not has_checkpoint(run_dir):
        raise CheckpointError(f"{run_dir} has no checkpoint to resume from")
    ckpt = load_checkpoint(run_dir)
    theirs, c = ckpt.config, config
    changed = [("method", theirs.method, c.method)]
    if c.method != "cd":  # a student's model is its teacher's, whatever the config says
        changed.append(("model", theirs.model, c.model))
    if c.parametrization != "auto" and c.method != "cd":
        changed.append(("parametrization", theirs.resolved(ckpt.channels).parametrization, c.parametrization))
    changed.append(("resolution", ckpt.resolution, c.resolution))
    refuse_changes(run_dir, changed)
    return ckpt


def check_resumable(run_dir: Path, ckpt: Checkpoint, config: TrainConfig, channels: int,
                    class_names: tuple[str, ...] = ()) -> None:
    """Once the data is loaded and `config` resolved: the same channels, model, parametrization and classes."""
    theirs = ckpt.config.resolved(ckpt.channels)
    refuse_changes(run_dir, [("channels", ckpt.channels, channels), ("model", theirs.model, config.model),
                             ("parametrization", theirs.parametrization, config.parametrization),
                             ("classes", describe_classes(ckpt.class_names), describe_classes(class_names))])


def describe_classes(names: tuple[str, ...]) -> str:
    """"none", or the class names (the first few) for a one-line message."""
    if not names:
        return "none"
    shown = ", ".join(names[:6]) + (f" … ({len(names)} in all)" if len(names) > 6 else "")
    return shown


def refuse_changes(run_dir: Path, changed: list[tuple[str, object, object]]) -> None:
    for name, before, now in changed:
        if str(before) != str(now):
            raise ConfigError(f"{name}: {run_dir} was trained with {name} = {before!r} and cannot be resumed "
                              f"with {now!r}: keep {before!r}, or start a new run")


def load_teacher(config: TrainConfig, resume_from: Checkpoint | None, channels: int, resolution: int,
                 device, class_names: tuple[str, ...] = ()) -> tuple[ConsistencyFunction, TrainConfig, dict]:
    """(the teacher, its resolved config, its record {"teacher_path", "teacher_step", "teacher_sha256"}) of a
    cd run: for a new run the checkpoint `config.teacher` names (a run's newest), recorded in every checkpoint
    the student saves; a resume uses that same file, unchanged."""
    c = config
    meta = resume_from.meta if resume_from is not None else {}
    if "teacher_sha256" in meta:
        path, step = Path(meta.get("teacher_path", "")), meta.get("teacher_step", "?")
        if not path.is_file():
            raise ConfigError(f"teacher: this run distils {path} (step {step}), which is gone (pruned, moved or "
                              "deleted): put that file back to resume")
        digest = file_digest(path)
        if digest != meta["teacher_sha256"]:
            raise ConfigError(f"teacher: {path} (step {step}) has changed since this run started distilling it: "
                              "put the original file back to resume")
        given = Path(c.teacher).expanduser().resolve() if c.teacher else path
        if given != path and given not in path.parents:
            raise ConfigError(f"teacher: this run distils {path}; a resumed run cannot change its teacher to "
                              f"{c.teacher} (start a new run for that)")
    else:
        if not Path(c.teacher).expanduser().exists():
            raise ConfigError(f"teacher: {c.teacher} does not exist: give a `flow` run folder or checkpoint")
        path = find_checkpoint(c.teacher).resolve()
        digest = file_digest(path)
    ckpt = load_checkpoint(path)
    tc = ckpt.config.resolved(ckpt.channels)
    if tc.method != "flow":
        raise ConfigError(f"teacher {ckpt.path} is a {tc.method!r} run; a teacher must be a 'flow' run")
    if (ckpt.channels, ckpt.resolution) != (channels, resolution):
        raise ConfigError(f"teacher was trained on {ckpt.channels}-channel {ckpt.resolution}px images, this data is "
                          f"{channels}-channel {resolution}px: match resolution and channels")
    if tuple(ckpt.class_names) != tuple(class_names):
        raise ConfigError(f"teacher: its classes are {describe_classes(ckpt.class_names)}, this run's are "
                          f"{describe_classes(class_names)}: a cd teacher needs the same classes (distil a flow run "
                          "trained on this data with the same classes setting)")
    record = {"teacher_path": str(path), "teacher_step": ckpt.step, "teacher_sha256": digest}
    return load_model(ckpt, device), tc, record
