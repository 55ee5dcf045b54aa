"""Quality benchmark on the demo data: teacher vs consistency training vs distillation.

    python -m benchmarks.quality [--steps 4000] [--batch-size 16] [--classifiers 3] [--out runs/bench]

Trains a flow teacher, a CT model and a CD model (from that teacher) with the default
settings for the same number of steps on the CPU, then reports the Fréchet distance in
demo-classifier features (benchmarks/fid_demo.py; lower is better) and the fraction of
recognisable samples for teacher Euler at 1/2/4/8/16/64 steps, CT and CD at 1/2/4 steps.
The real-vs-real FD of two independent demo draws is printed as the floor. A run already in
OUT is evaluated as it is, as is any other run there (e.g. an ablation trained with the CLI).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from benchmarks import harness
from benchmarks.fid_demo import DemoFDEnsemble, to_float
from cmcore import TrainConfig
from cmcore.data.demo import make_demo

TEACHER_STEPS = (1, 2, 4, 8, 16, 64)  # 8 is the bar that CD at 1 step must reach
STUDENT_STEPS = (1, 2, 4)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch-size", type=int, default=TrainConfig().batch_size)
    ap.add_argument("--num", type=int, default=1024, help="samples per evaluation")
    ap.add_argument("--out", type=Path, default=Path("runs/bench"))
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--classifiers", type=int, default=3, help="FD under this many classifier seeds (mean, min-max)")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    base = TrainConfig(max_steps=args.steps, batch_size=args.batch_size, resolution=args.resolution, device="cpu",
                       preview_every=0, checkpoint_every=0, log_every=50, max_minutes=0)
    configs = {"flow": {"method": "flow"}, "ct": {"method": "ct"},
               "cd": {"method": "cd", "teacher": str(args.out / "flow")}}
    configs = {name: harness.make_config(base, over) for name, over in configs.items()}

    metric = DemoFDEnsemble(args.resolution, list(range(args.classifiers)))
    real2, _ = make_demo(args.resolution, 3, count=args.num, seed=3000)
    floor = metric(to_float(real2))
    print(f"classifier accuracy on held-out demo images: {metric.accuracy:.3f}")

    times = {name: harness.train(config, args.out / name) for name, config in configs.items()}

    rows = [("real data (floor)", "-", floor)]
    summary = harness.evaluate(args.out / "flow", metric, TEACHER_STEPS, args.num)
    rows += [("flow teacher", f"Euler {k}", res) for k, res in summary["results"].items()]
    # ct and cd, then any other run in the folder (e.g. ablations trained with the CLI)
    others = sorted(p.name for p in args.out.iterdir() if (p / "checkpoints").is_dir() and p.name not in configs)
    for name in ["ct", "cd", *others]:
        summary = harness.evaluate(args.out / name, metric, STUDENT_STEPS, args.num, sampler="multistep")
        rows += [(name.upper(), f"{k}-step", res) for k, res in summary["results"].items()]

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
    harness.run_main(main)
