"""The benchmark scripts stay runnable: each imports and answers --help (they are not run here:
they train for minutes; their numbers are in the README)."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py") if p.name != "fid_demo.py")


def test_the_benchmarks_are_found():  # else the parametrised test below checks nothing
    assert {"quality.py", "ablate.py", "grain.py", "speed.py", "amp.py", "longrun.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_answers_help(script):
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), "--help"], capture_output=True, text=True,
                          timeout=120, cwd=BENCHMARKS.parent)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


def test_fid_demo_metric_imports():
    done = subprocess.run([sys.executable, "-c", "import fid_demo; print(fid_demo.DemoFD.__name__)"],
                          capture_output=True, text=True, timeout=120, cwd=BENCHMARKS)
    assert done.returncode == 0 and "DemoFD" in done.stdout, done.stderr


def test_longrun_finds_the_loss_spike_and_the_curriculum_jumps(tmp_path):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from longrun import largest_spike, loss_around_jumps
    finally:
        sys.path.remove(str(BENCHMARKS))
    # flat loss 10 at n = 2, n doubles at step 600 (loss 15), one spike to 60 at step 1000
    rows = [{"step": 50 * i, "loss": 10.0 if i < 12 else 15.0, "n": 2 if i < 12 else 4.0} for i in range(1, 30)]
    rows[19]["loss"] = 60.0
    ratio, step = largest_spike(rows)
    assert step == 1000 and ratio == pytest.approx(60 / ((2 * 10 + 8 * 15) / 10))  # the 10 logs before it
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("\n".join(__import__("json").dumps(r) for r in rows))
    summary = loss_around_jumps(metrics)
    assert summary.startswith("n 2→4: 10.0→") and "largest spike ×4.29 at step 1000" in summary


def test_fid_classifiers_are_trained_once_then_loaded(tmp_path, monkeypatch):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import fid_demo
    finally:
        sys.path.remove(str(BENCHMARKS))
    monkeypatch.setattr(fid_demo, "CACHE", tmp_path)
    trained = fid_demo.cached_classifier(16, 3, seed=0, steps=3)
    assert [p.name for p in tmp_path.iterdir()] == ["shapenet_r16_c3_seed0_steps3.pt"]
    monkeypatch.setattr(fid_demo, "train_classifier", lambda *a, **k: pytest.fail("retrained a cached classifier"))
    loaded = fid_demo.cached_classifier(16, 3, seed=0, steps=3)
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), loaded.state_dict().values()))
