"""Start-up: the window appears before torch is imported, the entry points work, and
the headless self-test passes."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]


def run_python(args: list[str], tmp_path: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "OMP_NUM_THREADS": "1",
           "CONSISTENCY_STUDIO_SETTINGS_DIR": str(tmp_path / "settings"),
           "CONSISTENCY_STUDIO_LOG_DIR": str(tmp_path / "logs"), "CMCORE_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_window_is_shown_before_torch_is_imported(tmp_path):
    code = (
        "import sys\n"
        "from app.application import create_app\n"
        "from app.main_window import MainWindow\n"
        "app = create_app()\n"
        f"w = MainWindow(workspace={str(tmp_path / 'runs')!r}, data='demo')\n"
        "w.show()\n"
        "assert w.first_window_s is not None\n"
        "print('torch' in sys.modules, w.first_window_s)\n"
        "w.close()\n"
    )
    result = run_python(["-c", code], tmp_path)
    assert result.returncode == 0, result.stderr
    loaded, seconds = result.stdout.split()
    assert loaded == "False", "torch was imported before the window was shown"
    assert float(seconds) < 30


def test_startup_time_flag_prints_time_to_first_window(tmp_path):
    result = run_python(["-m", "app", "--startup-time", "--workspace", str(tmp_path / "runs")], tmp_path)
    assert result.returncode == 0, result.stderr
    found = re.search(r"time to first window: ([\d.]+) s", result.stdout)
    assert found and float(found.group(1)) > 0


def test_self_test_trains_samples_and_exports(tmp_path):
    result = run_python(["-m", "app", "--self-test", "--workspace", str(tmp_path / "ws")], tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "trained CT for 5 steps" in out and "with 1 step(s)" in out and "with 3 step(s)" in out
    assert "exported" in out and out.rstrip().splitlines()[-1].startswith("[self-test] OK")
    assert "[self-test] xcb platform plugin" in out  # its system libraries are reported (issue 22)
    assert any((tmp_path / "ws").iterdir())


def test_help_and_entry_point(tmp_path):
    result = run_python(["-m", "app", "--help"], tmp_path)
    assert result.returncode == 0 and "--self-test" in result.stdout and "--workspace" in result.stdout
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["gui-scripts"]
    assert scripts["consistency-studio"] == "app.__main__:main"
    from app.__main__ import main, parse_args

    assert callable(main)
    args = parse_args(["--data", "demo", "--workspace", "/x"])
    assert (args.data, args.workspace, args.self_test) == ("demo", "/x", False)
