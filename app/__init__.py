"""Consistency Studio: the desktop app around the `cmcore` engine.

Nothing in this package imports torch at module level: the window must appear before
the engine (and torch) finishes loading.
"""
__version__ = "0.1.0"
APP_NAME = "Consistency Studio"
APP_ID = "consistency-studio"
