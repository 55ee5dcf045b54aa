"""Shared test set-up: headless Qt and nothing written to the user's real folders.

Kept free of Qt and torch imports so the engine's tests do not depend on them.
"""
import os
import tempfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

_SANDBOX = tempfile.mkdtemp(prefix="consistency-studio-tests-")
os.environ.setdefault("CMCORE_CACHE_DIR", os.path.join(_SANDBOX, "cache"))
os.environ.setdefault("CONSISTENCY_STUDIO_SETTINGS_DIR", os.path.join(_SANDBOX, "settings"))
os.environ.setdefault("CONSISTENCY_STUDIO_LOG_DIR", os.path.join(_SANDBOX, "logs"))
