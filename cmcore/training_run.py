"""A training run's state: the run folder's lock, the data and its held-out split, the teacher, the model and
its evaluation EMA, the optimiser, the random streams and the clock; built for a new run, restored from a
checkpoint for a resumed one, and saved to checkpoints (`save`). cmcore.training.Trainer steps it.

Everything a checkpoint holds is written by `save` and read back by `_restore`, side by side here, so the two
cannot drift apart.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import threading
import weakref
from pathlib import Path
from typing import Callable

import torch

from . import distributed, events
from .checkpoint import Checkpoint, save_checkpoint
from .config import TrainConfig
from .errors import CheckpointError, ConfigError, OutOfMemoryError
from .evaluation import Evaluator, best_so_far, score_steps, split_for_run
from .guard import SpikeGuard, snapshot
from .methods import BatchLabels, ConsistencyDistillationLoss, ConsistencyTrainingLoss, FlowLoss
from .model import build_model
from .nets import count_parameters
from .resume import check_resumable, load_teacher, resume_checkpoint
from .rundir import CONFIG, DATA_REPORT, METRICS, PREVIEWS, atomic_write_bytes, has_checkpoint, read_metrics, \
    remove_checkpoints_after, truncate_metrics
from .runlock import acquire_lock, clear_control, release_lock
from .schedules import TimePairs

EventCallback = Callable[[object], None]


class TrainingRun:
    def __init__(self, config: TrainConfig | None, run_dir: str | Path, *, resume: bool = False,
                 on_event: EventCallback | None = None, dataset=None):
        self.run_dir = Path(run_dir)
        if config is None:
            if not resume:
                raise ConfigError("a new run needs a configuration")
            config = TrainConfig.load(self.run_dir / CONFIG)
        self.config = config
        self.resume = resume
        self._config_given = config is not None
        self.on_event = on_event or (lambda event: None)
        self.dataset = dataset
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self.step = 0
        self.lr_scale = 1.0  # halved by each rollback after a non-finite loss
        self.nan_rollbacks = 0
        self.class_names: tuple[str, ...] = ()  # the classes the run is conditioned on (set up with the data)
        self.teacher_record: dict | None = None  # cd: the teacher checkpoint's path, step and sha256
        self._release: weakref.finalize | None = None  # gives the run's lock back (once)
        self._metrics_failing = False
        self.dist = distributed.Context()  # until setup(): alone
        self._agreed = distributed.Agreed()  # what the processes agreed at the last step (distributed)
        self._control_read, self._control_seen = 0.0, None
        self.evaluator: Evaluator | None = None  # rank 0 of a scored run (cmcore.evaluation)
        self._scored_step: int | None = None
        self._held_labels: torch.Tensor | None = None  # a class-conditional run's held-out labels (the gap)
        self._mirror = None  # the TensorBoard mirror (TrainConfig.tensorboard), closed with the run

    # --- set-up ------------------------------------------------------------------------------
    def setup(self) -> None:
        """Take the run's lock, load the data (and teacher), build or restore the model and optimiser:
        everything `run` needs before its first step (and all `train_step` needs, for a benchmark).
        `run` gives the lock back when it ends; a caller of `setup` alone calls `close()` when done."""
        c = self.config = self.config.validate().with_absolute_paths()
        c.check_paths(teacher=not self.resume)  # a resumed cd run checks the teacher it recorded
        self.dist = distributed.context(c.device)  # under torchrun: joins the run's process group (once)
        self.device = self.dist.train_device(c.device)
        self.local_batch = self.dist.local_batch(c.batch_size)  # the global batch, split across the processes
        if not self.dist.is_main:
            self.on_event = _ignore  # rank 0 speaks for the run
        if c.tensorboard and self.dist.is_main:
            from .tensorboard_mirror import require_tensorboard

            require_tensorboard()  # before anything is written
        created = not self.run_dir.exists()
        try:
            self._take_lock()
            self._setup()
            if c.tensorboard and self.dist.is_main:
                self._mirror_to_tensorboard()
        except BaseException:
            self.close()
            if created and self.dist.is_main:
                _remove_if_empty(self.run_dir)
            with contextlib.suppress(distributed.DistributedError):
                self.dist.agree_ready(False)  # the other processes stop too, pointing here
            raise
        self.dist.agree_ready(True)
        self.objective = self.dist.wrap(self.model, self.loss_fn)  # DDP in a process group (rank 0's weights)
        self.dist.seed_streams(c.seed, self.step, (self.data_gen, self.noise_gen, self.time_gen))  # ranks > 0
        self._agreed = distributed.Agreed(clock=self.elapsed)

    def _take_lock(self) -> None:
        if self._release is not None and self._release.alive:
            return  # setup() before run(): already ours
        if not self.dist.is_main:
            return  # rank 0 holds the lock for the whole run
        self.run_dir.mkdir(parents=True, exist_ok=True)
        record = acquire_lock(self.run_dir)  # RunBusyError: "this run is being trained by pid N on HOST"
        self._release = weakref.finalize(self, release_lock, self.run_dir, record)

    def close(self) -> None:
        """Give the run folder's lock back (also done when the Trainer is collected or the process exits)."""
        if self._mirror is not None:
            self._mirror.close()
            self._mirror = None
        if self._release is not None:
            self._release()

    def _mirror_to_tensorboard(self) -> None:
        """Chain a TensorBoard writer after on_event (cmcore.tensorboard_mirror; ConfigError when not installed)."""
        from .tensorboard_mirror import TensorBoardMirror

        mirror, emit = TensorBoardMirror(self.run_dir), self.on_event

        def on_event(event) -> None:
            emit(event)
            mirror(event)

        self.on_event, self._mirror = on_event, mirror

    def _setup(self) -> None:
        c = self.config
        torch.manual_seed(c.seed)
        if not self.resume and has_checkpoint(self.run_dir):
            raise ConfigError(f"{self.run_dir} already holds a run: resume it or choose a new folder")
        resume_from = resume_checkpoint(self.run_dir, c) if self.resume else None
        if self.dataset is None:
            from .data import load_dataset

            self.dataset = load_dataset(c.data, c.resolution, c.channels, c.hflip, classes=c.classes)
        self.channels, self.resolution = self.dataset.channels, self.dataset.resolution
        self.class_names = run_classes(c, self.dataset)
        held_out = self._hold_out()
        try:
            self.teacher, teacher_config = None, None
            if c.method == "cd":
                self.teacher, teacher_config, self.teacher_record = load_teacher(c, resume_from, self.channels,
                                                                                 self.resolution, self.device,
                                                                                 self.class_names)
                self.config = c.replace(teacher=self.teacher_record["teacher_path"])  # names the very file distilled
            # Automatic choices are written out, so config.toml and checkpoints say what actually ran.
            c = self.config = self.config.resolved(self.channels, teacher_config, self.class_names)
            if resume_from is not None:
                check_resumable(self.run_dir, resume_from, c, self.channels, self.class_names)
            if self.dist.is_main:  # rank 0 alone writes the run folder
                (self.run_dir / PREVIEWS).mkdir(exist_ok=True)
                clear_control(self.run_dir)  # a run starts, or resumes, neither paused nor stopped
                if not self.resume:
                    (self.run_dir / METRICS).unlink(missing_ok=True)
                if not self.resume or self._config_given:  # a resume may extend the run (more steps or minutes)
                    c.save(self.run_dir / CONFIG)
                atomic_write_bytes(self.run_dir / DATA_REPORT, json.dumps(self.dataset.report.to_dict(), indent=1).encode())

            self.model = build_model(c, self.channels, self.resolution, len(self.class_names)).to(self.device)
            if self.teacher is not None and not self.resume:
                self.model.load_state_dict(self.teacher.state_dict())  # a CD student starts from its teacher
            self.ema = copy.deepcopy(self.model).requires_grad_(False).eval()
        except torch.OutOfMemoryError:
            raise OutOfMemoryError(f"out of memory setting up the {c.model} model on {self.device}: use a smaller "
                                   "model or resolution, or another device") from None
        self.optimizer = torch.optim.RAdam(self.model.parameters(), lr=c.lr, betas=(0.9, c.adam_beta2))
        self.use_autocast = self.device.type == "cuda" and c.precision != "fp32"
        self.amp_dtype = torch.bfloat16 if c.precision == "bf16" else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda" and c.precision == "fp16")

        self.pairs = TimePairs(c)
        if c.method == "flow":
            self.loss_fn = FlowLoss()
        elif c.method == "cd":
            self.loss_fn = ConsistencyDistillationLoss(self.teacher, c.distance, c.huber_c)
        else:
            self.loss_fn = ConsistencyTrainingLoss(c.distance, c.huber_c)
        if self.class_names:
            self.loss_fn = BatchLabels(self.loss_fn)  # `_draw` gives it each batch's labels

        self.data_gen = torch.Generator().manual_seed(c.seed * 4 + 1)
        self.noise_gen = torch.Generator().manual_seed(c.seed * 4 + 2)
        self.time_gen = torch.Generator().manual_seed(c.seed * 4 + 3)
        self.preview_seed = c.seed + 12345
        self.guard = SpikeGuard(c.spike_factor)
        self.elapsed = 0.0
        self.step = 0
        if resume_from is not None:
            self._restore(resume_from)
            if self.guard.enabled and self.guard.calm():  # the resumed weights: the first rollback target
                self.guard.add_snapshot(self.step, self._snapshot())
        self._make_evaluator(held_out)

    def _hold_out(self) -> torch.Tensor | None:
        """Train on the run's split (cmcore.evaluation): the held-out images (uint8), or None when the run is
        not scored (score off, or too few images). Checked before anything is written: a resumed run whose
        data no longer matches its split stops here."""
        if not self.config.score:
            return None
        train, held = split_for_run(self.dataset, self.run_dir, self.config.seed, self.resume, self.dist.is_main)
        if not held:
            return None
        full = self.dataset
        self.dataset = dataclasses.replace(full, images=full.images[train],
                                           labels=None if full.labels is None else full.labels[train])
        self._held_labels = None if full.labels is None else full.labels[held]
        return full.images[held]

    def _make_evaluator(self, held_out: torch.Tensor | None) -> None:
        """Rank 0 scores; a resumed run remembers its best score (RUN/checkpoints/best) from the metrics."""
        c, self.evaluator, self._scored_step = self.config, None, None
        if held_out is None or not self.dist.is_main:
            return
        steps = score_steps(c.method)
        best = best_so_far(self.run_dir, read_metrics(self.run_dir), steps) if self.resume else None
        labels = (self.dataset.labels, self._held_labels) if self.class_names else None
        self.evaluator = Evaluator(held_out, self.dataset.images, steps, c.default_sampler, best, labels)

    def _restore(self, ckpt: Checkpoint) -> None:
        try:
            self.model.load_state_dict(ckpt.weights["model"])
            self.ema.load_state_dict(ckpt.weights["ema"])
        except (KeyError, RuntimeError) as exc:
            raise CheckpointError(f"{ckpt.path} cannot be resumed: {_first_line(exc)}") from None
        state = ckpt.load_state()
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            if "scaler" in state:
                self.scaler.load_state_dict(state["scaler"])
            for name in ("data_gen", "noise_gen", "time_gen"):
                getattr(self, name).set_state(state[name])
            torch.set_rng_state(state["torch_rng"])
            if self.device.type == "cuda" and "cuda_rng" in state:  # dropout draws on the GPU
                torch.cuda.set_rng_state(state["cuda_rng"], self.device)
            self.guard.load_state_dict(state.get("guard", {}))  # older checkpoints have none
            self.elapsed = float(state["elapsed"])
            self.lr_scale = float(state.get("lr_scale", 1.0))
            self.nan_rollbacks = int(state.get("nan_rollbacks", 0))
            if not (math.isfinite(self.elapsed) and 0 < self.lr_scale <= 1 and self.nan_rollbacks >= 0):
                raise ValueError("values out of range")
        except torch.OutOfMemoryError:
            raise OutOfMemoryError(f"out of memory restoring {ckpt.path.name} on {self.device}: use another "
                                   "device") from None
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise CheckpointError(f"{ckpt.state_path()} does not fit this run ({_first_line(exc)}): it cannot be "
                                  "resumed") from None
        self.step = ckpt.step
        if self.dist.is_main:
            remove_checkpoints_after(self.run_dir, self.step)  # written by a process killed before `latest` named them
            truncate_metrics(self.run_dir, self.step)

    def _snapshot(self) -> dict:
        """Copies (on the CPU, off the accelerator's memory) of everything a rollback restores."""
        return snapshot({"model": self.model, "ema": self.ema, "optimizer": self.optimizer, "scaler": self.scaler})

    def _restore_snapshot(self, snap: dict) -> None:
        self.model.load_state_dict(snap["model"])
        self.ema.load_state_dict(snap["ema"])
        self.optimizer.load_state_dict(copy.deepcopy(snap["optimizer"]))  # moves the state to the params' device
        self.scaler.load_state_dict(snap["scaler"])

    def save(self) -> Path | None:
        """Write a checkpoint (rank 0; the other processes of a distributed run write nothing: None)."""
        if not self.dist.is_main:
            return None
        weights = {"model": self.model.state_dict(), "ema": self.ema.state_dict()}
        state = {"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                 "data_gen": self.data_gen.get_state(), "noise_gen": self.noise_gen.get_state(),
                 "time_gen": self.time_gen.get_state(), "torch_rng": torch.get_rng_state(),
                 "elapsed": torch.tensor(self.elapsed, dtype=torch.float64), "guard": self.guard.state_dict(),
                 "lr_scale": self.lr_scale, "nan_rollbacks": self.nan_rollbacks}
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        path = save_checkpoint(self.run_dir, self.step, self.config, weights, state,
                               {"channels": self.channels, "resolution": self.resolution,
                                "num_params": count_parameters(self.model), **(self.teacher_record or {}),
                                **({"class_names": json.dumps(list(self.class_names))} if self.class_names else {})})
        self.on_event(events.CheckpointSaved(self.step, str(path)))
        return path



def run_classes(config: TrainConfig, dataset) -> tuple[str, ...]:
    """The classes a run is conditioned on: the data set's (cmcore.data.classes decided them from the `classes`
    setting), none with classes = off whatever a data set handed in has; classes = on requires some."""
    names = () if config.classes == "off" else tuple(dataset.class_names)
    if config.classes == "on" and not names:
        raise ConfigError("classes = on, but this data has no classes: put its images in two or more "
                          "sub-folders, one per class, or set classes = auto")
    if names and (dataset.labels is None or len(dataset.labels) != len(dataset)):
        raise ConfigError("the data set names classes but has no label for each image")
    return names


def _ignore(event) -> None:
    pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _remove_if_empty(folder: Path) -> None:
    """A run folder this Trainer created for a start that failed before writing anything."""
    try:
        os.rmdir(folder)
    except OSError:
        pass
