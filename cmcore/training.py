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

The state it steps (lock, data and split, model, EMA, optimiser, streams, checkpoints) is
cmcore.training_run.TrainingRun; the checkpoints' scores on held-out images are cmcore.evaluation.
"""
from __future__ import annotations

import math
import time

import torch

from . import events
from .errors import OutOfMemoryError, SaveError, TrainingError
from .errors import reason as _why
from .evaluation import mark_best, record_of
from .guard import finite
from .nets import count_parameters
from .previews import preview_grids, write_previews
from .rundir import METRICS, append_metrics, has_checkpoint
from .runlock import read_control
from .schedules import ema_warmup, lr_factor
from .training_run import TrainingRun

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


class Trainer(TrainingRun):
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
                self._score_or_warn(final=False)
                last_saved = self.step
        if self.step != last_saved or not has_checkpoint(self.run_dir):
            self.save()
        self._score_or_warn(final=True)
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
        if self.class_names:  # the batch's classes come with its images (the same indices, no further draw)
            x0, labels = self.dataset.sample_batch(b, self.data_gen, with_labels=True)
            self.loss_fn.labels = labels.to(self.device)
        else:
            x0 = self.dataset.sample_batch(b, self.data_gen)
        x0 = x0.to(self.device)
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
        target = next(((step, snap) for step, snap in reversed(self.guard.snapshots) if finite(snap["model"])), None)
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
    def _preview_or_warn(self) -> None:
        if not self.dist.is_main:
            return
        try:
            self.preview()
        except (OutOfMemoryError, SaveError) as exc:  # training goes on without this preview
            self.on_event(events.Warning(self.step, f"no preview at step {self.step}: {exc}"))

    def preview(self) -> None:
        """Sample grids from fixed noise (cmcore.previews): a Preview event, then one PNG each under previews/.
        Raises OutOfMemoryError or SaveError; `run` turns them into warnings."""
        c = self.config
        shape = (c.preview_count, self.channels, self.resolution, self.resolution)
        grids = preview_grids(self.ema, shape, c.default_sampler, self.preview_seed, self.device,
                              len(self.class_names))
        self.on_event(events.Preview(self.step, {steps: grid for steps, (grid, _) in grids.items()}))
        write_previews(self.run_dir, self.step, grids)

    def _score_or_warn(self, final: bool) -> None:
        """Rank 0, after a checkpoint: score it on the held-out images (cmcore.evaluation; the last one always,
        the others when due), log the score and mark the best checkpoint. A score that fails (out of memory, a
        full disk) is a warning."""
        if self.evaluator is None or self._scored_step == self.step or not (final or self.evaluator.due()):
            return
        self._scored_step = self.step
        try:
            scored = self.evaluator.evaluate(self.ema, self.step, self.device)
        except torch.OutOfMemoryError:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            self.on_event(events.Warning(self.step, f"no score at step {self.step}: out of memory on {self.device}"))
            return
        try:
            append_metrics(self.run_dir, record_of(scored))
            if scored.best:
                mark_best(self.run_dir, self.step)
        except (OSError, RuntimeError) as exc:
            self.on_event(events.Warning(self.step, f"could not record the score of step {self.step} ({_why(exc)})"))
        self.on_event(scored)
