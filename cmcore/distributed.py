"""Several processes, one run: PyTorch's own distributed engine (torchrun + DistributedDataParallel).

    torchrun --nproc-per-node N -m cmcore train ...                  N GPUs of one machine (NCCL), or N CPU processes (gloo)
    torchrun --nnodes M --nproc-per-node N --rdzv-backend c10d --rdzv-endpoint HOST:PORT -m cmcore train ...

torchrun starts one process per device and tells each its place in the environment (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT). `context()` reads it. Alone (no WORLD_SIZE, or 1) it gives a Context
that does nothing: no process group, the Trainer runs as it always did, not one number changes. With
WORLD_SIZE > 1 it initialises the process group once per process (NCCL when the run's device is a GPU, gloo
on CPUs) with a timeout (CMCORE_DIST_TIMEOUT seconds, default 600), so no process waits forever on one that
is gone: a dead peer ends every process's next collective at once (gloo: its socket closes; under torchrun
the agent also stops the others), a hung one ends it after the timeout (NCCL: async error handling).

The rules of a run of N processes (the Trainer follows them; this module gives it the means):

- `batch_size` is the global batch: each process draws batch_size / N images (a ConfigError when it does not
  divide) and DDP averages the gradients, so a step is the step one process takes with the whole batch; the
  curriculum, the learning rate, the number of steps and so the result do not depend on N.
- Each process draws its own images, noise and times: rank 0 from the seeds a single process uses (a run of
  one process is exactly the run it always was), rank r > 0 from seeds derived from (seed, rank, step):
  `stream_seeds`.
- The parameters are the same in every process (DDP starts them from rank 0's and every process applies the
  same averaged gradient), so the evaluation EMA, a deterministic function of them, is too; so are the spike
  guard's snapshots and rollbacks.
- Once per step one all-reduce of four float64s (`exchange`, in place of the single process's `loss.item()`):
  the loss (its mean over the processes, which the spike guard and the NaN check see, so every process takes
  the same decision), the stop and pause flags (any process's stop stops all; rank 0 reads RUN/control.json),
  and rank 0's training clock, which every process's max_minutes check and schedules read (one step late).
- Rank 0 alone writes the run folder (lock, config, data report, metrics, previews, checkpoints) and emits the
  events a front end shows.
- A checkpoint holds no other rank's state: its random streams are rank 0's. On resume rank 0 restores them and
  every rank r > 0 seeds its streams from (seed, rank, step), so a run resumes with the same number of
  processes or with another. A run resumed by one process repeats an uninterrupted one bit for bit on the
  CPU, as it always did; one resumed by several repeats it in distribution (ranks > 0 draw other numbers).

CMCORE_DDP=1 makes even a single process use a process group and DDP (on one GPU: a check that NCCL and the
wrap work; on the CPU its numbers equal the plain single process's).
"""
from __future__ import annotations

import datetime
import hashlib
import os
import warnings
from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from .devices import resolve_device
from .errors import ConfigError, TrainingError

TIMEOUT_ENV = "CMCORE_DIST_TIMEOUT"  # seconds any collective may wait for the other processes
FORCE_ENV = "CMCORE_DDP"  # "1": a process group and DDP even for one process
DEFAULT_TIMEOUT_S = 600.0  # above the longest preview or checkpoint rank 0 writes while the others wait


class DistributedError(TrainingError):
    """A collective failed: another process of the run ended, hung past the timeout, or the network went."""


@dataclass(frozen=True)
class Agreed:
    """What every process of a run agrees on after `exchange`."""
    loss: float = 0.0  # the mean over the processes
    stop: bool = False  # some process was asked to stop
    pause: bool = False  # some process (rank 0: the control file, or the app's Pause) asked for a pause
    clock: float = 0.0  # rank 0's training seconds


