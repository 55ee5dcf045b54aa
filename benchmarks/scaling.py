"""Scaling benchmark: images per second of one run trained by 1, 2, ... processes (torchrun + DDP).

    python -m benchmarks.scaling [--procs 1,2] [--threads 1] [--batch-size 32] [--steps 40]

Each row is one real `torchrun --nproc-per-node N -m cmcore train` of the same configuration (tiny CT on the
demo data, one global batch, so every process draws batch/N images a step: strong scaling, as a user's run
scales). On the CPU every process gets --threads threads (gloo), so N processes use N times the cores of one;
where there are GPUs the same is done for 1..all of them (NCCL, one process per GPU), unless --no-gpu.
Images per second come from rank 0's metrics.jsonl: the global batch times the steps after --warmup, over the
training clock those steps took (set-up, the previews' and checkpoints' time excluded). Speed-up is against
one process of the same kind, efficiency = speed-up / N (1.0 is perfect). A table, then one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from cmcore.config import TrainConfig
from cmcore.rundir import loss_records

ROOT = Path(__file__).resolve().parents[1]


def measure(kind: str, nproc: int, args, work: Path) -> dict:
    """One torchrun of the benchmark's configuration; images/s after the warm-up steps."""
    run = work / f"{kind}{nproc}"
    config = TrainConfig(data="demo", method="ct", model=args.model, resolution=args.resolution,
                         batch_size=args.batch_size, max_steps=args.warmup + args.steps, max_minutes=0.0, log_every=1,
                         preview_every=0, checkpoint_every=0, device="cpu" if kind == "cpu" else "cuda")
    config_file = work / f"{kind}{nproc}.toml"
    config.save(config_file)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
               "-m", "cmcore", "train", "--out", str(run), "--config", str(config_file), "--quiet"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=args.timeout)
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(command[2:])} failed:\n{done.stderr[-2000:]}")
    records = loss_records(run)
    start, end = records[args.warmup - 1], records[-1]
    seconds = end["wall"] - start["wall"]
    ips = args.batch_size * (end["step"] - start["step"]) / seconds
    return {"kind": kind, "processes": nproc, "threads_per_process": args.threads if kind == "cpu" else None,
            "batch_per_process": args.batch_size // nproc, "images_per_s": round(ips, 2),
            "ms_per_step": round(1000 * seconds / (end["step"] - start["step"]), 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--procs", default="1,2", help="CPU process counts to run (gloo), comma-separated")
    ap.add_argument("--threads", type=int, default=1, help="threads per CPU process")
    ap.add_argument("--batch-size", type=int, default=32, help="the global batch (divisible by every count)")
    ap.add_argument("--resolution", type=int, default=16)
    ap.add_argument("--model", choices=("tiny", "small", "base"), default="tiny")
    ap.add_argument("--steps", type=int, default=40, help="timed steps (after the warm-up)")
    ap.add_argument("--warmup", type=int, default=5, help="steps not timed (allocation, first calls)")
    ap.add_argument("--no-gpu", action="store_true", help="CPU processes only, even where there are GPUs")
    ap.add_argument("--timeout", type=float, default=900, help="seconds one run may take")
    args = ap.parse_args(argv)
    import torch

    plans = [("cpu", int(n)) for n in args.procs.split(",") if n.strip()]
    gpus = 0 if args.no_gpu or not torch.cuda.is_available() else torch.cuda.device_count()
    plans += [("cuda", n) for n in range(1, gpus + 1)]
    if any(args.batch_size % n for _, n in plans):
        raise SystemExit(f"error: --batch-size {args.batch_size} must divide by every process count")
    rows = []
    with tempfile.TemporaryDirectory(prefix="cmcore-scaling-") as tmp:
        for kind, nproc in plans:
            rows.append(measure(kind, nproc, args, Path(tmp)))
            print(f"  {kind} x{nproc}: {rows[-1]['images_per_s']} images/s", file=sys.stderr, flush=True)
    for row in rows:
        one = next((r for r in rows if r["kind"] == row["kind"] and r["processes"] == 1), None)
        row["speedup"] = round(row["images_per_s"] / one["images_per_s"], 3) if one else None
        row["efficiency"] = round(row["speedup"] / row["processes"], 3) if one else None
    print(f"{args.model} CT, {args.resolution} px, global batch {args.batch_size}, {args.steps} timed steps; "
          f"{os.cpu_count()} CPU cores here, {gpus} GPU(s)")
    print(f"{'device':8s} {'procs':>5s} {'threads':>7s} {'batch/proc':>10s} {'ms/step':>8s} {'images/s':>9s} "
          f"{'speed-up':>8s} {'efficiency':>10s}")
    for r in rows:
        threads = "-" if r["threads_per_process"] is None else str(r["threads_per_process"])
        print(f"{r['kind']:8s} {r['processes']:5d} {threads:>7s} {r['batch_per_process']:10d} {r['ms_per_step']:8.1f} "
              f"{r['images_per_s']:9.1f} {r['speedup'] or 0:8.2f} {r['efficiency'] or 0:10.2f}")
    print(json.dumps({"model": args.model, "resolution": args.resolution, "batch_size": args.batch_size,
                      "steps": args.steps, "cpu_cores": os.cpu_count(), "gpus": gpus, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
