"""cmcore/portable.py: `cmcore export` writes a folder that loads without the run, and an ONNX file of
f(x, t) whose samples match PyTorch's."""
import numpy as np
import pytest
import torch

from cmcore.cli import main
from cmcore.generator import load_generator
from cmcore.sampling import ImageNoise, default_times

ort = pytest.importorskip("onnxruntime")  # a test extra: installed by `make test`


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A 3-step run whose weights are then made random (a freshly trained model's zero-initialised output
    layer would hide a mismatch), exported with `cmcore export`."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from cmcore.rundir import find_checkpoint

    root = tmp_path_factory.mktemp("export")
    assert main(["train", "--data", "demo", "--out", str(root / "run"), "--resolution", "16", "--batch-size", "4",
                 "--max-steps", "3", "--max-minutes", "0", "--device", "cpu", "--quiet"]) == 0
    path = find_checkpoint(root / "run")
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    gen = torch.Generator().manual_seed(0)
    tensors = {k: (torch.randn(v.shape, generator=gen) * 0.1 if v.is_floating_point() else v)
               for k, v in load_file(str(path)).items()}
    save_file(tensors, str(path), metadata=meta)
    assert main(["export", str(root / "run"), "--out", str(root / "model")]) == 0
    return root


def test_the_folder_holds_weights_config_onnx_samples_and_a_model_card(exported):
    folder = exported / "model"
    assert {p.name for p in folder.iterdir()} >= {"model.safetensors", "config.toml", "model.onnx", "samples.png",
                                                  "README.md"}
    card = (folder / "README.md").read_text()
    assert "consistency training" in card and "3 steps of batch 4" in card and "samples.png" in card
    assert "onnxruntime" in card and "load_generator" in card


def test_the_exported_folder_samples_like_the_run(exported, tmp_path):
    a = load_generator(exported / "run").sample(4, 2, seed=3)
    b = load_generator(exported / "model").sample(4, 2, seed=3)
    assert np.array_equal(a, b)
    assert main(["sample", str(exported / "model"), "--steps", "2", "--num", "2", "--out", str(tmp_path)]) == 0


def onnx_multistep(session, x1: np.ndarray, steps: int, noise: ImageNoise) -> np.ndarray:
    times = default_times(steps)
    x0 = session.run(None, {"x": x1, "t": np.full(len(x1), times[0], np.float32)})[0]
    for tau in times[1:]:
        z = noise.draw(torch.from_numpy(x0)).numpy()
        x0 = session.run(None, {"x": ((1 - tau) * x0 + tau * z).astype(np.float32),
                                "t": np.full(len(x1), tau, np.float32)})[0]
    return x0


@pytest.mark.parametrize("steps", [1, 4])
def test_onnx_samples_match_pytorch(exported, steps):
    """Same noise streams through both, batch 5 (the export used 2: the batch is dynamic): within 1e-4
    (the two runtimes' float32 kernels round differently)."""
    session = ort.InferenceSession(str(exported / "model" / "model.onnx"), providers=["CPUExecutionProvider"])
    noise = ImageNoise.for_images(7, 5)
    got = onnx_multistep(session, noise.draw(torch.empty(5, 3, 16, 16)).numpy(), steps, noise)
    expected = load_generator(exported / "model").sample_tensor(5, steps, seed=7).numpy()
    assert np.abs(expected).max() > 0.1  # a real picture, not zeros
    assert np.abs(got - expected).max() < 1e-4
