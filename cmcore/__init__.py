"""cmcore: the consistency-model engine of Consistency Studio (no Qt here, ever)."""
__version__ = "0.2.0"  # the only place the version is written (pyproject.toml and the app read it)

from .config import TrainConfig  # noqa: E402
from .errors import CheckpointError, CmcoreError, ConfigError, DataError, SaveError, TrainingError  # noqa: E402


def __getattr__(name):  # heavy torch-based pieces load on first use, so `import cmcore` stays cheap
    if name == "Trainer":
        from .training import Trainer

        return Trainer
    if name in ("events", "export", "sampling", "schedules", "methods", "precond", "nets", "data",
                "generator", "runs", "rundir", "devices", "checkpoint"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    if name == "load_generator":
        from .generator import load_generator

        return load_generator
    if name == "list_devices":
        from .devices import list_devices

        return list_devices
    raise AttributeError(name)


__all__ = ["TrainConfig", "Trainer", "CmcoreError", "ConfigError", "DataError", "CheckpointError", "TrainingError", "SaveError",
           "load_generator", "list_devices", "__version__"]
