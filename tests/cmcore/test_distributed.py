"""cmcore/distributed.py: one run trained by several processes (torchrun + DDP), here two gloo processes on the CPU.

How two processes are compared with one: the two ranks draw other images, noise and times than a single process
(rank 1 from its own seeds), so their losses are other numbers. Rather than compare the runs statistically, the
reference is a single process that draws exactly what the two ranks draw: rank 0's 8 samples from rank 0's
streams (the single process's own seeds) followed by rank 1's 8 from the seeds `stream_seeds(seed, 1)` gives
rank 1 (the `TwoRanksInOne` Trainer below; only the test draws that way, a real single process is unchanged,
as the guard test shows). The mean loss over 16 samples is the mean of the two ranks' means over 8, and its
gradient is the average DDP computes, so the runs differ only by the order of float32 sums: the losses must
agree to 1e-5 relative and the weights to 1e-6 absolute after 20 steps (measured here: 1.6e-7 and 1.5e-8, so
the tolerances leave ~60x for another CPU's kernels). A plain single process, which draws other samples, is
compared only loosely: its mean loss over the 20 steps within 15 % of the two processes' (measured: 3 %; a
step's loss moves by ~15 % from batch to batch, the mean of 20 by ~3-4 %).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cmcore import distributed, events
from cmcore.checkpoint import load_checkpoint
from cmcore.cli import main as cli_main
from cmcore.config import TrainConfig
from cmcore.errors import ConfigError
from cmcore.rundir import LOCK, latest_step, loss_records, read_metrics
from cmcore.runlock import lock_owner
from cmcore.training import Trainer

ROOT = Path(__file__).resolve().parents[2]
STEPS, BATCH = 20, 16
LOSS_RTOL, WEIGHT_ATOL = 1e-5, 1e-6


@pytest.fixture(autouse=True)
def _one_thread():
    """In-process training on one thread, like each child process (OMP_NUM_THREADS=1): on a busy 2-core machine
    two threads spin against each other (10 steps took 38 s instead of 5)."""
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(2)


def run_config(**changes) -> TrainConfig:
    """tiny CT at 16 px, global batch 16, no clock (the schedules follow the step count), logs every step."""
    base = dict(data="demo", method="ct", model="tiny", resolution=16, batch_size=BATCH, max_steps=STEPS,
                max_minutes=0.0, log_every=1, preview_every=10, preview_count=4, checkpoint_every=10, device="cpu")
    return TrainConfig(**{**base, **changes})


def child_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", distributed.FORCE_ENV)}
    return {**env, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", distributed.TIMEOUT_ENV: "60", **extra}


def torchrun(nproc: int, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m torch.distributed.run --standalone --nproc-per-node N -m cmcore train ARGS` (a free port)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
               "-m", "cmcore", "train", *args, "--quiet"]
    result = subprocess.run(command, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


# --- alone: nothing changes ----------------------------------------------------------------------------------
def test_alone_the_context_is_plain_and_changes_nothing(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", distributed.FORCE_ENV):
        monkeypatch.delenv(name, raising=False)
    ctx = distributed.context("cpu")
    assert not ctx.enabled and ctx.is_main and ctx.world_size == 1
    loss = torch.tensor(0.123456789, dtype=torch.float32)
    agreed = ctx.exchange(loss, stop=True, pause=False, clock=7.5)
    assert agreed == distributed.Agreed(loss.item(), True, False, 7.5)
    assert ctx.local_batch(16) == 16 and ctx.mean(2.5) == 2.5 and ctx.any(True) and not ctx.broadcast(False)
    assert type(ctx.wrap(torch.nn.Linear(2, 2), lambda *a: None)) is distributed.Objective
    assert ctx.train_device("cpu") == torch.device("cpu")


def test_the_global_batch_is_split_evenly_or_refused():
    assert distributed.Context(world_size=4).local_batch(16) == 4
    with pytest.raises(ConfigError, match=r"batch_size: 16 images per step do not split evenly over 3 processes.*"
                                          r"use 15 or 18"):
        distributed.Context(world_size=3).local_batch(16)


def test_rank_zero_keeps_the_single_process_seeds_and_other_ranks_derive_theirs():
    assert distributed.stream_seeds(5, 0) == distributed.stream_seeds(5, 0, step=300) == (21, 22, 23, 5)
    one = distributed.stream_seeds(5, 1)
    assert one == distributed.stream_seeds(5, 1) and len(set(one)) == 4 and all(0 <= s < 2**63 for s in one)
    assert len({one, distributed.stream_seeds(5, 2), distributed.stream_seeds(5, 1, step=300),
                distributed.stream_seeds(6, 1)}) == 4


def test_a_process_group_of_one_trains_bit_for_bit_what_a_single_process_trains(tmp_path, monkeypatch):
    """CMCORE_DDP=1: a gloo group of one and DDP around the objective give the same numbers as without, through a
    non-finite loss's rollback too (a step whose forward ran under DDP but whose backward was skipped)."""
    config = run_config(max_steps=10, batch_size=8, log_every=1, preview_every=0, checkpoint_every=0, lr=1e-3,
                        warmup_steps=0)

    def train(run_dir):
        seen = []
        trainer = Trainer(config, run_dir, on_event=seen.append)
        original = trainer.train_step

        def poisoned():  # NaN weights once, before step 7: the loss is NaN, the run rolls back to step 0's weights
            if trainer.step == 6 and not [e for e in seen if isinstance(e, events.Warning)]:
                with torch.no_grad():
                    next(trainer.model.parameters()).fill_(float("nan"))
            return original()

        monkeypatch.setattr(trainer, "train_step", poisoned)
        trainer.run()
        return [e.loss for e in seen if isinstance(e, events.Progress)], seen, trainer

    plain_losses, plain_events, plain = train(tmp_path / "plain")
    monkeypatch.setenv(distributed.FORCE_ENV, "1")
    try:
        ddp_losses, ddp_events, ddp = train(tmp_path / "ddp")
        assert ddp.dist.enabled and ddp.dist.backend == "gloo"
        assert type(ddp.objective).__name__ == "DistributedDataParallel"
    finally:
        distributed.teardown()
    assert [e.message for e in ddp_events if isinstance(e, events.Warning)] == \
        [e.message for e in plain_events if isinstance(e, events.Warning)] and ddp.nan_rollbacks == 1
    assert ddp_losses == plain_losses and len(ddp_losses) == 10
    for a, b in zip(plain.ema.state_dict().values(), ddp.ema.state_dict().values()):
        assert torch.equal(a, b)


