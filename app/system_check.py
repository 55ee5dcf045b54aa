"""Before Qt starts: are the system libraries of Qt's xcb platform plugin installed?

Without them Qt prints "Could not load the Qt platform plugin "xcb"" (naming one library at
most) and aborts. On Linux, before the QApplication exists, `check_before_qt` runs `ldd` on
PySide6's `libqxcb.so`, collects every "not found" library, and prints the one command that
installs them all (Debian/Ubuntu package names), then the app exits with EXIT_MISSING_LIBRARIES.

No Qt, torch or numpy here: `tools/check_system.py` (run by `make run`) and the app's
`--self-test` use the same functions. The environment variable CONSISTENCY_STUDIO_LDD names
a program to run instead of `ldd` (tests simulate a missing library with it).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

EXIT_MISSING_LIBRARIES = 3

# soname → Debian/Ubuntu package (the libraries Qt's xcb plugin and its Qt libraries load)
DEBIAN_PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libGLX.so.0": "libglx0",
    "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
}


@dataclass
class XcbCheck:
    """What `ldd` said about the xcb plugin: `missing` sonames (empty: all found), or why it
    could not be checked (`skipped`)."""

    plugin: Path | None
    missing: list[str] = field(default_factory=list)
    skipped: str = ""

    @property
    def ok(self) -> bool:
        return not self.missing

    @property
    def packages(self) -> list[str]:
        """Debian/Ubuntu packages for the missing libraries (known ones, each once, in order)."""
        seen: list[str] = []
        for soname in self.missing:
            package = DEBIAN_PACKAGES.get(soname)
            if package and package not in seen:
                seen.append(package)
        return seen

    @property
    def unknown(self) -> list[str]:
        """Missing libraries the table has no package for."""
        return [s for s in self.missing if s not in DEBIAN_PACKAGES]

    @property
    def fix(self) -> str:
        """The one command that installs every missing library ("" when none is known)."""
        return f"sudo apt-get install {' '.join(self.packages)}" if self.packages else ""

    def summary(self) -> str:
        """One line, for the self-test."""
        if self.skipped:
            return f"xcb platform plugin not checked: {self.skipped}"
        if self.ok:
            return f"xcb platform plugin: every system library found ({self.plugin})"
        line = f"xcb platform plugin: missing {', '.join(self.missing)}"
        return f"{line}; fix: {self.fix}" if self.fix else line

    def report(self) -> str:
        """The message printed instead of Qt's abort."""
        lines = [f"Consistency Studio cannot open its window: Qt's xcb platform plugin needs "
                 f"{len(self.missing)} system librar{'y' if len(self.missing) == 1 else 'ies'} that "
                 f"{'is' if len(self.missing) == 1 else 'are'} not installed:"]
        for soname in self.missing:
            package = DEBIAN_PACKAGES.get(soname)
            lines.append(f"  {soname}" + (f"  (package {package})" if package else "  (package unknown)"))
        if self.fix:
            lines += ["Install them (Debian/Ubuntu) with:", f"  {self.fix}"]
        if self.unknown:
            lines.append("Find the package of the others with: apt-file search " + " ".join(self.unknown))
        lines.append("(Without a window, QT_QPA_PLATFORM=offscreen consistency-studio --self-test works as it is.)")
        return "\n".join(lines)


def parse_ldd(text: str) -> list[str]:
    """The libraries `ldd` reports as "not found", each once, in the order listed."""
    missing: list[str] = []
    for line in text.splitlines():
        name, arrow, where = line.strip().partition("=>")
        if arrow and where.strip() == "not found" and name.strip() not in missing:
            missing.append(name.strip())
    return missing


def xcb_plugin() -> Path | None:
    """PySide6's libqxcb.so (in the venv or the bundle), or None when there is none."""
    candidates = []
    try:
        from PySide6.QtCore import QLibraryInfo  # QtCore only: no platform plugin is loaded

        candidates.append(Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)))
    except Exception:  # noqa: BLE001 - fall back to the package folder
        pass
    try:
        import importlib.util

        spec = importlib.util.find_spec("PySide6")
        for folder in (spec.submodule_search_locations or []) if spec else []:
            candidates.append(Path(folder) / "Qt" / "plugins")
    except (ImportError, ValueError):
        pass
    for plugins in candidates:
        plugin = plugins / "platforms" / "libqxcb.so"
        if plugin.is_file():
            return plugin
    return None


def check_xcb(plugin: Path | None = None, env: Mapping[str, str] | None = None) -> XcbCheck:
    """Run `ldd` (or $CONSISTENCY_STUDIO_LDD) on the xcb plugin and collect what is missing."""
    env = os.environ if env is None else env
    plugin = plugin or xcb_plugin()
    if plugin is None:
        return XcbCheck(None, skipped="PySide6 has no xcb platform plugin here")
    ldd = env.get("CONSISTENCY_STUDIO_LDD") or shutil.which("ldd")
    if not ldd:
        return XcbCheck(plugin, skipped="ldd is not installed")
    try:
        out = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return XcbCheck(plugin, skipped=f"ldd failed: {exc}")
    return XcbCheck(plugin, missing=parse_ldd(out.stdout + "\n" + out.stderr))


def uses_xcb(env: Mapping[str, str] | None = None, platform: str | None = None) -> bool:
    """Would Qt start on the xcb platform? Linux, and QT_QPA_PLATFORM names xcb, or is unset with
    an X display (DISPLAY) and no Wayland session (where Qt picks its wayland plugin)."""
    env = os.environ if env is None else env
    if not (platform or sys.platform).startswith("linux"):
        return False
    chosen = env.get("QT_QPA_PLATFORM", "").strip()
    if chosen:
        return chosen.split(";")[0].split(":")[0] == "xcb"
    return bool(env.get("DISPLAY")) and not env.get("WAYLAND_DISPLAY")


def check_before_qt(stream=None) -> int:
    """0 if Qt's window can start; else print what is missing and the fix, and return
    EXIT_MISSING_LIBRARIES (call before the QApplication exists)."""
    if not uses_xcb():
        return 0
    result = check_xcb()
    if result.ok:
        return 0
    print(result.report(), file=stream or sys.stderr, flush=True)
    return EXIT_MISSING_LIBRARIES


def main(argv: list[str] | None = None) -> int:
    """`python tools/check_system.py [--force]`: check what `make run` needs before it opens the app."""
    import argparse

    parser = argparse.ArgumentParser(prog="check_system", description=(
        "Check that Qt's xcb platform plugin finds every system library it needs; print the "
        "apt-get command that installs the missing ones and exit non-zero."))
    parser.add_argument("--force", action="store_true",
                        help="check even when Qt would not use xcb (no DISPLAY, QT_QPA_PLATFORM set, not Linux)")
    args = parser.parse_args(argv)
    if not args.force and not uses_xcb():
        print("system check: Qt will not use the xcb plugin here (no X display, or QT_QPA_PLATFORM "
              "names another platform): nothing to check")
        return 0
    result = check_xcb()
    if result.skipped:
        print(f"system check: {result.summary()}")
        return 0
    if result.ok:
        print(f"system check: {result.summary()}")
        return 0
    print(result.report(), file=sys.stderr)
    return EXIT_MISSING_LIBRARIES
