"""Time-to-first-window: measured from the start of the process, not of `main()`, so
the interpreter start-up and the Qt import count too (that is what a person waits for)."""
from __future__ import annotations

import os
import time

_IMPORTED_AT = time.time()  # fallback where /proc is not available


def process_start_time() -> float:
    """Wall-clock time (epoch seconds) at which this process started."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            # field 22 (starttime, in clock ticks since boot) follows the ")" of the comm field
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])
        age = uptime - start_ticks / os.sysconf("SC_CLK_TCK")
        return time.time() - max(age, 0.0)
    except (OSError, ValueError, IndexError, AttributeError):
        return _IMPORTED_AT


def seconds_since_start() -> float:
    return time.time() - process_start_time()
