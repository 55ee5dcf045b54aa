"""Persistent preferences (QSettings). Tests point CONSISTENCY_STUDIO_SETTINGS_DIR at a
temporary folder so they never read or write the user's real settings."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings

from . import APP_ID

ORG = "ConsistencyStudio"
MAX_RECENT = 8


def settings() -> QSettings:
    override = os.environ.get("CONSISTENCY_STUDIO_SETTINGS_DIR")
    if override:
        return QSettings(str(Path(override) / "settings.ini"), QSettings.Format.IniFormat)
    return QSettings(ORG, APP_ID)


def get(key: str, default: Any = None) -> Any:
    return settings().value(key, default)


def get_str(key: str, default: str = "") -> str:
    value = settings().value(key, default)
    return default if value is None else str(value)


def set(key: str, value: Any) -> None:  # noqa: A001 - mirrors QSettings.setValue
    s = settings()
    s.setValue(key, value)
    s.sync()


def get_list(key: str) -> list[str]:
    # INI files return a bare string for one-element lists and None for empty ones
    value = settings().value(key, [])
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    return [str(v) for v in value]


def push_recent(key: str, item: str) -> list[str]:
    items = [item] + [i for i in get_list(key) if i != item]
    items = items[:MAX_RECENT]
    set(key, items)
    return items