class Objective(torch.nn.Module):
    """The per-sample training loss of `model` as one module, so DDP sees every pass of a step (the flow loss
    calls `model.velocity`, the consistency losses call the model twice) in one `forward`. The same calls
    as `loss_fn(model, ...)` in the same order: alone it gives the same numbers."""

    def __init__(self, model: torch.nn.Module, loss_fn: Callable):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn  # a plain object: a cd teacher inside it is not DDP's to synchronise

    def forward(self, x0, x1, t, r=None, n: int = 1):
        if r is None:
            return self.loss_fn(self.model, x0, x1, t)
        return self.loss_fn(self.model, x0, x1, t, r, n)


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value.strip() else default
    except ValueError:
        raise ConfigError(f"{name}={value!r} in the environment is not a whole number (torchrun sets it)") from None


def env_rank() -> int:
    """This process's rank as torchrun set it (0 alone): for front ends that speak only from rank 0."""
    return env_int("RANK", 0)


def env_world_size() -> int:
    return env_int("WORLD_SIZE", 1)


def timeout_s() -> float:
    value = os.environ.get(TIMEOUT_ENV, "")
    try:
        seconds = float(value) if value.strip() else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ConfigError(f"{TIMEOUT_ENV}={value!r}: give the seconds a process may wait for the others") from None
    if not seconds > 0:
        raise ConfigError(f"{TIMEOUT_ENV}={value!r}: must be more than 0 seconds")
    return seconds


def stream_seeds(seed: int, rank: int, step: int = 0) -> tuple[int, int, int, int]:
    """Seeds of (data indices and flips, noise, times, torch's global stream: dropout) for `rank` from `step` on.
    Rank 0: the single process's seeds (seed·4 + 1, + 2, + 3, seed); its streams are restored from a
    checkpoint on resume, never re-seeded. Rank r > 0: 63-bit numbers from sha256 of (seed, rank, step, stream)."""
    if rank == 0:
        return seed * 4 + 1, seed * 4 + 2, seed * 4 + 3, seed
    return tuple(int.from_bytes(hashlib.sha256(f"cmcore-stream:{seed}:{rank}:{step}:{i}".encode()).digest()[:8],
                                "little") >> 1 for i in range(4))


