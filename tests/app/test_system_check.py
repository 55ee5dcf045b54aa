"""A start that explains itself (issue 22): before Qt starts on xcb, every missing system library
of PySide6's xcb plugin is named with the one apt-get line that installs them all, and the app
(and `make run`'s check) exits non-zero instead of Qt's abort."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app import system_check
from app.system_check import EXIT_MISSING_LIBRARIES, XcbCheck, check_xcb, parse_ldd, uses_xcb

ROOT = Path(__file__).resolve().parents[2]

# `ldd libqxcb.so` on a fresh Debian 12 (the report in issue 22), shortened
DEBIAN_12_LDD = """\
\tlinux-vdso.so.1 (0x00007ffd1b5f2000)
\tlibQt6XcbQpa.so.6 => /home/u/.venv/lib/python3.11/site-packages/PySide6/Qt/plugins/platforms/../../lib/libQt6XcbQpa.so.6 (0x00007f5e3c000000)
\tlibxkbcommon-x11.so.0 => /lib/x86_64-linux-gnu/libxkbcommon-x11.so.0 (0x00007f5e3c9a1000)
\tlibxcb-cursor.so.0 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb-util.so.1 => /lib/x86_64-linux-gnu/libxcb-util.so.1 (0x00007f5e3c998000)
\tlibxcb-keysyms.so.1 => not found
\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x00007f5e3c96e000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\t/lib64/ld-linux-x86-64.so.2 (0x00007f5e3ca0e000)
"""


def fake_ldd(tmp_path: Path, output: str) -> Path:
    """A program that answers like ldd with `output`."""
    script = tmp_path / "fake-ldd"
    (tmp_path / "ldd-output.txt").write_text(output)
    script.write_text(f"#!/bin/sh\ncat '{tmp_path / 'ldd-output.txt'}'\n")
    script.chmod(0o755)
    return script


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY",
                                                              "CONSISTENCY_STUDIO_LDD")}
    return {**env, "CONSISTENCY_STUDIO_SETTINGS_DIR": str(tmp_path / "settings"),
            "CONSISTENCY_STUDIO_LOG_DIR": str(tmp_path / "logs"), **extra}


def test_every_missing_library_is_named_with_one_apt_line():
    missing = parse_ldd(DEBIAN_12_LDD)
    assert missing == ["libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1"]  # each once
    check = XcbCheck(Path("libqxcb.so"), missing)
    assert not check.ok and check.unknown == []
    assert check.fix == "sudo apt-get install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1"
    report = check.report()
    assert "3 system libraries" in report and report.count(check.fix) == 1
    assert all(s in report for s in missing)


def test_the_table_covers_the_usual_libraries_and_unknown_ones_are_still_named():
    table = system_check.DEBIAN_PACKAGES
    assert {table[s] for s in ("libxkbcommon-x11.so.0", "libxcb-xinerama.so.0", "libxcb-randr.so.0",
                               "libxcb-render-util.so.0", "libxcb-image.so.0", "libxcb-shape.so.0",
                               "libxcb-xkb.so.1", "libEGL.so.1", "libGL.so.1", "libfontconfig.so.1",
                               "libdbus-1.so.3")} == {
        "libxkbcommon-x11-0", "libxcb-xinerama0", "libxcb-randr0", "libxcb-render-util0", "libxcb-image0",
        "libxcb-shape0", "libxcb-xkb1", "libegl1", "libgl1", "libfontconfig1", "libdbus-1-3"}
    check = XcbCheck(Path("libqxcb.so"), parse_ldd("\tlibfoo.so.7 => not found\n\tlibEGL.so.1 => not found\n"))
    assert check.fix == "sudo apt-get install libegl1" and check.unknown == ["libfoo.so.7"]
    assert "libfoo.so.7  (package unknown)" in check.report() and "apt-file search libfoo.so.7" in check.report()
    assert XcbCheck(Path("libqxcb.so"), []).ok and parse_ldd("\tlibc.so.6 => /lib/libc.so.6 (0x1)\n") == []


@pytest.mark.parametrize("env, platform, expected", [
    ({"DISPLAY": ":0"}, "linux", True),
    ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}, "linux", False),
    ({"QT_QPA_PLATFORM": "xcb"}, "linux", True),
    ({"QT_QPA_PLATFORM": "xcb:nograb"}, "linux", True),
    ({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}, "linux", False),  # Qt picks its wayland plugin
    ({}, "linux", False),  # headless: the app falls back to offscreen
    ({"DISPLAY": ":0"}, "darwin", False),
])
def test_the_check_runs_only_where_qt_would_use_xcb(env, platform, expected):
    assert uses_xcb(env, platform) is expected


def test_a_fake_ldd_is_used_and_its_missing_libraries_reported(tmp_path):
    ldd = fake_ldd(tmp_path, DEBIAN_12_LDD)
    check = check_xcb(env={"CONSISTENCY_STUDIO_LDD": str(ldd)})
    assert check.plugin is not None and check.plugin.name == "libqxcb.so" and check.plugin.is_file()
    assert check.fix == "sudo apt-get install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1"
    assert "missing libxcb-cursor.so.0" in check.summary() and check.fix in check.summary()


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("ldd") is None, reason="needs Linux and ldd")
def test_the_check_on_this_machine_agrees_with_ldd(tmp_path):
    """End to end with the real ldd: `tools/check_system.py --force` reports exactly what ldd
    cannot find (nothing, where the packages are installed) and exits 0 only then."""
    plugin = system_check.xcb_plugin()
    raw = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True).stdout
    not_found = sorted({line.split("=>")[0].strip() for line in raw.splitlines() if "not found" in line})
    result = subprocess.run([sys.executable, "tools/check_system.py", "--force"], cwd=ROOT, capture_output=True,
                            text=True, env=clean_env(tmp_path), timeout=120)
    if not not_found:
        assert result.returncode == 0 and "every system library found" in result.stdout, result.stderr
    else:
        assert result.returncode == EXIT_MISSING_LIBRARIES
        packages = [system_check.DEBIAN_PACKAGES[s] for s in parse_ldd(raw)]
        assert f"sudo apt-get install {' '.join(packages)}" in result.stderr
        assert sorted(s for s in not_found if s in result.stderr) == not_found


def test_the_tool_passes_where_nothing_is_missing_and_skips_without_a_display(tmp_path):
    all_found = fake_ldd(tmp_path, "\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x1)\n")
    result = subprocess.run([sys.executable, "tools/check_system.py"], cwd=ROOT, capture_output=True, text=True,
                            env=clean_env(tmp_path, DISPLAY=":0", CONSISTENCY_STUDIO_LDD=str(all_found)), timeout=120)
    assert result.returncode == 0 and "every system library found" in result.stdout
    missing = fake_ldd(tmp_path, DEBIAN_12_LDD)
    result = subprocess.run([sys.executable, "tools/check_system.py"], cwd=ROOT, capture_output=True, text=True,
                            env=clean_env(tmp_path, CONSISTENCY_STUDIO_LDD=str(missing)), timeout=120)
    assert result.returncode == 0 and "nothing to check" in result.stdout  # no DISPLAY: offscreen


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="xcb is Linux only")
def test_the_app_explains_missing_libraries_instead_of_aborting(tmp_path):
    """`consistency-studio` on an X display where libraries are missing: the message and the fix,
    exit 3, and Qt never starts (no "Could not load the Qt platform plugin", no abort)."""
    ldd = fake_ldd(tmp_path, DEBIAN_12_LDD)
    env = clean_env(tmp_path, DISPLAY=":99", CONSISTENCY_STUDIO_LDD=str(ldd))
    for command in (["-m", "app", "--data", "demo"], ["-m", "app", "--self-test"]):
        result = subprocess.run([sys.executable, *command], cwd=ROOT, capture_output=True, text=True, env=env,
                                timeout=120)
        assert result.returncode == EXIT_MISSING_LIBRARIES, result.stderr
        assert "sudo apt-get install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1" in result.stderr
        assert "Could not load the Qt platform plugin" not in result.stderr


def test_make_run_checks_the_system_before_opening_the_app():
    if shutil.which("make") is None:
        pytest.skip("needs make")
    lines = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()
    check = next(i for i, line in enumerate(lines) if "tools/check_system.py" in line)
    assert any("consistency-studio" in line for line in lines[check + 1:])
