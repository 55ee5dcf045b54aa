import pytest
import torch

from cmcore.config import TrainConfig


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CMCORE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cmcore-cache"))


@pytest.fixture
def small_config():
    """A configuration that trains in a second or two on the CPU (unscored: test_evaluation.py scores)."""
    return TrainConfig(data="demo", resolution=16, batch_size=8, max_steps=12, log_every=2, preview_every=6,
                       checkpoint_every=6, preview_count=4, warmup_steps=2, device="cpu", score=False)


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)
