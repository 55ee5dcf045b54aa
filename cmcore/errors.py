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


class SaveError(CmcoreError, OSError):
    """A checkpoint could not be written (full disk, lost folder...); the previous one is kept.
    An OSError too, so callers that explain file problems (the app's "disk full?" hint) apply."""
