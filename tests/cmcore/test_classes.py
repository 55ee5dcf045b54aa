"""Class-conditional training: labels from sub-folders, the class embedding, the three methods, sampling a class,
previews one class per row, the cd teacher's classes, and unconditional runs left as they were."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cmcore.checkpoint import load_checkpoint
from cmcore.config import TrainConfig
from cmcore.data import DataError, load_dataset
from cmcore.data.demo import DEMO_CLASSES
from cmcore.errors import ConfigError
from cmcore.generator import load_generator
from cmcore.model import build_model
from cmcore.previews import preview_grids
from cmcore.sampling import sample
from cmcore.training import Trainer

from .nets_helpers import randomised

COLOURS = {"blue": (20, 40, 230), "red": (230, 30, 20), "zgreen": (30, 200, 40)}


def _png(path: Path, rgb, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), rgb, np.uint8)).save(path)


def class_folder(root: Path, counts: dict[str, int]) -> Path:
    """root/NAME/img_K.png, flat colour per class (one of them nested a level deeper)."""
    for name, count in counts.items():
        for k in range(count):
            sub = root / name / ("deep" if k == 0 else "")
            _png(sub / f"img_{k}.png", COLOURS[name])
    return root


def test_labels_come_from_the_sub_folders_sorted_with_counts(tmp_path):
    folder = class_folder(tmp_path / "data", {"red": 3, "blue": 2})
    for attempt in ("decoded", "cached"):
        ds = load_dataset(str(folder), 16, cache_dir=tmp_path / "cache")
        assert ds.report.cache_hit == (attempt == "cached")
        assert ds.class_names == ("blue", "red")
        assert ds.report.classes == {"blue": 2, "red": 3} and ds.report.classes_used
        # files in sorted order: blue/deep/img_0, blue/img_1, red/deep/img_0, red/img_1, red/img_2
        assert ds.labels.tolist() == [0, 0, 1, 1, 1]
        assert ds.images[ds.labels == 0, 2].float().mean() > 200  # blue images are blue
    assert "2 classes (trained with classes): blue 2, red 3" in ds.report.to_text()


def test_classes_off_keeps_the_folder_unconditional_but_lists_the_classes(tmp_path):
    folder = class_folder(tmp_path / "data", {"red": 1, "blue": 1})
    ds = load_dataset(str(folder), 16, cache_dir=tmp_path / "cache", classes="off")
    assert ds.class_names == () and ds.labels is None
    assert ds.report.classes == {"blue": 1, "red": 1} and not ds.report.classes_used


def test_images_in_the_root_beside_class_folders_mean_no_classes(tmp_path):
    folder = class_folder(tmp_path / "data", {"red": 1, "blue": 1})
    _png(folder / "loose.png", (0, 0, 0))
    ds = load_dataset(str(folder), 16, cache_dir=tmp_path / "cache")
    assert ds.class_names == () and ds.report.classes == {}
    assert "1 image(s) sit directly in the folder" in ds.report.to_text()
    with pytest.raises(DataError, match="classes = on, but .* 1 image\\(s\\) sit directly"):
        load_dataset(str(folder), 16, cache_dir=tmp_path / "cache", classes="on")


def test_one_sub_folder_is_no_classes(tmp_path):
    folder = class_folder(tmp_path / "data", {"red": 2})
    assert load_dataset(str(folder), 16, cache_dir=tmp_path / "cache").class_names == ()


def test_the_demo_set_stays_unconditional_unless_classes_are_on():
    assert load_dataset("demo", 16).class_names == ()
    ds = load_dataset("demo", 16, classes="on")
    assert ds.class_names == DEMO_CLASSES and sum(ds.report.classes.values()) == len(ds)


def test_an_unconditional_model_is_built_exactly_as_before():
    config = TrainConfig(resolution=16).resolved(3)
    torch.manual_seed(0)
    plain = build_model(config, 3, 16).state_dict()
    torch.manual_seed(0)
    conditional = build_model(config, 3, 16, num_classes=3).state_dict()
    assert not any("class" in name for name in plain)
    assert set(conditional) - set(plain) == {"net.class_embed.weight"}
    # the embedding is made last and draws nothing: every other tensor is the same
    assert all(torch.equal(plain[name], conditional[name]) for name in plain)
    assert not conditional["net.class_embed.weight"].any()


def test_a_conditional_model_depends_on_the_label():
    # random weights everywhere: the zero-initialised layers would hide every input
    model = randomised(build_model(TrainConfig(resolution=16).resolved(3), 3, 16, num_classes=2)).eval()
    x, t = torch.randn(2, 3, 16, 16), torch.full((2,), 0.7)
    a, b = model(x, t, torch.tensor([0, 0])), model(x, t, torch.tensor([1, 1]))
    assert not torch.allclose(a, b)
    assert torch.equal(model(x, t, torch.tensor([0, 1]))[0], a[0])
    with pytest.raises(ValueError, match="no classes"):
        sample(build_model(TrainConfig(resolution=16).resolved(3), 3, 16), (1, 3, 16, 16), 1, 0, labels=[0])


def test_the_cd_teacher_step_is_conditioned_too():
    from cmcore.methods import teacher_step

    teacher = randomised(build_model(TrainConfig(resolution=16).resolved(3), 3, 16, num_classes=2)).eval()
    x, t, r = torch.randn(2, 3, 16, 16), torch.full((2,), 0.8), torch.full((2,), 0.4)
    a, b = (teacher_step(teacher, x, t, r, torch.tensor([k, k])) for k in (0, 1))
    assert not torch.allclose(a, b)


def test_previews_show_one_class_per_row():
    model = build_model(TrainConfig(resolution=16).resolved(3), 3, 16, num_classes=3).eval()
    grids = preview_grids(model, (6, 3, 16, 16), "multistep", 0, "cpu", num_classes=3)
    for grid, _ in grids.values():
        assert grid.shape == (3 * 18 + 2, 2 * 18 + 2, 3)  # 3 rows (classes) of 2, 2-pixel padding
    plain = preview_grids(build_model(TrainConfig(resolution=16).resolved(3), 3, 16), (6, 3, 16, 16),
                          "multistep", 0, "cpu")
    assert plain[1][0].shape == (2 * 18 + 2, 3 * 18 + 2, 3)  # unconditional: square-ish as before


def _config(folder: Path, method: str, **kw) -> TrainConfig:
    return TrainConfig(data=str(folder), method=method, resolution=16, batch_size=4, max_steps=3, max_minutes=0,
                       log_every=1, preview_every=3, checkpoint_every=0, score=False, device="cpu", warmup_steps=0,
                       **kw)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("classes")
    folder = class_folder(root / "data", {"red": 4, "blue": 3, "zgreen": 2})
    flow = root / "flow"
    Trainer(_config(folder, "flow"), flow).run()
    Trainer(_config(folder, "ct"), root / "ct").run()
    Trainer(_config(folder, "cd", teacher=str(flow)), root / "cd").run()
    return root, folder


@pytest.mark.parametrize("method", ["flow", "ct", "cd"])
def test_each_method_trains_with_classes_and_samples_a_chosen_class(method, runs):
    root, _ = runs
    ckpt = load_checkpoint(root / method)
    assert ckpt.class_names == ("blue", "red", "zgreen")
    assert ckpt.weights["ema"]["net.class_embed.weight"].shape[0] == 3
    rows = ckpt.weights["model"]["net.class_embed.weight"]
    assert rows.any() and not torch.equal(rows[0], rows[1])  # each class's row learned from its own images
    gen = load_generator(root / method)
    assert gen.class_names == ("blue", "red", "zgreen")
    sampler = "ode" if method == "flow" else "multistep"
    red = gen.sample(2, 2, seed=5, sampler=sampler, classes="red")
    assert red.shape == (2, 16, 16, 3)
    assert np.array_equal(red, gen.sample(2, 2, seed=5, sampler=sampler, classes=1))
    assert np.array_equal(red, gen.sample(2, 2, seed=5, sampler=sampler, classes=["red", "red"]))
    randomised(gen.model)  # 3 steps barely move zero-initialised layers: random weights show the class matters
    as_red, as_blue = (gen.sample_tensor(2, 2, 5, sampler, labels=torch.tensor([k, k])) for k in (1, 0))
    assert not torch.allclose(as_red, as_blue)
    with pytest.raises(ConfigError, match="class 'purple' is not one of this model's: blue, red, zgreen"):
        gen.sample(1, 1, 0, classes="purple")
    previews = sorted((root / method / "previews").glob("*.png"))
    assert previews and Image.open(previews[0]).size[1] == 3 * 18 + 2  # one row per class


def test_cmcore_sample_draws_a_class_and_says_which(runs, tmp_path, capsys):
    from cmcore.cli import main

    root, _ = runs
    assert main(["sample", str(root / "ct"), "--num", "2", "--class", "zgreen", "--out", str(tmp_path)]) == 0
    pngs = sorted(tmp_path.glob("*.png"))
    assert len(pngs) == 2 and Image.open(pngs[0]).text["class"] == "zgreen"
    assert main(["sample", str(root / "ct"), "--num", "1", "--class", "7", "--out", str(tmp_path)]) != 0
    assert "class '7' is not one of this model's" in capsys.readouterr().err


def test_a_cd_teacher_with_other_classes_is_refused_in_one_line(runs, tmp_path):
    root, folder = runs
    other = class_folder(tmp_path / "other", {"red": 2, "blue": 2})
    with pytest.raises(ConfigError) as refused:
        Trainer(_config(other, "cd", teacher=str(root / "flow")), tmp_path / "cd").run()
    message = str(refused.value)
    assert "\n" not in message
    assert "teacher: its classes are blue, red, zgreen, this run's are blue, red: a cd teacher needs" in message
    with pytest.raises(ConfigError, match="this run's are none"):  # the same folder, classes off
        Trainer(_config(folder, "cd", teacher=str(root / "flow"), classes="off"), tmp_path / "cd2").run()


def test_a_resume_keeps_its_classes(runs, tmp_path):
    import shutil

    root, folder = runs
    shutil.copytree(root / "ct", tmp_path / "ct")
    config = _config(folder, "ct", classes="off").replace(max_steps=4)
    with pytest.raises(ConfigError, match="classes: .* trained with classes = 'blue, red, zgreen'"):
        Trainer(config, tmp_path / "ct", resume=True).run()


def test_classes_on_without_classes_is_refused(tmp_path):
    folder = class_folder(tmp_path / "data", {"red": 3})
    with pytest.raises(DataError, match="classes = on, but folder .* has no classes"):
        Trainer(_config(folder, "ct", classes="on"), tmp_path / "run").run()


def test_a_class_conditional_model_exports_with_a_label_input(runs, tmp_path):
    """The exported folder keeps the class names and samples like the run; its ONNX file takes `label` and
    matches PyTorch's f(x, t, label) within 1e-4 for every class (random weights: a class must matter)."""
    from safetensors.torch import load_file, save_file

    from cmcore.portable import export_model
    from cmcore.rundir import find_checkpoint

    ort = pytest.importorskip("onnxruntime")  # a test extra: installed by `make test`
    run = tmp_path / "ct"
    import shutil

    shutil.copytree(runs[0] / "ct", run)
    path = find_checkpoint(run)
    meta = load_checkpoint(path).meta
    gen = torch.Generator().manual_seed(0)
    save_file({k: torch.randn(v.shape, generator=gen) * 0.1 if v.is_floating_point() else v
               for k, v in load_file(str(path)).items()}, str(path), metadata=meta)
    folder = export_model(run, tmp_path / "model")
    model = load_generator(folder)
    assert model.class_names == ("blue", "red", "zgreen")
    assert np.array_equal(model.sample(3, 2, seed=4, classes="red"), load_generator(run).sample(3, 2, seed=4, classes="red"))
    card = (folder / "README.md").read_text()
    assert "| classes | 3: blue, red, zgreen" in card and '"label": np.arange(4) % 3' in card

    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(6, 3, 16, 16, generator=gen)
    t = torch.tensor([1.0, 0.8, 0.6, 0.4, 0.2, 0.1])
    label = torch.tensor([0, 1, 2, 2, 1, 0])
    got = session.run(None, {"x": x.numpy(), "t": t.numpy(), "label": label.numpy()})[0]
    with torch.no_grad():
        expected = model.model(x, t, label).numpy()
        other = model.model(x, t, (label + 1) % 3).numpy()
    assert np.abs(got - expected).max() < 1e-4 < np.abs(expected - other).max()


