"""cmcore/schedules.py: the curriculum, time pairs, loss weight, EMA warm-up and learning-rate schedule."""

import pytest
import torch

from cmcore import schedules
from cmcore.config import TrainConfig


def test_ect_curriculum_warms_up_then_doubles():
    f = lambda k: schedules.ect_curriculum(k, 1000, 2, 16, 0.2)
    assert f(0) == f(199) == 1
    assert f(200) == 2 and f(399) == 2 and f(400) == 4 and f(600) == 8 and f(999) == 16


def test_log_normal_times_follow_the_formula_and_stay_in_range():
    gen = torch.Generator().manual_seed(0)
    t = schedules.sample_t(4096, -1.1, 2.0, 0.002, gen)
    expected = torch.sigmoid(-1.1 + 2.0 * torch.randn(4096, generator=torch.Generator().manual_seed(0))).clamp(0.002, 1)
    assert torch.equal(t, expected)
    assert t.min() >= 0.002 and t.max() <= 1.0
    logit = torch.logit(t[(t > 0.002) & (t < 1)].double())
    assert logit.median().item() == pytest.approx(-1.1, abs=0.15)


def test_time_pairs_follow_the_curriculum_with_relative_gaps():
    c = TrainConfig(s0=2, s1=32).resolved()  # ct: a quarter of the run at n = 1
    pairs = schedules.TimePairs(c)
    assert pairs.n(0, 1000) == pairs.n(249, 1000) == 1 and pairs.n(250, 1000) == 2 and pairs.n(999, 1000) == 32
    assert schedules.TimePairs(TrainConfig(method="cd", teacher="x", s0=2, s1=32).resolved()).n(0, 1000) == 2
    n = pairs.n(500, 1000)
    t, r = pairs.sample(n, 256, torch.Generator().manual_seed(0))
    assert (r < t).all() and (r >= 0).all() and (t <= 1).all()
    torch.testing.assert_close(r, t * (1 - 1 / n))
    t1, r1 = pairs.sample(1, 8, torch.Generator().manual_seed(0))
    assert torch.equal(r1, torch.zeros(8))  # n = 1: the target is x0 itself


def test_partner_time_known_values():
    t = torch.tensor([1.0, 0.5, 0.1])
    torch.testing.assert_close(schedules.partner_time(t, 4), torch.tensor([0.75, 0.375, 0.075]))


def test_ema_warmup_and_lr_schedule():
    assert schedules.ema_warmup(0.999, 0) == pytest.approx(0.1)
    assert schedules.ema_warmup(0.999, 10_000) == 0.999
    assert schedules.lr_factor(0, 10, 0.0, 0.1) == pytest.approx(0.1)
    assert schedules.lr_factor(9, 10, 0.0, 0.1) == pytest.approx(1.0)
    assert schedules.lr_factor(500, 10, 0.5, 0.1) == pytest.approx(0.55)
    assert schedules.lr_factor(1000, 10, 1.0, 0.1) == pytest.approx(0.1)


def test_loss_weight():
    t, r = torch.tensor([0.5, 0.2]), torch.tensor([0.25, 0.1])
    torch.testing.assert_close(schedules.loss_weight(t, r), torch.tensor([4.0, 10.0]))
