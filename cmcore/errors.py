"""Errors the engine raises on purpose. Each message is one line a person can act on."""


class CmcoreError(Exception):
    """Base of the engine's expected errors (bad input, missing files, diverged runs)."""


class ConfigError(CmcoreError, ValueError):
    """A configuration value is out of range; the message names the field."""


class DataError(CmcoreError):
    """The data source cannot be used (no usable image, missing torchvision set...)."""


class CheckpointError(CmcoreError):
    """A checkpoint or run directory is missing, corrupt or foreign."""


class TrainingError(CmcoreError):
    """Training cannot go on (non-finite loss, ...)."""


class OutOfMemoryError(CmcoreError):
    """The device ran out of memory (training, previews, loading, sampling); the message says what to
    make smaller. Named like torch's so front ends that classify errors by name explain it the same way."""


class RunBusyError(CmcoreError):
    """Another process (or another Trainer in this one) is training the run: one writer per run folder."""


class SaveError(CmcoreError, OSError):
    """A file could not be written (full disk, lost folder...): a checkpoint (the previous one is kept),
    an exported image. An OSError too, so callers that explain file problems ("disk full?") apply."""


def reason(exc: BaseException) -> str:
    """The cause of a failed write, short: "No space left on device", not a traceback's worth."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.split("I/O error: ")[-1]  # safetensors: "Error while serializing: I/O error: No space left..."
