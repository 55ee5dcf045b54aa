"""Crash safety (issue 22): `cmcore train` killed with SIGKILL at random moments, many of them inside a
checkpoint write, then resumed; and Ctrl-C, which saves the step it stopped at.

After every kill: the checkpoint a resume would use is a complete pair (weights and state of one step),
the resume starts from exactly that step, no step is logged twice, and no temporary or orphan file
outlives the next successful save. At the end the run loads and samples.

Most kills hit processes forked from this one (cmcore.cli.main, torch already imported: starting a
python + torch process costs seconds); a few hit real `python -m cmcore train` processes. The forked
children write checkpoints slowly (a pause between the writes, inherited monkeypatches), and half of
the kills wait until a save has begun, so many land mid-save.
"""
from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import cmcore
from cmcore import checkpoint as ck
from cmcore import cli, training_run
from cmcore.checkpoint import load_checkpoint
from cmcore.generator import load_generator
from cmcore.rundir import best_step, read_metrics

pytestmark = pytest.mark.skipif(sys.platform == "win32" or not hasattr(os, "fork"), reason="POSIX signals and fork")

ROOT = Path(cmcore.__file__).resolve().parents[1]
CONFIG = "[train]\ncheckpoint_every = 3\nlog_every = 1\npreview_every = 0\nwarmup_steps = 2\n"
PAUSE_S = 0.02  # between the writes of a checkpoint, in the forked children
FORKED_KILLS = 22
REAL_KILLS = 3


def train_args(run: Path, config: Path, resume: bool, max_steps: int = 100_000) -> list[str]:
    return (["train", "--data", "demo", "--resolution", "16", "--batch-size", "4", "--max-minutes", "0",
             "--max-steps", str(max_steps), "--device", "cpu", "--quiet", "--config", str(config), "--out", str(run)]
            + (["--resume"] if resume else []))


# --- what a run folder holds, read independently of cmcore.rundir ----------------------------------
def _step(path: Path) -> int | None:
    match = re.search(r"step_(\d+)", path.name)
    return int(match.group(1)) if match else None


def complete_steps(run: Path) -> list[int]:
    folder = run / "checkpoints"
    weights = {_step(p) for p in folder.glob("step_*.safetensors")}
    states = {_step(p) for p in folder.glob("step_*.state.pt")}
    return sorted(weights & states - {None})


def committed(run: Path) -> int | None:
    """The newest complete checkpoint: the one a valid `latest` names, else the highest complete pair."""
    complete = complete_steps(run)
    try:
        match = re.fullmatch(r"step_(\d+)", (run / "checkpoints" / "latest").read_text().strip())
    except (OSError, UnicodeDecodeError):
        match = None
    if match and int(match.group(1)) in complete:
        return int(match.group(1))
    return complete[-1] if complete else None


def leftovers(run: Path) -> set[tuple[str, int, int]]:
    """Temporary files and halves of checkpoints, by (path, inode, mtime): a new file of the same name differs."""
    complete = set(complete_steps(run))
    found = [p for folder in (run, run / "checkpoints", run / "previews") for p in folder.glob(".*.tmp")]
    found += [p for p in (run / "checkpoints").glob("step_*") if _step(p) not in complete]
    out = set()
    for p in found:
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        out.add((str(p), st.st_ino, st.st_mtime_ns))
    return out


def logged_steps(run: Path) -> list[int]:
    return [r["step"] for r in read_metrics(run) if "loss" in r]  # logged steps, not scored checkpoints


# --- slow, traced checkpoint writes (inherited by forked children) ---------------------------------
class Trace:
    def __init__(self, path: Path):
        self.path = path
        path.write_text("")

    def log(self, *words) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, (" ".join(str(w) for w in (os.getpid(), *words)) + "\n").encode())
        finally:
            os.close(fd)

    def events(self, pid: int) -> list[list[str]]:
        lines = [line.split() for line in self.path.read_text().splitlines()]
        return [line[1:] for line in lines if line and line[0] == str(pid)]


@pytest.fixture
def traced(tmp_path, monkeypatch):
    trace = Trace(tmp_path / "trace.txt")
    write_via, write_bytes = ck.atomic_write_via, ck.atomic_write_bytes
    save, restore = training_run.save_checkpoint, training_run.TrainingRun._restore

    def slow_write_via(path, write):
        trace.log("begin", Path(path).name)
        time.sleep(PAUSE_S)
        write_via(path, lambda tmp: (write(tmp), time.sleep(PAUSE_S)))  # the temporary file is there, whole
        time.sleep(PAUSE_S)

    def slow_write_bytes(path, data):
        trace.log("begin", Path(path).name)
        time.sleep(PAUSE_S)
        write_bytes(path, data)

    def traced_save(run_dir, step, *args, **kwargs):
        path = save(run_dir, step, *args, **kwargs)
        trace.log("saved", step)
        return path

    def traced_restore(self, *args, **kwargs):
        restore(self, *args, **kwargs)
        trace.log("restored", self.step)

    monkeypatch.setattr(ck, "atomic_write_via", slow_write_via)
    monkeypatch.setattr(ck, "atomic_write_bytes", slow_write_bytes)
    monkeypatch.setattr(training_run, "save_checkpoint", traced_save)
    monkeypatch.setattr(training_run.TrainingRun, "_restore", traced_restore)
    return trace


def fork_cli(argv: list[str], log: Path) -> int:
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 70
        try:
            torch.set_num_threads(1)  # OpenMP's thread pool does not survive a fork
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            code = cli.main(argv)
        except BaseException:  # noqa: BLE001
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def kill(pid: int) -> int | None:
    """SIGKILL `pid` and reap it; its exit code if it had already ended by itself."""
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        return os.waitstatus_to_exitcode(status)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def wait_for(condition, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.005)
    return False


