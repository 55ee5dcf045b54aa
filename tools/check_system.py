"""Check the system libraries the app's window needs, before `make run` opens it.

    python tools/check_system.py [--force]

On Linux with an X display, runs `ldd` on PySide6's xcb platform plugin (libqxcb.so) and,
if libraries are missing, prints them with the one `sudo apt-get install …` line that adds
them all and exits 3 (instead of Qt's "Could not load the Qt platform plugin" abort).
The app runs the same check itself before its window (app/system_check.py).
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.system_check import main  # noqa: E402 - after the path is set

if __name__ == "__main__":
    sys.exit(main())
