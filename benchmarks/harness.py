"""Train, sample, score: the steps that quality.py, ablate.py and longrun.py share.

A benchmark trains a config into a run folder (or takes the one already there), draws seeded
samples from its newest checkpoint at a few sampler step counts, scores them with the demo FD
(fid_demo.py) and writes RUN/eval_{k}steps.png grids and RUN/summary.json. Overrides on the
command line (`lr=0.001 method=cd`) are read as TOML values and checked by the engine itself,
so a bad key or value gives the same ConfigError as a config file would.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from cmcore import CmcoreError, ConfigError, TrainConfig
from cmcore.rundir import atomic_write_bytes, latest_step

SEED = 123  # the sampling seed of every benchmark table in the README
GRID = 64  # images per eval_{k}steps.png


def parse_value(text: str) -> Any:
    """A TOML scalar (0.001, 16, true, "a b") or, where the text is none, the text itself (cd, runs/flow)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """KEY=VALUE strings → {KEY: value}; the values are read by `parse_value`."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"an override must be KEY=VALUE, got {pair!r}")
        overrides[key.strip()] = parse_value(value.strip())
    return overrides


def make_config(base: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """`base` with `overrides` on top, read as a config file is: unknown keys and bad values raise ConfigError."""
    return TrainConfig.from_dict({**base.to_dict(), **overrides}).validate()


def train(config: TrainConfig, run: Path, reuse: bool = True) -> float:
    """Train `config` into the folder `run`; returns the seconds it took. With `reuse`, a run that
    already has a checkpoint is taken as it is (a benchmark run again evaluates what it trained before)."""
    from cmcore.training import Trainer

    started = time.perf_counter()
    if not (reuse and latest_step(run)):
        Trainer(config, run).run()
    return time.perf_counter() - started


@dataclass
class Samples:
    step: int  # the training step of the checkpoint they came from
    sampler: str
    seed: int
    images: dict[int, torch.Tensor]  # sampler steps → N×C×H×W floats in [-1, 1], on the CPU


def sample(run: Path, steps: Iterable[int], num: int, seed: int = SEED, device: str = "cpu",
           sampler: str | None = None) -> Samples:
    """`num` images at each sampler step count from the newest checkpoint of `run`, all from one seed.
    The sampler defaults to the run's own: Euler on the ODE for a flow teacher, multistep otherwise."""
    from cmcore.generator import load_generator

    gen = load_generator(run, device)
    sampler = sampler or gen.default_sampler
    return Samples(gen.step, sampler, seed,
                   {k: gen.sample_tensor(num, k, seed=seed, sampler=sampler).cpu() for k in steps})


def score(metric: Callable[[torch.Tensor], dict], images: dict[int, torch.Tensor]) -> dict[int, dict]:
    """The metric (a fid_demo.DemoFDEnsemble: FD mean, min, max, each, recognisable) per sampler step count."""
    return {k: metric(x) for k, x in images.items()}


def write_grids(run: Path, images: dict[int, torch.Tensor], count: int = GRID) -> None:
    """RUN/eval_{k}steps.png: the first `count` samples at k steps, so the numbers can be checked by eye."""
    from cmcore.export import make_grid, save_png
    from cmcore.sampling import to_uint8

    for k, x in images.items():
        save_png(Path(run) / f"eval_{k}steps.png", make_grid(to_uint8(x[:count])), {})


def write_summary(path: Path, summary: dict) -> None:
    atomic_write_bytes(Path(path), (json.dumps(summary, indent=1) + "\n").encode())


def evaluate(run: Path, metric: Callable[[torch.Tensor], dict], steps: Iterable[int], num: int, seed: int = SEED,
             device: str = "cpu", sampler: str | None = None, **info: Any) -> dict:
    """Sample `run`, score the samples, write its grids and RUN/summary.json (with `info` in it);
    returns the summary: name, info, checkpoint step, sampler, seed, num and the results per step count."""
    run = Path(run)
    samples = sample(run, steps, num, seed, device, sampler)
    results = score(metric, samples.images)
    write_grids(run, samples.images)
    summary = {"name": run.name, **info, "step": samples.step, "sampler": samples.sampler, "seed": seed, "num": num,
               "results": {str(k): r for k, r in results.items()}}
    write_summary(run / "summary.json", summary)
    return summary


def benchmark(config: TrainConfig, run: Path, metric: Callable[[torch.Tensor], dict], steps: Iterable[int], num: int,
              seed: int = SEED, reuse: bool = True, **info: Any) -> dict:
    """Train `config` into `run` (see `train`), then `evaluate` it on the config's device;
    the summary also holds the training seconds."""
    seconds = train(config, Path(run), reuse)
    return evaluate(run, metric, steps, num, seed, config.device, seconds=seconds, **info)


def run_main(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> None:
    """Run a benchmark's main(argv); an engine error (a bad override, no checkpoint, unreadable data)
    ends it with `error: ...` on stderr and exit status 2, not a traceback."""
    try:
        main(argv)
    except CmcoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
