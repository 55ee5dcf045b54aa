"""`cmcore bench`: our training step against a plain baseline, measured side by side in one run.

- **ours**: `Trainer.train_step`, exactly the step training takes (previews and checkpoints off).
- **ours, channels-last**: the same step with the weights in channels-last order (oneDNN's and
  cuDNN's preferred layout), to measure what that layout would be worth.
- **plain**: the same network and loss written the straightforward way a user would from the paper:
  data and noise made on the CPU and moved each step, eager fp32 with PyTorch's default flags,
  `torch.optim.Adam` defaults, the EMA updated by a Python loop over the parameters, the loss read
  with `.item()` every step, the target pass run at every step.

The arms take turns (round robin, several rounds, median), at the same points of the curriculum, so a
busy machine slows them alike and the ratio stays meaningful. Also reported: FLOP/s of our step (and
the share of the device's peak where it is known), host-device synchronisations and kernel launches
per step on CUDA, peak memory, sampling latency for 1/2/4 steps at batch 1/16/256, and how fast the
data pipeline alone delivers images.
"""
from __future__ import annotations

import copy
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import torch

from .config import TrainConfig
from .methods import distance, teacher_step
from .nets import build_unet
from .precond import ConsistencyFunction, noise
from .sampling import sample
from .schedules import ema_warmup, loss_weight, partner_time, sample_t

# Dense bf16 tensor-core peaks (FLOP/s) of cards we have measured on; others report no share.
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "RTX 4090": 165e12}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PlainStep:
    """The baseline: the method written plainly from the paper (see the module docstring)."""

    def __init__(self, config: TrainConfig, dataset, device: torch.device, teacher=None):
        self.c, self.dataset, self.device, self.teacher = config, dataset, device, teacher
        net = build_unet(config.model, dataset.channels, dataset.resolution, float(config.dropout))
        self.model = ConsistencyFunction(net, config.parametrization).to(device)
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.model.parameters())
        self.gen = torch.Generator().manual_seed(1)
        self.step = 0

    def __call__(self, n: int) -> float:
        c, B = self.c, self.c.batch_size
        x0 = self.dataset.sample_batch(B, self.gen).to(self.device)
        x1 = torch.randn(x0.shape, generator=self.gen).to(self.device)
        if c.method == "flow":
            t = torch.rand(B, generator=self.gen).to(self.device)
            v = self.model.velocity(noise(x0, x1, t), t)
            loss = (v - (x1 - x0)).square().mean()
        else:
            t = sample_t(B, c.p_mean, c.p_std, c.t_min, self.gen)
            t, r = t.to(self.device), partner_time(t, n).to(self.device)
            pred = self.model(noise(x0, x1, t), t)
            with torch.no_grad():
                x_r = noise(x0, x1, r) if c.method == "ct" else teacher_step(self.teacher, noise(x0, x1, t), t, r)
                target = self.model(x_r, r)
            loss = (loss_weight(t, r) * distance(pred, target, c.distance, c.huber_c)).mean()
        value = loss.item()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        decay = ema_warmup(c.ema_eval, self.step)
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.model.parameters()):
                e.mul_(decay).add_(p, alpha=1 - decay)
        self.step += 1
        return value


def _trainer(config: TrainConfig, run_dir: Path, dataset):
    from .training import Trainer

    trainer = Trainer(config, run_dir, dataset=dataset)
    trainer.setup()
    return trainer


def _flow_teacher(config: TrainConfig, root: Path, dataset) -> str:
    """A one-step flow run to distil from: its weights do not matter for timing."""
    teacher = _trainer(config.replace(method="flow", teacher=""), root / "teacher", dataset)
    teacher.train_step()
    teacher.save()
    return str(root / "teacher")


def round_robin(arms: dict[str, Callable[[int], object]], positions: list[int], rounds: int,
                device: torch.device) -> dict[str, list[float]]:
    """Seconds per step of each arm, one value per round; each round runs every arm over the same
    curriculum positions, in turn."""
    seconds: dict[str, list[float]] = {name: [] for name in arms}
    for i in range(rounds):
        order = list(arms) if i % 2 == 0 else list(reversed(arms))  # neither arm always goes first
        for name in order:
            _sync(device)
            start = time.perf_counter()
            for position in positions:
                arms[name](position)
            _sync(device)
            seconds[name].append((time.perf_counter() - start) / len(positions))
    return seconds


