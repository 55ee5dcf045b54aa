"""cmcore/tensorboard_mirror.py: a run with tensorboard on writes the loss and scores TensorBoard reads back;
without the package it is one line, before any training."""
import builtins

import pytest

from cmcore import evaluation
from cmcore.errors import ConfigError
from cmcore.training import Trainer


def test_a_mirrored_run_writes_what_tensorboard_reads(small_config, tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setattr(evaluation, "SCORE_NUM", 8)
    monkeypatch.setattr(evaluation, "GAP_NUM", 8)
    Trainer(small_config.replace(tensorboard=True, score=True), tmp_path / "r").run()
    events = EventAccumulator(str(tmp_path / "r" / "tensorboard")).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/curriculum_n", "score/1_step", "score/2_steps",
            "score/denoising_gap"} <= scalars
    assert [e.step for e in events.Scalars("train/loss")] == [2, 4, 6, 8, 10, 12]
    from cmcore.rundir import read_metrics

    losses = [r["loss"] for r in read_metrics(tmp_path / "r") if "loss" in r]
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx(losses, rel=1e-6)
    assert [e.step for e in events.Scalars("score/1_step")] == [r["step"] for r in read_metrics(tmp_path / "r")
                                                               if "score" in r]


def test_without_tensorboard_installed_the_run_is_refused_with_one_line(small_config, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard") or name.split(".")[0] == "tensorboard":
            raise ImportError("TensorBoard logging requires TensorBoard")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(ConfigError, match="^tensorboard: the TensorBoard mirror needs the tensorboard package: pip "
                                          "install tensorboard"):
        Trainer(small_config.replace(tensorboard=True), tmp_path / "r").run()
    assert not (tmp_path / "r").exists()  # nothing left behind
