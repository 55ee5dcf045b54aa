"""cmcore/checkpoint.py: atomic, safe checkpoints; a full disk; corrupt, foreign and mismatched files."""
import json

import pytest
import torch

from cmcore.checkpoint import load_checkpoint
from cmcore.errors import CheckpointError, SaveError
from cmcore.model import load_model
from cmcore.rundir import find_checkpoint
from cmcore.training import Trainer


def run(config, path):
    return Trainer(config, path).run()


def test_checkpoint_write_is_atomic(small_config, tmp_path, monkeypatch):
    """A crash while writing the next checkpoint leaves the previous one intact and loadable."""
    import cmcore.checkpoint as ck

    trainer = Trainer(small_config.replace(max_steps=6, checkpoint_every=6), tmp_path / "a")
    trainer.run()
    before = find_checkpoint(tmp_path / "a")

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(ck, "save_file", lambda tensors, path, metadata=None: (open(path, "wb").write(b"partial"), crash()))
    trainer.step = 7
    with pytest.raises(KeyboardInterrupt):
        trainer.save()
    assert find_checkpoint(tmp_path / "a") == before
    assert load_checkpoint(tmp_path / "a").step == 6
    assert not list((tmp_path / "a" / "checkpoints").glob("*.tmp"))


def test_a_full_disk_stops_with_a_one_line_error_and_keeps_the_previous_checkpoint(small_config, tmp_path, monkeypatch):
    """Out of space while saving: a SaveError (also an OSError) naming the cause, the previous
    checkpoint still `latest`, and no half of the new one left taking space."""
    import cmcore.checkpoint as ck
    from safetensors import SafetensorError

    trainer = Trainer(small_config.replace(max_steps=6, checkpoint_every=6), tmp_path / "a")
    trainer.run()
    files = sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir())

    def full(tensors, path, metadata=None):
        open(path, "wb").write(b"partial")
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(ck, "save_file", full)
    trainer.step = 12
    with pytest.raises(SaveError, match=r"step-12 checkpoint .* \(No space left on device \(os error 28\)\); "
                                        r"the previous checkpoint is kept") as caught:
        trainer.save()
    assert isinstance(caught.value, OSError) and "\n" not in str(caught.value)
    assert sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir()) == files
    assert load_checkpoint(tmp_path / "a").step == 6

    def state_write_fails(*args, **kwargs):  # torch.save reports a full disk as a RuntimeError
        raise RuntimeError("[enforce fail at inline_container.cc] . PytorchStreamWriter failed writing file")

    monkeypatch.undo()
    monkeypatch.setattr(ck.torch, "save", state_write_fails)
    with pytest.raises(SaveError, match="failed writing file"):
        trainer.save()
    assert sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir()) == files

    trainer.step = 6  # a failed re-save of the step `latest` names must not delete that checkpoint
    with pytest.raises(SaveError):
        trainer.save()
    assert sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir()) == files
    assert load_checkpoint(tmp_path / "a").step == 6


def test_corrupt_and_foreign_checkpoints_give_one_line_errors(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(bad)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not a Consistency Studio checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing")


def test_training_state_loads_with_weights_only(small_config, tmp_path):
    run(small_config.replace(max_steps=4), tmp_path / "w")
    state = load_checkpoint(tmp_path / "w").load_state()  # torch.load(weights_only=True) inside
    assert {"optimizer", "data_gen", "noise_gen", "time_gen", "torch_rng", "elapsed"} <= set(state)


def test_a_checkpoint_of_a_removed_option_still_samples_and_a_mismatched_one_is_refused(small_config, tmp_path):
    """Old models load for sampling even when trained with an option removed since; weights that do not
    fit the model their metadata describes are one CheckpointError, not a traceback."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    run(small_config.replace(max_steps=2), tmp_path / "r")
    path = find_checkpoint(tmp_path / "r")
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    tensors = load_file(str(path))
    old = dict(meta, config=json.dumps({**json.loads(meta["config"]), "curriculum": "sqrt", "mu0": 0.9}))
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata=old)
    ckpt = load_checkpoint(tmp_path / "old.safetensors")
    assert load_model(ckpt)(torch.zeros(1, 3, 16, 16), 1.0).shape == (1, 3, 16, 16)
    small = dict(meta, config=json.dumps({**json.loads(meta["config"]), "model": "small"}))
    save_file(tensors, str(tmp_path / "small.safetensors"), metadata=small)
    with pytest.raises(CheckpointError, match="does not match the model"):
        load_model(load_checkpoint(tmp_path / "small.safetensors"))
    huge = dict(meta, resolution="100000")
    save_file(tensors, str(tmp_path / "huge.safetensors"), metadata=huge)
    with pytest.raises(CheckpointError, match="unreadable metadata"):
        load_checkpoint(tmp_path / "huge.safetensors")


def test_resuming_a_run_of_a_removed_option_is_refused_with_one_line(small_config, tmp_path):
    run(small_config.replace(max_steps=2), tmp_path / "r")
    config = (tmp_path / "r" / "config.toml").read_text()
    (tmp_path / "r" / "config.toml").write_text(config + 'curriculum = "sqrt"\n')
    from cmcore.errors import ConfigError

    with pytest.raises(ConfigError, match="curriculum = 'sqrt' is an option removed"):
        Trainer(None, tmp_path / "r", resume=True).run()
