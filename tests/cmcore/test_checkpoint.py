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


# --- hostile and mismatched files (issue 22) ----------------------------------------------------------
def _rewrite(src, dst, tensors=None, **meta_changes):
    """A copy of checkpoint `src` at `dst` with other tensors and/or metadata (None deletes a key)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(src), framework="pt") as fh:
        meta = dict(fh.metadata())
    for key, value in meta_changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    save_file(load_file(str(src)) if tensors is None else tensors, str(dst), metadata=meta)
    return dst


def _config_with(meta_config: str, **changes) -> str:
    return json.dumps({**json.loads(meta_config), **changes})


@pytest.fixture
def tiny_run(small_config, tmp_path):
    run(small_config.replace(max_steps=2), tmp_path / "r")
    return tmp_path / "r"


def test_tensors_are_checked_against_the_model_before_any_is_read(tiny_run, tmp_path, monkeypatch):
    """Another model size, a wrong shape, a missing or unexpected tensor, another dtype, a foreign group:
    each one line naming what differs, found from the file's header (no tensor read)."""
    import cmcore.checkpoint as ck
    from safetensors import safe_open
    from safetensors.torch import load_file

    src = find_checkpoint(tiny_run)
    tensors = load_file(str(src))
    with safe_open(str(src), framework="pt") as fh:
        meta_config = fh.metadata()["config"]
    name = "ema.net.stem.weight"
    cases = {
        "small": (None, {"config": _config_with(meta_config, model="small")}, "does not match the model"),
        "shape": ({**tensors, name: tensors[name][:, :1].contiguous()}, {}, rf"{name} is F32 \[.*the model has"),
        "missing": ({k: v for k, v in tensors.items() if k != name}, {}, rf"missing {name}"),
        "extra": ({**tensors, "model.net.extra": torch.zeros(2)}, {}, "unexpected model.net.extra"),
        "dtype": ({**tensors, name: tensors[name].half()}, {}, rf"{name} is F16 .*the model has torch.float32"),
        "group": ({**tensors, "evil.payload": torch.zeros(1)}, {}, "'evil.payload' that no model of this app has"),
        "none": ({k.replace("model.", "other.", 1): v for k, v in tensors.items() if not k.startswith("ema.")}, {},
                 "no model of this app has"),
    }
    monkeypatch.setattr(ck, "load_file", lambda *a, **k: pytest.fail("tensors read before the header was checked"))
    for case, (new_tensors, meta, message) in cases.items():
        path = _rewrite(src, tmp_path / f"{case}.safetensors", new_tensors, **meta)
        with pytest.raises(CheckpointError, match=message) as caught:
            load_checkpoint(path)
        assert "\n" not in str(caught.value), case


@pytest.mark.parametrize("changes,message", [
    ({"resolution": "100000"}, "100000 px is not a model"),
    ({"resolution": None, "config_resolution": 1 << 40}, "px is not a model"),
    ({"resolution": "20"}, "20 px is not a model"),
    ({"channels": "4"}, "4 channels"),
    ({"config_model": "huge"}, "model must be one of"),
    ({"config_parametrization": "edm"}, "parametrization must be one of"),
    ({"config_dropout": 1.5}, "dropout must be in"),
    ({"config_max_steps": "inf"}, "max_steps"),
    ({"config": "[1, 2]"}, "not a table"),
    ({"config": "{not json"}, "unreadable metadata"),
    ({"step": "-3"}, "unreadable metadata"),
    ({"step": None}, "missing 'step'"),
])
def test_checkpoint_metadata_is_validated_like_a_config(tiny_run, tmp_path, monkeypatch, changes, message):
    """An absurd size in the metadata is refused before any model is built (no giant allocation)."""
    import cmcore.model as model_module
    from safetensors import safe_open

    src = find_checkpoint(tiny_run)
    with safe_open(str(src), framework="pt") as fh:
        meta_config = fh.metadata()["config"]
    config_changes = {k.removeprefix("config_"): v for k, v in changes.items() if k.startswith("config_")}
    meta = {k: v for k, v in changes.items() if not k.startswith("config_")}
    if config_changes:
        meta["config"] = _config_with(meta_config, **config_changes)
    path = _rewrite(src, tmp_path / "bad.safetensors", **meta)
    monkeypatch.setattr(model_module, "build_unet", lambda *a, **k: pytest.fail("a model was built"))
    with pytest.raises(CheckpointError, match=message) as caught:
        load_checkpoint(path)
    assert "\n" not in str(caught.value)


