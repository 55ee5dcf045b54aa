"""Training, mixed precision, resume and sampling on a CUDA device.

These need a GPU; where there is none they are skipped with that reason (CI has none: they run
on a lent GPU machine, see README "Testing on a GPU").
"""
import math

import pytest
import torch

from cmcore import events
from cmcore.checkpoint import load_checkpoint
from cmcore.rundir import read_metrics
from cmcore.generator import load_generator
from cmcore.training import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture
def cuda_config(small_config):
    return small_config.replace(device="cuda:0", max_steps=30, log_every=5, preview_every=15, checkpoint_every=15)


def losses(run_dir):
    return [m["loss"] for m in read_metrics(run_dir / "metrics.jsonl")]


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("method", ["flow", "ct"])
def test_training_in_each_precision_learns_and_saves(method, precision, cuda_config, tmp_path):
    seen = []
    trainer = Trainer(cuda_config.replace(method=method, precision=precision, max_steps=60), tmp_path, on_event=seen.append)
    assert trainer.run() == 60
    assert trainer.use_autocast == (precision != "fp32")
    assert trainer.scaler.is_enabled() == (precision == "fp16")
    assert next(trainer.model.parameters()).device.type == "cuda"
    assert next(trainer.model.parameters()).dtype == torch.float32  # master weights stay fp32
    values = losses(tmp_path)
    assert all(math.isfinite(v) for v in values)
    assert values[-1] < values[0]  # it learns, not only runs
    started = next(e for e in seen if isinstance(e, events.Started))
    assert started.device.startswith("cuda")
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.config.precision == precision and ckpt.step == 60
    if precision == "fp16":
        assert ckpt.load_state()["scaler"]["scale"] > 0


def test_autocast_runs_the_network_in_bf16(cuda_config, tmp_path):
    trainer = Trainer(cuda_config.replace(method="ct", precision="bf16"), tmp_path)
    trainer.setup()
    seen = []
    conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    trainer.train_step()
    assert torch.bfloat16 in seen


def test_resume_on_cuda_continues_the_run(cuda_config, tmp_path):
    config = cuda_config.replace(method="ct", precision="fp16", checkpoint_every=100)
    Trainer(config, tmp_path / "whole").run()
    trainer = Trainer(config, tmp_path / "split", on_event=lambda e: isinstance(e, events.Progress)
                      and e.step == 15 and trainer.request_stop())
    assert trainer.run() == 15
    assert Trainer(None, tmp_path / "split", resume=True).run() == 30
    split, whole = losses(tmp_path / "split"), losses(tmp_path / "whole")
    assert len(split) == len(whole) == 6
    # GPU kernels are not bit-reproducible, so the curves agree closely rather than exactly.
    assert split == pytest.approx(whole, rel=0.05)
    assert load_checkpoint(tmp_path / "split").load_state()["scaler"]["scale"] > 0


def test_cd_on_cuda_from_a_cuda_teacher(cuda_config, tmp_path):
    Trainer(cuda_config.replace(method="flow", precision="bf16"), tmp_path / "teacher").run()
    step = Trainer(cuda_config.replace(method="cd", precision="bf16", teacher=str(tmp_path / "teacher")),
                   tmp_path / "cd").run()
    assert step == 30
    assert all(math.isfinite(v) for v in losses(tmp_path / "cd"))


def test_sampling_on_cuda_is_seeded_and_matches_the_cpu(cuda_config, tmp_path):
    Trainer(cuda_config.replace(method="ct"), tmp_path).run()
    gpu = load_generator(tmp_path, device="cuda:0")
    cpu = load_generator(tmp_path, device="cpu")
    a, b = gpu.sample_tensor(6, 3, seed=7), gpu.sample_tensor(6, 3, seed=7)
    assert torch.equal(a, b)
    assert a.device.type == "cuda"
    # The noise comes from one CPU generator, so the same seed gives the same images on either device.
    assert torch.allclose(a.cpu(), cpu.sample_tensor(6, 3, seed=7), atol=1e-3)
    assert not torch.equal(a, gpu.sample_tensor(6, 3, seed=8))
