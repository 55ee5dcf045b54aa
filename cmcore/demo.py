"""Moved to ``cmcore.data.demo``. This re-export keeps ``from cmcore.demo import make_demo``
working until every caller (benchmarks/) imports it from there; then delete this file."""
from .data.demo import DEMO_CLASSES, make_demo  # noqa: F401
