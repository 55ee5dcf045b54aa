"""cmcore/runs.py: listing a workspace; one broken run folder never hides the others (issue 22)."""
import os
import subprocess
import sys

from cmcore import runlock
from cmcore.runs import list_runs, read_run


def _run(folder, config="[train]\nmethod = \"flow\"\nmax_steps = 100\n", metrics=None):
    folder.mkdir(parents=True)
    (folder / "config.toml").write_bytes(config if isinstance(config, bytes) else config.encode())
    if metrics is not None:
        (folder / "metrics.jsonl").write_text(metrics)
    return folder


def test_broken_run_folders_are_listed_as_unreadable_with_the_reason(tmp_path):
    _run(tmp_path / "good", metrics='{"step": 10, "loss": 0.5}\n')
    _run(tmp_path / "latin1", config=b"[train]\nmethod = \"caf\xe9\"\n")
    _run(tmp_path / "inf", config="[train]\nmax_steps = inf\n")
    _run(tmp_path / "float", config="[train]\nmax_steps = 3.5\n")
    _run(tmp_path / "toml", config="[train\n")
    _run(tmp_path / "line1", metrics='1\n{"step": 4, "loss": 2.0}\n[]\n')
    _run(tmp_path / "textloss", metrics='{"step": 7, "loss": "high"}\n')
    _run(tmp_path / "nanloss", metrics='{"step": 7, "loss": NaN}\n')
    _run(tmp_path / "hugestep", metrics='{"step": 1e308, "loss": 1}\n')
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / "a-file.txt").write_text("x")
    runs = {r.name: r for r in list_runs(tmp_path)}
    assert sorted(runs) == ["float", "good", "hugestep", "inf", "latin1", "line1", "nanloss", "textloss", "toml"]
    good = runs["good"]
    assert (good.method, good.step, good.max_steps, good.last_loss, good.error, good.busy_by) == ("flow", 10, 100, 0.5,
                                                                                                  None, None)
    for name, reason in [("latin1", "not UTF-8"), ("inf", "max_steps"), ("float", "max_steps"), ("toml", "TOML")]:
        assert runs[name].error and reason in runs[name].error and "\n" not in runs[name].error, (name, runs[name].error)
        assert (runs[name].method, runs[name].step, runs[name].last_loss) == ("", 0, None)
    assert runs["line1"].error is None and (runs["line1"].step, runs["line1"].last_loss) == (4, 2.0)
    assert runs["textloss"].error is None and runs["textloss"].last_loss is None and runs["textloss"].step == 7
    assert runs["nanloss"].last_loss is None
    assert runs["hugestep"].error is None or "step" in runs["hugestep"].error


def test_a_run_being_trained_is_listed_with_its_owner(tmp_path):
    folder = _run(tmp_path / "busy")
    record = runlock.acquire_lock(folder)
    try:
        info = read_run(folder)
        assert info.busy_by["pid"] == os.getpid() and info.error is None
    finally:
        runlock.release_lock(folder, record)
    assert read_run(folder).busy_by is None


def test_listing_runs_and_locks_never_imports_torch(tmp_path):
    _run(tmp_path / "r", metrics='{"step": 1, "loss": 1.0}\n')
    code = ("import sys; from cmcore import runlock, runs; "
            f"runs.list_runs({str(tmp_path)!r}); runlock.lock_owner({str(tmp_path / 'r')!r}); "
            f"runlock.release_lock({str(tmp_path / 'r')!r}, runlock.acquire_lock({str(tmp_path / 'r')!r})); "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
