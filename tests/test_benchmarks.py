"""The benchmarks stay runnable: every script answers --help as a module (they are not run in full
here: they train for minutes; their numbers are in the README), overrides are read by the engine's
own config code, and the train → sample → score path they share runs end to end on a tiny run."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import ablate, fid_demo, harness, longrun, quality
from cmcore import ConfigError, TrainConfig

ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = ("__init__", "fid_demo", "harness")
SCRIPTS = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem not in LIBRARIES)
# each command a fresh Python from the repository root, as the README runs them; all start at once
COMMANDS = {**{name: ["-m", f"benchmarks.{name}", "--help"] for name in SCRIPTS},
            "bad override": ["-m", "benchmarks.ablate", "x", "nonsense=1", "--out", "{tmp}"]}


def test_the_benchmarks_are_found():  # else the parametrised test below checks nothing
    assert {"quality", "ablate", "longrun", "speed", "amp", "gpu_profile"} <= set(SCRIPTS)


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("bad_override"))
    procs = {name: subprocess.Popen([sys.executable, *(a.format(tmp=tmp) for a in args)], cwd=ROOT, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for name, args in COMMANDS.items()}
    return {name: (*proc.communicate(timeout=120), proc.returncode) for name, proc in procs.items()}


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_answers_help_as_a_module(ran, script):
    stdout, stderr, code = ran[script]
    assert code == 0, stderr
    assert "usage:" in stdout


def test_a_bad_override_is_the_engines_config_error_not_a_traceback(ran):
    stdout, stderr, code = ran["bad override"]
    assert code == 2 and stderr.startswith("error: ") and "nonsense" in stderr and "Traceback" not in stderr, stderr


def test_overrides_are_read_as_toml_values():
    assert harness.parse_overrides(["lr=0.001", "method=cd", "hflip=true", "seed=1", "teacher=runs/bench/flow",
                                    'data="my images"']) == {
        "lr": 0.001, "method": "cd", "hflip": True, "seed": 1, "teacher": "runs/bench/flow", "data": "my images"}
    config = harness.make_config(TrainConfig(max_steps=7), harness.parse_overrides(["lr=0.001", "method=cd",
                                                                                    "teacher=runs/flow", "hflip=true"]))
    assert (config.lr, config.method, config.teacher, config.hflip, config.max_steps) == (0.001, "cd", "runs/flow", True, 7)


def test_unknown_keys_and_bad_values_raise_the_engines_config_error():
    with pytest.raises(ConfigError, match="nonsense"):
        harness.make_config(TrainConfig(), harness.parse_overrides(["nonsense=1"]))
    with pytest.raises(ConfigError, match="seed"):
        harness.make_config(TrainConfig(), harness.parse_overrides(["seed=abc"]))
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        harness.parse_overrides(["lr"])


def test_longrun_finds_the_loss_spike_and_the_curriculum_jumps(tmp_path):
    # flat loss 10 at n = 2, n doubles at step 600 (loss 15), one spike to 60 at step 1000
    rows = [{"step": 50 * i, "loss": 10.0 if i < 12 else 15.0, "n": 2 if i < 12 else 4.0} for i in range(1, 30)]
    rows[19]["loss"] = 60.0
    ratio, step = longrun.largest_spike(rows)
    assert step == 1000 and ratio == pytest.approx(60 / ((2 * 10 + 8 * 15) / 10))  # the 10 logs before it
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("\n".join(json.dumps(r) for r in rows))
    summary = longrun.loss_around_jumps(metrics)
    assert summary.startswith("n 2→4: 10.0→") and "largest spike ×4.29 at step 1000" in summary


def test_fid_classifiers_are_trained_once_then_loaded(tmp_path, monkeypatch):
    monkeypatch.setattr(fid_demo, "CACHE", tmp_path)
    trained = fid_demo.cached_classifier(16, 3, seed=0, steps=3)
    assert [p.name for p in tmp_path.iterdir()] == ["shapenet_r16_c3_seed0_steps3.pt"]
    monkeypatch.setattr(fid_demo, "train_classifier", lambda *a, **k: pytest.fail("retrained a cached classifier"))
    loaded = fid_demo.cached_classifier(16, 3, seed=0, steps=3)
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), loaded.state_dict().values()))


@pytest.fixture
def quick_classifiers(tmp_path, monkeypatch):
    """Demo-FD classifiers of 3 training steps, cached in tmp_path: the metric's numbers mean nothing, its plumbing runs."""
    monkeypatch.setattr(fid_demo, "CACHE", tmp_path / "classifiers")
    train = fid_demo.train_classifier
    monkeypatch.setattr(fid_demo, "train_classifier", lambda resolution, channels=3, steps=1500, seed=0:
                        train(resolution, channels, 3, seed))


