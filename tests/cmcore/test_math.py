"""The mathematics, pinned with known answers."""
import math

import pytest
import torch

from cmcore import schedules
from cmcore.config import TrainConfig
from cmcore.methods import ConsistencyDistillationLoss, ConsistencyTrainingLoss, FlowLoss, distance, teacher_step
from cmcore.nets import build_unet
from cmcore.precond import ConsistencyFunction, noise
from cmcore.sampling import default_times, multistep, ode_euler, ode_heun, onestep, sample

from .gaussian import GaussianConsistency, GaussianTeacher

M, S = 0.3, 0.5


def randomised(model: torch.nn.Module) -> torch.nn.Module:
    """Give every parameter random values, so zero-initialised layers cannot hide a bug."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return model


@pytest.mark.parametrize("param", ["reflow", "blend", "edm"])
def test_boundary_condition_holds_exactly(param):
    f = randomised(ConsistencyFunction(build_unet("tiny", 3, 16), param))
    x = torch.randn(4, 3, 16, 16)
    assert torch.equal(f(x, torch.zeros(4)), x)
    assert not torch.allclose(f(x, torch.full((4,), 0.5)), x)


def test_reflow_parametrisation_is_x_minus_t_v():
    f = randomised(ConsistencyFunction(build_unet("tiny", 1, 16), "reflow"))
    x, t = torch.randn(3, 1, 16, 16), torch.tensor([0.2, 0.5, 1.0])
    v = f.velocity(x, t)
    torch.testing.assert_close(f(x, t), x - t[:, None, None, None] * v)


def test_blend_is_the_seeds_form_with_the_network_predicting_x_minus_v():
    f = randomised(ConsistencyFunction(build_unet("tiny", 1, 16), "blend"))
    x, t = torch.randn(3, 1, 16, 16), torch.tensor([0.2, 0.5, 1.0])
    v = f.velocity(x, t)
    b = t[:, None, None, None]
    torch.testing.assert_close(f(x, t), x - b * v)
    torch.testing.assert_close(v, x - f.net(x, t))
    torch.testing.assert_close(f(x, t)[2], f.net(x, t)[2])  # at t = 1 the output is the network's alone


def test_edm_scalings_keep_unit_variance_input():
    f = ConsistencyFunction(build_unet("tiny", 1, 16), "edm")
    t = torch.tensor([0.0, 0.3, 1.0])
    c_skip, c_out, c_in, _ = f.scalings(t)
    var = (1 - t) ** 2 * 0.25 + t**2
    torch.testing.assert_close(c_in**2 * var, torch.ones(3))
    torch.testing.assert_close(c_skip[[0, 2]], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(c_out[[0, 2]], torch.tensor([0.0, 0.5]))


def test_noising_interpolates():
    x0, x1 = torch.ones(2, 1, 2, 2), -torch.ones(2, 1, 2, 2)
    assert torch.equal(noise(x0, x1, torch.zeros(2)), x0)
    assert torch.equal(noise(x0, x1, torch.ones(2)), x1)
    torch.testing.assert_close(noise(x0, x1, torch.tensor([0.25, 0.5]))[:, 0, 0, 0], torch.tensor([0.5, 0.0]))


# --- schedules ---------------------------------------------------------------------------------
def test_karras_times_known_values():
    t = schedules.karras_times(3, t_min=0.002, rho=7.0)
    mid = ((0.002 ** (1 / 7) + 1) / 2) ** 7
    torch.testing.assert_close(t, torch.tensor([0.0, 0.002, mid, 1.0], dtype=torch.float64))
    assert torch.equal(schedules.karras_times(1), torch.tensor([0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(schedules.uniform_times(4), torch.tensor([0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64))


def test_sqrt_curriculum_matches_formula():
    s0, s1, K = 2, 150, 1000
    for k in (0, 1, 10, 250, 999, 1000):
        N = math.ceil(math.sqrt(k / K * ((s1 + 1) ** 2 - s0**2) + s0**2) - 1) + 1
        assert schedules.sqrt_curriculum(k, K, s0, s1) == N - 1
        assert schedules.sqrt_target_ema(k, K, s0, s1, 0.9) == pytest.approx(math.exp(s0 * math.log(0.9) / N))
    assert schedules.sqrt_curriculum(0, K, s0, s1) == 1  # N(0) = s0 = 2 points
    assert schedules.sqrt_curriculum(K, K, s0, s1) == s1  # N(K) = s1 + 1
    assert schedules.sqrt_target_ema(0, K, s0, s1, 0.9) == pytest.approx(0.9)


def test_doubling_curriculum_matches_improved_ct():
    # iCT: K = 400k, s0 = 10, s1 = 1280 -> K' = 50k, n doubles every 50k steps.
    f = lambda k: schedules.doubling_curriculum(k, 400_000, 10, 1280)
    assert [f(0), f(49_999), f(50_000), f(100_000), f(349_999), f(350_000), f(399_999)] == [10, 10, 20, 40, 640, 1280, 1280]


def test_ect_curriculum_warms_up_then_doubles():
    f = lambda k: schedules.ect_curriculum(k, 1000, 2, 16, 0.2)
    assert f(0) == f(199) == 1
    assert f(200) == 2 and f(399) == 2 and f(400) == 4 and f(600) == 8 and f(999) == 16


def test_ect_smooth_curriculum_is_continuous_and_geometric():
    f = lambda k: schedules.ect_smooth_curriculum(k, 1000, 2, 16, 0.2)
    assert f(0) == f(199) == 1.0
    # after the warm-up n = 16^p, p = (k - 200) / 800: it joins n = 1 and ends at s1
    assert f(200) == pytest.approx(1.0) and f(600) == pytest.approx(4.0) and f(1000) == pytest.approx(16.0)
    assert f(400) == pytest.approx(2.0)
    # no warm-up (a distilled student): from s0 to s1
    g = lambda k: schedules.ect_smooth_curriculum(k, 1000, 2, 16, 0.0)
    assert g(0) == pytest.approx(2.0) and g(500) == pytest.approx(2 * 8**0.5) and g(1000) == pytest.approx(16.0)
    steps = [f(k) for k in range(0, 1001, 7)]
    assert all(b >= a for a, b in zip(steps, steps[1:]))
    assert max(b / a for a, b in zip(steps, steps[1:])) < 1.03  # no jumps


def test_lognormal_k_probabilities():
    t = schedules.karras_times(10)
    p = schedules.lognormal_k_probs(t, -1.1, 2.0)
    assert p.shape == (10,) and p.sum().item() == pytest.approx(1.0)
    # k = 1 covers log σ from -inf to log σ_1: its mass is Φ((log σ_1 + 1.1)/2).
    s1 = math.log(t[1] / (1 - t[1]))
    assert p[0].item() == pytest.approx(0.5 * (1 + math.erf((s1 + 1.1) / (2 * math.sqrt(2)))))


@pytest.mark.parametrize("curriculum", ["ect", "ect_smooth", "doubling", "sqrt", "constant"])
def test_time_pairs_are_ordered_and_on_grid(curriculum):
    c = TrainConfig(curriculum=curriculum, s0=2, s1=32)
    pairs = schedules.TimePairs(c)
    n = pairs.n(500, 1000)
    t, r = pairs.sample(n, 256, torch.Generator().manual_seed(0))
    assert (r < t).all() and (r >= 0).all() and (t <= 1).all()
    if curriculum.startswith("ect"):
        torch.testing.assert_close(r, t * (1 - 1 / n))
    else:
        grid = pairs.times(n).float()
        assert torch.isin(t, grid).all() and torch.isin(r, grid).all()


def test_continuous_pair_gaps():
    t = torch.tensor([1.0, 0.5, 0.1])
    torch.testing.assert_close(schedules.continuous_r(t, 4, "relative"), torch.tensor([0.75, 0.375, 0.075]))
    torch.testing.assert_close(schedules.continuous_r(t, 4, "absolute"), torch.tensor([0.75, 0.25, 0.0]))
    # Absolute gaps: the chain from t = 1 down to 0 has exactly n links; relative ones need hundreds.
    links, x = 0, torch.tensor([1.0])
    while x.item() > 0:
        x, links = schedules.continuous_r(x, 64, "absolute"), links + 1
    assert links == 64
    pairs = schedules.TimePairs(TrainConfig(curriculum="ect", pair_gap="absolute"))
    t, r = pairs.sample(8, 512, torch.Generator().manual_seed(0))
    torch.testing.assert_close(r, (t - 1 / 8).clamp_min(0))
    assert (r == 0).any() and (r > 0).any()


def test_ema_warmup_and_lr_schedule():
    assert schedules.ema_warmup(0.999, 0) == pytest.approx(0.1)
    assert schedules.ema_warmup(0.999, 10_000) == 0.999
    assert schedules.lr_factor(0, 10, 0.0, 0.1) == pytest.approx(0.1)
    assert schedules.lr_factor(9, 10, 0.0, 0.1) == pytest.approx(1.0)
    assert schedules.lr_factor(500, 10, 0.5, 0.1) == pytest.approx(0.55)
    assert schedules.lr_factor(1000, 10, 1.0, 0.1) == pytest.approx(0.1)


def test_loss_weight():
    t, r = torch.tensor([0.5, 0.2]), torch.tensor([0.25, 0.1])
    torch.testing.assert_close(schedules.loss_weight(t, r, "inverse_dt"), torch.tensor([4.0, 10.0]))
    torch.testing.assert_close(schedules.loss_weight(t, r, "uniform"), torch.ones(2))


# --- distances and targets ----------------------------------------------------------------------
def test_distances_known_values():
    a, b = torch.zeros(1, 1, 1, 2), torch.tensor([[[[3.0, 4.0]]]])
    assert distance(a, b, "l2").item() == pytest.approx(12.5)
    assert distance(a, b, "l1").item() == pytest.approx(3.5)
    assert distance(a, b, "pseudo_huber", huber_c=12.0).item() == pytest.approx(1.0)  # √(25+144) − 12
    assert distance(a, b, "pseudo_huber").item() == pytest.approx(math.sqrt(25 + 0.00054**2 * 2) - 0.00054 * math.sqrt(2))


def test_fine_l1_charges_pixel_level_differences_twice():
    zero = torch.zeros(2, 3, 4, 4)
    smooth = torch.full((1, 3, 4, 4), 0.5).repeat(2, 1, 1, 1)  # constant within each 2×2 block
    smooth[:, :, :2, :2] = -1.0
    assert distance(zero, smooth, "l1_fine").tolist() == pytest.approx(distance(zero, smooth, "l1").tolist())
    checker = (torch.arange(4)[:, None] + torch.arange(4)[None, :]) % 2 * 2.0 - 1.0  # ±1, mean 0 per block
    grain = checker.expand(2, 3, 4, 4)
    assert distance(zero, grain, "l1_fine").tolist() == pytest.approx([2.0, 2.0])
    assert distance(zero, grain, "l1").tolist() == pytest.approx([1.0, 1.0])
    assert distance(zero, grain, "l1_fine", fine_weight=3.0).tolist() == pytest.approx([4.0, 4.0])
    odd = torch.ones(1, 1, 3, 3)
    assert distance(torch.zeros_like(odd), odd, "l1_fine").item() == pytest.approx(1.0)


def test_ct_target_at_r_zero_is_the_clean_image():
    x0, x1 = torch.randn(4, 1, 4, 4), torch.randn(4, 1, 4, 4)
    f = GaussianConsistency(0.0, 1.0)
    loss = ConsistencyTrainingLoss("l2", "uniform")
    t, r = torch.full((4,), 0.7), torch.zeros(4)
    expected = (f(noise(x0, x1, t), t) - x0).flatten(1).square().mean(1)
    torch.testing.assert_close(loss(f, f, x0, x1, t, r), expected)


def test_the_target_pass_draws_the_predictions_dropout_masks():
    # t = r: the target's input is the prediction's, so with the same dropout masks they agree exactly.
    torch.manual_seed(0)
    model = ConsistencyFunction(build_unet("tiny", 3, 16, dropout=0.5), "blend").train()
    with torch.no_grad():  # a fresh net's zero output layer would hide the masks
        for p in model.parameters():
            p.normal_(0, 0.2)
    x0, x1 = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
    t = torch.full((4,), 0.5)
    loss = ConsistencyTrainingLoss("l2", "uniform")(model, model, x0, x1, t, t)
    assert torch.equal(loss, torch.zeros(4))
    # ...where independent masks would not (the network's dropout is really active)
    with torch.no_grad():
        assert not torch.equal(model(noise(x0, x1, t), t), model(noise(x0, x1, t), t))


def test_cd_euler_target_is_one_teacher_step():
    teacher = GaussianConsistency(M, S)
    x = torch.randn(3, 1, 4, 4)
    t, r = torch.full((3,), 0.6), torch.full((3,), 0.5)
    torch.testing.assert_close(teacher_step(teacher, x, t, r, "euler"), x - 0.1 * teacher.velocity(x, t))


def _gaussian_batch(n=4096, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return M + S * torch.randn(n, 1, 1, dim, generator=g), torch.randn(n, 1, 1, dim, generator=g)


@pytest.mark.parametrize("solver,tol", [("euler", 1e-4), ("heun", 1e-7)])
def test_cd_loss_of_exact_function_is_zero(solver, tol):
    exact, teacher = GaussianConsistency(M, S), GaussianTeacher(M, S)
    x0, x1 = _gaussian_batch()
    t = torch.rand(len(x0), generator=torch.Generator().manual_seed(1)) * 0.9 + 0.1
    r = t - 0.01
    loss = ConsistencyDistillationLoss(teacher, solver, distance="l2", weighting="uniform")
    assert loss(exact, exact, x0, x1, t, r).mean().item() < tol
    wrong = GaussianConsistency(M + 0.2, S * 1.5)
    assert loss(wrong, wrong, x0, x1, t, r).mean().item() > 1e-5  # the loss can tell


def test_cd_anchor_pairs_take_the_teachers_whole_ode_from_noise():
    teacher = GaussianTeacher(M, S)
    x0, x1 = _gaussian_batch(n=6)
    t, r = torch.full((6,), 0.6), torch.full((6,), 0.5)
    loss = ConsistencyDistillationLoss(teacher, "heun", anchor=2, anchor_steps=8, distance="l2", weighting="uniform")
    target_in = loss.target_input(x0, x1, torch.tensor([1.0, 1.0, 0.6, 0.6, 0.6, 0.6]), torch.tensor([0.0, 0.0, .5, .5, .5, .5]))
    torch.testing.assert_close(target_in[:2], ode_heun(teacher, x1[:2], default_times(8)))
    torch.testing.assert_close(target_in[2:], teacher_step(teacher, noise(x0[2:], x1[2:], t[2:]), t[2:], r[2:], "heun"))
    # the anchor rows compare f(x1, 1) with that solution (f(·, 0) is the identity), weighted by n
    wrong = GaussianConsistency(M + 0.2, S * 1.5)
    got = loss(wrong, wrong, x0, x1, t, r, n=4)
    expected = 4 * (wrong(x1[:2], 1.0) - target_in[:2]).flatten(1).square().mean(1)
    torch.testing.assert_close(got[:2], expected)
    torch.testing.assert_close(got[2:], ConsistencyDistillationLoss(teacher, "heun", distance="l2", weighting="uniform")(
        wrong, wrong, x0[2:], x1[2:], t[2:], r[2:]))
    # and the exact consistency function meets the teacher's exact trajectory there, as the solve refines
    exact = GaussianConsistency(M, S)
    errors = [ConsistencyDistillationLoss(teacher, "heun", anchor=2, anchor_steps=k, distance="l2", weighting="uniform")(
        exact, exact, x0, x1, t, r)[:2].max().item() for k in (8, 64)]
    assert errors[1] < 1e-4 and errors[1] < errors[0] / 4


def test_ct_gradient_vanishes_at_the_exact_function():
    """CT's minimiser is the exact consistency function: the stop-gradient CT loss has zero
    expected gradient there (as Δt → 0), and a clear gradient away from it."""
    x0, x1 = _gaussian_batch(n=20_000)
    t = torch.rand(len(x0), generator=torch.Generator().manual_seed(2)) * 0.9 + 0.1
    r = t - 1e-3
    loss_fn = ConsistencyTrainingLoss("l2", "inverse_dt")

    def grad_at(m, s):
        f = GaussianConsistency(m, s, trainable=True)
        loss_fn(f, f, x0, x1, t, r).mean().backward()
        return torch.stack([f.m.grad, f.s.grad]).abs().max().item()

    assert grad_at(M, S) < 0.05 * grad_at(M + 0.2, S * 1.4)


def test_flow_loss_is_smallest_at_the_exact_velocity():
    exact = GaussianTeacher(M, S)
    x0, x1 = _gaussian_batch()
    t = torch.rand(len(x0), generator=torch.Generator().manual_seed(3)) * 0.98 + 0.01
    best = FlowLoss()(exact, x0, x1, t).mean()
    worse = FlowLoss()(GaussianTeacher(M + 0.3, S), x0, x1, t).mean()
    assert best < worse


# --- samplers -----------------------------------------------------------------------------------
def test_default_times():
    assert default_times(1) == [1.0]
    assert default_times(4) == [1.0, 0.75, 0.5, 0.25]
    with pytest.raises(ValueError):
        default_times(0)


def test_onestep_is_the_exact_map_of_the_noise():
    exact = GaussianConsistency(M, S)
    x1 = torch.randn(16, 1, 2, 2)
    torch.testing.assert_close(onestep(exact, x1), M + S * x1)


@pytest.mark.parametrize("solver,steps,tol", [(ode_euler, 400, 2e-2), (ode_heun, 100, 1e-3)])
def test_ode_on_the_exact_velocity_returns_the_exact_map(solver, steps, tol):
    exact = GaussianTeacher(M, S)
    x1 = torch.randn(64, 1, 2, 2)
    x0 = solver(exact, x1, default_times(steps))
    assert (x0 - (M + S * x1)).abs().max().item() < tol


def test_seed_ode_on_f_is_ddim_with_x0_prediction():
    """dx/dt = (x − f)/t: an Euler step from t to t' re-noises f along x's own noise estimate."""
    f = GaussianConsistency(M, S)
    x, t, t2 = torch.randn(8, 1, 2, 2), 0.8, 0.3
    eps = (x - (1 - t) * f(x, t)) / t
    step = ode_euler(f, x, [t, t2])  # t -> t2, then t2 -> 0 ends at f(x_t2, t2)
    x_t2 = (1 - t2) * f(x, t) + t2 * eps
    torch.testing.assert_close(step, f(x_t2, t2))


def test_multistep_returns_the_data_mean_and_variance():
    exact = GaussianConsistency(M, S)
    x1 = torch.randn(50_000, 1, 1, 2, generator=torch.Generator().manual_seed(4))
    seen = []
    x0 = multistep(exact, x1, default_times(4), torch.Generator().manual_seed(5), lambda i, x: seen.append(i))
    assert seen == [0, 1, 2, 3]
    assert x0.mean().item() == pytest.approx(M, abs=0.01)
    assert x0.var().item() == pytest.approx(S**2, rel=0.02)


class RecordingModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.times = []

    def forward(self, x, t):
        self.times.append(float(t))
        return x * 0.5


def test_multistep_evaluates_at_the_given_times_and_renoises():
    model = RecordingModel()
    multistep(model, torch.zeros(2, 1, 2, 2), [1.0, 0.6, 0.2], torch.Generator().manual_seed(0))
    assert model.times == [1.0, 0.6, 0.2]


def test_same_seed_same_images():
    f = randomised(ConsistencyFunction(build_unet("tiny", 1, 16)))
    a = sample(f, (3, 1, 16, 16), 3, seed=7)
    b = sample(f, (3, 1, 16, 16), 3, seed=7)
    c = sample(f, (3, 1, 16, 16), 3, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)
