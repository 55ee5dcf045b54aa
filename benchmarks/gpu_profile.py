"""Where a training step's time goes on a GPU: wall time against the GPU's own kernel time.

    python -m benchmarks.gpu_profile [--device cuda:0] [--steps 40] [--cases cd:tiny:16,ct:small:128]

For each case (method:model:batch) it runs the real `Trainer` step (data, noise, loss, backward,
clip, RAdam, EMA) after a warm-up, once timed plainly and once under torch.profiler, and prints
wall ms per step, the summed kernel time per step, the GPU's busy fraction, kernel launches per
step, and the CPU-side operators that cost most. A busy fraction far below 1 means the step is
bound by Python and kernel launches, not by arithmetic.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch
from torch.profiler import ProfilerActivity, profile

from cmcore import TrainConfig
from cmcore.training import Trainer


def kernel_us(event) -> float:
    for name in ("self_device_time_total", "self_cuda_time_total"):  # renamed in torch 2.4
        if hasattr(event, name):
            return float(getattr(event, name))
    return 0.0


def profile_case(method: str, model: str, batch: int, device: str, steps: int, folder: str) -> None:
    teacher = ""
    if method == "cd":  # a fresh flow teacher of the same size: its weights do not matter here
        Trainer(TrainConfig(method="flow", model=model, batch_size=batch, max_steps=1, device=device,
                            preview_every=0, log_every=1), f"{folder}/teacher").run()
        teacher = f"{folder}/teacher"
    config = TrainConfig(method=method, model=model, batch_size=batch, max_steps=10 ** 6, device=device,
                         teacher=teacher, preview_every=0, checkpoint_every=0, log_every=10 ** 6)
    trainer = Trainer(config, f"{folder}/{method}_{model}")
    trainer.setup()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(10):  # warm-up: allocator, cuDNN autotuning, lazy inits
        trainer.train_step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    sync()
    wall_ms = 1000 * (time.perf_counter() - start) / steps
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            trainer.train_step()
        sync()
    averages = prof.key_averages()
    kernel_ms = sum(kernel_us(e) for e in averages if e.key != "ProfilerStep*") / 1000 / steps
    launches = sum(e.count for e in averages if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cuLaunchKernelEx",
                                                          "cudaLaunchKernelExC")) / steps
    print(f"\n== {method} {model} batch {batch}: wall {wall_ms:.2f} ms/step, kernels {kernel_ms:.2f} ms/step, "
          f"GPU busy {kernel_ms / wall_ms:.0%}, {launches:.0f} kernel launches/step, "
          f"{1000 * batch / wall_ms:.0f} images/s")
    cpu_ops = sorted((e for e in averages if e.key.startswith(("aten::", "Optimizer", "cuda", "cu"))),
                     key=lambda e: e.self_cpu_time_total, reverse=True)[:10]
    for e in cpu_ops:
        print(f"   cpu {e.key:42s} {e.self_cpu_time_total / 1000 / steps:7.2f} ms/step  x{e.count // steps}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--cases", default="cd:tiny:16,ct:tiny:16,ct:small:128")
    args = ap.parse_args()
    print(torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else args.device, "torch", torch.__version__)
    with tempfile.TemporaryDirectory() as folder:
        for case in args.cases.split(","):
            method, model, batch = case.split(":")
            profile_case(method, model, int(batch), args.device, args.steps, folder)


if __name__ == "__main__":
    main()
