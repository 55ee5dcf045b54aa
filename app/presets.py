"""Training presets: TOML files in the run format ([train] table of TrainConfig fields).

Built-in presets ship in resources/presets; the user's own go to a config folder. A
preset sets training choices only: the data source and the teacher stay as they are.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from resources import PRESETS

from . import APP_ID

NOT_FROM_PRESETS = ("data", "teacher", "channels")


@dataclass(frozen=True)
class Preset:
    name: str
    path: Path
    builtin: bool


def user_dir() -> Path:
    override = os.environ.get("CONSISTENCY_STUDIO_SETTINGS_DIR")
    if override:
        return Path(override) / "presets"
    from platformdirs import user_config_dir

    return Path(user_config_dir(APP_ID, appauthor=False)) / "presets"


def list_presets() -> list[Preset]:
    found = [Preset(p.stem, p, True) for p in sorted(PRESETS.glob("*.toml"))]
    if user_dir().is_dir():
        found += [Preset(p.stem, p, False) for p in sorted(user_dir().glob("*.toml"))]
    return found


def read_preset(path: Path) -> dict[str, Any]:
    """The values a preset sets (validated); raises cmcore.ConfigError if it is not usable."""
    from cmcore import ConfigError, TrainConfig

    try:
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read preset {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"preset {Path(path).name} is not valid TOML: {exc}") from None
    values = doc.get("train", doc)
    config = TrainConfig.from_dict(values)
    config.replace(teacher=config.teacher or "(set in the Train pane)").validate()  # cd needs one
    full = config.to_dict()  # normalised types
    return {k: full[k] for k in values if k not in NOT_FROM_PRESETS}


def save_preset(path: Path, config) -> Path:
    path = Path(path)
    if path.suffix != ".toml":
        path = path.with_suffix(".toml")
    config.save(path)
    return path
