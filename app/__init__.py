"""Consistency Studio: the desktop app around the `cmcore` engine.

Nothing in this package imports torch at module level: the window must appear before
the engine (and torch) finishes loading.
"""
from cmcore import __version__  # noqa: F401  (written once, in cmcore)
APP_NAME = "Consistency Studio"
APP_ID = "consistency-studio"
