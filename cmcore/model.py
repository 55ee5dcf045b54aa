"""The model a config describes: the U-Net F inside the preconditioning f, built fresh or loaded."""
from __future__ import annotations

import torch

from .checkpoint import Checkpoint
from .config import TrainConfig
from .errors import CheckpointError
from .nets import build_unet
from .precond import ConsistencyFunction


def build_model(config: TrainConfig, channels: int, resolution: int) -> ConsistencyFunction:
    """A freshly initialised model for a resolved config (dropout and parametrization concrete)."""
    return ConsistencyFunction(build_unet(config.model, channels, resolution, float(config.dropout)),
                               config.parametrization)


def load_model(ckpt: Checkpoint, device: torch.device | str = "cpu") -> ConsistencyFunction:
    """The evaluation-EMA weights of a checkpoint (the raw weights if it has none), ready to sample."""
    config = ckpt.config.resolved(ckpt.channels)
    try:
        model = build_model(config, ckpt.channels, ckpt.resolution)
        model.load_state_dict(ckpt.weights.get("ema") or ckpt.weights["model"])
    except (KeyError, ValueError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{ckpt.path} does not match the model its settings describe ({reason})") from None
    return model.to(device).eval().requires_grad_(False)
