"""Checkpoints: safetensors weights + a weights_only state file, written as one unit, loaded safely.

Where the files go is `cmcore.rundir`'s business; this module adds what needs torch.

Loading trusts nothing in the file: the metadata is checked like a TOML config, and the name, shape and
dtype of every tensor against the model the metadata describes, before any tensor is read (so a crafted
header cannot ask for a giant allocation). The state file is read with `torch.load(weights_only=True)`,
which never runs code from the pickle (torch >= 2.6; CVE-2025-32434 affected the versions before).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .config import METHODS, MODELS, TrainConfig
from .errors import CheckpointError, ConfigError, SaveError, reason
from .rundir import atomic_write_bytes, atomic_write_via, best_step, checkpoint_dir, checkpoint_files, \
    checkpoint_name, clean_orphans, committed_step, complete_steps, find_checkpoint, latest_pointer, state_file

FORMAT = "consistency-studio/1"
KEEP = 3  # complete checkpoints kept per run
GROUPS = ("model", "ema", "target")  # the weight sets a checkpoint may hold ("target": files before 0.2)
STATE_KEYS = ("optimizer", "data_gen", "noise_gen", "time_gen", "torch_rng", "elapsed")
_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}


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

    @property
    def class_names(self) -> tuple[str, ...]:
        """The classes a class-conditional model was trained on (label i is class_names[i]); () when none."""
        return class_names_of(self.meta)

    def state_path(self) -> Path:
        return state_file(self.path)

    def load_state(self) -> dict:
        """Optimizer, scheduler and RNG state (absent for exported weights-only files). Read with
        weights_only=True: a pickle that would run code is refused, never executed."""
        p = self.state_path()
        if not p.exists():
            raise CheckpointError(f"{p} is missing: this checkpoint cannot be resumed")
        try:
            state = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt or foreign: never unpickle arbitrary objects
            raise CheckpointError(f"cannot read training state {p}: {type(exc).__name__} (not a state file this "
                                  "app wrote; it was not loaded)") from None
        if not isinstance(state, dict) or any(key not in state for key in STATE_KEYS):
            raise CheckpointError(f"{p} is not a complete training state: this checkpoint cannot be resumed")
        if "step" in state and state["step"] != self.step:
            raise CheckpointError(f"{p} holds the state of step {state['step']}, not of step {self.step}: "
                                  "this checkpoint cannot be resumed")
        return state


def save_checkpoint(run_dir: Path, step: int, config: TrainConfig, weights: dict[str, dict[str, torch.Tensor]],
                    state: dict, extra_meta: dict | None = None) -> Path:
    """Write the weights, then the state, then point `latest` at them: only then is the checkpoint
    complete. A leftover weights or state file of this step from an abandoned attempt is removed first, so
    the two files of a pair always come from one save; after it, orphans of killed writes are removed."""
    from . import __version__

    ckpt_dir = checkpoint_dir(run_dir)
    tensors = {f"{group}.{k}": v.detach().to("cpu").contiguous() for group, sd in weights.items() for k, v in sd.items()}
    meta = {"format": FORMAT, "version": __version__, "step": str(step), "config": json.dumps(config.to_dict()),
            **{k: str(v) for k, v in (extra_meta or {}).items()}}
    state = {**state, "step": step}
    path, state_path = checkpoint_files(run_dir, step)
    resave = committed_step(run_dir) == step  # these files are the newest checkpoint: keep them if this fails
    try:
        if not resave:
            for stale in (path, state_path):
                stale.unlink(missing_ok=True)
        atomic_write_via(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
        atomic_write_via(state_path, lambda tmp: torch.save(state, tmp))
        atomic_write_bytes(latest_pointer(run_dir), checkpoint_name(step).encode())  # only now is it complete
    except (OSError, SafetensorError, RuntimeError) as exc:  # torch.save reports a full disk as RuntimeError
        # The pointer still names the previous checkpoint; when that is this very step (a re-save),
        # these files are it and stay.
        if not resave:
            for half in (path, state_path):
                half.unlink(missing_ok=True)
        raise SaveError(f"could not save the step-{step} checkpoint in {ckpt_dir} ({reason(exc)}); "
                        "the previous checkpoint is kept: free disk space, then resume") from exc
    _prune(run_dir, keep=KEEP, saved=step)
    clean_orphans(run_dir)
    return path


def _prune(run_dir: Path, keep: int, saved: int) -> None:
    """Keep the newest `keep` complete checkpoints up to the one just saved, and the best-scored one."""
    best = best_step(run_dir)
    for step in [s for s in complete_steps(checkpoint_dir(run_dir)) if s <= saved and s != best][:-keep]:
        for file in checkpoint_files(run_dir, step):
            file.unlink(missing_ok=True)


def read_metadata(path: str | Path) -> dict:
    """The metadata of a checkpoint file (or of a run's newest checkpoint), without reading any tensor."""
    file = find_checkpoint(path)
    try:
        with safe_open(str(file), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{file} is not a readable checkpoint ({type(exc).__name__})") from None


def load_checkpoint(path: str | Path) -> Checkpoint:
    file = find_checkpoint(path)
    try:
        with safe_open(str(file), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
            header = {key: (tuple(fh.get_slice(key).get_shape()), fh.get_slice(key).get_dtype()) for key in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{file} is not a readable checkpoint ({type(exc).__name__})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{file} is not a Consistency Studio checkpoint (format {meta.get('format')!r})")
    try:
        config, step = _checked_metadata(meta)
    except (KeyError, ValueError, TypeError, ConfigError) as exc:
        reason_text = f"missing {exc}" if isinstance(exc, KeyError) else str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{file} has unreadable metadata: {reason_text}") from None
    _check_tensors(file, header, config, int(meta["channels"]), int(meta["resolution"]), len(class_names_of(meta)))
    try:
        flat = load_file(str(file))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{file} is not a readable checkpoint ({type(exc).__name__})") from None
    weights: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in flat.items():
        group, _, name = key.partition(".")
        weights.setdefault(group, {})[name] = tensor
    return Checkpoint(file, config, step, weights, meta)


def _checked_metadata(meta: dict) -> tuple[TrainConfig, int]:
    """The config and step a checkpoint's metadata describes, checked like a TOML config wherever a value
    decides what is built on loading (model, method, size, parametrization, dropout)."""
    from .precond import PARAMETRIZATIONS

    values = json.loads(meta["config"])
    if not isinstance(values, dict):
        raise ValueError("the config is not a table")
    # Not strict: a model trained with an option removed since can still be sampled.
    config = TrainConfig.from_dict(values, strict=False)
    step = int(meta["step"])
    if step < 0:
        raise ValueError(f"step {step}")
    meta.setdefault("channels", str(config.channels if config.channels != "auto" else 3))
    meta.setdefault("resolution", str(config.resolution))
    channels, resolution = int(meta["channels"]), int(meta["resolution"])
    if channels not in (1, 3) or not 16 <= resolution <= 256 or resolution % 8:
        raise ValueError(f"{meta['channels']} channels at {meta['resolution']} px is not a model this app makes")
    resolved = config.resolved(channels)
    if resolved.method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {resolved.method!r}")
    if resolved.model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got {resolved.model!r}")
    if resolved.parametrization not in PARAMETRIZATIONS:
        raise ValueError(f"parametrization must be one of {', '.join(PARAMETRIZATIONS)}, "
                         f"got {resolved.parametrization!r}")
    if not 0 <= float(resolved.dropout) < 1:
        raise ValueError(f"dropout must be in [0, 1), got {resolved.dropout!r}")
    class_names_of(meta)  # a malformed list is refused here, before any tensor is read
    return config, step


MAX_CLASSES = 10_000


def class_names_of(meta: dict) -> tuple[str, ...]:
    """The checkpoint metadata's "class_names" (a JSON list, written only for a class-conditional model):
    2 to MAX_CLASSES distinct non-empty names, else ValueError."""
    if "class_names" not in meta:
        return ()
    names = json.loads(meta["class_names"])
    if (not isinstance(names, list) or not 2 <= len(names) <= MAX_CLASSES or len(set(names)) != len(names)
            or not all(isinstance(n, str) and n for n in names)):
        raise ValueError("class_names must list 2 or more distinct names")
    return tuple(names)


def _check_tensors(file: Path, header: dict[str, tuple[tuple[int, ...], str]], config: TrainConfig,
                   channels: int, resolution: int, num_classes: int = 0) -> None:
    """Every tensor of the file is one the described model has, with its shape and dtype; every group
    (model, ema, target) that is there is whole, and model or ema is there."""
    from .model import expected_tensors

    expected = expected_tensors(config.resolved(channels), channels, resolution, num_classes)
    groups: dict[str, dict[str, tuple[tuple[int, ...], str]]] = {}
    for key, spec in header.items():
        group, _, name = key.partition(".")
        if group not in GROUPS or not name:
            raise CheckpointError(f"{file} holds a tensor {key!r} that no model of this app has")
        groups.setdefault(group, {})[name] = spec
    if not ({"model", "ema"} & set(groups)):
        raise CheckpointError(f"{file} holds no model weights")
    for group, tensors in groups.items():
        missing = sorted(set(expected) - set(tensors))
        extra = sorted(set(tensors) - set(expected))
        if missing or extra:
            what = f"missing {group}.{missing[0]}" if missing else f"unexpected {group}.{extra[0]}"
            raise CheckpointError(f"{file} does not match the model its settings describe ({what}; "
                                  f"{len(missing)} missing, {len(extra)} unexpected)")
        for name, (shape, dtype) in tensors.items():
            want_shape, want_dtype = expected[name]
            if shape != want_shape or _DTYPES.get(dtype) != want_dtype:
                raise CheckpointError(f"{file} does not match the model its settings describe ({group}.{name} is "
                                      f"{dtype} {list(shape)}, the model has {want_dtype} {list(want_shape)})")