class Checker:
    """The invariants after each kill, and the expectations for the next resume."""

    def __init__(self, run: Path):
        self.run = run
        self.expected: int | None = None
        self.kept: list[dict] = []
        self.previous_leftovers: set = set()
        self.mid_save = 0

    def after_kill(self, events: list[list[str]] | None = None) -> None:
        run = self.run
        steps = logged_steps(run)
        assert steps == sorted(set(steps)), f"a step logged twice: {steps}"
        if events is not None:
            restored = [int(e[1]) for e in events if e[0] == "restored"]
            if restored:  # the resume started from the newest complete checkpoint, exactly
                assert restored == [self.expected], (restored, self.expected)
            if restored or self.expected is None:  # the lines up to there were kept as they were
                assert read_metrics(run)[:len(self.kept)] == self.kept
            if any(e[0] == "saved" for e in events):  # each successful save removes what killed writes left
                survivors = self.previous_leftovers & leftovers(run)
                assert not survivors, f"left by a killed write and still there after a save: {survivors}"
            saves = [i for i, e in enumerate(events) if e[0] == "begin" and e[1].startswith("step_")]
            if saves and not any(e[0] == "saved" for e in events[saves[-1]:]):
                self.mid_save += 1  # killed between the first write of a checkpoint and its end
        step = committed(run)
        if step is not None:  # what a resume (or the gallery) would load: one complete checkpoint of that step
            ckpt = load_checkpoint(run)
            assert ckpt.step == step
            assert ckpt.load_state().get("step", step) == step  # (older state files do not say)
        self.expected = step
        self.kept = [r for r in read_metrics(run) if step is not None and r["step"] <= step]
        self.previous_leftovers = leftovers(run)


def test_killed_at_random_moments_every_resume_starts_from_the_newest_complete_checkpoint(tmp_path, traced):
    rng = random.Random(int(os.environ.get("CRASH_SEED", time.time_ns())) % 2**32)
    run, config = tmp_path / "run", tmp_path / "config.toml"
    config.write_text(CONFIG)
    checker = Checker(run)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    t0 = time.monotonic()

    # A few real processes, killed at a random moment once they train.
    for i in range(REAL_KILLS):
        resume = committed(run) is not None
        proc = subprocess.Popen([sys.executable, "-m", "cmcore", *train_args(run, config, resume)], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        goal = (checker.expected or 0) + 1
        try:
            trained = wait_for(lambda: proc.poll() is not None or committed(run) is not None
                               and any(s >= goal for s in logged_steps(run)), 90)
            assert trained and proc.poll() is None, proc.stderr.read().decode() if proc.poll() is not None else "slow"
            time.sleep(rng.uniform(0.0, 0.6))
        finally:
            proc.kill()
            proc.wait()
        proc.stderr.close()
        checker.after_kill()

    # Many forked processes, half of them killed once a checkpoint write has begun.
    for i in range(FORKED_KILLS):
        resume = committed(run) is not None
        log = tmp_path / f"child{i}.log"
        pid = fork_cli(train_args(run, config, resume), log)
        try:
            if i % 2:
                began = wait_for(lambda: any(e[0] == "begin" and e[1].startswith("step_") for e in traced.events(pid)), 30)
                assert began, log.read_text()
                time.sleep(rng.uniform(0.0, 5 * PAUSE_S))
            else:
                time.sleep(rng.uniform(0.2, 1.2))
        finally:
            code = kill(pid)
        assert code is None, f"child {i} ended by itself ({code}): {log.read_text()}"
        checker.after_kill(traced.events(pid))

    print(f"{REAL_KILLS + FORKED_KILLS} kills, {checker.mid_save} inside a checkpoint write, {time.monotonic() - t0:.0f} s")
    assert checker.mid_save >= FORKED_KILLS // 4, f"only {checker.mid_save} kills landed inside a checkpoint write"

    # The last resume runs to its end; the run is whole.
    final = (checker.expected or 0) + 4
    assert cli.main(train_args(run, config, resume=checker.expected is not None, max_steps=final)) == 0
    assert logged_steps(run) == list(range(1, final + 1))  # every step once
    assert leftovers(run) == set()
    others = [s for s in complete_steps(run) if s != best_step(run)]  # the best-scored one is kept as well
    assert committed(run) == final and len(others) <= ck.KEEP
    images = load_generator(run).sample(2, 1, seed=0)
    assert images.shape == (2, 16, 16, 3)


def test_ctrl_c_saves_the_current_step_and_the_printed_resume_works(tmp_path):
    """Before the first checkpoint (checkpoint_every = 0: none until the end) a SIGINT stops after the
    step in progress and saves it; the exit code is 130 and the resume command it prints works."""
    run, config = tmp_path / "run", tmp_path / "config.toml"
    config.write_text("[train]\ncheckpoint_every = 0\nlog_every = 1\npreview_every = 0\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "cmcore", *train_args(run, config, resume=False)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: proc.poll() is not None or len(logged_steps(run)) >= 2, 90)
        assert proc.poll() is None, proc.stderr.read()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert re.fullmatch(r"interrupted at step \d+: checkpoint saved; resume with: cmcore train --out \S+ --resume", last)
    step = int(re.search(r"step (\d+)", last).group(1))
    assert step >= 2 and load_checkpoint(run).step == step
    assert logged_steps(run)[-1] == step
    assert not (run / ".lock").exists()  # the lock was given back
    assert cli.main(train_args(run, config, resume=True, max_steps=step + 2)) == 0
    assert logged_steps(run) == list(range(1, step + 3))