def test_the_checkpoint_records_the_class_names(runs):
    meta = load_checkpoint(runs[0] / "ct").meta
    assert json.loads(meta["class_names"]) == ["blue", "red", "zgreen"]


def test_the_demo_set_with_classes_on_trains_and_scores(tmp_path):
    config = TrainConfig(classes="on", method="ct", resolution=16, batch_size=4, max_steps=2, max_minutes=0,
                         preview_every=0, checkpoint_every=0, device="cpu")  # scored: the held-out images
    scored = []
    Trainer(config, tmp_path / "run", on_event=lambda e: scored.append(e) if hasattr(e, "scores") else None).run()
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.class_names == DEMO_CLASSES and ckpt.config.classes == "on"
    assert scored and all(np.isfinite(v) for v in scored[-1].scores.values()) and np.isfinite(scored[-1].gap)
    assert TrainConfig.load(tmp_path / "run" / "config.toml").classes == "on"  # auto or on: written out as ran


def test_the_gap_of_a_class_conditional_run_denoises_each_image_as_its_own_class(monkeypatch):
    """The evaluator binds each image's true label: a model that denoises perfectly only when told the right
    class shows no error on training images (their own labels), and a large one when the labels are wrong."""
    from cmcore import evaluation

    class Oracle(torch.nn.Module):  # f(x_t, t, label) = the class's image (each class one flat grey)
        def forward(self, x, t, labels=None):
            return (labels.float() - 1).view(-1, 1, 1, 1).expand_as(x)

    images = torch.cat([torch.full((6, 1, 8, 8), v, dtype=torch.uint8) for v in (0, 127, 255)])  # ≈ -1, 0, 1
    labels = torch.arange(3).repeat_interleave(6)
    right = evaluation.Evaluator(images, images, (1,), "multistep", labels=(labels, labels))
    assert max(abs(g) for g in right._gap(Oracle(), "cpu")) < 1e-4
    wrong = evaluation.Evaluator(images, images, (1,), "multistep", labels=(labels, (labels + 1) % 3))
    assert min(wrong._gap(Oracle(), "cpu")) > 0.5


