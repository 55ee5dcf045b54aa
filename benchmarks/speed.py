"""Speed benchmark: training steps per second of the U-Net presets on this machine's CPU.

    python -m benchmarks.speed [--resolution 32] [--batch-size 32]

Prints ms per optimizer step (forward + backward + Adam) and the ratio to the plain,
full-resolution tiny network, measured side by side in one run.
"""
from __future__ import annotations

import argparse
import time

import torch

from cmcore.nets import PRESETS, UNet, UNetSpec, count_parameters


def ms_per_step(net: torch.nn.Module, x: torch.Tensor, repeats: int = 6) -> float:
    opt = torch.optim.Adam(net.parameters())
    t = torch.rand(x.shape[0])
    times = []
    for i in range(repeats + 2):
        start = time.perf_counter()
        loss = net(x, t).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:  # the first steps allocate
            times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    x = torch.randn(args.batch_size, 3, args.resolution, args.resolution)
    nets = {"tiny without patches (32 ch, full resolution)": UNetSpec(32, (1, 2, 2), 1, 8),
            **{f"{name} (preset)": spec for name, spec in PRESETS.items()}}
    base = None
    print(f"{args.batch_size} images of {args.resolution}px, {torch.get_num_threads()} threads")
    for name, spec in nets.items():
        net = UNet(3, args.resolution, spec)
        ms = ms_per_step(net, x)
        base = base or ms
        print(f"{name:48s} {count_parameters(net) / 1e6:5.1f} M params  {ms:7.1f} ms/step  speed x{base / ms:.2f}")


if __name__ == "__main__":
    main()
