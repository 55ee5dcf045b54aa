"""Checkpoints: safetensors weights + a weights_only state file, written as one unit, loaded safely.

Where the files go is `cmcore.rundir`'s business; this module adds what needs torch.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .config import TrainConfig
from .errors import CheckpointError, ConfigError, SaveError
from .rundir import atomic_write_bytes, atomic_write_via, checkpoint_dir, checkpoint_files, find_checkpoint, \
    latest_pointer, latest_step, saved_steps, state_file

FORMAT = "consistency-studio/1"
KEEP = 3  # complete checkpoints kept per run


@dataclass
class Checkpoint:
    path: Path  # the .safetensors file
    config: TrainConfig
    step: int
    weights: dict[str, dict[str, torch.Tensor]]  # "model" | "target" | "ema" -> state dict
    meta: dict

    @property
    def channels(self) -> int:
        return int(self.meta["channels"])

    @property
    def resolution(self) -> int:
        return int(self.meta["resolution"])

    def state_path(self) -> Path:
        return state_file(self.path)

    def load_state(self) -> dict:
        """Optimizer, scheduler and RNG state (absent for exported weights-only files)."""
        p = self.state_path()
        if not p.exists():
            raise CheckpointError(f"{p} is missing: this checkpoint cannot be resumed")
        try:
            return torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt or foreign: never unpickle arbitrary objects
            raise CheckpointError(f"cannot read training state {p}: {type(exc).__name__}") from None


def save_checkpoint(run_dir: Path, step: int, config: TrainConfig, weights: dict[str, dict[str, torch.Tensor]],
                    state: dict, extra_meta: dict | None = None) -> Path:
    from . import __version__

    ckpt_dir = checkpoint_dir(run_dir)
    tensors = {f"{group}.{k}": v.detach().to("cpu").contiguous() for group, sd in weights.items() for k, v in sd.items()}
    meta = {"format": FORMAT, "version": __version__, "step": str(step), "config": json.dumps(config.to_dict()),
            **{k: str(v) for k, v in (extra_meta or {}).items()}}
    path, state_path = checkpoint_files(run_dir, step)
    try:
        atomic_write_via(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
        atomic_write_via(state_path, lambda tmp: torch.save(state, tmp))
        atomic_write_bytes(latest_pointer(run_dir), path.name.removesuffix(".safetensors").encode())  # only now is the checkpoint complete
    except (OSError, SafetensorError, RuntimeError) as exc:  # torch.save reports a full disk as RuntimeError
        # The pointer still names the previous checkpoint; when that is this very step (a re-save),
        # these files are it and stay.
        if not (latest_pointer(run_dir).exists() and latest_step(run_dir) == step):
            for half in (path, state_path):
                half.unlink(missing_ok=True)
        raise SaveError(f"could not save the step-{step} checkpoint in {ckpt_dir} ({_reason(exc)}); "
                        "the previous checkpoint is kept: free disk space, then resume") from exc
    _prune(ckpt_dir, keep=KEEP)
    return path


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.split("I/O error: ")[-1]  # safetensors: "Error while serializing: I/O error: No space left..."


def _prune(ckpt_dir: Path, keep: int) -> None:
    for step in saved_steps(ckpt_dir)[:-keep]:
        for file in checkpoint_files(ckpt_dir.parent, step):
            file.unlink(missing_ok=True)


def load_checkpoint(path: str | Path) -> Checkpoint:
    file = find_checkpoint(path)
    try:
        with safe_open(str(file), framework="pt") as fh:
            meta = fh.metadata() or {}
        flat = load_file(str(file))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{file} is not a readable checkpoint ({type(exc).__name__})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{file} is not a Consistency Studio checkpoint (format {meta.get('format')!r})")
    try:
        # Not strict: a model trained with an option removed since can still be sampled.
        config = TrainConfig.from_dict(json.loads(meta["config"]), strict=False)
        step = int(meta["step"])
        meta.setdefault("channels", str(config.channels if config.channels != "auto" else 3))
        meta.setdefault("resolution", str(config.resolution))
        if int(meta["channels"]) not in (1, 3) or not 16 <= int(meta["resolution"]) <= 256:
            raise ValueError(f"{meta['channels']} channels at {meta['resolution']} px is not a model this app makes")
    except (KeyError, ValueError, ConfigError) as exc:
        raise CheckpointError(f"{file} has unreadable metadata: {exc}") from None
    weights: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in flat.items():
        group, _, name = key.partition(".")
        weights.setdefault(group, {})[name] = tensor
    return Checkpoint(file, config, step, weights, meta)
