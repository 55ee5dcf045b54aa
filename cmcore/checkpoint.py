"""Run directories and checkpoints: atomic writes, loads that never execute code.

    RUN_DIR/config.toml          the whole TrainConfig
    RUN_DIR/metrics.jsonl        one JSON line per logged step
    RUN_DIR/data_report.json     what was loaded and what was skipped
    RUN_DIR/previews/            sample grids from fixed noise
    RUN_DIR/checkpoints/step_XXXXXXX.safetensors   model / target / ema weights + metadata
    RUN_DIR/checkpoints/step_XXXXXXX.state.pt      optimizer, scheduler, RNG (weights_only-safe)
    RUN_DIR/checkpoints/latest                     name of the newest complete checkpoint
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from safetensors import safe_open

from .config import TrainConfig
from .errors import CheckpointError, ConfigError, SaveError
from .layout import PREFIX, checkpoint_name, latest_pointer, latest_step
from .metrics import read_jsonl

FORMAT = "consistency-studio/1"
KEEP = 3  # complete checkpoints kept per run


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # mkstemp makes 0600 files; ours are ordinary files


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`."""
    _atomic_via(path, lambda tmp: Path(tmp).write_bytes(data))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_via(path: Path, write) -> None:
    """`write(tmp)` fills a temporary file beside `path`; fsync it, then rename it over `path`
    (so a crash at any moment leaves either the old file or the new one, never half of one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, _FILE_MODE)
        write(tmp)
        with open(tmp, "r+b") as fh:  # writable: Windows cannot fsync a read-only handle
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


@dataclass
class Checkpoint:
    path: Path  # the .safetensors file
    config: TrainConfig
    step: int
    weights: dict[str, dict[str, torch.Tensor]]  # "model" | "target" | "ema" -> state dict
    meta: dict

    def state_path(self) -> Path:
        return self.path.with_name(self.path.name.replace(".safetensors", ".state.pt"))

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

    ckpt_dir = Path(run_dir) / "checkpoints"
    name = checkpoint_name(step)
    tensors = {f"{group}.{k}": v.detach().to("cpu").contiguous() for group, sd in weights.items() for k, v in sd.items()}
    meta = {"format": FORMAT, "version": __version__, "step": str(step), "config": json.dumps(config.to_dict()),
            **{k: str(v) for k, v in (extra_meta or {}).items()}}
    path = ckpt_dir / f"{name}.safetensors"
    state_path = ckpt_dir / f"{name}.state.pt"
    try:
        _atomic_via(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
        _atomic_via(state_path, lambda tmp: torch.save(state, tmp))
        atomic_write_bytes(latest_pointer(run_dir), name.encode())  # only now is the checkpoint complete
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
    names = sorted(p.name[: -len(".safetensors")] for p in ckpt_dir.glob(f"{PREFIX}*.safetensors"))
    for name in names[:-keep]:
        for suffix in (".safetensors", ".state.pt"):
            (ckpt_dir / f"{name}{suffix}").unlink(missing_ok=True)


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run directory's newest complete checkpoint."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise CheckpointError(f"{path} does not exist")
    ckpt_dir = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    latest = ckpt_dir / "latest"
    if latest.is_file():
        candidate = ckpt_dir / f"{latest.read_text().strip()}.safetensors"
        if candidate.is_file():
            return candidate
    found = sorted(ckpt_dir.glob(f"{PREFIX}*.safetensors"))
    if not found:
        raise CheckpointError(f"no checkpoint in {path}: train first, or pick a .safetensors file")
    return found[-1]


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
        config = TrainConfig.from_dict(json.loads(meta["config"]))
        step = int(meta["step"])
    except (KeyError, ValueError, ConfigError) as exc:
        raise CheckpointError(f"{file} has unreadable metadata: {exc}") from None
    weights: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in flat.items():
        group, _, name = key.partition(".")
        weights.setdefault(group, {})[name] = tensor
    return Checkpoint(file, config, step, weights, meta)


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop lines logged after `last_step` (written after the checkpoint we resume from)."""
    kept = [r for r in read_jsonl(path) if r.get("step", 0) <= last_step]
    atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in kept).encode())
