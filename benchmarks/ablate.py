"""Train one CT/CD/flow variant on the demo data and report its demo FD (for ablations).

    OMP_NUM_THREADS=1 python -m benchmarks.ablate NAME key=value ... [--steps 4000] [--out runs/abl]

Every key=value overrides a TrainConfig field; the value is read as in a config file (a TOML
number, boolean or quoted string; anything else is taken as a string: method=cd). Prints one line
per sampler step count: FD and the recognisable fraction (see fid_demo.py), and writes
NAME/eval_{k}steps.png grids so the numbers can be checked by eye, NAME/summary.json and a line
of OUT/results.jsonl. A run already in OUT/NAME is evaluated as it is.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks import harness
from benchmarks.fid_demo import DemoFDEnsemble
from cmcore import TrainConfig


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name")
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--out", type=Path, default=Path("runs/abl"))
    ap.add_argument("--num", type=int, default=512)
    ap.add_argument("--steps", type=int, default=4000, help="max_steps (the benchmark's budget); max_steps=N overrides")
    ap.add_argument("--eval-steps", default="1,2,4")
    ap.add_argument("--device", default="cpu", help="trains and samples there (cuda:0 for a GPU screen); FD on the CPU")
    ap.add_argument("--classifiers", default="0", help="classifier seeds, e.g. 0,1,2: FD is their mean, each is printed")
    args = ap.parse_intermixed_args(argv)  # NAME --steps 16000 key=value ... in any order
    over = {"max_steps": args.steps, "max_minutes": 0.0, "preview_every": 500, "checkpoint_every": 0,
            "log_every": 50, "device": args.device, **harness.parse_overrides(args.overrides)}
    config = harness.make_config(TrainConfig(), over)
    metric = DemoFDEnsemble(config.resolution, [int(x) for x in args.classifiers.split(",")])
    summary = harness.benchmark(config, args.out / args.name, metric, [int(k) for k in args.eval_steps.split(",")],
                                args.num, over=over)
    results, seconds = summary["results"], summary["seconds"]
    line = " ".join(f"{k}:{r['fd']:.1f}/{r['recognisable']:.2f}" for k, r in results.items())
    if len(metric.members) > 1:
        line += "  each " + " ".join(f"{k}:" + "/".join(f"{fd:.1f}" for fd in r["fd_each"]) for k, r in results.items())
    print(f"{args.name:24s} {line}  step {summary['step']} train {seconds:.0f}s  {over}")
    with open(args.out / "results.jsonl", "a") as f:
        f.write(json.dumps({"name": args.name, "over": over, "seconds": seconds, "step": summary["step"],
                            "results": results}) + "\n")


if __name__ == "__main__":
    harness.run_main(main)
