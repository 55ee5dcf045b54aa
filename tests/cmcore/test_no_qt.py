"""The engine never imports Qt (napari's rule): checked in the source and at run time."""
import re
import subprocess
import sys
from pathlib import Path

import cmcore

QT = re.compile(r"^\s*(from|import)\s+(PySide6|PyQt5|PyQt6|pyqtgraph|shiboken6|qtpy)\b", re.M)


def test_no_qt_import_in_source():
    root = Path(cmcore.__file__).parent
    offenders = [p.name for p in root.rglob("*.py") if QT.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_importing_the_whole_engine_loads_no_qt():
    code = ("import sys, cmcore, cmcore.training, cmcore.cli, cmcore.data, cmcore.generator, cmcore.runs, "
            "cmcore.export; bad = [m for m in sys.modules if m.split('.')[0] in "
            "('PySide6','PyQt5','PyQt6','pyqtgraph','shiboken6')]; print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
