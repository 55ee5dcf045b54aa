"""The U-Net: every preset, 1 or 3 channels, resolutions 16 to 256."""
import pytest
import torch

from cmcore.devices import list_devices, resolve_device
from cmcore.errors import ConfigError
from cmcore.nets import build_unet, count_parameters


@pytest.mark.parametrize("model,channels,resolution", [
    ("tiny", 1, 16), ("tiny", 3, 32), ("tiny", 3, 256), ("small", 1, 24), ("small", 3, 64), ("base", 3, 32),
])
def test_shapes_and_time_dependence(model, channels, resolution):
    torch.manual_seed(0)
    net = build_unet(model, channels, resolution, dropout=0.1).eval()
    for p in net.parameters():  # zero-initialised output layers would hide the time input
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(2, channels, resolution, resolution)
    with torch.no_grad():
        a, b = net(x, torch.tensor([0.1, 0.1])), net(x, torch.tensor([0.9, 0.9]))
    assert a.shape == x.shape and not torch.allclose(a, b)


def test_presets_grow_and_tiny_works_on_patches():
    sizes = [count_parameters(build_unet(m, 3, 32)) for m in ("tiny", "small", "base")]
    assert sizes == sorted(sizes) and 1e6 < sizes[0] < 5e6
    assert build_unet("tiny", 3, 32).patch == 2
    assert build_unet("small", 3, 32).patch == 1


def test_device_list_has_the_cpu():
    devices = list_devices()
    assert devices[0].id == "cpu" and "CPU" in devices[0].label
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ConfigError, match="not available"):
        resolve_device("cuda:7" if not torch.cuda.is_available() else "cuda:999")