def test_the_control_file_pauses_resumes_and_stops_a_run_of_another_process(tmp_path):
    """What the app's Pause/Resume/Stop write for a run it follows (runlock.write_control), read by the training
    process every half second; a stale request does not stop the run's next resume."""
    import threading

    from cmcore.rundir import CONTROL
    from cmcore.runlock import read_control, write_control

    run = tmp_path / "run"
    seen = []
    trainer = Trainer(run_config(max_steps=100_000, batch_size=4, preview_every=0, checkpoint_every=0), run,
                      on_event=seen.append)
    thread = threading.Thread(target=trainer.run)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while trainer.step < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        write_control(run, pause=True)
        while not trainer.paused and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # the step in flight
        paused_at = trainer.step
        time.sleep(1.2)
        assert trainer.paused and trainer.step == paused_at and thread.is_alive()
        write_control(run, pause=False)
        while trainer.step <= paused_at and time.monotonic() < deadline:
            time.sleep(0.05)
        assert trainer.step > paused_at
        write_control(run, stop=True)
        thread.join(30)
    finally:
        trainer.request_stop()
        thread.join(30)
    assert not thread.is_alive() and seen[-1] == events.Finished(trainer.step, "stopped")
    assert latest_step(run) == trainer.step and read_control(run) == {"pause": False, "stop": True}
    # the next resume starts afresh: the old "stop" is cleared, not obeyed
    resumed = Trainer(None, run, resume=True)
    resumed.config = resumed.config.replace(max_steps=trainer.step + 3)
    assert resumed.run() == trainer.step + 3 and not (run / CONTROL).exists()
    (run / CONTROL).write_text("not json")
    assert read_control(run) is None


