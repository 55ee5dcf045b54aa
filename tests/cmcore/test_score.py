"""cmcore.score with known answers: the score orders degradations, the split obeys its rules, the
near-copy search finds copies, the denoising gap sees memorisation, and `cmcore score` keeps its call."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cmcore import memorisation, score, split
from cmcore.cli import main
from cmcore.data.demo import make_demo


@pytest.fixture(scope="module")
def demo():
    images, _ = make_demo(32, 3, count=640, seed=11)
    return images


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    x = score.as_float(x)
    k = int(2 * round(2 * sigma) + 1)
    g = torch.exp(-(torch.arange(k) - k // 2).float() ** 2 / (2 * sigma ** 2))
    g = (g / g.sum()).to(x.dtype)
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (k // 2, k // 2, 0, 0), mode="reflect"), g.view(1, 1, 1, k).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, k // 2, k // 2), mode="reflect"), g.view(1, 1, k, 1).repeat(c, 1, 1, 1), groups=c)


def noised(x: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    x = score.as_float(x)
    return (x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))).clamp(-1, 1)


# --- the score -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("resolution,channels", [(16, 1), (32, 3), (64, 1), (256, 3)])
def test_a_set_scored_against_itself_is_zero_at_any_size(resolution, channels):
    images, _ = make_demo(resolution, channels, count=40 if resolution < 256 else 6, seed=3)
    scorer = score.Scorer(images)
    assert scorer.score(images) == pytest.approx(0.0, abs=1e-6)
    assert scorer.score(score.as_float(images)) == pytest.approx(0.0, abs=1e-6)  # uint8 or floats alike
    assert score.quality_features(images).shape[0] == len(images)


def test_more_blur_and_more_noise_score_worse(demo):
    scorer = score.Scorer(demo[:96])  # held-out-sized reference
    real = demo[128:384]
    s_real = scorer.score(real)
    blurs = [scorer.score(blur(real, s)) for s in (0.6, 1.2, 2.4)]
    noises = [scorer.score(noised(real, s)) for s in (0.05, 0.15, 0.4)]
    assert s_real < blurs[0] < blurs[1] < blurs[2], (s_real, blurs)
    assert s_real < noises[0] < noises[1] < noises[2], (s_real, noises)


def test_the_score_refuses_mismatched_shapes_and_single_images(demo):
    scorer = score.Scorer(demo[:40])
    with pytest.raises(ValueError, match="shape"):
        scorer.score(make_demo(16, 3, count=4)[0])
    with pytest.raises(ValueError, match="at least 2"):
        scorer.score(demo[:1])


def test_frechet_distance_of_known_gaussians():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 2, generator=gen, dtype=torch.float64)
    b = a * 2 + torch.tensor([3.0, 0.0], dtype=torch.float64)  # N((3,0), 4I) against N(0, I): 9 + 2·(1+4−2·2) = 11
    assert score.frechet_distance(a, b) == pytest.approx(11.0, rel=0.02)


# --- the held-out split -----------------------------------------------------------------------------------
@pytest.mark.parametrize("n,expected", [(0, 0), (1, 0), (7, 0), (8, 4), (40, 20), (63, 31), (64, 32), (1000, 32),
                                        (1600, 32), (4096, 82), (10000, 200), (50000, 1000), (200000, 1000)])
def test_held_out_size_rules(n, expected):
    assert split.held_out_size(n) == expected
    held, train = split.held_out_indices(n, 5), split.train_indices(n, 5)
    assert len(held) == expected and len(train) == n - expected
    assert not set(held) & set(train) and sorted(held + train) == list(range(n))
    assert held == sorted(held) and train == sorted(train)


def test_the_split_is_deterministic_per_seed_and_recorded(tmp_path):
    assert split.held_out_indices(4096, 0) == split.held_out_indices(4096, 0)
    assert split.held_out_indices(4096, 0) != split.held_out_indices(4096, 1)
    held = split.write_split(tmp_path, 4096, 3)
    assert split.read_split(tmp_path) == {"num_images": 4096, "seed": 3, "held_out": held}
    assert split.read_split(tmp_path / "none") is None
    (tmp_path / split.SPLIT_FILE).write_text('{"num_images": 4, "held_out": [9]}')
    assert split.read_split(tmp_path) is None  # an index outside the data: not a split


# --- memorisation -----------------------------------------------------------------------------------------
def test_nearest_training_finds_an_exact_copy(demo):
    train = demo[:500]
    picks = torch.tensor([3, 141, 499, 250])
    dist, idx = memorisation.nearest_training(train[picks], train, k=2)
    assert idx[:, 0].tolist() == picks.tolist()
    assert torch.all(dist[:, 0] == 0) and torch.all(dist[:, 1] > 0)


def test_near_copy_share_is_one_for_training_images_and_zero_for_noise(demo):
    train, held = demo[:500], demo[500:580]
    copies = memorisation.near_copies(train[:64], train, held)
    assert copies["share"] == 1.0
    assert 0 < copies["threshold"] < copies["median_neighbour"]  # augmented copies sit closer than distinct images
    assert copies["held_out_share"] <= 0.05  # held-out images are no copies: the false-alarm rate
    augmented = memorisation.near_copies(memorisation.light_augment(train[100:164], seed=7), train)
    assert augmented["share"] >= 0.8
    noise = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    assert memorisation.near_copies(noise, train)["share"] == 0.0


# --- overfitting: the denoising error -------------------------------------------------------------------
class Identity(nn.Module):
    def forward(self, x, t):
        return x


class Memoriser(nn.Module):
    """f(x_t, t) = the training image whose noised version is nearest: perfect on training images only."""

    def __init__(self, train: torch.Tensor):
        super().__init__()
        self.train_images = score.as_float(train)

    def forward(self, x, t):
        noisy = (1 - t) * self.train_images
        d = torch.cdist(x.flatten(1), noisy.flatten(1))  # z is shared, so its own image is by far the nearest
        return self.train_images[d.argmin(1)]


def test_denoising_error_of_the_identity_is_known(demo):
    from cmcore.sampling import ImageNoise

    x0 = score.as_float(demo[:20])
    z = ImageNoise.for_images(0, 20).draw(x0)
    errors = memorisation.denoising_error(Identity(), demo[:20], times=(0.2, 0.5), batch=8)
    for t in (0.2, 0.5):
        assert errors[t] == pytest.approx(float((t * (z - x0)).square().mean()), rel=1e-5)


def test_the_denoising_gap_sees_a_memorising_model(demo):
    train, held = demo[:64], demo[64:96]
    gap = memorisation.overfitting_gap(Memoriser(train), train, held, times=(0.2,))
    assert gap["train"][0] < 1e-8 < gap["held_out"][0] and gap["gap"][0] > 0.05
    fair = memorisation.overfitting_gap(Identity(), train, held, times=(0.2,))
    assert abs(fair["gap"][0]) < 0.2 * fair["train"][0]  # the same function on both: no gap to speak of


def test_score_model_and_best_step(demo):
    from cmcore.config import TrainConfig
    from cmcore.model import build_model

    model = build_model(TrainConfig(resolution=16).resolved(3), 3, 16).train()
    scorer = score.Scorer(make_demo(16, 3, count=32)[0])
    samples = {}
    scores = score.score_model(model, scorer, steps=(1, 2), num=8, samples=samples)
    assert list(scores) == [1, 2] and all(v > 0 for v in scores.values())
    assert samples[2].shape == (8, 3, 16, 16) and model.training  # left as it was
    assert score.score_model(model, scorer, steps=(1,), num=8) == {1: scores[1]}  # the same noise every time
    history = [{"step": 100, "score": {"1": 9.0}}, {"step": 200, "score": {"1": 4.0, "2": 8.0}},
               {"step": 300, "loss": 1.0}, {"step": 400, "score": {"1": 5.0, "2": 2.0}}]
    assert score.best_step(history) == 200 and score.best_step(history, steps=2) == 400
    assert score.best_step([{"step": 1}]) is None


# --- cmcore score ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("score") / "run"
    assert main(["train", "--data", "demo", "--method", "ct", "--out", str(run), "--resolution", "16",
                 "--batch-size", "4", "--max-steps", "2", "--device", "cpu", "--quiet"]) == 0
    return run


def test_cmcore_score_prints_a_table_and_json(tiny_run, capsys):
    """A run trained with the defaults recorded its split: it is scored on its held-out images."""
    assert main(["score", str(tiny_run), "--steps", "1,2", "--num", "16", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    assert set(result["scores"]) == {"1", "2"} and all(isinstance(v, float) for v in result["scores"].values())
    held = split.read_split(tiny_run)["held_out"]
    assert result["held_out"] is True and result["num_reference"] == len(held) == 82
    assert len(result["denoising"]["gap"]) == 3 and result["near_copies"]["held_out_share"] is not None
    assert any(line.startswith("steps") for line in out) and "near copies" in "\n".join(out)


def test_cmcore_score_of_a_run_without_a_split_uses_its_data(tiny_run, capsys, tmp_path):
    import shutil

    run = tmp_path / "no_split_run"
    shutil.copytree(tiny_run, run)
    (run / split.SPLIT_FILE).unlink()
    assert main(["score", str(run), "--steps", "1", "--num", "8", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["held_out"] is False and "recorded no held-out split" in result["reference"]
    assert result["denoising"] is None


@pytest.mark.parametrize("argv,message", [
    (["score", "{tmp}/nothing"], "does not exist"),
    (["score", "{run}", "--data", "{tmp}/one_image"], "at least 2 images"),
    (["score", "{run}", "--data", "{tmp}/no_folder"], "no_folder"),
    (["score", "{run}", "--steps", "0,2"], "--steps"),
    (["score", "{run}", "--num", "1"], "--num"),
])
def test_cmcore_score_errors_exit_2_with_one_line(tiny_run, tmp_path, capsys, argv, message):
    from PIL import Image

    (tmp_path / "one_image").mkdir()
    Image.new("RGB", (20, 20), (200, 30, 30)).save(tmp_path / "one_image" / "a.png")
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{run}", str(tiny_run)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err
