"""The loss-spike guard: detection with known answers, and a run that recovers from wrecked weights."""
import functools
import math

import pytest
import torch

from cmcore import events, training_run
from cmcore.rundir import read_metrics
from cmcore.errors import ConfigError
from cmcore.guard import SpikeGuard
from cmcore.training import Trainer


def feed(guard, values):
    return [guard.observe(v) for v in values]


def test_ratio_is_the_recent_mean_over_the_mean_before():
    guard = SpikeGuard(factor=2.5, window=2, history=4)
    assert feed(guard, [1.0, 2.0, 3.0, 2.0, 4.0]) == [None] * 5  # not full yet
    assert guard.ratio() is None
    assert guard.observe(8.0) == pytest.approx(6.0 / 2.0)  # (4 + 8)/2 over (1 + 2 + 3 + 2)/4
    guard.observe(1.0)  # the window slides: history 2, 3, 2, 4 and window 8, 1
    assert guard.ratio() == pytest.approx(4.5 / 2.75)


def test_a_doubling_of_the_loss_is_not_a_spike_but_a_fourfold_jump_is():
    guard = SpikeGuard(factor=3.0, window=5, history=20)
    assert all(r is None for r in feed(guard, [1.0] * 25 + [2.0] * 30))  # n doubled: λ doubles the loss
    jumped = feed(SpikeGuard(factor=3.0, window=5, history=20), [1.0] * 25 + [4.0] * 5)
    # four steps of the window at 4.0: (1 + 4·4)/5 = 3.4 > 3 fires before the window is all spike
    assert jumped[:28] == [None] * 28 and jumped[28:] == [pytest.approx(3.4), pytest.approx(4.0)]


def test_a_disabled_guard_never_fires_and_takes_no_snapshots():
    guard = SpikeGuard(factor=0.0, window=2, history=4)
    assert feed(guard, [1.0] * 6 + [100.0] * 2) == [None] * 8
    assert not guard.wants_snapshot(0)


def test_snapshots_are_taken_only_while_calm():
    guard = SpikeGuard(factor=3.0, window=2, history=4, snapshot_every=10)
    assert guard.wants_snapshot(0) and not guard.wants_snapshot(5)
    feed(guard, [1.0] * 4 + [1.4] * 2)
    assert guard.wants_snapshot(10)
    feed(guard, [1.0] * 4 + [1.6] * 2)  # rising, though far from the factor
    assert not guard.wants_snapshot(10)


def test_rollback_goes_to_the_newest_snapshot_before_the_spike_window_and_gives_up_after_max():
    guard = SpikeGuard(factor=3.0, window=5, history=20, max_rollbacks=2)
    guard.add_snapshot(0, "a")
    guard.add_snapshot(10, "b")
    assert guard.rollback_target(14) == (0, "a")  # "b" may already hold the spike's first steps
    assert guard.rollback_target(15) == (10, "b")
    feed(guard, [1.0] * 25)
    guard.rolled_back(10)
    assert len(guard.losses) == 20 and guard.rollbacks == 1  # the window's losses are dropped
    guard.rolled_back(10)
    assert guard.rollback_target(30) == (0, "a")  # "b" failed twice
    guard.rolled_back(0)
    guard.rolled_back(0)
    assert guard.rollback_target(30) is None


def test_state_round_trips():
    guard = SpikeGuard(window=2, history=3)
    feed(guard, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    guard.rolled_back(0)
    other = SpikeGuard(window=2, history=3)
    other.load_state_dict(guard.state_dict())
    assert list(other.losses) == list(guard.losses) == [2.0, 3.0, 4.0] and other.rollbacks == 1


def test_spike_factor_is_validated(small_config):
    with pytest.raises(ConfigError, match="spike_factor"):
        small_config.replace(spike_factor=0.5).validate()
    small_config.replace(spike_factor=0).validate()


def test_a_run_whose_weights_are_wrecked_rolls_back_and_recovers(small_config, tmp_path, monkeypatch):
    monkeypatch.setattr(training_run, "SpikeGuard", functools.partial(SpikeGuard, window=4, history=16, snapshot_every=8))
    config = small_config.replace(method="flow", max_steps=48, log_every=4, preview_every=0, checkpoint_every=0)
    seen, restored = [], []

    def on_event(event):
        seen.append(event)
        if isinstance(event, events.RolledBack):  # the weights now are the snapshot's, exactly
            snap = dict(trainer.guard.snapshots)[event.to_step]
            restored.append(all(torch.equal(v, snap["model"][k]) for k, v in trainer.model.state_dict().items()))

    trainer = Trainer(config, tmp_path / "wrecked", on_event=on_event)
    original = trainer.train_step

    def wreck_at_step_30():
        if trainer.step == 30:
            with torch.no_grad():
                for p in trainer.model.parameters():
                    p.add_(torch.randn_like(p) * 3 * p.std().clamp_min(0.05))
        return original()

    monkeypatch.setattr(trainer, "train_step", wreck_at_step_30)
    assert trainer.run() == 48
    rollbacks = [e for e in seen if isinstance(e, events.RolledBack)]
    assert len(rollbacks) == 1 and restored == [True]
    assert 31 <= rollbacks[0].step <= 34 and rollbacks[0].to_step == 24 and rollbacks[0].ratio > 3
    metrics = read_metrics(tmp_path / "wrecked" / "metrics.jsonl")
    assert metrics[-1]["rollbacks"] == 1 and "rollbacks" not in metrics[0]
    before = sum(m["loss"] for m in metrics if 16 < m["step"] <= 28) / 3
    assert math.isfinite(metrics[-1]["loss"]) and metrics[-1]["loss"] < 2 * before


def test_resume_restores_the_loss_history_and_starts_from_a_snapshot(small_config, tmp_path):
    config = small_config.replace(method="ct", max_steps=16, checkpoint_every=100)
    trainer = Trainer(config, tmp_path / "r", on_event=lambda e: isinstance(e, events.Progress)
                      and e.step == 10 and trainer.request_stop())
    assert trainer.run() == 10
    losses = list(trainer.guard.losses)
    resumed = Trainer(None, tmp_path / "r", resume=True)
    resumed.setup()
    assert list(resumed.guard.losses) == losses and len(losses) == 10
    assert [step for step, _ in resumed.guard.snapshots] == [10]
