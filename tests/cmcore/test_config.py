"""cmcore/config.py: the one configuration: defaults, "auto" and its resolution, validation, TOML, old files."""
import math

import pytest

from cmcore.config import (AUTO, AUTO_NUMBERS, BETA2_CONSISTENCY, BETA2_FLOW, DROPOUT_DISTILL, LR_FROM_SCRATCH,
                           LR_FROM_TEACHER, RETIRED, TrainConfig)
from cmcore.errors import ConfigError


def test_config_round_trips_through_toml(small_config, tmp_path):
    path = tmp_path / "c.toml"
    small_config.replace(lr=3e-4, hflip=True).save(path)
    assert TrainConfig.load(path) == small_config.replace(lr=3e-4, hflip=True)
    resolved = small_config.resolved(3)
    resolved.save(path)
    assert TrainConfig.load(path) == resolved  # floats such as huber_c survive exactly


def test_automatic_is_spelled_auto_and_resolved_in_one_place():
    c = TrainConfig()
    assert all(getattr(c, name) == AUTO for name in AUTO_NUMBERS)
    ct, flow = c.resolved(3), c.replace(method="flow").resolved(1)
    cd = c.replace(method="cd", teacher="t", model="base").resolved(3, teacher=flow.replace(model="small"))
    assert (ct.lr, flow.lr, cd.lr) == (LR_FROM_SCRATCH, LR_FROM_SCRATCH, LR_FROM_TEACHER)
    assert (ct.adam_beta2, flow.adam_beta2, cd.adam_beta2) == (BETA2_CONSISTENCY, BETA2_FLOW, BETA2_CONSISTENCY)
    assert (ct.dropout, flow.dropout, cd.dropout) == (0.0, 0.0, DROPOUT_DISTILL)
    assert (ct.parametrization, flow.parametrization, cd.parametrization) == ("blend", "reflow", "reflow")
    assert cd.model == "small"  # the teacher's, whatever the student's config said
    assert (ct.warmup_fraction, cd.warmup_fraction) == (0.25, 0.0)
    assert ct.huber_c == 0.00054 * math.sqrt(3 * 32 * 32) and flow.channels == "1"
    assert (ct.distance, cd.distance) == ("pseudo_huber", "l1_fine")
    assert ct.replace(lr=5e-4).resolved().lr == 5e-4  # a value given is kept
    assert c.replace(method="ct", teacher="somewhere").resolved().teacher == ""  # only CD has a teacher
    assert (ct.default_sampler, flow.default_sampler, cd.default_sampler) == ("multistep", "ode", "multistep")
    for resolved in (ct, flow, cd):
        assert AUTO not in {k: v for k, v in resolved.to_dict().items() if k != "device"}.values()
        resolved.validate()


@pytest.mark.parametrize("text,key", [
    ("lr = nan", "lr"), ("max_steps = 3.9", "max_steps"), ("ema_eval = inf", "ema_eval"), ("hflip = 2", "hflip"),
    ("batch_size = \"many\"", "batch_size"), ("learning_rate = 1", "learning_rate"), ("data = [1, 2]", "data"),
])
def test_bad_values_in_a_file_name_the_key(text, key):
    with pytest.raises(ConfigError, match=key):
        TrainConfig.from_toml(f"[train]\n{text}\n")


@pytest.mark.parametrize("changes,key", [
    ({"distance": "cosine"}, "distance"), ({"lr_min_ratio": 1.5}, "lr_min_ratio"), ({"log_every": 0}, "log_every"),
    ({"lr": -1.0}, "lr"), ({"resolution": 12}, "resolution"), ({"s0": 8, "s1": 4}, "s0"),
    ({"dropout": 1.0}, "dropout"), ({"spike_factor": 0.5}, "spike_factor"), ({"method": "cd"}, "teacher"),
    ({"parametrization": "edm"}, "removed"), ({"distance": "l2"}, "removed"), ({"checkpoint_every": -1}, "checkpoint_every"),
])
def test_validation_names_the_field(changes, key):
    with pytest.raises(ConfigError, match=key):
        TrainConfig(**changes).validate()


def test_whole_floats_are_accepted_in_int_fields_and_auto_in_any_case():
    c = TrainConfig.from_dict({"max_steps": 300.0, "lr": "Auto", "hflip": "yes"})
    assert c.max_steps == 300 and isinstance(c.max_steps, int) and c.lr == AUTO and c.hflip is True


def test_files_from_before_0_2_still_load():
    """Old spellings of auto become "auto"; removed options holding the value that behaves as the code
    does now are dropped; another value is refused, unless the file is only read to sample a model."""
    old = TrainConfig.from_dict({"lr": 0.0, "dropout": -1.0, "adam_beta2": 0.0, "lr_min_ratio": -1.0, "huber_c": 0.0,
                                 "curriculum": "ect", "target_ema": 0.0, "optimizer": "radam", "anchor": 0,
                                 "anchor_steps": 8, "spacing": "karras", "rho": 7.0, "mu0": 0.9, "init_from_teacher": True})
    assert old == TrainConfig()
    for name, value in [("curriculum", "sqrt"), ("anchor", 2), ("weighting", "uniform"), ("target_ema", 0.95)]:
        with pytest.raises(ConfigError, match=f"{name} = .* is an option removed"):
            TrainConfig.from_dict({name: value})
        assert TrainConfig.from_dict({name: value}, strict=False) == TrainConfig()
    assert set(RETIRED).isdisjoint(TrainConfig().to_dict())


def test_paths_that_do_not_exist_name_their_key(tmp_path):
    from cmcore.config import DATASET_PREFIXES

    with pytest.raises(ConfigError, match="data: the folder .*nowhere does not exist"):
        TrainConfig(data=str(tmp_path / "nowhere")).check_paths()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="data: the folder .*file is not a folder"):
        TrainConfig(data=str(tmp_path / "file")).check_paths()
    with pytest.raises(ConfigError, match="data: the mnist ROOT folder /no/such does not exist"):
        TrainConfig(data="mnist:/no/such").check_paths()
    with pytest.raises(ConfigError, match="data: no cifar10 ROOT folder given"):
        TrainConfig(data="cifar10:").check_paths()
    with pytest.raises(ConfigError, match="teacher: .*gone does not exist"):
        TrainConfig(method="cd", teacher=str(tmp_path / "gone")).check_paths()
    TrainConfig(data="demo", method="ct", teacher=str(tmp_path / "gone")).check_paths()  # only cd has a teacher
    TrainConfig(data=f"fashionmnist:{tmp_path}").check_paths()
    from cmcore.data.torchvision_sets import TORCHVISION_SETS

    assert set(DATASET_PREFIXES) == set(TORCHVISION_SETS)  # the torch-free copy of the names stays in step
