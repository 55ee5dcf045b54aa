"""Bundled read-only resources (icons, presets). Located next to this file so the same
lookup works from a source checkout, an installed wheel and a PyInstaller bundle."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent
ICONS = ROOT / "icons"
PRESETS = ROOT / "presets"


def resource_path(*parts: str) -> Path:
    return ROOT.joinpath(*parts)
