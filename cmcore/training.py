"""The Trainer: config + data + device → training steps → events, checkpoints, metrics.

Runs in whatever thread calls `run()`; `request_stop()`, `pause()` and `unpause()` are
thread-safe flags checked between steps, so a GUI never has to queue anything.
"""
from __future__ import annotations

import copy
import json
import math
import threading
import time
from pathlib import Path
from typing import Callable

import torch

from . import events
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .devices import resolve_device
from .errors import CheckpointError, ConfigError, TrainingError
from .guard import SpikeGuard
from .model import build_model, load_model
from .rundir import CONFIG, DATA_REPORT, METRICS, PREVIEWS, append_metrics, atomic_write_bytes, has_checkpoint, truncate_metrics
from .methods import ConsistencyDistillationLoss, ConsistencyTrainingLoss, FlowLoss
from .nets import count_parameters
from .precond import ConsistencyFunction
from .sampling import sample as run_sampler, to_uint8
from .schedules import TimePairs, ema_warmup, lr_factor

EventCallback = Callable[[object], None]


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
        """Load the data (and teacher), build or restore the model and optimiser: everything `run` needs
        before its first step (and all `train_step` needs, for a benchmark)."""
        c = self.config.validate()
        self.device = resolve_device(c.device)
        torch.manual_seed(c.seed)
        if self.dataset is None:
            from .data import load_dataset

            self.dataset = load_dataset(c.data, c.resolution, c.channels, c.hflip)
        self.channels, self.resolution = self.dataset.channels, self.dataset.resolution
        self.teacher, teacher_config = self._load_teacher() if c.method == "cd" else (None, None)
        # Automatic choices are written out, so config.toml and checkpoints say what actually ran.
        c = self.config = c.resolved(self.channels, teacher_config)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / PREVIEWS).mkdir(exist_ok=True)
        if not self.resume:
            if has_checkpoint(self.run_dir):
                raise ConfigError(f"{self.run_dir} already holds a run: resume it or choose a new folder")
            (self.run_dir / METRICS).unlink(missing_ok=True)
        if not self.resume or self._config_given:  # a resume may extend the run (more steps or minutes)
            c.save(self.run_dir / CONFIG)
        atomic_write_bytes(self.run_dir / DATA_REPORT, json.dumps(self.dataset.report.to_dict(), indent=1).encode())

        self.model = build_model(c, self.channels, self.resolution).to(self.device)
        if self.teacher is not None and not self.resume:
            self.model.load_state_dict(self.teacher.state_dict())  # a CD student starts from its teacher
        self.ema = copy.deepcopy(self.model).requires_grad_(False).eval()
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
        if self.resume:
            self._restore()
            if self.guard.enabled and self.guard.calm():  # the resumed weights: the first rollback target
                self.guard.add_snapshot(self.step, self._snapshot())

    def _load_teacher(self) -> tuple[ConsistencyFunction, TrainConfig]:
        ckpt = load_checkpoint(self.config.teacher)
        tc = ckpt.config.resolved(ckpt.channels)
        if tc.method != "flow":
            raise ConfigError(f"teacher {ckpt.path} is a {tc.method!r} run; a teacher must be a 'flow' run")
        if (ckpt.channels, ckpt.resolution) != (self.channels, self.resolution):
            raise ConfigError(f"teacher was trained on {ckpt.channels}-channel {ckpt.resolution}px images, this data is "
                              f"{self.channels}-channel {self.resolution}px: match resolution and channels")
        return load_model(ckpt, self.device), tc

    def _restore(self) -> None:
        try:
            ckpt = load_checkpoint(self.run_dir)
        except CheckpointError:
            raise CheckpointError(f"{self.run_dir} has no checkpoint to resume from") from None
        self.model.load_state_dict(ckpt.weights["model"])
        self.ema.load_state_dict(ckpt.weights["ema"])
        state = ckpt.load_state()
        self.optimizer.load_state_dict(state["optimizer"])
        if "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        for name in ("data_gen", "noise_gen", "time_gen"):
            getattr(self, name).set_state(state[name])
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and "cuda_rng" in state:  # dropout draws on the GPU
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.guard.load_state_dict(state.get("guard", {}))  # older checkpoints have none
        self.step, self.elapsed = ckpt.step, float(state["elapsed"])
        truncate_metrics(self.run_dir, self.step)

    # --- the loop ------------------------------------------------------------------------------
    def _fraction(self) -> float:
        c = self.config
        frac = self.step / c.max_steps
        if c.max_minutes > 0:
            frac = max(frac, self.elapsed / (60 * c.max_minutes))
        return min(1.0, frac)

    def run(self) -> int:
        self.setup()
        c = self.config
        self.on_event(events.Started(str(self.run_dir), self.step, c.max_steps, count_parameters(self.model), str(self.device)))
        reason, last_saved = "max_steps", self.step
        window_loss, window_count, window_start, window_images = 0.0, 0, time.perf_counter(), 0
        self.model.train()
        while self.step < c.max_steps:
            if not self._running.is_set():
                self._running.wait()
                window_start = time.perf_counter()  # the pause is not training time
            if self._stop.is_set():
                reason = "stopped"
                break
            if c.max_minutes > 0 and self.elapsed >= 60 * c.max_minutes:
                reason = "max_minutes"
                break
            if self.guard.wants_snapshot(self.step) and not self._has_snapshot_at(self.step):
                self.guard.add_snapshot(self.step, self._snapshot())
            started = time.perf_counter()
            loss, n, lr = self.train_step()
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
                self.preview()
            if c.checkpoint_every and self.step % c.checkpoint_every == 0:
                self.save()
                last_saved = self.step
        if self.step != last_saved or not has_checkpoint(self.run_dir):
            self.save()
        if c.preview_every and self.step % c.preview_every != 0:
            self.preview()
        self.on_event(events.Finished(self.step, reason))
        return self.step

    def train_step(self) -> tuple[float, int, float]:
        """One optimisation step, exactly as `run` takes it (no logging, previews or checkpoints):
        (loss, the curriculum's n, learning rate). `cmcore bench` times this."""
        c = self.config
        n = self.pairs.n(self._fraction() * c.max_steps, c.max_steps)
        lr = c.lr * lr_factor(self.step, c.warmup_steps, self._fraction(), c.lr_min_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x0 = self.dataset.sample_batch(c.batch_size, self.data_gen).to(self.device)
        x1 = torch.randn(x0.shape, generator=self.noise_gen).to(self.device)
        try:
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_autocast):
                if c.method == "flow":
                    t = torch.rand(c.batch_size, generator=self.time_gen).to(self.device)
                    loss = self.loss_fn(self.model, x0, x1, t).mean()
                else:
                    t, r = self.pairs.sample(n, c.batch_size, self.time_gen)
                    loss = self.loss_fn(self.model, x0, x1, t.to(self.device), r.to(self.device), n).mean()
            value = loss.item()
            if not math.isfinite(value):
                raise TrainingError(f"the loss became {value} at step {self.step + 1}: lower the learning rate "
                                    f"(now {c.lr:g}) or use fp32; the last good checkpoint is kept")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if c.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        except torch.OutOfMemoryError:
            raise TrainingError(f"out of memory at step {self.step + 1}: lower the batch size, "
                                "the model size or the resolution") from None
        ema_update(self.ema, self.model, ema_warmup(c.ema_eval, self.step))
        return value, n, lr

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
        self.model.load_state_dict(snap["model"])
        self.ema.load_state_dict(snap["ema"])
        self.optimizer.load_state_dict(copy.deepcopy(snap["optimizer"]))  # moves the state to the params' device
        self.scaler.load_state_dict(snap["scaler"])
        self.guard.rolled_back(to_step)
        self.on_event(events.RolledBack(self.step, to_step, ratio))

    def _log(self, loss: float, lr: float, n: int, ips: float) -> None:
        c = self.config
        record = {"step": self.step, "loss": loss, "lr": lr, "n": n, "images_per_s": round(ips, 2),
                  "wall": round(self.elapsed, 3)}
        if self.guard.rollbacks:
            record["rollbacks"] = self.guard.rollbacks
        append_metrics(self.run_dir, record)
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

    @torch.no_grad()
    def preview(self) -> None:
        from .export import make_grid, save_png

        grids = {}
        shape = (self.config.preview_count, self.channels, self.resolution, self.resolution)
        for steps, sampler in self.preview_steps():
            x = run_sampler(self.ema, shape, steps, self.preview_seed, sampler, self.device)
            grids[steps] = make_grid(to_uint8(x))
            save_png(self.run_dir / PREVIEWS / f"step_{self.step:07d}_{steps}steps.png", grids[steps],
                     {"step": str(self.step), "steps": str(steps), "sampler": sampler})
        self.on_event(events.Preview(self.step, grids))

    def save(self) -> Path:
        weights = {"model": self.model.state_dict(), "ema": self.ema.state_dict()}
        state = {"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                 "data_gen": self.data_gen.get_state(), "noise_gen": self.noise_gen.get_state(),
                 "time_gen": self.time_gen.get_state(), "torch_rng": torch.get_rng_state(),
                 "elapsed": torch.tensor(self.elapsed, dtype=torch.float64), "guard": self.guard.state_dict()}
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        path = save_checkpoint(self.run_dir, self.step, self.config, weights, state,
                               {"channels": self.channels, "resolution": self.resolution,
                                "num_params": count_parameters(self.model)})
        self.on_event(events.CheckpointSaved(self.step, str(path)))
        return path


def _to_cpu(value):
    """A copy of a nested state dict with its tensors on the CPU (optimizer state for a snapshot)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value
