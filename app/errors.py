"""Turn any exception into a message a person can act on.

Classified by the names in the exception's MRO so this module never imports cmcore
(which would pull in torch) just to explain an error.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorInfo:
    kind: str  # class name, e.g. "DataError"
    title: str
    message: str  # the cause, one line from the exception
    hint: str  # what to do about it
    details: str  # full traceback (also written to the log)

    @property
    def text(self) -> str:
        return f"{self.message}\n\n{self.hint}" if self.hint else self.message


_HINTS: list[tuple[str, str, str]] = [
    # (class name in the MRO, title, what to do)
    ("DataError", "Cannot use these images",
     "Pick another folder, check the skipped files listed in the Data pane, or try the demo data."),
    ("RunBusyError", "Run is busy",
     "Another process (or window) is training this run: wait for it to end or stop it there, "
     "or start a new run instead. The Runs pane shows which runs are busy."),
    ("ConfigError", "Invalid setting",
     "Change the named setting in the Train pane (or the preset file) and start again."),
    ("CheckpointError", "Cannot open run or checkpoint",
     "Choose another run or checkpoint; the file may be incomplete or from another program."),
    ("TrainingError", "Training stopped",
     "The loss stopped being a finite number. Lower the learning rate, keep gradient clipping on "
     "or use fp32 precision, then start again (or resume from the last checkpoint)."),
    ("OutOfMemoryError", "Out of memory",
     "Lower the batch size, the resolution or the model size, or pick another device."),
    ("MemoryError", "Out of memory",
     "Lower the batch size, the resolution or the model size, or close other programs."),
    ("SaveError", "Cannot save the checkpoint",
     "Free disk space or check that the run folder is still writable, then resume the run "
     "(Runs pane); nothing before the previous checkpoint is lost."),
    ("OSError", "File problem",
     "Check that the folder exists, is writable and that the disk is not full."),
]


def describe(exc: BaseException, context: str = "") -> ErrorInfo:
    names = [c.__name__ for c in type(exc).__mro__]
    message = str(exc).strip() or type(exc).__name__
    if "out of memory" in message.lower() and "OutOfMemoryError" not in names:
        names.insert(0, "OutOfMemoryError")  # CUDA OOM on older torch is a bare RuntimeError
    details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    for name, title, hint in _HINTS:
        if name in names:
            break
    else:
        from .log import log_file

        title = "Unexpected error"
        message = f"{type(exc).__name__}: {message}"
        hint = f"The full report is in the log file:\n{log_file()}"
    if context:
        title = f"{context}: {title}"
    return ErrorInfo(kind=type(exc).__name__, title=title, message=message, hint=hint, details=details)
