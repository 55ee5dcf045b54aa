"""cmcore/methods.py: the three losses and the distances, with known answers (Gaussian data has a
closed-form consistency function: tests/cmcore/gaussian.py)."""
import math

import pytest
import torch

from cmcore.methods import (ConsistencyDistillationLoss, ConsistencyTrainingLoss, FlowLoss, SameDropout, distance,
                            teacher_step)
from cmcore.nets import build_unet
from cmcore.precond import ConsistencyFunction, noise

from .gaussian import GaussianConsistency, GaussianTeacher

M, S = 0.3, 0.5


def test_distances_known_values():
    a, b = torch.zeros(1, 1, 1, 2), torch.tensor([[[[3.0, 4.0]]]])
    assert distance(a, b, "pseudo_huber", huber_c=12.0).item() == pytest.approx(1.0)  # √(25+144) − 12
    c = 0.00054 * math.sqrt(2)
    assert distance(a, b, "pseudo_huber", huber_c=c).item() == pytest.approx(math.sqrt(25 + c**2) - c)
    assert distance(a, b, "l1_fine", huber_c=1.0).item() == pytest.approx(3.5)  # one row: no 2×2 blocks, L1 alone


def test_fine_l1_charges_pixel_level_differences_twice():
    zero = torch.zeros(2, 3, 4, 4)
    smooth = torch.full((1, 3, 4, 4), 0.5).repeat(2, 1, 1, 1)  # constant within each 2×2 block
    smooth[:, :, :2, :2] = -1.0
    l1 = lambda a, b: (a - b).flatten(1).abs().mean(1)
    assert distance(zero, smooth, "l1_fine", 0.0).tolist() == pytest.approx(l1(zero, smooth).tolist())
    checker = (torch.arange(4)[:, None] + torch.arange(4)[None, :]) % 2 * 2.0 - 1.0  # ±1, mean 0 per block
    grain = checker.expand(2, 3, 4, 4)
    assert distance(zero, grain, "l1_fine", 0.0).tolist() == pytest.approx([2.0, 2.0])
    assert l1(zero, grain).tolist() == pytest.approx([1.0, 1.0])
    odd = torch.ones(1, 1, 3, 3)
    assert distance(torch.zeros_like(odd), odd, "l1_fine", 0.0).item() == pytest.approx(1.0)


def test_ct_target_at_r_zero_is_the_clean_image():
    x0, x1 = torch.randn(4, 1, 4, 4), torch.randn(4, 1, 4, 4)
    f = GaussianConsistency(0.0, 1.0)
    loss = ConsistencyTrainingLoss("pseudo_huber", 0.5)
    t, r = torch.full((4,), 0.7), torch.zeros(4)
    diff = (f(noise(x0, x1, t), t) - x0).flatten(1)
    expected = ((diff.square().sum(1) + 0.25).sqrt() - 0.5) / 0.7  # λ = 1/(t − r)
    torch.testing.assert_close(loss(f, x0, x1, t, r), expected)


def test_the_target_pass_draws_the_predictions_dropout_masks():
    """SameDropout rewinds the random streams, so the target pass (which CT runs right after the
    prediction) draws the prediction's dropout masks: the same input then gives the same output."""
    torch.manual_seed(0)
    model = ConsistencyFunction(build_unet("tiny", 3, 16, dropout=0.5), "blend").train()
    with torch.no_grad():  # a fresh net's zero output layer would hide the masks
        for p in model.parameters():
            p.normal_(0, 0.2)
    x, t = torch.randn(4, 3, 16, 16), torch.full((4,), 0.5)
    rng = SameDropout(model, x.device)
    with torch.no_grad():
        first = model(x, t)
        rng.replay()
        assert torch.equal(model(x, t), first)
        assert not torch.equal(model(x, t), first)  # ...where fresh masks differ: dropout is really active


def test_cd_target_is_one_heun_step_of_the_teacher():
    teacher = GaussianConsistency(M, S)
    x = torch.randn(3, 1, 4, 4)
    t, r = torch.full((3,), 0.6), torch.tensor([0.5, 0.5, 0.0])
    v = teacher.velocity(x, t)
    euler = x - 0.1 * v
    heun = x - 0.1 * 0.5 * (v + teacher.velocity(euler, r.clamp_min(1e-4)))
    got = teacher_step(teacher, x, t, r)
    torch.testing.assert_close(got[:2], heun[:2])
    torch.testing.assert_close(got[2], (x - 0.6 * v)[2])  # r = 0: an Euler step


def _gaussian_batch(n=4096, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return M + S * torch.randn(n, 1, 1, dim, generator=g), torch.randn(n, 1, 1, dim, generator=g)


def test_cd_loss_of_exact_function_is_zero():
    exact, teacher = GaussianConsistency(M, S), GaussianTeacher(M, S)
    x0, x1 = _gaussian_batch()
    t = torch.rand(len(x0), generator=torch.Generator().manual_seed(1)) * 0.9 + 0.1
    r = t - 0.01
    loss = ConsistencyDistillationLoss(teacher, "l1_fine", 0.0)
    exact_loss = loss(exact, x0, x1, t, r).mean().item()
    wrong = GaussianConsistency(M + 0.2, S * 1.5)
    assert exact_loss < 1e-3 and loss(wrong, x0, x1, t, r).mean().item() > 100 * exact_loss  # the loss can tell


def test_ct_gradient_vanishes_at_the_exact_function():
    """CT's minimiser is the exact consistency function: the stop-gradient CT loss has zero
    expected gradient there (as Δt → 0), and a clear gradient away from it."""
    x0, x1 = _gaussian_batch(n=20_000)
    t = torch.rand(len(x0), generator=torch.Generator().manual_seed(2)) * 0.9 + 0.1
    r = t - 1e-3
    loss_fn = ConsistencyTrainingLoss("pseudo_huber", 1e-3)

    def grad_at(m, s):
        f = GaussianConsistency(m, s, trainable=True)
        loss_fn(f, x0, x1, t, r).mean().backward()
        return torch.stack([f.m.grad, f.s.grad]).abs().max().item()

    assert grad_at(M, S) < 0.05 * grad_at(M + 0.2, S * 1.4)


def test_flow_loss_is_smallest_at_the_exact_velocity():
    exact = GaussianTeacher(M, S)
    x0, x1 = _gaussian_batch()
    t = torch.rand(len(x0), generator=torch.Generator().manual_seed(3)) * 0.98 + 0.01
    best = FlowLoss()(exact, x0, x1, t).mean()
    worse = FlowLoss()(GaussianTeacher(M + 0.3, S), x0, x1, t).mean()
    assert best < worse