class Context:
    """This process's place in a run. The plain Context (world of one, no process group) does nothing:
    `exchange` is `loss.item()`, `wrap` gives the unwrapped objective, the collectives return their input."""

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0, backend: str | None = None,
                 device: torch.device | None = None, timeout: float = DEFAULT_TIMEOUT_S):
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.backend = backend  # None: no process group
        self.device = device  # the device of every tensor a collective sends (and of training, distributed)
        self.timeout = timeout
        self.broken = False  # a collective failed: teardown must not wait on the others

    @property
    def enabled(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def __repr__(self) -> str:
        return f"Context(rank {self.rank} of {self.world_size}, {self.backend or 'alone'})"

    # --- what the Trainer asks -------------------------------------------------------------------
    def train_device(self, spec: str) -> torch.device:
        """The device this process trains on: the config's, alone; the GPU of LOCAL_RANK (or the CPU) in a group."""
        if not self.enabled:
            return resolve_device(spec)
        return self.device

    def local_batch(self, global_batch: int) -> int:
        """The images each process draws per step: the global batch split evenly, or a ConfigError."""
        if global_batch % self.world_size:
            lower = global_batch - global_batch % self.world_size
            hint = f"{lower} or {lower + self.world_size}" if lower else f"{self.world_size}"
            raise ConfigError(f"batch_size: {global_batch} images per step do not split evenly over {self.world_size} "
                              f"processes (the batch size is the whole step's, split across them): use {hint}")
        return global_batch // self.world_size

    def wrap(self, model: torch.nn.Module, loss_fn: Callable) -> torch.nn.Module:
        """The training objective: `Objective(model, loss_fn)`, in DistributedDataParallel in a group (which
        copies rank 0's parameters to every process now and averages the gradients in every backward)."""
        objective = Objective(model, loss_fn)
        if not self.enabled:
            return objective
        from torch.nn.parallel import DistributedDataParallel

        options = {"gradient_as_bucket_view": True}  # (the model has no buffers to broadcast)
        # A 1x1 convolution's gradient comes back in another (equivalent) memory layout than its bucket view:
        # DDP copies it, correctly, and warns each step that this "may impair performance".
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        if self.device.type == "cuda":
            options.update(device_ids=[self.device.index], output_device=self.device.index)
        try:
            return DistributedDataParallel(objective, **options)
        except RuntimeError as exc:
            raise self.lost(exc) from None

    def seed_streams(self, seed: int, step: int, generators: Iterable[torch.Generator]) -> None:
        """Rank r > 0: seed the data, noise and time generators and torch's global stream (dropout) from
        (seed, rank, step). Rank 0 keeps its streams (fresh: the single process's seeds; resumed: the checkpoint's)."""
        if self.rank == 0:
            return
        *seeds, global_seed = stream_seeds(seed, self.rank, step)
        for generator, value in zip(generators, seeds):
            generator.manual_seed(value)
        torch.manual_seed(global_seed)  # the CUDA generators too

    def exchange(self, loss: torch.Tensor | None, *, stop: bool, pause: bool, clock: float) -> Agreed:
        """The step's one collective: the mean loss, any stop, any pause, rank 0's clock (see the module's doc).
        Alone: the loss's value (`loss.item()`, the same number) and this process's own flags."""
        if not self.enabled:
            return Agreed(loss.item() if loss is not None else 0.0, stop, pause, clock)
        values = torch.tensor([0.0, float(stop), float(pause), clock if self.is_main else 0.0], dtype=torch.float64)
        values = values.to(self.device)
        if loss is not None:
            values[0] = loss.detach().reshape(()).to(torch.float64)
        total, stops, pauses, clock = self._all_reduce(values).tolist()
        return Agreed(total / self.world_size, stops > 0, pauses > 0, clock)

    # --- the helpers any rank-aware code may use ------------------------------------------------------
    def mean(self, value: float) -> float:
        """The mean of `value` over the processes."""
        if not self.enabled:
            return float(value)
        return self._all_reduce(torch.tensor([float(value)], dtype=torch.float64, device=self.device)).item() / self.world_size

    def any(self, flag: bool) -> bool:
        """True in every process when it is true in one."""
        if not self.enabled:
            return bool(flag)
        return self._all_reduce(torch.tensor([float(bool(flag))], dtype=torch.float64, device=self.device)).item() > 0

    def broadcast(self, flag: bool, src: int = 0) -> bool:
        """Rank `src`'s flag, in every process."""
        if not self.enabled:
            return bool(flag)
        import torch.distributed as dist

        value = torch.tensor([float(bool(flag))], dtype=torch.float64, device=self.device)
        try:
            dist.broadcast(value, src)
            return value.item() > 0
        except RuntimeError as exc:
            raise self.lost(exc) from None

    def barrier(self) -> None:
        """Wait until every process is here (or the timeout passes: DistributedError)."""
        if self.enabled:
            self.any(False)  # an all-reduce: a barrier that honours the group's timeout on every backend

    def agree_ready(self, ok: bool) -> None:
        """After each process set itself up: every process learns whether all did. One that failed calls this
        with False and raises its own error; the others raise a DistributedError that points to it."""
        if self.any(not ok) and ok:
            raise DistributedError(f"another process of this run failed to start (this is rank {self.rank} of "
                                   f"{self.world_size}): its message says why")

    def lost(self, exc: BaseException) -> DistributedError:
        """The one-line error for a failed collective."""
        self.broken = True
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        first = first.split("] ", 1)[-1][:200]  # gloo prefixes its source file
        return DistributedError(f"lost contact with the other processes of this run (rank {self.rank} of "
                                f"{self.world_size}: {first}): a process ended or hung for {self.timeout:g} s, "
                                "so every process stops; the run resumes from its last checkpoint with --resume, "
                                "with as many processes as you like")

    def _all_reduce(self, values: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        try:
            dist.all_reduce(values)
            if values.device.type != "cpu":
                values = values.cpu()  # waits for it: an NCCL failure surfaces here
            return values
        except RuntimeError as exc:
            raise self.lost(exc) from None


_CONTEXT: Context | None = None


def context(device: str = "auto") -> Context:
    """This process's Context; under torchrun with WORLD_SIZE > 1 (or CMCORE_DDP=1) the first call joins the
    process group: NCCL with the GPU of LOCAL_RANK when `device` is a GPU (auto, cuda, cuda:N), gloo when it is
    the CPU. Alone it is the plain Context, and `device` is left to `train_device`."""
    global _CONTEXT
    if _CONTEXT is not None:
        if _CONTEXT.enabled:
            _check_backend(_CONTEXT, device)
        return _CONTEXT
    world, forced = env_world_size(), os.environ.get(FORCE_ENV, "") == "1"
    if world <= 1 and not forced:
        return Context()
    rank, local_rank = env_rank(), env_int("LOCAL_RANK", 0)
    if not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} with WORLD_SIZE={world}: start the processes with torchrun")
    train_on = _rank_device(device, local_rank)
    backend = "nccl" if train_on.type == "cuda" else "gloo"
    ctx = Context(rank, world, local_rank, backend, train_on, timeout_s())
    _init_group(ctx)
    _CONTEXT = ctx
    return ctx


def _rank_device(spec: str, local_rank: int) -> torch.device:
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps" or (spec == "auto" and not torch.cuda.is_available()
                         and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise ConfigError("device: several processes train on GPUs (NCCL) or CPUs (gloo), not on Apple's MPS: "
                          "use --device cpu, or one process")
    if spec == "auto" and not torch.cuda.is_available():
        return torch.device("cpu")
    if not (spec == "auto" or spec == "cuda" or spec.startswith("cuda:")):
        resolve_device(spec)  # the usual error for a device that does not exist
        raise ConfigError(f"device {spec!r}: several processes train on cuda or cpu")
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise ConfigError(f"device: this machine runs {local_rank + 1} or more processes of the run but has "
                          f"{count} GPU(s): start at most {count} per machine (--nproc-per-node), or use --device cpu")
    return torch.device("cuda", local_rank)  # each process its own GPU; CUDA_VISIBLE_DEVICES picks which


def _check_backend(ctx: Context, device: str) -> None:
    wanted = "gloo" if device == "cpu" or (device == "auto" and not torch.cuda.is_available()) else "nccl"
    if wanted != ctx.backend:
        raise ConfigError(f"device {device!r}: this process already joined its run's process group with "
                          f"{ctx.backend}; one process trains one run")


def _init_group(ctx: Context) -> None:
    import torch.distributed as dist

    if ctx.backend == "nccl":
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")  # a hung collective ends the process
        torch.cuda.set_device(ctx.device)
    timeout = datetime.timedelta(seconds=ctx.timeout)
    try:
        if ctx.world_size == 1 and not os.environ.get("MASTER_ADDR"):  # CMCORE_DDP=1 outside torchrun
            dist.init_process_group(ctx.backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout)
        else:
            dist.init_process_group(ctx.backend, rank=ctx.rank, world_size=ctx.world_size, timeout=timeout)
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DistributedError(f"could not join the run's process group as rank {ctx.rank} of {ctx.world_size} "
                               f"({ctx.backend}, MASTER_ADDR={os.environ.get('MASTER_ADDR', '?')}:"
                               f"{os.environ.get('MASTER_PORT', '?')}): {first[:200]}") from None


def teardown() -> None:
    """Leave the process group (after the run, failed or not). After a failed collective nothing waits on the others."""
    global _CONTEXT
    ctx, _CONTEXT = _CONTEXT, None
    if ctx is None or not ctx.enabled:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        return
    if ctx.broken and ctx.backend == "nccl":
        return  # destroying a broken NCCL communicator can block; the process ends anyway
    try:
        dist.destroy_process_group()
    except RuntimeError:
        pass


def lost_contact(exc: BaseException) -> DistributedError | None:
    """A failure of a collective that escaped as torch's own error (DDP's gradient all-reduce runs inside
    `backward`), as the one-line DistributedError; None for anything else, or alone."""
    ctx = _CONTEXT
    if ctx is None or not ctx.enabled or isinstance(exc, DistributedError):
        return None
    dist_error = getattr(torch.distributed, "DistError", ())
    text = str(exc)
    if isinstance(exc, dist_error) or (isinstance(exc, RuntimeError) and any(
            mark in text for mark in ("gloo", "NCCL", "Connection reset", "Connection closed", "Timed out"))):
        return ctx.lost(exc)
    return None
