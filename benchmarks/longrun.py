"""Long runs side by side: does a setting survive the budget a fast machine reaches?

    python -m benchmarks.longrun train OUT ARM ... [--device cuda] [--steps 16000] [--minutes 7] [--teacher RUN]
    python -m benchmarks.longrun evaluate OUT [--classifiers 0,1,2]

An ARM is NAME or NAME:key=value,key=value (TrainConfig overrides on top of the defaults, read
as in benchmarks.ablate; an arm with method=cd distils --teacher). `train` starts every arm at once,
each in its own process: networks this small leave a GPU mostly idle, so several processes share
one well. Each arm trains with max_steps = --steps and max_minutes = --minutes (whichever ends
first; the schedules follow the clock, as in the app), then writes OUT/NAME/samples.npz: 512
samples at 1, 2 and 4 steps from seed 123, as uint8. `evaluate` scores those files on this
machine with the demo FD (benchmarks/fid_demo.py), so samples made on a GPU are judged by the
same classifiers as the README's CPU tables, and prints the loss around each jump of n.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from benchmarks import harness
from benchmarks.fid_demo import DemoFDEnsemble, to_float
from cmcore import TrainConfig
from cmcore.guard import SpikeGuard
from cmcore.rundir import loss_records
from cmcore.sampling import to_uint8

STEPS = (1, 2, 4)


def parse_arm(arm: str) -> tuple[str, list[str]]:
    name, _, rest = arm.partition(":")
    return name, [kv for kv in rest.split(",") if kv]


def arm_config(pairs: list[str], device: str, steps: int, minutes: float, teacher: str) -> tuple[TrainConfig, dict]:
    """An arm's config, and the settings it was given (the script's and the arm's own)."""
    over = {"max_steps": steps, "max_minutes": minutes, "preview_every": 0, "checkpoint_every": 2000,
            "log_every": 50, "device": device, **harness.parse_overrides(pairs)}
    if over.get("method") == "cd":
        over.setdefault("teacher", teacher)
    return harness.make_config(TrainConfig(), over), over


def train_arm(out: Path, name: str, pairs: list[str], device: str, steps: int, minutes: float, teacher: str,
              num: int = 512) -> None:
    config, over = arm_config(pairs, device, steps, minutes, teacher)
    run = out / name
    seconds = harness.train(config, run, reuse=False)
    samples = harness.sample(run, STEPS, num, device=device, sampler="multistep")
    np.savez_compressed(run / "samples.npz", **{f"steps{k}": to_uint8(x) for k, x in samples.images.items()})
    harness.write_summary(run / "summary.json", {"name": name, "over": over, "step": samples.step, "seconds": seconds})


def load_samples(path: Path) -> dict[int, torch.Tensor]:
    """samples.npz (uint8 N×H×W×C per step count) → floats in [-1, 1], N×C×H×W."""
    with np.load(path) as samples:
        return {k: to_float(torch.from_numpy(samples[f"steps{k}"]).permute(0, 3, 1, 2)) for k in STEPS}


def train(args) -> None:
    arms = [parse_arm(arm) for arm in args.arms]
    for _, pairs in arms:  # a bad override stops here, before any arm starts
        arm_config(pairs, args.device, args.steps, args.minutes, args.teacher)
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    procs = []
    for name, pairs in arms:
        log = open(args.out / f"{name}.log", "w")
        cmd = [sys.executable, "-m", "benchmarks.longrun", "_arm", str(args.out), name, *pairs, "--device", args.device,
               "--steps", str(args.steps), "--minutes", str(args.minutes), "--teacher", args.teacher,
               "--num", str(args.num)]
        procs.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)))
    for name, proc in procs:
        print(f"{name}: exit {proc.wait()}", flush=True)


def loss_around_jumps(metrics: Path) -> str:
    """Mean logged loss in the 500 steps before and after n passes each power of two, and at the end."""
    rows = loss_records(metrics)
    if not rows:
        return "no metrics logged"
    octave = [math.floor(math.log2(r["n"]) + 1e-9) for r in rows]
    parts = []
    for i in range(1, len(rows)):
        if octave[i] != octave[i - 1]:
            step = rows[i]["step"]
            before = [r["loss"] for r in rows if step - 500 <= r["step"] < step]
            after = [r["loss"] for r in rows if step <= r["step"] < step + 500]
            parts.append(f"n {2 ** octave[i - 1]}→{2 ** octave[i]}: {np.mean(before):.1f}→{np.mean(after):.1f}")
    tail = [r["loss"] for r in rows[-10:]]
    ratio, step = largest_spike(rows)
    return "; ".join(parts + [f"end {np.mean(tail):.1f}; largest spike ×{ratio:.2f} at step {step}"])


def largest_spike(rows: list[dict], window: int = 10) -> tuple[float, int]:
    """The largest ratio of a logged loss to the mean of the `window` logs before it.

    A doubling of n can double the weighted loss (×1.3–2 in healthy runs); the runs that
    collapsed jumped ×2.7–7.7 first."""
    # The trainer's guard measures the same ratio (over steps, not logs): one piece of code for both.
    guard = SpikeGuard(factor=0, window=1, history=window)
    best = (1.0, 0)
    for row in rows:
        guard.observe(row["loss"])
        ratio = guard.ratio()
        if ratio is not None and ratio > best[0]:
            best = (ratio, row["step"])
    return best


def evaluate(args) -> None:
    seeds = [int(s) for s in args.classifiers.split(",")]
    metrics = {}  # one per resolution (32 px in the README's runs)
    for samples_file in sorted(args.out.glob("*/samples.npz")):
        run = samples_file.parent
        summary = json.loads((run / "summary.json").read_text())
        images = load_samples(samples_file)
        resolution = images[STEPS[0]].shape[-1]
        if resolution not in metrics:
            metrics[resolution] = DemoFDEnsemble(resolution, seeds)
        results = harness.score(metrics[resolution], images)
        harness.write_grids(run, images)
        harness.write_summary(run / "summary.json", {**summary, "results": {str(k): r for k, r in results.items()}})
        cells = [f"{r['fd']:.1f}/{r['recognisable']:.2f}" for r in results.values()]
        print(f"{summary['name']:16s} step {summary['step']:6d}  FD/recognisable at 1/2/4 steps: {'  '.join(cells)}")
        print(f"{'':16s} loss {loss_around_jumps(run / 'metrics.jsonl')}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("out", type=Path)
    t.add_argument("arms", nargs="+")
    a = sub.add_parser("_arm")  # one arm, in its own process
    a.add_argument("out", type=Path)
    a.add_argument("name")
    a.add_argument("pairs", nargs="*")
    for p in (t, a):
        p.add_argument("--device", default="cuda")
        p.add_argument("--steps", type=int, default=16000)
        p.add_argument("--minutes", type=float, default=7.0)
        p.add_argument("--teacher", default="runs/bench16k/flow")
        p.add_argument("--num", type=int, default=512, help="samples per step count")
    e = sub.add_parser("evaluate")
    e.add_argument("out", type=Path)
    e.add_argument("--classifiers", default="0")
    args = ap.parse_args(argv)
    if args.cmd == "train":
        train(args)
    elif args.cmd == "_arm":
        train_arm(args.out, args.name, args.pairs, args.device, args.steps, args.minutes, args.teacher, args.num)
    else:
        evaluate(args)


if __name__ == "__main__":
    harness.run_main(main)
