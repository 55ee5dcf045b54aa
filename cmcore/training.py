"""The Trainer: config + data + device → training steps → events, checkpoints, metrics.

Runs in whatever thread calls `run()`; `request_stop()`, `pause()` and `unpause()` are
thread-safe flags checked between steps, so a GUI never has to queue anything. A front end in another
process asks through the run folder's control file (cmcore.runlock.write_control), read every half second.

Under torchrun the same Trainer is one process of a run of several (cmcore.distributed: the global batch is
split across them, DDP averages the gradients, rank 0 alone writes the run folder and emits events, one small
all-reduce per step makes every process see the same loss, clock and stop/pause flags). Alone it asks
cmcore.distributed for a plain context, which changes nothing.

One run, one writer: `setup()` takes the run folder's lock (cmcore.runlock.acquire_lock) and `run()`
gives it back when it ends, however it ends. What training survives (a preview or a metrics line that
cannot be written, a preview out of memory, a non-finite loss rolled back) is reported as an
`events.Warning`; what it does not is one CmcoreError.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Callable

import torch

from . import distributed, events
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .errors import CheckpointError, ConfigError, OutOfMemoryError, SaveError, TrainingError
from .errors import reason as _why
from .guard import SpikeGuard
from .model import build_model, load_model
from .rundir import CONFIG, DATA_REPORT, METRICS, PREVIEWS, append_metrics, atomic_write_bytes, file_digest, \
    find_checkpoint, has_checkpoint, remove_checkpoints_after, truncate_metrics
from .runlock import acquire_lock, clear_control, read_control, release_lock
from .methods import ConsistencyDistillationLoss, ConsistencyTrainingLoss, FlowLoss
from .nets import count_parameters
from .precond import ConsistencyFunction
from .sampling import sample as run_sampler, to_uint8
from .schedules import TimePairs, ema_warmup, lr_factor

EventCallback = Callable[[object], None]
MAX_NAN_ROLLBACKS = 3  # a non-finite loss rolls back (halving the learning rate) this often, then stops the run
CONTROL_POLL_S = 0.5  # how often rank 0 reads the run's control file (and a paused run checks for Resume)


class _NonFiniteLoss(TrainingError):
    def __init__(self, value: float, step: int):
        super().__init__(f"the loss became {value} at step {step}")
        self.value, self.step = value, step


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    # One fused call instead of a kernel per tensor (fewer launches on a GPU).
    torch._foreach_lerp_(list(ema.parameters()), [p.detach() for p in model.parameters()], 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


class Trainer:
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
        self.teacher_record: dict | None = None  # cd: the teacher checkpoint's path, step and sha256
        self._release: weakref.finalize | None = None  # gives the run's lock back (once)
        self._metrics_failing = False
        self.dist = distributed.Context()  # until setup(): alone
        self._agreed = distributed.Agreed()  # what the processes agreed at the last step (distributed)
        self._control_read, self._control_seen = 0.0, None

    # --- thread-safe controls ----------------------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()
        self._running.set()

    def pause(self) -> None:
        self._running.clear()

    def unpause(self) -> None:
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

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
        created = not self.run_dir.exists()
        try:
            self._take_lock()
            self._setup()
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
        if self._release is not None:
            self._release()

    def _setup(self) -> None:
        c = self.config
        torch.manual_seed(c.seed)
        if not self.resume and has_checkpoint(self.run_dir):
            raise ConfigError(f"{self.run_dir} already holds a run: resume it or choose a new folder")
        resume_from = self._resume_checkpoint() if self.resume else None
        if self.dataset is None:
            from .data import load_dataset

            self.dataset = load_dataset(c.data, c.resolution, c.channels, c.hflip)
        self.channels, self.resolution = self.dataset.channels, self.dataset.resolution
        try:
            self.teacher, teacher_config = self._load_teacher(resume_from) if c.method == "cd" else (None, None)
            # Automatic choices are written out, so config.toml and checkpoints say what actually ran.
            c = self.config = self.config.resolved(self.channels, teacher_config)
            if resume_from is not None:
                self._check_resumable(resume_from)
            if self.dist.is_main:  # rank 0 alone writes the run folder
                (self.run_dir / PREVIEWS).mkdir(exist_ok=True)
                clear_control(self.run_dir)  # a run starts, or resumes, neither paused nor stopped
                if not self.resume:
                    (self.run_dir / METRICS).unlink(missing_ok=True)
                if not self.resume or self._config_given:  # a resume may extend the run (more steps or minutes)
                    c.save(self.run_dir / CONFIG)
                atomic_write_bytes(self.run_dir / DATA_REPORT, json.dumps(self.dataset.report.to_dict(), indent=1).encode())

            self.model = build_model(c, self.channels, self.resolution).to(self.device)
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

    def _resume_checkpoint(self) -> Checkpoint:
        """The checkpoint a resume starts from, checked against what this Trainer was asked to train
        before any data is loaded or model built."""
        if not has_checkpoint(self.run_dir):
            raise CheckpointError(f"{self.run_dir} has no checkpoint to resume from")
        ckpt = load_checkpoint(self.run_dir)
        theirs, c = ckpt.config, self.config
        changed = [("method", theirs.method, c.method)]
        if c.method != "cd":  # a student's model is its teacher's, whatever the config says
            changed.append(("model", theirs.model, c.model))
        if c.parametrization != "auto" and c.method != "cd":
            changed.append(("parametrization", theirs.resolved(ckpt.channels).parametrization, c.parametrization))
        changed.append(("resolution", ckpt.resolution, c.resolution))
        self._refuse_changes(changed)
        return ckpt

    def _check_resumable(self, ckpt: Checkpoint) -> None:
        theirs, c = ckpt.config.resolved(ckpt.channels), self.config
        self._refuse_changes([("channels", ckpt.channels, self.channels), ("model", theirs.model, c.model),
                              ("parametrization", theirs.parametrization, c.parametrization)])

    def _refuse_changes(self, changed: list[tuple[str, object, object]]) -> None:
        for name, before, now in changed:
            if str(before) != str(now):
                raise ConfigError(f"{name}: {self.run_dir} was trained with {name} = {before!r} and cannot be resumed "
                                  f"with {now!r}: keep {before!r}, or start a new run")

    def _load_teacher(self, resume_from: Checkpoint | None) -> tuple[ConsistencyFunction, TrainConfig]:
        """The teacher of a cd run: for a new run the checkpoint `teacher` names (a run's newest), recorded by
        path, step and sha256 in every checkpoint the student saves; a resume uses that same file, unchanged."""
        c = self.config
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
        if (ckpt.channels, ckpt.resolution) != (self.channels, self.resolution):
            raise ConfigError(f"teacher was trained on {ckpt.channels}-channel {ckpt.resolution}px images, this data is "
                              f"{self.channels}-channel {self.resolution}px: match resolution and channels")
        self.teacher_record = {"teacher_path": str(path), "teacher_step": ckpt.step, "teacher_sha256": digest}
        self.config = c.replace(teacher=str(path))  # config.toml names the very checkpoint distilled
        return load_model(ckpt, self.device), tc

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

    # --- the loop ------------------------------------------------------------------------------
    def _fraction(self) -> float:
        c = self.config
        frac = self.step / c.max_steps
        if c.max_minutes > 0:
            frac = max(frac, self._clock() / (60 * c.max_minutes))
        return min(1.0, frac)

    def _clock(self) -> float:
        """Training seconds so far, as the schedules and max_minutes read them: this process's own alone;
        distributed, rank 0's as of the last step's exchange, so every process computes the same."""
        return self._agreed.clock if self.dist.enabled else self.elapsed

    def run(self) -> int:
        try:
            return self._run()
        finally:
            self.close()

    def _run(self) -> int:
        self.setup()
        c = self.config
        device = str(self.device) if not self.dist.enabled else \
            f"{self.dist.world_size} processes, {self.dist.backend}, rank 0 on {self.device}"
        self.on_event(events.Started(str(self.run_dir), self.step, c.max_steps, count_parameters(self.model), device))
        reason, last_saved = "max_steps", self.step
        window_loss, window_count, window_start, window_images = 0.0, 0, time.perf_counter(), 0
        self.model.train()
        while self.step < c.max_steps:
            self._poll_control()
            if self._agreed.pause if self.dist.enabled else self.paused:
                self._wait_while_paused()
                window_start = time.perf_counter()  # the pause is not training time
            if self._agreed.stop if self.dist.enabled else self._stop.is_set():
                reason = "stopped"
                break
            if c.max_minutes > 0 and self._clock() >= 60 * c.max_minutes:
                reason = "max_minutes"
                break
            if self.guard.wants_snapshot(self.step) and not self._has_snapshot_at(self.step):
                self.guard.add_snapshot(self.step, self._snapshot())
            started = time.perf_counter()
            try:
                loss, n, lr = self.train_step()
            except _NonFiniteLoss as exc:
                self._recover_from_non_finite(exc)  # or TrainingError after MAX_NAN_ROLLBACKS
                continue
            self.elapsed += time.perf_counter() - started
            self.step += 1
            ratio = self.guard.observe(loss)
            if ratio is not None:
                self._roll_back(ratio)
            window_loss, window_count, window_images = window_loss + loss, window_count + 1, window_images + c.batch_size
            if self.step % c.log_every == 0 or self.step == c.max_steps:
                now = time.perf_counter()
                ips = window_images / max(1e-9, now - window_start)
                self._log(window_loss / window_count, lr, n, ips)
                window_loss, window_count, window_start, window_images = 0.0, 0, now, 0
            if c.preview_every and self.step % c.preview_every == 0:
                self._preview_or_warn()
            if c.checkpoint_every and self.step % c.checkpoint_every == 0:
                self.save()
                last_saved = self.step
        if self.step != last_saved or not has_checkpoint(self.run_dir):
            self.save()
        if c.preview_every and self.step % c.preview_every != 0:
            self._preview_or_warn()
        self.dist.barrier()  # every process ends once rank 0 has saved
        self.on_event(events.Finished(self.step, reason))
        return self.step

    def _poll_control(self) -> None:
        """Rank 0: apply what a front end in another process last asked in the run's control file (read every
        CONTROL_POLL_S; a request counts once, when it changes). Distributed, the next exchange tells the others."""
        now = time.monotonic()
        if not self.dist.is_main or now - self._control_read < CONTROL_POLL_S:
            return
        self._control_read = now
        wanted = read_control(self.run_dir)
        if wanted is None or wanted == self._control_seen:
            return
        self._control_seen = wanted
        if wanted["stop"]:
            self.request_stop()
        elif wanted["pause"]:
            self.pause()
        else:
            self.unpause()

    def _wait_while_paused(self) -> None:
        """Alone: until unpaused or stopped (reading the control file meanwhile). Distributed: every process
        exchanges the flags every CONTROL_POLL_S until they agree to go on or to stop."""
        while True:
            if not self.dist.enabled:
                if self._running.wait(CONTROL_POLL_S):
                    return
                self._poll_control()
                continue
            time.sleep(CONTROL_POLL_S)
            self._poll_control()
            self._agreed = self.dist.exchange(None, stop=self._stop.is_set(), pause=self.paused, clock=self.elapsed)
            if self._agreed.stop or not self._agreed.pause:
                return

    def train_step(self) -> tuple[float, int, float]:
        """One optimisation step, exactly as `run` takes it (no logging, previews or checkpoints):
        (loss, the curriculum's n, learning rate). `cmcore bench` times this. A non-finite loss raises
        TrainingError before the weights change."""
        c = self.config
        n = self.pairs.n(self._fraction() * c.max_steps, c.max_steps)
        lr = c.lr * lr_factor(self.step, c.warmup_steps, self._fraction(), c.lr_min_ratio) * self.lr_scale
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x0, x1, t, r = self._draw(n)
        try:
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_autocast):
                if c.method == "flow":
                    loss = self._loss(x0, x1, t).mean()
                else:
                    loss = self._loss(x0, x1, t, r, n).mean()
            # alone loss.item(); distributed the mean over the processes, with the flags and rank 0's clock
            self._agreed = self.dist.exchange(loss, stop=self._stop.is_set(), pause=self.paused, clock=self.elapsed)
            value = self._agreed.loss
            if not math.isfinite(value):
                raise _NonFiniteLoss(value, self.step + 1)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if c.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        except torch.OutOfMemoryError:
            raise OutOfMemoryError(f"out of memory at step {self.step + 1} on {self.device}: lower the batch size "
                                   f"(now {c.batch_size}), the model size or the resolution") from None
        ema_update(self.ema, self.model, ema_warmup(c.ema_eval, self.step))
        return value, n, lr

    def _draw(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """This process's share of the step's batch, on the device: images x0, noise x1, times t and (consistency
        methods; None for flow) r, drawn in this order from the data, noise and time streams."""
        b = self.local_batch
        x0 = self.dataset.sample_batch(b, self.data_gen).to(self.device)
        x1 = torch.randn(x0.shape, generator=self.noise_gen).to(self.device)
        if self.config.method == "flow":
            return x0, x1, torch.rand(b, generator=self.time_gen).to(self.device), None
        t, r = self.pairs.sample(n, b, self.time_gen)
        return x0, x1, t.to(self.device), r.to(self.device)

    def _loss(self, *args) -> torch.Tensor:
        """The per-sample loss: through DDP in a process group (which averages the gradients), else `loss_fn` itself."""
        if self.dist.enabled:
            return self.objective(*args)
        return self.loss_fn(self.model, *args)

    def _recover_from_non_finite(self, exc: _NonFiniteLoss) -> None:
        """Roll back to the newest snapshot with finite weights and go on at half the learning rate;
        after MAX_NAN_ROLLBACKS such rollbacks in a run, stop with one line."""
        target = next(((step, snap) for step, snap in reversed(self.guard.snapshots) if _finite(snap["model"])), None)
        lr = self.config.lr * self.lr_scale
        if target is None or self.nan_rollbacks >= MAX_NAN_ROLLBACKS:
            tried = f" (after {self.nan_rollbacks} rollbacks, each halving it)" if self.nan_rollbacks else ""
            raise TrainingError(f"{exc}: lower the learning rate (now {lr:g}{tried}) or use fp32; the last good "
                                "checkpoint is kept") from None
        to_step, snap = target
        self._restore_snapshot(snap)
        self.nan_rollbacks += 1
        self.lr_scale /= 2
        self.on_event(events.Warning(self.step, f"{exc}: rolled back to the weights of step {to_step} and halved the "
                                                f"learning rate to {lr / 2:g} ({self.nan_rollbacks} of "
                                                f"{MAX_NAN_ROLLBACKS} such rollbacks)"))

    # --- the spike guard (cmcore/guard.py) ---------------------------------------------------------
    def _snapshot(self) -> dict:
        """Copies (on the CPU, off the accelerator's memory) of everything a rollback restores."""
        parts = {"model": self.model, "ema": self.ema, "optimizer": self.optimizer, "scaler": self.scaler}
        return {name: _to_cpu(part.state_dict()) for name, part in parts.items()}

    def _has_snapshot_at(self, step: int) -> bool:
        return bool(self.guard.snapshots) and self.guard.snapshots[-1][0] == step

    def _roll_back(self, ratio: float) -> None:
        found = self.guard.rollback_target(self.step)
        if found is None:  # too early in the run, or this snapshot already failed max_rollbacks times
            return
        to_step, snap = found
        self._restore_snapshot(snap)
        self.guard.rolled_back(to_step)
        self.on_event(events.RolledBack(self.step, to_step, ratio))

    def _restore_snapshot(self, snap: dict) -> None:
        self.model.load_state_dict(snap["model"])
        self.ema.load_state_dict(snap["ema"])
        self.optimizer.load_state_dict(copy.deepcopy(snap["optimizer"]))  # moves the state to the params' device
        self.scaler.load_state_dict(snap["scaler"])

    def _log(self, loss: float, lr: float, n: int, ips: float) -> None:
        if not self.dist.is_main:
            return
        c = self.config
        record = {"step": self.step, "loss": loss, "lr": lr, "n": n, "images_per_s": round(ips, 2),
                  "wall": round(self.elapsed, 3)}
        if self.guard.rollbacks:
            record["rollbacks"] = self.guard.rollbacks
        if self.nan_rollbacks:
            record["nan_rollbacks"] = self.nan_rollbacks
        try:
            append_metrics(self.run_dir, record)
            self._metrics_failing = False
        except (OSError, RuntimeError) as exc:  # a full disk: the plot misses points, training goes on
            if not self._metrics_failing:
                self.on_event(events.Warning(self.step, f"could not write {METRICS} at step {self.step} ({_why(exc)}): "
                                                        "the loss plot misses these steps; free disk space"))
            self._metrics_failing = True
        steps_per_s = ips / c.batch_size
        remaining = (c.max_steps - self.step) / steps_per_s if steps_per_s > 0 else None
        if c.max_minutes > 0:
            time_left = max(0.0, 60 * c.max_minutes - self.elapsed)
            remaining = time_left if remaining is None else min(remaining, time_left)
        self.on_event(events.Progress(self.step, c.max_steps, loss, lr, n, ips, self.elapsed, remaining,
                                      self._fraction()))

    # --- previews and checkpoints ----------------------------------------------------------------
    def preview_steps(self) -> tuple[tuple[int, str], ...]:
        if self.config.default_sampler == "ode":
            return ((1, "ode_euler"), (16, "ode_euler"))
        return ((1, "multistep"), (4, "multistep"))

    def _preview_or_warn(self) -> None:
        if not self.dist.is_main:
            return
        try:
            self.preview()
        except (OutOfMemoryError, SaveError) as exc:  # training goes on without this preview
            self.on_event(events.Warning(self.step, f"no preview at step {self.step}: {exc}"))

    @torch.no_grad()
    def preview(self) -> None:
        """Sample grids from fixed noise: a Preview event, then one PNG each under previews/ (written
        atomically). Raises OutOfMemoryError or SaveError; `run` turns them into warnings."""
        from .export import make_grid, save_png

        grids = {}
        c = self.config
        shape = (c.preview_count, self.channels, self.resolution, self.resolution)
        try:
            for steps, sampler in self.preview_steps():
                x = run_sampler(self.ema, shape, steps, self.preview_seed, sampler, self.device)
                grids[steps] = (make_grid(to_uint8(x)), sampler)
        except torch.OutOfMemoryError:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            raise OutOfMemoryError(f"out of memory drawing {c.preview_count} preview images on {self.device}: lower "
                                   "preview_count, the batch size or the model size") from None
        self.on_event(events.Preview(self.step, {steps: grid for steps, (grid, _) in grids.items()}))
        for steps, (grid, sampler) in grids.items():
            save_png(self.run_dir / PREVIEWS / f"step_{self.step:07d}_{steps}steps.png", grid,
                     {"step": str(self.step), "steps": str(steps), "sampler": sampler})

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
                                "num_params": count_parameters(self.model), **(self.teacher_record or {})})
        self.on_event(events.CheckpointSaved(self.step, str(path)))
        return path


def _ignore(event) -> None:
    pass


def _to_cpu(value):
    """A copy of a nested state dict with its tensors on the CPU (optimizer state for a snapshot)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value


def _finite(state: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _remove_if_empty(folder: Path) -> None:
    """A run folder this Trainer created for a start that failed before writing anything."""
    try:
        os.rmdir(folder)
    except OSError:
        pass
