"""Quality benchmark on the demo data: teacher vs consistency training vs distillation.

    python benchmarks/quality.py [--steps 4000] [--batch-size 16] [--classifiers 3] [--out runs/bench]

Trains a flow teacher, a CT model and a CD model (from that teacher) with the default
settings for the same number of steps on the CPU, then reports the Fréchet distance in
demo-classifier features (benchmarks/fid_demo.py; lower is better) and the fraction of
recognisable samples for teacher Euler at 1/2/4/8/16/64 steps, CT and CD at 1/2/4 steps.
The real-vs-real FD of two independent demo draws is printed as the floor.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fid_demo import DemoFDEnsemble, to_float  # noqa: E402

from cmcore import TrainConfig  # noqa: E402
from cmcore.demo import make_demo  # noqa: E402
from cmcore.generator import load_generator  # noqa: E402
from cmcore.training import Trainer  # noqa: E402


def train(method: str, out: Path, steps: int, batch: int, teacher: str = "", **extra) -> float:
    config = TrainConfig(method=method, max_steps=steps, batch_size=batch, teacher=teacher, device="cpu",
                         preview_every=0, checkpoint_every=0, log_every=50, max_minutes=0, **extra)
    started = time.perf_counter()
    if not (out / "checkpoints" / "latest").exists():
        Trainer(config, out).run()
    return time.perf_counter() - started


def evaluate(metric: DemoFDEnsemble, run: Path, sampler: str, steps: int, num: int) -> dict[str, float]:
    gen = load_generator(run)
    x = gen.sample_tensor(num, steps, seed=123, sampler=sampler)
    return metric(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch-size", type=int, default=TrainConfig().batch_size)
    ap.add_argument("--num", type=int, default=1024, help="samples per evaluation")
    ap.add_argument("--out", type=Path, default=Path("runs/bench"))
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--classifiers", type=int, default=3, help="FD under this many classifier seeds (mean, min-max)")
    args = ap.parse_args()
    torch.manual_seed(0)

    metric = DemoFDEnsemble(args.resolution, list(range(args.classifiers)))
    real2, _ = make_demo(args.resolution, 3, count=args.num, seed=3000)
    floor = metric(to_float(real2))
    print(f"classifier accuracy on held-out demo images: {metric.accuracy:.3f}")

    times = {}
    for method in ("flow", "ct"):
        times[method] = train(method, args.out / method, args.steps, args.batch_size, resolution=args.resolution)
    times["cd"] = train("cd", args.out / "cd", args.steps, args.batch_size, teacher=str(args.out / "flow"),
                        resolution=args.resolution)

    rows = [("real data (floor)", "-", floor)]
    for k in (1, 2, 4, 8, 16, 64):  # 8 is the bar that CD at 1 step must reach
        rows.append(("flow teacher", f"Euler {k}", evaluate(metric, args.out / "flow", "ode", k, args.num)))
    # ct and cd, then any other run in the folder (e.g. ablations trained with the CLI)
    others = sorted(p.name for p in args.out.iterdir() if (p / "checkpoints").is_dir() and p.name not in ("flow", "ct", "cd"))
    for name in ["ct", "cd", *others]:
        for k in (1, 2, 4):
            rows.append((name.upper(), f"{k}-step", evaluate(metric, args.out / name, "multistep", k, args.num)))

    print(f"\n{args.steps} steps x batch {args.batch_size} per model, {args.resolution}px demo, CPU "
          f"({torch.get_num_threads()} threads); train seconds: " + ", ".join(f"{m} {s:.0f}" for m, s in times.items()))
    print(f"\n| model | sampler | FD (mean of {args.classifiers} classifiers; lower is better) | FD min–max | recognisable |")
    print("|---|---|---|---|---|")
    for name, sampler, res in rows:
        print(f"| {name} | {sampler} | {res['fd']:.2f} | {res['fd_min']:.2f}–{res['fd_max']:.2f} | {res['recognisable']:.2f} |")
    # The mean hides which classifier disagrees: FD under each one, for comparing two rows seed by seed.
    print(f"\nFD per classifier (seeds {', '.join(map(str, range(args.classifiers)))}):")
    for name, sampler, res in rows:
        print(f"  {name} {sampler}: " + " / ".join(f"{fd:.1f}" for fd in res["fd_each"]))


if __name__ == "__main__":
    main()