TINY = {"resolution": 16, "batch_size": 4, "max_steps": 3, "max_minutes": 0, "preview_every": 0, "checkpoint_every": 0,
        "log_every": 1, "device": "cpu"}


def check_results(results: dict, steps: list[str], classifiers: int) -> None:
    assert list(results) == steps
    for r in results.values():
        assert math.isfinite(r["fd"]) and r["fd_min"] <= r["fd"] <= r["fd_max"] and len(r["fd_each"]) == classifiers
        assert 0 <= r["recognisable"] <= 1


def test_train_sample_score_end_to_end(tmp_path, quick_classifiers):
    run = tmp_path / "run"
    config = harness.make_config(TrainConfig(), TINY)
    metric = fid_demo.DemoFDEnsemble(16, [0, 1])
    summary = harness.benchmark(config, run, metric, (1, 2), num=8, note="tiny")
    assert summary["step"] == 3 and summary["name"] == "run" and summary["note"] == "tiny" and summary["num"] == 8
    check_results(summary["results"], ["1", "2"], 2)
    assert json.loads((run / "summary.json").read_text()) == summary
    assert (run / "eval_1steps.png").is_file() and (run / "eval_2steps.png").is_file()
    # a run already there is evaluated as it is, and seeded sampling gives the same numbers again
    again = harness.benchmark(config.replace(max_steps=5), run, metric, (1, 2), num=8)
    assert again["step"] == 3 and again["results"] == summary["results"]


def test_quality_ablate_and_longrun_on_tiny_runs(tmp_path, quick_classifiers, capsys):
    tiny = [f"{k}={v}" for k, v in TINY.items() if k != "max_steps"]
    quality.main(["--steps", "2", "--batch-size", "4", "--num", "8", "--resolution", "16", "--classifiers", "1",
                  "--out", str(tmp_path / "bench")])
    table = capsys.readouterr().out
    for row in ("| real data (floor) | - |", "| flow teacher | Euler 64 |", "| CT | 4-step |", "| CD | 1-step |"):
        assert row in table
    ablate.main(["cd_small", "--steps", "2", "--num", "8", "--out", str(tmp_path / "abl"), *tiny, "method=cd",
                 f"teacher={tmp_path / 'bench' / 'flow'}", "lr=0.0005"])
    line = capsys.readouterr().out
    assert line.startswith("cd_small ") and "step 2 " in line and "'lr': 0.0005" in line
    record = json.loads((tmp_path / "abl" / "results.jsonl").read_text())
    assert record["over"]["method"] == "cd" and record["step"] == 2
    check_results(record["results"], ["1", "2", "4"], 1)
    longrun.main(["_arm", str(tmp_path / "long"), "ct_arm", *tiny, "--device", "cpu", "--steps", "2", "--minutes", "0",
                  "--num", "8"])
    longrun.main(["evaluate", str(tmp_path / "long")])
    out = capsys.readouterr().out
    assert out.startswith("ct_arm           step      2  FD/recognisable at 1/2/4 steps: ")
    check_results(json.loads((tmp_path / "long" / "ct_arm" / "summary.json").read_text())["results"], ["1", "2", "4"], 1)