# --- two gloo processes ----------------------------------------------------------------------------------------
class TwoRanksInOne(Trainer):
    """A single process that draws, each step, what rank 0 and rank 1 of a 2-process run draw (see the module's doc)."""

    def setup(self) -> None:
        super().setup()
        *seeds, _ = distributed.stream_seeds(self.config.seed, 1)
        self.rank1 = [torch.Generator().manual_seed(s) for s in seeds]
        self.local_batch = self.config.batch_size // 2

    def _draw(self, n):
        mine = super()._draw(n)
        own = self.data_gen, self.noise_gen, self.time_gen
        self.data_gen, self.noise_gen, self.time_gen = self.rank1
        try:
            theirs = super()._draw(n)
        finally:
            self.data_gen, self.noise_gen, self.time_gen = own
        return tuple(torch.cat([a, b]) for a, b in zip(mine, theirs))


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """20 steps of two gloo processes under torchrun, and the single process that draws what they draw."""
    root = tmp_path_factory.mktemp("ddp")
    config_file = root / "config.toml"
    run_config().save(config_file)
    result = torchrun(2, "--out", str(root / "two"), "--config", str(config_file))
    losses, plain_losses = [], []
    reference = TwoRanksInOne(run_config(), root / "one",
                              on_event=lambda e: losses.append(e.loss) if isinstance(e, events.Progress) else None)
    plain = Trainer(run_config(preview_every=0), root / "plain",
                    on_event=lambda e: plain_losses.append(e.loss) if isinstance(e, events.Progress) else None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference.run()
        plain.run()
    finally:
        torch.set_num_threads(threads)
    return root, result, losses, reference, plain_losses


def test_two_processes_train_what_one_process_drawing_the_same_samples_trains(two_process_run):
    root, result, losses, reference, plain_losses = two_process_run
    records = loss_records(root / "two")
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    for step, (two, one) in enumerate(zip([r["loss"] for r in records], losses), start=1):
        assert two == pytest.approx(one, rel=LOSS_RTOL), f"step {step}"
    assert [r["n"] for r in records] == [r["n"] for r in loss_records(root / "one")]  # the same curriculum
    assert [r["lr"] for r in records] == pytest.approx([r["lr"] for r in loss_records(root / "one")], rel=1e-12)
    ckpt = load_checkpoint(root / "two")
    assert ckpt.step == STEPS
    for name, module in (("model", reference.model), ("ema", reference.ema)):
        for key, value in module.state_dict().items():
            assert torch.allclose(ckpt.weights[name][key], value, rtol=0, atol=WEIGHT_ATOL), f"{name}.{key}"
    assert "done at step 20" in result.stdout and result.stdout.count("done at step") == 1  # rank 0 alone speaks
    two_mean, plain_mean = sum(r["loss"] for r in records) / STEPS, sum(plain_losses) / STEPS
    assert plain_mean == pytest.approx(two_mean, rel=0.15)  # other draws, the same training


def test_only_rank_zero_wrote_the_run_folder(two_process_run):
    root, *_ = two_process_run
    run = root / "two"
    files = sorted(p.relative_to(run).as_posix() for p in run.rglob("*"))
    assert files == ["checkpoints", "checkpoints/best", "checkpoints/latest",
                     "checkpoints/step_0000010.safetensors", "checkpoints/step_0000010.state.pt",
                     "checkpoints/step_0000020.safetensors", "checkpoints/step_0000020.state.pt",
                     "config.toml", "data_report.json", "metrics.jsonl", "previews",
                     "previews/step_0000010_1steps.png", "previews/step_0000010_4steps.png",
                     "previews/step_0000020_1steps.png", "previews/step_0000020_4steps.png", "split.json"]
    records = read_metrics(run)
    assert len(loss_records(run)) == STEPS  # one writer: no line twice
    scored = [r["step"] for r in records if "score" in r]  # rank 0 scored the checkpoints (the last always)
    assert scored in ([10, 20], [20]) and len(records) == STEPS + len(scored)
    assert TrainConfig.load(run / "config.toml").batch_size == BATCH  # the global batch, as given


def test_a_two_process_run_resumes_with_one_process_and_with_two(two_process_run, tmp_path):
    root, *_ = two_process_run
    for nproc in (1, 2):
        run = tmp_path / f"resumed_by_{nproc}"
        shutil.copytree(root / "two", run)
        args = ["--out", str(run), "--resume", "--max-steps", "24"]
        if nproc == 1:
            assert cli_main(["train", *args, "--quiet"]) == 0
        else:
            torchrun(2, *args)
        records = loss_records(run)
        assert [r["step"] for r in records] == list(range(1, 25)), nproc
        assert records[:STEPS] == loss_records(root / "two")  # the first 20 steps' records kept as they were
        assert latest_step(run) == 24 and load_checkpoint(run).config.max_steps == 24
        assert not (run / LOCK).exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_killed_process_ends_the_whole_run_with_a_message_and_the_run_resumes(tmp_path):
    """Two processes started as torchrun would start them (but without its agent, which would also stop the
    others): rank 1 killed; rank 0 must end by itself, at once, with one line, and give the lock back."""
    run = tmp_path / "run"
    config_file = tmp_path / "config.toml"
    run_config(max_steps=100_000, checkpoint_every=4, log_every=4, preview_every=0).save(config_file)
    port = str(free_port())
    procs = [subprocess.Popen([sys.executable, "-m", "cmcore", "train", "--out", str(run), "--config", str(config_file),
                               "--quiet"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=child_env(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                                            MASTER_ADDR="127.0.0.1", MASTER_PORT=port))
             for rank in (0, 1)]
    try:
        deadline = time.monotonic() + 60
        while latest_step(run) < 8 and time.monotonic() < deadline and procs[0].poll() is None:
            time.sleep(0.2)
        assert latest_step(run) >= 8, procs[0].communicate(timeout=5)
        procs[1].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        _, err = procs[0].communicate(timeout=30)  # no hang
        ended_after = time.monotonic() - killed
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert procs[0].returncode == 2 and ended_after < 15, (ended_after, err)
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: lost contact with the other processes of this run (rank 0 of 2") and \
        "resumes from its last checkpoint with --resume" in line and "Traceback" not in err, err
    assert lock_owner(run) is None
    saved = latest_step(run)
    assert cli_main(["train", "--out", str(run), "--resume", "--max-steps", str(saved + 2), "--quiet"]) == 0
    assert [r["step"] for r in loss_records(run)] == list(range(4, saved + 1, 4)) + [saved + 2]
    assert latest_step(run) == saved + 2
