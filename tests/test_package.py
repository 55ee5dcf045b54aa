"""The PyInstaller bundle (build_spec/consistency_studio.spec): builds it when missing or
older than the sources (or always with CS_PACKAGE_REBUILD=1), then runs the frozen
executable's --self-test in a bare environment and inspects what the bundle holds.

Slow (a build takes minutes, each self-test run ~1 min on 2 CPU cores): `make package-test`
or `pytest -m slow tests/test_package.py`.
"""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "build_spec" / "consistency_studio.spec"
DIST = ROOT / "dist" / "ConsistencyStudio"
EXE = DIST / ("ConsistencyStudio.exe" if sys.platform == "win32" else "ConsistencyStudio")
INTERNAL = DIST / "_internal"
SOURCES = [ROOT / "app", ROOT / "cmcore", ROOT / "resources", ROOT / "build_spec", ROOT / "pyproject.toml"]

# top-level packages / folders that must not be in the bundle
FORBIDDEN_PACKAGES = {"scipy", "scipy.libs", "pytest", "_pytest", "pytestqt", "PyQt5", "PyQt6", "PySide2",
                      "matplotlib", "IPython", "tkinter", "triton"}
FORBIDDEN_FILE_MARKERS = ("QtWebEngine", "Qt6WebEngine", "Qt6Quick", "QtQuick", "Qt6Qml", "QtQml", "Qt6Pdf",
                          "Qt6Multimedia", "_tkinter", "libtk", "libtcl")


def _newest_source_mtime() -> float:
    newest = 0.0
    for src in SOURCES:
        paths = [src] if src.is_file() else src.rglob("*")
        for p in paths:
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
                newest = max(newest, p.stat().st_mtime)
    return newest


def _needs_build() -> str | None:
    if os.environ.get("CS_PACKAGE_REBUILD", "") not in ("", "0"):
        return "CS_PACKAGE_REBUILD is set"
    if not EXE.is_file():
        return f"{EXE} is missing"
    if EXE.stat().st_mtime < _newest_source_mtime():
        return "the bundle is older than the sources"
    return None


@pytest.fixture(scope="module")
def bundle() -> Path:
    reason = _needs_build()
    if reason:
        print(f"\nbuilding the bundle ({reason}) ...", flush=True)
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean", "--distpath", str(ROOT / "dist"),
             "--workpath", str(ROOT / "build" / "pyinstaller"), str(SPEC)],
            cwd=ROOT, capture_output=True, text=True, timeout=3000,
        )
        assert proc.returncode == 0, f"PyInstaller failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
        print(f"built in {time.monotonic() - t0:.0f} s", flush=True)
    assert EXE.is_file() and os.access(EXE, os.X_OK), f"no executable at {EXE}"
    return DIST


def _bare_env(tmp: Path, **extra: str) -> dict[str, str]:
    """What a double-click gets at most: no venv, no PYTHONPATH, a fresh HOME, no display."""
    (tmp / "home").mkdir(exist_ok=True)
    (tmp / "tmp").mkdir(exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp / "home"), "TMPDIR": str(tmp / "tmp"),
           "QT_QPA_PLATFORM": "offscreen"}
    env.update(extra)
    return env


def _run_bundle(tmp: Path, *args: str, env: dict[str, str], timeout: float = 900):
    cwd = tmp / "cwd"  # not the checkout: the source tree must not be importable
    cwd.mkdir(exist_ok=True)
    t0 = time.monotonic()
    proc = subprocess.run([str(EXE), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          encoding="utf-8", errors="replace", timeout=timeout)
    seconds = time.monotonic() - t0
    print(f"\n$ {EXE.name} {' '.join(args)}  -> exit {proc.returncode} after {seconds:.1f} s\n{proc.stdout}",
          flush=True)
    return proc, seconds


def _assert_self_test_passed(proc, tmp: Path) -> None:
    out = proc.stdout
    assert proc.returncode == 0, f"self-test failed (exit {proc.returncode}):\n{out}\n{proc.stderr[-6000:]}"
    for expected in ("window shown after", "engine loaded", "trained CT for", "with 1 step(s)",
                     "with 3 step(s)", "exported", "[self-test] OK"):
        assert expected in out, f"{expected!r} missing from the self-test output:\n{out}"
    pngs = list((tmp / "tmp").glob("consistency-studio-selftest-*/exports/*.png"))
    assert pngs, f"no exported PNG under {tmp / 'tmp'}"
    assert pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bundle_self_test(bundle, tmp_path):
    proc, seconds = _run_bundle(tmp_path, "--self-test", env=_bare_env(tmp_path))
    _assert_self_test_passed(proc, tmp_path)
    print(f"bundle self-test: {seconds:.1f} s from launch to exit")


def _write_fake_mnist(root: Path, n: int = 64) -> None:
    """A tiny MNIST in torchvision's raw layout (discs of growing radius)."""
    import numpy as np

    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    yy, xx = np.mgrid[:28, :28]
    for prefix, count in (("train", n), ("t10k", 8)):
        images = np.zeros((count, 28, 28), np.uint8)
        for i in range(count):
            images[i][(yy - 14) ** 2 + (xx - 14) ** 2 < (4 + i % 8) ** 2] = 255
        labels = (np.arange(count) % 10).astype(np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, count, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, count) + labels.tobytes())


