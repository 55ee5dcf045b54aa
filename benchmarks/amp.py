"""Mixed precision on a GPU: training throughput and loss of fp32, bf16 and fp16, side by side.

    python -m benchmarks.amp [--device cuda:0] [--model small] [--batch-size 128] [--resolution 32]
                             [--method ct] [--steps 300] [--rounds 2]

Each precision trains the same seeded run in a fresh folder; the throughput is measured after
a warm-up (the first logged window is dropped) and the rounds alternate the precisions, so
a drift in the machine's clocks hits every precision alike. Prints images/s, the ratio to
fp32 and the mean loss of the last window.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from cmcore import TrainConfig
from cmcore.rundir import loss_records
from cmcore.training import Trainer

PRECISIONS = ("fp32", "bf16", "fp16")


def one_run(config: TrainConfig, folder: Path) -> tuple[float, float]:
    Trainer(config, folder).run()
    windows = loss_records(folder / "metrics.jsonl")[1:]  # the first window holds the warm-up
    return sum(w["images_per_s"] for w in windows) / len(windows), windows[-1]["loss"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--model", default="small")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--method", default="ct")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    base = TrainConfig(method=args.method, model=args.model, batch_size=args.batch_size, resolution=args.resolution,
                       max_steps=args.steps, max_minutes=0, log_every=max(1, args.steps // 6), preview_every=0,
                       checkpoint_every=0, device=args.device)
    speed = {p: [] for p in PRECISIONS}
    loss = {p: [] for p in PRECISIONS}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for p in PRECISIONS:
                ips, last = one_run(base.replace(precision=p), Path(tmp) / f"{p}_{r}")
                speed[p].append(ips)
                loss[p].append(last)
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else args.device
    print(f"{name}: {args.method}, model {args.model}, batch {args.batch_size}, {args.resolution}px, "
          f"{args.steps} steps x {args.rounds} rounds")
    ref = sum(speed["fp32"]) / len(speed["fp32"])
    for p in PRECISIONS:
        ips = sum(speed[p]) / len(speed[p])
        print(f"  {p}: {ips:8.0f} images/s  x{ips / ref:.2f} vs fp32   last-window loss "
              + " ".join(f"{v:.4f}" for v in loss[p]))


if __name__ == "__main__":
    main()
