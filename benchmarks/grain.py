"""Is a run's FD gap fine grain or wrong shapes? Blur the samples and see what the FD does.

    OMP_NUM_THREADS=1 python benchmarks/grain.py RUN [RUN ...] [--steps K] [--num 512]

For each run: the demo FD (seed-0 classifier, fid_demo.py) and recognisable fraction of its
samples (multistep, or Euler on v for a flow teacher) as they are and after a Gaussian blur of
σ = 0.5 and 0.8 px. If a small blur lowers the FD a lot, the samples' shapes and colours are right
and the gap is high-frequency noise. For consistency models it also evaluates the one-step map
f(τ·x1, τ) at τ < 1, to check that the noise is not just the untrained edge t = 1, and the
one-step samples minus their least-squares linear share of the input noise x1 (per pixel and
per 2×2 patch). Every line also gives the share of the samples' spectral energy at the Nyquist
frequency (pixel-level grain; the first line is the real images' share).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fid_demo import DemoFD, to_float  # noqa: E402

from cmcore.generator import load_generator  # noqa: E402


def high_pass(x: torch.Tensor) -> torch.Tensor:
    return x - TF.gaussian_blur(x, 5, 1.0)


def nyquist_fraction(x: torch.Tensor) -> float:
    """Share of the images' (mean-free) spectral energy in the row and column of the Nyquist frequency."""
    power = torch.fft.fft2(x - x.mean((-1, -2), keepdim=True)).abs().square().mean((0, 1))
    h, w = power.shape
    return ((power[h // 2, :].sum() + power[:, w // 2].sum()) / power.sum()).item()


def linear_share(x: torch.Tensor, x1: torch.Tensor, patch: int) -> torch.Tensor:
    """The part of x's high frequencies that is a linear map of x1's: one least-squares matrix over
    the channels of the patch-unshuffled images (3×3 per pixel, 12×12 for 2×2 patches of RGB)."""
    a, b = (F.pixel_unshuffle(high_pass(z), patch).transpose(0, 1).flatten(1) for z in (x, x1))
    w = torch.linalg.lstsq(b.T, a.T).solution.T  # a ≈ w @ b
    return F.pixel_shuffle(torch.einsum("ij,njhw->nihw", w, F.pixel_unshuffle(x1, patch)), patch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--steps", type=int, default=0, help="sampler steps (default: 8 for a flow teacher, 1 otherwise)")
    ap.add_argument("--num", type=int, default=512)
    args = ap.parse_args()
    metric = DemoFD(32)

    def report(label: str, x: torch.Tensor) -> None:
        r = metric(x.clamp(-1, 1))
        print(f"{label:48s} FD {r['fd']:7.1f}  recognisable {r['recognisable']:.2f}  "
              f"Nyquist {nyquist_fraction(x):.4f}", flush=True)

    from cmcore.data import load_dataset

    real = to_float(load_dataset("demo", 32, "auto", False).images[: args.num])
    report("real demo images", real)

    for run in args.runs:
        gen = load_generator(run)
        flow = gen.method == "flow"
        steps = args.steps or (8 if flow else 1)
        x = gen.sample_tensor(args.num, steps, seed=123, sampler=gen.default_sampler)
        for sigma in (0.0, 0.5, 0.8):
            report(f"{run} {steps} steps, blur {sigma}", TF.gaussian_blur(x, 3, sigma) if sigma else x)
        if flow:
            continue
        # the same noise sampling.sample drew for seed 123, so x = f(x1, 1) when steps == 1
        x1 = torch.randn(x.shape, generator=torch.Generator().manual_seed(123))
        with torch.no_grad():
            for tau in (0.97, 0.9):
                report(f"{run} one step at tau = {tau}", gen.model(tau * x1, torch.tensor(tau)))
            if steps == 1:  # is the grain a copy of the input noise? remove its least-squares share
                for patch in (1, 2):  # per pixel, and per 2×2 patch as the tiny network sees it
                    report(f"{run} minus linear share of x1 ({patch}×{patch})", x - linear_share(x, x1, patch))


if __name__ == "__main__":
    main()
