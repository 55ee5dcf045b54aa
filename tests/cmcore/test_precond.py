"""cmcore/precond.py: noising and the preconditioned consistency function, with known answers."""
import pytest
import torch

from cmcore.nets import build_unet
from cmcore.precond import ConsistencyFunction, noise

from .nets_helpers import randomised


@pytest.mark.parametrize("param", ["reflow", "blend"])
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


def test_noising_interpolates():
    x0, x1 = torch.ones(2, 1, 2, 2), -torch.ones(2, 1, 2, 2)
    assert torch.equal(noise(x0, x1, torch.zeros(2)), x0)
    assert torch.equal(noise(x0, x1, torch.ones(2)), x1)
    torch.testing.assert_close(noise(x0, x1, torch.tensor([0.25, 0.5]))[:, 0, 0, 0], torch.tensor([0.5, 0.0]))


def test_an_unknown_parametrization_is_refused():
    with pytest.raises(ValueError, match="edm"):
        ConsistencyFunction(build_unet("tiny", 1, 16), "edm")
