"""The model a config describes: the U-Net F inside the preconditioning f, built fresh or loaded."""
from __future__ import annotations

import torch

from .checkpoint import Checkpoint
from .config import TrainConfig
from .errors import CheckpointError
from .nets import build_unet
from .precond import ConsistencyFunction


def build_model(config: TrainConfig, channels: int, resolution: int, num_classes: int = 0) -> ConsistencyFunction:
    """A freshly initialised model for a resolved config (dropout and parametrization concrete); conditioned on
    `num_classes` classes when there are any."""
    return ConsistencyFunction(build_unet(config.model, channels, resolution, float(config.dropout), num_classes),
                               config.parametrization)


def expected_tensors(config: TrainConfig, channels: int, resolution: int,
                     num_classes: int = 0) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """name -> (shape, dtype) of the state dict of the model a resolved config describes. Built on the
    meta device: no memory is allocated and no random number drawn, whatever the sizes."""
    with torch.device("meta"):
        model = build_model(config, channels, resolution, num_classes)
    return {name: (tuple(t.shape), t.dtype) for name, t in model.state_dict().items()}


def load_model(ckpt: Checkpoint, device: torch.device | str = "cpu") -> ConsistencyFunction:
    """The evaluation-EMA weights of a checkpoint (the raw weights if it has none), ready to sample."""
    from .errors import OutOfMemoryError

    config = ckpt.config.resolved(ckpt.channels)
    try:
        weights = ckpt.weights.get("ema") or ckpt.weights["model"]
        model = build_model(config, ckpt.channels, ckpt.resolution, len(ckpt.class_names))
        _check_dtypes(model.state_dict(), weights)
        model.load_state_dict(weights)
    except (KeyError, ValueError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{ckpt.path} does not match the model its settings describe ({reason})") from None
    try:
        return model.to(device).eval().requires_grad_(False)
    except torch.OutOfMemoryError:
        raise OutOfMemoryError(f"out of memory loading {ckpt.path.name} ({config.model} model) onto {device}: "
                               "close what else uses it, or load it on the CPU") from None


def _check_dtypes(model: dict[str, torch.Tensor], weights: dict[str, torch.Tensor]) -> None:
    """load_state_dict would convert a tensor of another dtype silently; a checkpoint of ours never has one."""
    for name, tensor in weights.items():
        if name in model and tensor.dtype != model[name].dtype:
            raise ValueError(f"{name} is {tensor.dtype}, the model has {model[name].dtype}")
