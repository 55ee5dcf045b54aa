"""The defaults' guard: a short training of each method with the default settings, pinned.

Every TrainConfig default is kept except the run's length (24 steps, no clock, so the schedules
follow the step count and the run is reproducible) and its logging (every step, no previews or
intermediate checkpoints: neither touches the training's random streams). The per-step losses and
two checksums of the final weights (their sum, and the norm of what training changed) must match the values recorded in `default_guard.json`.

A change that is meant to alter the default training re-records the file in a commit of its own:

    .venv/bin/python -m tests.cmcore.test_default_guard --record

One thread makes the sums' order, and so every bit, independent of the machine's core count;
the tolerance only absorbs the last bits of float32 that a different CPU kernel may round differently.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from cmcore import events
from cmcore.config import TrainConfig
from cmcore.training import Trainer

RECORD = Path(__file__).with_name("default_guard.json")
STEPS = 24
LOSS_RTOL = 1e-4
SUM_RTOL = (1e-6, 1e-4)  # the weights' sum (~3000) and the distance they moved (~0.02-0.3)


def guard_config(method: str, teacher: str = "") -> TrainConfig:
    return TrainConfig(method=method, teacher=teacher, max_steps=STEPS, max_minutes=0.0, log_every=1,
                       preview_every=0, checkpoint_every=0, device="cpu")


def _train(config: TrainConfig, run_dir: Path) -> dict:
    losses: list[float] = []
    initial: dict[str, list[torch.Tensor]] = {}

    def on_event(event) -> None:
        if isinstance(event, events.Started):  # the weights training starts from (the teacher's, for cd)
            initial["model"] = [p.detach().double().clone() for p in trainer.model.parameters()]
        elif isinstance(event, events.Progress):
            losses.append(event.loss)

    trainer = Trainer(config, run_dir, on_event=on_event)
    trainer.run()
    sums = {}
    for name in ("model", "ema"):
        params = [p.detach().double() for p in getattr(trainer, name).parameters()]
        moved = math.sqrt(sum(float((p - p0).square().sum()) for p, p0 in zip(params, initial["model"])))
        sums[name] = [float(sum(p.sum() for p in params)), moved]
    return {"losses": losses, "sums": sums}


def guard_runs(root: Path) -> dict[str, dict]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = {"flow": _train(guard_config("flow"), root / "flow")}
        results["ct"] = _train(guard_config("ct"), root / "ct")
        results["cd"] = _train(guard_config("cd", teacher=str(root / "flow")), root / "cd")
    finally:
        torch.set_num_threads(threads)
    return results


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    return guard_runs(tmp_path_factory.mktemp("guard"))


@pytest.mark.parametrize("method", ["flow", "ct", "cd"])
def test_default_training_matches_the_recorded_run(method, measured):
    expected = json.loads(RECORD.read_text())[method]
    got = measured[method]
    assert len(got["losses"]) == STEPS
    for step, (a, b) in enumerate(zip(got["losses"], expected["losses"]), start=1):
        assert math.isclose(a, b, rel_tol=LOSS_RTOL), f"{method}: loss at step {step} is {a}, recorded {b}"
    for name in ("model", "ema"):
        for what, a, b, tol in zip(("sum", "distance moved"), got["sums"][name], expected["sums"][name], SUM_RTOL):
            assert math.isclose(a, b, rel_tol=tol), f"{method}: {name} weights' {what} is {a}, recorded {b}"


if __name__ == "__main__" and "--record" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        RECORD.write_text(json.dumps(guard_runs(Path(tmp)), indent=1) + "\n")
    print(f"recorded {RECORD}")
