"""The benchmark scripts stay runnable: each imports and answers --help (they are not run here:
they train for minutes; their numbers are in the README)."""
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py") if p.name != "fid_demo.py")


def test_the_benchmarks_are_found():  # else the parametrised test below checks nothing
    assert {"quality.py", "ablate.py", "grain.py", "speed.py", "amp.py"} <= set(SCRIPTS)


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
