"""Train one CT/CD/flow variant on the demo data and report its demo FD (for ablations).

    OMP_NUM_THREADS=1 python benchmarks/ablate.py NAME key=value ... [--steps 4000] [--out runs/abl]

Every key=value overrides a TrainConfig field (types follow the defaults). Prints one line
per sampler step count: FD and the recognisable fraction (see fid_demo.py), and writes
NAME/eval_{k}steps.png grids so the numbers can be checked by eye.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fid_demo import DemoFDEnsemble  # noqa: E402

from cmcore import TrainConfig  # noqa: E402
from cmcore.export import make_grid, save_png  # noqa: E402
from cmcore.generator import load_generator  # noqa: E402
from cmcore.sampling import to_uint8  # noqa: E402
from cmcore.training import Trainer  # noqa: E402


def parse_overrides(pairs: list[str]) -> dict:
    types = {f.name: type(f.default) for f in dataclasses.fields(TrainConfig)}
    out = {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        kind = types[key]
        out[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name")
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--out", type=Path, default=Path("runs/abl"))
    ap.add_argument("--num", type=int, default=512)
    ap.add_argument("--steps", type=int, default=4000, help="max_steps (the benchmark's budget); max_steps=N overrides")
    ap.add_argument("--eval-steps", default="1,2,4")
    ap.add_argument("--device", default="cpu", help="trains and samples there (cuda:0 for a GPU screen); FD on the CPU")
    ap.add_argument("--classifiers", default="0", help="classifier seeds, e.g. 0,1,2: FD is their mean, each is printed")
    args = ap.parse_intermixed_args()  # NAME --steps 16000 key=value ... in any order
    over = {"max_steps": args.steps, "max_minutes": 0.0, "preview_every": 500, "checkpoint_every": 0, "log_every": 50, "device": args.device,
            **parse_overrides(args.overrides)}
    run = args.out / args.name
    started = time.perf_counter()
    if not (run / "checkpoints" / "latest").exists():
        Trainer(TrainConfig(**over), run).run()
    seconds = time.perf_counter() - started
    metric = DemoFDEnsemble(32, [int(x) for x in args.classifiers.split(",")])
    gen = load_generator(run, args.device)
    results = {}
    for k in map(int, args.eval_steps.split(",")):
        x = gen.sample_tensor(args.num, k, seed=123, sampler=gen.default_sampler)
        x = x.cpu()
        results[k] = metric(x)
        save_png(run / f"eval_{k}steps.png", make_grid(to_uint8(x[:64])), {})
    line = " ".join(f"{k}:{r['fd']:.1f}/{r['recognisable']:.2f}" for k, r in results.items())
    if len(metric.members) > 1:
        line += "  each " + " ".join(f"{k}:" + "/".join(f"{fd:.1f}" for fd in r["fd_each"]) for k, r in results.items())
    print(f"{args.name:24s} {line}  step {gen.step} train {seconds:.0f}s  {over}")
    with open(args.out / "results.jsonl", "a") as f:
        f.write(json.dumps({"name": args.name, "over": over, "seconds": seconds, "step": gen.step,
                            "results": {str(k): r for k, r in results.items()}}) + "\n")


if __name__ == "__main__":
    main()
