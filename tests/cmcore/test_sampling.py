"""cmcore/sampling.py: sampler times, the multistep reinjection sampler and the ODE, with known answers."""
import pytest
import torch

from cmcore.nets import build_unet
from cmcore.precond import ConsistencyFunction
from cmcore.sampling import ImageNoise, default_times, multistep, ode_euler, ode_heun, onestep, sample, strip

from .gaussian import GaussianConsistency, GaussianTeacher
from .nets_helpers import randomised

M, S = 0.3, 0.5


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
    x0 = multistep(exact, x1, default_times(4), ImageNoise.for_images(5, len(x1)), lambda i, x: seen.append(i))
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
    multistep(model, torch.zeros(2, 1, 2, 2), [1.0, 0.6, 0.2], ImageNoise([0, 1]))
    assert model.times == [1.0, 0.6, 0.2]


def test_same_seed_same_images():
    f = randomised(ConsistencyFunction(build_unet("tiny", 1, 16)))
    a = sample(f, (3, 1, 16, 16), 3, seed=7)
    b = sample(f, (3, 1, 16, 16), 3, seed=7)
    c = sample(f, (3, 1, 16, 16), 3, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_every_image_has_its_own_seed():
    """Image i of seed s is image 0 of seed s + i: the same alone, in any batch, at any step count."""
    f = randomised(ConsistencyFunction(build_unet("tiny", 1, 16))).eval()
    for steps in (1, 4):
        batch = sample(f, (5, 1, 16, 16), steps, seed=7)
        alone = sample(f, (1, 1, 16, 16), steps, seed=10)
        torch.testing.assert_close(batch[3:4], alone, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(sample(f, (2, 1, 16, 16), steps, seed=7, first=3), batch[3:5], rtol=1e-5, atol=1e-5)


def test_the_strip_is_one_batched_run_that_equals_each_step_count_alone():
    f = randomised(ConsistencyFunction(build_unet("tiny", 1, 16))).eval()
    calls = []
    f.register_forward_hook(lambda module, args, out: calls.append(len(out)))
    rows = strip(f, (1, 1, 16, 16), [1, 2, 4, 8], seed=3, index=2)
    assert calls == [4, 3, 2, 2, 1, 1, 1, 1]  # 8 passes, not 1 + 2 + 4 + 8 = 15
    for row, steps in zip(rows, [1, 2, 4, 8]):
        torch.testing.assert_close(row, sample(f, (3, 1, 16, 16), steps, seed=3)[2], rtol=1e-5, atol=1e-5)
