"""cmcore/editing.py: zero-shot editing with known answers, and `cmcore edit`."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cmcore import editing
from cmcore.cli import main
from cmcore.nets import build_unet
from cmcore.precond import ConsistencyFunction
from cmcore.sampling import ImageNoise, sample

from .nets_helpers import randomised

R = 16


@pytest.fixture(scope="module")
def model():
    return randomised(ConsistencyFunction(build_unet("tiny", 3, R), "blend")).eval()


def picture(n=1, seed=0):
    return torch.rand(n, 3, R, R, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_inpainting_keeps_every_pixel_outside_the_mask_exactly(model):
    image, mask = picture(), torch.zeros(1, 1, R, R)
    mask[..., 4:10, 3:12] = 1
    out = editing.inpaint(model, image, mask, 4, ImageNoise.for_images(0, 3))
    assert out.shape == (3, 3, R, R)
    keep = (mask == 0).expand_as(out)
    assert torch.equal(out[keep], image.expand_as(out)[keep])
    assert not torch.allclose(out[~keep], image.expand_as(out)[~keep])  # the hole is filled, not copied
    again = editing.inpaint(model, image, mask, 4, ImageNoise.for_images(0, 3))
    assert torch.equal(out, again)  # same seed, same result
    assert not torch.equal(out, editing.inpaint(model, image, mask, 4, ImageNoise.for_images(1, 3)))


def test_img2img_strength_zero_is_the_input_and_one_is_a_fresh_sample(model):
    image = picture(2)
    assert torch.equal(editing.img2img(model, image, 0.0, 4, ImageNoise.for_images(5, 2)), image)
    fresh = editing.img2img(model, image, 1.0, 4, ImageNoise.for_images(5, 2))
    torch.testing.assert_close(fresh, sample(model, (2, 3, R, R), 4, seed=5), rtol=1e-5, atol=1e-5)
    mid = editing.img2img(model, image, 0.3, 4, ImageNoise.for_images(5, 2))
    strong = editing.img2img(model, image, 0.9, 4, ImageNoise.for_images(5, 2))
    assert (mid - image).abs().mean() < (strong - image).abs().mean()  # a little strength changes a little
    with pytest.raises(ValueError):
        editing.img2img(model, image, 1.5, 4, ImageNoise.for_images(5, 2))


@pytest.mark.parametrize("steps", [1, 3])
def test_interpolation_ends_are_the_two_seeds_samples(model, steps):
    row = editing.interpolate(model, (5, 3, R, R), 11, 42, 5, steps)
    torch.testing.assert_close(row[0], sample(model, (1, 3, R, R), steps, seed=11)[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(row[-1], sample(model, (1, 3, R, R), steps, seed=42)[0], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(row[2], row[0]) and not torch.allclose(row[2], row[-1])


def test_slerp_keeps_the_norm_between_orthogonal_ends():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    mid = editing.slerp(a, b, 0.5)
    torch.testing.assert_close(mid, torch.tensor([[0.5**0.5, 0.5**0.5]]))
    assert torch.equal(editing.slerp(a, b, 0.0), a) and torch.equal(editing.slerp(a, b, 1.0), b)


def test_colourisation_keeps_the_luma_of_the_grey_input(model):
    q = editing.luma_basis()
    torch.testing.assert_close(q @ q.T, torch.eye(3), rtol=0, atol=1e-6)  # orthonormal
    gray = picture(1)[:, :1]
    out = editing.colorize(model, gray, 3, ImageNoise.for_images(0, 2))
    luma = torch.einsum("c,nchw->nhw", torch.tensor(editing.LUMA), out)[:, None]
    torch.testing.assert_close(luma, gray.expand(2, -1, -1, -1), rtol=0, atol=1e-5)
    assert out.std(dim=1).mean() > 1e-3  # and it has colour


def test_super_resolution_keeps_each_patch_mean(model):
    low = picture(1)[..., :R // 4, :R // 4]
    out = editing.upscale(model, low, 4, 3, ImageNoise.for_images(0, 1))
    assert out.shape == (1, 3, R, R)
    torch.testing.assert_close(F.avg_pool2d(out, 4), low, rtol=0, atol=1e-5)
    assert editing.fit_factor(64, 16) == 4 and editing.fit_factor(64, 30) == 2 and editing.fit_factor(32, 40) == 2


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("edit") / "run"
    assert main(["train", "--data", "demo", "--out", str(run), "--resolution", "16", "--batch-size", "4",
                 "--max-steps", "2", "--max-minutes", "0", "--device", "cpu", "--quiet"]) == 0
    return run


def test_cmcore_edit_writes_pngs_with_their_settings_for_every_mode(trained_run, tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    mask = np.zeros((40, 50), np.uint8)
    mask[10:30, 10:40] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "small.png")
    cases = {"inpaint": ["--image", "in.png", "--mask", "mask.png"], "interpolate": ["--seeds", "3,7"],
             "img2img": ["--image", "in.png", "--strength", "0.4"], "colorize": ["--image", "in.png"],
             "upscale": ["--image", "small.png"]}
    for mode, extra in cases.items():
        extra = [str(tmp_path / a) if a.endswith(".png") else a for a in extra]
        out = tmp_path / mode
        assert main(["edit", str(trained_run), "--mode", mode, *extra, "--steps", "2", "--num", "3", "--seed", "1",
                     "--out", str(out)]) == 0, mode
        files = sorted(out.glob("*.png"))
        assert len(files) == 3
        with Image.open(files[0]) as im:
            assert im.size == (16, 16) and im.text["mode"] == mode and im.text["seed"] == "1" and im.text["steps"] == "2"


def test_cmcore_edit_explains_missing_inputs_in_one_line(trained_run, tmp_path, capsys):
    for argv, message in [(["--mode", "inpaint", "--image", str(tmp_path / "none.png"), "--mask", "x"], "cannot read"),
                          (["--mode", "inpaint"], "needs an input image"), (["--mode", "interpolate"], "two seeds"),
                          (["--mode", "interpolate", "--seeds", "a,b"], "--seeds")]:
        assert main(["edit", str(trained_run), *argv, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and message in err and "\n" not in err