def count_flops(fn: Callable[[], object]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def cuda_step_counts(fn: Callable[[], object], device: torch.device) -> tuple[int | None, int | None]:
    """(host-device synchronisations, kernel launches) of one call on CUDA; (None, None) elsewhere."""
    if device.type != "cuda":
        return None, None
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn()
            _sync(device)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    syncs = sum("synchroniz" in str(w.message) for w in caught)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        _sync(device)
    launches = sum(e.count for e in prof.key_averages() if e.key in ("cudaLaunchKernel", "cuLaunchKernel",
                                                                     "cudaLaunchKernelExC", "cudaGraphLaunch"))
    return syncs, launches


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the process's peak RSS (KiB on Linux)


def sampling_latency(model, channels: int, resolution: int, device: torch.device,
                     steps=(1, 2, 4), batches=(1, 16, 256), repeats: int = 3) -> dict[str, dict[str, float]]:
    """Median milliseconds to sample `batch` images in `steps` multistep steps, seeded as the gallery does."""
    model = model.eval()
    result: dict[str, dict[str, float]] = {}
    for k in steps:
        result[str(k)] = {}
        for b in batches:
            sample(model, (b, channels, resolution, resolution), k, 0, device=device)  # warm-up
            times = []
            for _ in range(repeats):
                _sync(device)
                start = time.perf_counter()
                sample(model, (b, channels, resolution, resolution), k, 0, device=device)
                _sync(device)
                times.append(time.perf_counter() - start)
            result[str(k)][str(b)] = round(1000 * statistics.median(times), 2)
    return result


def data_rate(dataset, batch_size: int, device: torch.device, seconds: float = 1.0) -> float:
    """Images per second of the data pipeline alone: batch, noise, to the device."""
    gen, count, start = torch.Generator().manual_seed(0), 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        x0 = dataset.sample_batch(batch_size, gen).to(device)
        torch.randn(x0.shape, generator=gen).to(device)
        count += batch_size
    _sync(device)
    return count / (time.perf_counter() - start)


def run(method: str = "ct", model: str = "tiny", resolution: int = 32, batch_size: int = 64, device: str = "cpu",
        rounds: int = 5, steps: int = 4, data: str = "demo", sampling: bool = True,
        progress: Callable[[str], None] = lambda text: None) -> dict:
    from .data import load_dataset
    from .devices import list_devices, resolve_device

    dev = resolve_device(device)
    base = TrainConfig(method=method, model=model, resolution=resolution, batch_size=batch_size, device=str(dev),
                       max_minutes=0, max_steps=1000, preview_every=0, checkpoint_every=0, data=data)
    progress("loading data")
    dataset = load_dataset(data, resolution, "auto")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if method == "cd":
            progress("making a teacher")
            base = base.replace(teacher=_flow_teacher(base, root, dataset))
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        progress("setting up")
        started = time.perf_counter()
        ours = _trainer(base, root / "ours", dataset)
        setup_s = time.perf_counter() - started
        channels_last = _trainer(base, root / "channels_last", dataset)
        channels_last.model.to(memory_format=torch.channels_last)
        channels_last.ema.to(memory_format=torch.channels_last)
        plain = PlainStep(ours.config, dataset, dev, getattr(ours, "teacher", None))

        def take(trainer):
            def step(position: int) -> None:
                trainer.step = position
                trainer.train_step()
            return step

        def plain_at(position: int) -> None:
            plain(ours.pairs.n(position, base.max_steps))

        arms = {"ours": take(ours), "channels_last": take(channels_last), "plain": plain_at}
        # the same spread of curriculum positions for every arm: warm-up (n = 1) and later stages alike
        positions = [round((i + 0.5) * base.max_steps / steps) for i in range(steps)]
        progress("warming up")
        for arm in arms.values():
            arm(positions[0])
        progress(f"timing {rounds} rounds")
        seconds = round_robin(arms, positions, rounds, dev)
        flops = count_flops(lambda: take(ours)(positions[-1]))
        syncs, launches = cuda_step_counts(lambda: take(ours)(positions[-1]), dev)
        plain_syncs, plain_launches = cuda_step_counts(lambda: plain_at(positions[-1]), dev)
        memory = peak_memory_mb(dev)
        result = {
            "method": method, "model": model, "resolution": resolution, "batch_size": batch_size,
            "device": str(dev), "device_name": next((d.name for d in list_devices() if d.id == str(dev)), str(dev)),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "rounds": rounds, "steps_per_round": steps,
            "setup_s": round(setup_s, 2), "peak_memory_mb": round(memory, 1),
        }
        for name, values in seconds.items():
            median = statistics.median(values)
            result[name] = {"ms_per_step": round(1000 * median, 2), "images_per_s": round(batch_size / median, 1)}
        result["ours"]["flops_per_s"] = flops / statistics.median(seconds["ours"])
        peak = next((v for k, v in PEAK_BF16.items() if k in result["device_name"]), None)
        result["ours"]["peak_share"] = round(result["ours"]["flops_per_s"] / peak, 4) if peak else None
        result["ours"]["syncs_per_step"], result["ours"]["launches_per_step"] = syncs, launches
        result["plain"]["syncs_per_step"], result["plain"]["launches_per_step"] = plain_syncs, plain_launches
        result["speedup"] = round(result["ours"]["images_per_s"] / result["plain"]["images_per_s"], 3)
        result["channels_last_gain"] = round(result["channels_last"]["images_per_s"] / result["ours"]["images_per_s"], 3)
        progress("data rate")
        result["data_images_per_s"] = round(data_rate(dataset, batch_size, dev), 1)
        if sampling:
            progress("sampling latency")
            result["sampling_ms"] = sampling_latency(ours.ema, dataset.channels, dataset.resolution, dev)
        for trainer in (ours, channels_last):
            trainer.close()  # give back the run folders' locks
    return result


def table(result: dict) -> str:
    """The readable part of the report."""
    lines = [f"{result['method']} · {result['model']} · {result['resolution']} px · batch {result['batch_size']} · "
             f"{result['device_name']} · torch {result['torch']}",
             f"{'arm':<14}{'ms/step':>10}{'images/s':>10}{'syncs':>8}{'launches':>10}"]
    for name in ("ours", "channels_last", "plain"):
        arm = result[name]
        syncs, launches = arm.get("syncs_per_step"), arm.get("launches_per_step")
        lines.append(f"{name:<14}{arm['ms_per_step']:>10.1f}{arm['images_per_s']:>10.1f}"
                     f"{'-' if syncs is None else syncs:>8}{'-' if launches is None else launches:>10}")
    share = result["ours"]["peak_share"]
    lines.append(f"speedup over plain: {result['speedup']:.2f}x   channels-last: {result['channels_last_gain']:.2f}x   "
                 f"{result['ours']['flops_per_s'] / 1e9:.1f} GFLOP/s" + (f" ({100 * share:.1f} % of bf16 peak)" if share else ""))
    lines.append(f"peak memory {result['peak_memory_mb']:.0f} MB · set-up {result['setup_s']:.1f} s · "
                 f"data pipeline {result['data_images_per_s']:.0f} images/s")
    if "sampling_ms" in result:
        batches = list(next(iter(result["sampling_ms"].values())))
        lines.append("sampling ms  " + "".join(f"{'batch ' + b:>12}" for b in batches))
        for k, row in result["sampling_ms"].items():
            lines.append(f"  {k} step{'s' if k != '1' else ' '}   " + "".join(f"{row[b]:>12.1f}" for b in batches))
    return "\n".join(lines)


def main(args) -> int:
    result = run(args.method, args.model, args.resolution, args.batch_size, args.device, args.rounds, args.steps,
                 args.data, sampling=not args.no_sampling,
                 progress=lambda text: print(f"... {text}", file=sys.stderr, flush=True))
    print(table(result))
    if args.json:
        print(json.dumps(result))
    return 0
