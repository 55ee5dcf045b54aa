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
LIBRARIES = ("__init__", "fid_demo", "harness", "qt_session")
SCRIPTS = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem not in LIBRARIES)
# each command a fresh Python from the repository root, as the README runs them; all start at once
COMMANDS = {**{name: ["-m", f"benchmarks.{name}", "--help"] for name in SCRIPTS},
            "bad override": ["-m", "benchmarks.ablate", "x", "nonsense=1", "--out", "{tmp}"]}


def test_the_benchmarks_are_found():  # else the parametrised test below checks nothing
    assert {"quality", "ablate", "longrun", "speed", "amp", "gpu_profile", "ui_latency", "plot_redraw",
            "gallery_latency"} <= set(SCRIPTS)


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


# --------------------------------------------------------------------------- the app's benchmarks, tiny

UI_RUNS = {  # each a fresh Python, as the docs run them; all three start at once
    "ui_latency": ["--seconds", "2", "--preview-every", "2", "--log-every", "1", "--batch-size", "4"],
    "plot_redraw": ["--sizes", "0,2000,20000", "--repeats", "2"],
    "gallery_latency": ["--resolution", "16", "--images", "2", "--repeats", "1", "--train-steps", "2",
                        "--history", "500"],
}


@pytest.fixture(scope="module")
def ui_ran():
    procs = {name: subprocess.Popen([sys.executable, "-m", f"benchmarks.{name}", *args], cwd=ROOT, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for name, args in UI_RUNS.items()}
    results = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{name}: {stderr}"
        lines = stdout.strip().splitlines()
        results[name] = (lines[:-1], json.loads(lines[-1]))  # the table, then one JSON object
    return results


def _ordered(summary: dict) -> bool:
    return 0 <= summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"] <= summary["max_ms"]


def test_ui_latency_measures_idle_then_training_with_previews(ui_ran):
    table, result = ui_ran["ui_latency"]
    for phase in ("idle", "training"):
        assert 50 <= result[phase]["ticks"] <= 200 and _ordered(result[phase])  # 2 s of a 10 ms timer
    assert result["training_steps"] > 0 and result["previews"] >= 1 and result["progress_batches"] >= 1
    assert result["plot_paints"] >= 1 and result["plot_paint_p50_ms"] > 0  # the plot is drawn while it trains
    assert 0 <= result["late_during_plot_paint"] <= result["late_shots"] <= result["training"]["ticks"]
    assert result["ratio_p99_ms"] == pytest.approx(result["training"]["p99_ms"] / max(result["idle"]["p99_ms"], 0.01),
                                                   abs=0.01)
    assert table[1].split()[:4] == ["phase", "ticks", "p50", "ms"] and table[2].startswith("idle")


def test_plot_redraw_times_each_size_side_by_side(ui_ran):
    table, result = ui_ran["plot_redraw"]
    assert [r["points"] for r in result["rows"]] == [0, 2000, 20000]
    for r in result["rows"]:
        assert r["load_ms"] >= 0 and r["first_draw_ms"] > 0 and r["paint_ms"] > 0
        assert r["update_ms"] >= max(r["redraw_ms"], r["paint_ms"]) and r["update_max_ms"] >= r["update_ms"]
    assert len(result["update_ratio_to_first"]) == 3 and result["update_ratio_to_first"][0] == 1.0
    assert [line.split()[0] for line in table[2:5]] == ["0", "2,000", "20,000"]  # after a caption and the header
    assert all(p in (2000, 20000) for p in result["slow_sizes"])  # the empty plot is the floor, never "slow"


def test_gallery_latency_times_each_step_count(ui_ran):
    table, result = ui_ran["gallery_latency"]
    rows = result["rows"]
    assert [r["steps"] for r in rows] == [1, 2, 4, 8] and result["history"] == 500
    for r in rows:
        assert 0 < r["engine_ms"] < r["shown_ms"] <= r["max_ms"]
        assert r["pane_ms"] == pytest.approx(r["shown_ms"] - r["engine_ms"], abs=0.2)  # one value each: medians agree
    assert len(table) == 6


def test_a_long_history_is_padded_after_the_runs_last_step(tmp_path):
    from benchmarks import gallery_latency
    from cmcore.rundir import METRICS, read_metrics

    (tmp_path / METRICS).write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (10, 20, 30)))
    gallery_latency.pad_history(tmp_path, 8)
    assert [r["step"] for r in read_metrics(tmp_path)] == [10, 20, 30, 31, 32, 33, 34, 35]
    gallery_latency.pad_history(tmp_path, 5)  # already longer: nothing added
    assert len(read_metrics(tmp_path)) == 8


def test_percentiles_and_the_lateness_probe_see_a_blocked_event_loop(qapp):
    import time as clock

    from PySide6.QtCore import QTimer

    from benchmarks import qt_session

    assert qt_session.percentile([4, 1, 3, 2], 50) == 2.5 and qt_session.percentile([1, 2, 3, 4, 5], 100) == 5
    assert math.isnan(qt_session.percentile([], 50))
    probe = qt_session.LatenessProbe(10)
    quiet = probe.measure(0.3)
    assert 10 <= len(quiet) <= 31 and min(quiet) >= 0
    QTimer.singleShot(100, lambda: clock.sleep(0.15))  # the GUI thread busy for 150 ms
    blocked = probe.measure(0.5)
    assert max(blocked) >= 120 and qt_session.summary(blocked)["max_ms"] == round(max(blocked), 2)
    _due, ran = max(probe.late, key=lambda w: w[1] - w[0])  # the shot that waited for the sleep
    assert qt_session.overlapping(probe.late, [(ran - 0.01, ran)]) == 1
    assert qt_session.overlapping([(0.0, 1.0), (2.0, 3.0), (4.0, 5.0)], [(0.5, 2.5), (9.0, 9.5)]) == 2