def test_editing_a_class_conditional_model_follows_the_chosen_class(runs, tmp_path):
    """Inpainting towards "red" and towards "blue" keeps the known pixels exactly and fills the hole
    differently (random weights: the class matters); `cmcore edit --class` names it in the PNGs."""
    from cmcore import editing
    from cmcore.cli import main

    gen = load_generator(runs[0] / "ct")
    randomised(gen.model)
    picture = tmp_path / "in.png"
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(picture)
    mask = tmp_path / "mask.png"
    holes = np.zeros((16, 16), np.uint8)
    holes[4:12, 4:12] = 255
    Image.fromarray(holes).save(mask)
    kw = dict(steps=2, seed=3, num=2, image=picture, mask=mask)
    red, blue = (editing.run(gen, "inpaint", classes=c, **kw) for c in ("red", "blue"))
    known = torch.from_numpy(holes == 0)
    assert torch.equal(red[..., known], blue[..., known])  # outside the mask: the picture, whatever the class
    assert not torch.allclose(red[..., ~known], blue[..., ~known], atol=1e-3)
    assert torch.equal(red, editing.run(gen, "inpaint", classes=1, **kw))  # "red" is class 1 (sorted names)

    out = tmp_path / "out"
    assert main(["edit", str(runs[0] / "ct"), "--mode", "inpaint", "--image", str(picture), "--mask", str(mask),
                 "--steps", "2", "--num", "1", "--class", "zgreen", "--out", str(out)]) == 0
    with Image.open(next(out.glob("*.png"))) as im:
        assert im.text["class"] == "zgreen"
