"""File logging: full tracebacks go to app.log while the user sees a short message."""
from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path

from . import APP_ID

_handler: logging.Handler | None = None
_handler_path: Path | None = None


def log_dir() -> Path:
    override = os.environ.get("CONSISTENCY_STUDIO_LOG_DIR")
    if override:
        return Path(override)
    from platformdirs import user_log_dir

    return Path(user_log_dir(APP_ID, appauthor=False))


def log_file() -> Path:
    return log_dir() / "app.log"


def setup_logging(level: int = logging.INFO) -> Path:
    """Attach one rotating file handler to the root logger; re-pointed if the path changed."""
    global _handler, _handler_path
    path = log_file()
    if _handler is not None and _handler_path == path:
        return path
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
        _handler.close()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _handler = logging.handlers.RotatingFileHandler(path, maxBytes=2_000_000, backupCount=3, encoding="utf-8")
    except OSError as exc:  # read-only home: keep going, log to stderr instead
        print(f"consistency-studio: cannot write log to {path}: {exc}", file=sys.stderr)
        _handler = logging.StreamHandler()
    _handler_path = path
    _handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(threadName)s] %(name)s: %(message)s"))
    root.addHandler(_handler)
    if root.level == logging.NOTSET or root.level > level:
        root.setLevel(level)
    return path