def test_bundle_self_test_torchvision_data(bundle, tmp_path):
    """MNIST goes through torchvision.datasets, whose import needs torchvision's compiled
    ops: without _C_stable.so this fails with "operator torchvision::nms does not exist"."""
    _write_fake_mnist(tmp_path / "mnist")
    env = _bare_env(tmp_path, TORCHVISION_WARN_WHEN_EXTENSION_LOADING_FAILS="1")
    proc, _ = _run_bundle(tmp_path, "--self-test", "--data", f"mnist:{tmp_path / 'mnist'}", env=env)
    assert "Failed to load" not in proc.stderr, proc.stderr[-4000:]
    _assert_self_test_passed(proc, tmp_path)
    assert "grayscale" in proc.stdout


def test_bundle_contents(bundle):
    base = INTERNAL if INTERNAL.is_dir() else DIST
    # torchvision's compiled extensions, loaded by path (torch.ops.load_library)
    tv = base / "torchvision"
    assert sorted(tv.glob("_C*.so")), f"torchvision _C*.so missing in {tv}"
    assert sorted(tv.glob("image*.so")), f"torchvision image*.so missing in {tv}"
    tv_libs = base / "torchvision.libs"
    assert tv_libs.is_dir() and any(tv_libs.iterdir()), f"{tv_libs} missing or empty"
    # the app's data files
    assert (base / "resources" / "icons" / "app.svg").is_file()
    assert sorted((base / "resources" / "presets").glob("*.toml"))

    bad = []
    for p in DIST.rglob("*"):
        rel = p.relative_to(DIST)
        if rel.parts[0] in FORBIDDEN_PACKAGES or (rel.parts[0] == "_internal" and len(rel.parts) > 1
                                                   and rel.parts[1] in FORBIDDEN_PACKAGES):
            bad.append(str(rel))
        elif any(m in p.name for m in FORBIDDEN_FILE_MARKERS):
            bad.append(str(rel))
    assert not bad, f"unwanted files in the bundle: {bad[:20]}"


def test_bundle_modules(bundle):
    """The pure-Python modules live in the PYZ archive inside the executable."""
    readers = pytest.importorskip("PyInstaller.archive.readers")
    try:
        carchive = readers.CArchiveReader(str(EXE))
        pyz_offset = carchive._start_offset + carchive.toc["PYZ.pyz"][0]  # private API of PyInstaller 6
        names = list(readers.ZlibArchiveReader(str(EXE), start_offset=pyz_offset).toc)
    except (AttributeError, KeyError, TypeError) as exc:
        pytest.skip(f"cannot read the PYZ with this PyInstaller: {exc!r}")
    top = {n.split(".")[0] for n in names}
    assert {"app", "cmcore", "resources", "torch", "torchvision", "pyqtgraph", "PySide6"} <= top
    assert not top & (FORBIDDEN_PACKAGES | {"py"}), sorted(top & (FORBIDDEN_PACKAGES | {"py"}))
    qt_modules = {n for n in names if n.startswith("PySide6.Qt")}
    assert not {n for n in qt_modules if "WebEngine" in n or "Quick" in n or "Qml" in n}, sorted(qt_modules)
    # every cmcore module, even those only reached through cmcore.__getattr__/importlib
    src = {f"cmcore.{p.stem}" for p in (ROOT / "cmcore").glob("*.py") if p.stem != "__init__"}
    assert src <= set(names), sorted(src - set(names))