class _Payload:
    """Unpickling this creates `marker`: what a malicious state file would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch '{self.marker}'",))


class _PathPayload(_Payload):
    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.mark.parametrize("kind", ["pickle", "torch.save", "path-touch"])
def test_a_crafted_pickle_as_the_state_file_never_runs(tiny_run, tmp_path, kind, capsys):
    import pickle

    from cmcore.cli import main

    marker = tmp_path / "pwned"
    payload = (_PathPayload if kind == "path-touch" else _Payload)(marker)
    live = tmp_path / "live"  # the payload really runs code when unpickled normally
    pickle.loads(pickle.dumps((_PathPayload if kind == "path-touch" else _Payload)(live)))
    assert live.exists()
    state = find_checkpoint(tiny_run).with_name(find_checkpoint(tiny_run).name.replace(".safetensors", ".state.pt"))
    if kind == "torch.save":
        torch.save({"optimizer": payload, "elapsed": 1.0}, state)
    else:
        state.write_bytes(pickle.dumps({"optimizer": payload}))
    with pytest.raises(CheckpointError, match=r"cannot read training state .*: UnpicklingError"):
        load_checkpoint(tiny_run).load_state()
    assert main(["train", "--out", str(tiny_run), "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot read training state") and "\n" not in err
    assert not marker.exists()


def test_a_crafted_pickle_passed_as_a_checkpoint_never_runs(tmp_path, capsys):
    import pickle

    from cmcore.cli import main

    marker = tmp_path / "pwned"
    for name in ("model.safetensors", "model.pt", "model.ckpt"):
        evil = tmp_path / name
        evil.write_bytes(pickle.dumps(_Payload(marker)))
        for argv in (["info", str(evil)], ["sample", str(evil), "--out", str(tmp_path / "s")]):
            assert main(argv) == 2
            err = capsys.readouterr().err.strip()
            assert err.startswith("error:") and "not a readable checkpoint" in err and "\n" not in err
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "model.pt")
    assert not marker.exists()


def test_a_state_file_of_another_step_is_refused(small_config, tmp_path):
    trainer = Trainer(small_config.replace(max_steps=12, checkpoint_every=6), tmp_path / "r")
    trainer.run()
    six, twelve = (tmp_path / "r" / "checkpoints" / f"step_00000{s}.state.pt" for s in ("06", "12"))
    six.replace(twelve)  # the pair of step 12 now holds step 6's state
    with pytest.raises(CheckpointError, match="holds the state of step 6, not of step 12"):
        load_checkpoint(tmp_path / "r").load_state()


def test_a_save_removes_orphans_and_keeps_three_complete_checkpoints(small_config, tmp_path):
    run_dir = tmp_path / "r"
    trainer = Trainer(small_config.replace(max_steps=6, checkpoint_every=2, preview_every=0), run_dir)
    trainer.run()
    folder = run_dir / "checkpoints"
    (folder / "step_0000007.safetensors").write_bytes(b"weights of a killed save")
    (folder / "step_0000001.state.pt").write_bytes(b"state whose weights were pruned")
    (folder / ".step_0000008.safetensors.abc.tmp").write_bytes(b"half")
    (run_dir / ".metrics.jsonl.abc.tmp").write_bytes(b"half")
    trainer.step = 8
    trainer.save()
    assert sorted(p.name for p in folder.iterdir()) == ["latest"] + [
        f"step_{s:07d}{sfx}" for s in (4, 6, 8) for sfx in (".safetensors", ".state.pt")]
    assert not list(run_dir.glob(".*.tmp"))
