"""The compute devices present, by name and memory."""
from __future__ import annotations

import platform
from dataclasses import dataclass

import torch

from .errors import ConfigError


@dataclass(frozen=True)
class DeviceInfo:
    id: str  # cpu | cuda:N | mps
    name: str
    memory_bytes: int | None

    @property
    def label(self) -> str:
        mem = f" ({self.memory_bytes / 2**30:.0f} GiB)" if self.memory_bytes else ""
        return f"{self.name}{mem}"


def list_devices() -> list[DeviceInfo]:
    cpu_name = platform.processor() or platform.machine() or "CPU"
    devices = [DeviceInfo("cpu", f"CPU ({cpu_name}, {torch.get_num_threads()} threads)", None)]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            devices.append(DeviceInfo(f"cuda:{i}", props.name, props.total_memory))
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append(DeviceInfo("mps", "Apple GPU (MPS)", None))
    return devices


def resolve_device(spec: str) -> torch.device:
    """'auto' picks the first GPU, else the CPU; anything else must exist here."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda:0")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec not in {d.id for d in list_devices()} and spec != "cuda":
        raise ConfigError(f"device {spec!r} is not available here (have: {', '.join(d.id for d in list_devices())})")
    return torch.device(spec)
