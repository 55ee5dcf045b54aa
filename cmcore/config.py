"""The one configuration dataclass. Every default of the engine lives here.

The same `TrainConfig` is written to a run's ``config.toml``, embedded in checkpoint
metadata, filled by the CLI flags and by the app's Train pane, and saved as presets.
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib
import tomli_w

from .errors import ConfigError

METHODS = ("ct", "cd", "flow")
MODELS = ("tiny", "small", "base")
DISTANCES = ("auto", "pseudo_huber", "l2", "l1", "l1_fine")
SPACINGS = ("karras", "uniform")
K_SAMPLINGS = ("lognormal", "uniform")
WEIGHTINGS = ("inverse_dt", "uniform")
FLOW_WEIGHTINGS = ("uniform", "lognormal")
PAIR_GAPS = ("relative", "absolute")
CURRICULA = ("ect", "ect_smooth", "doubling", "sqrt", "constant")
SOLVERS = ("euler", "heun")
PRECISIONS = ("fp32", "bf16", "fp16")
OPTIMIZERS = ("radam", "adam")
# Measured on the demo data (README): with batch 16, 3e-3 learned fastest in 4000-step runs but
# collapsed in a 10-minute (5750-step) run, 6e-3 diverged; a distilled student fine-tunes its
# teacher's weights and collapsed at 3e-3.
LR_FROM_SCRATCH = 2e-3
LR_FROM_TEACHER = 1e-3
# A consistency loss chases its own moving target and its loss can spike: in 16000-step runs
# with Adam's usual 0.999 CT and CD collapsed after a spike, with 0.99 (a ~100-step second-moment
# average) both recovered from theirs (README: "Four times the budget"). Flow never spiked.
BETA2_CONSISTENCY = 0.99
BETA2_FLOW = 0.999
# CD students: dropout 0.1 gave one-step FD 29.1 / 28.3 against 31.8 / 32.0 without (two seeds,
# 4000 steps), 0.2 gave 32.3; CT gained nothing from 0.1 (README).
DROPOUT_DISTILL = 0.1
# CD students: L1 gave FD 84.8 / 35.2 (seed 1: 92.1 / 37.1) at 2 / 4 steps against 104.0 / 45.6 with
# pseudo-Huber (mean of three classifiers, better under each; one step within the seed spread). L1 plus
# its within-2×2-pixels part (l1_fine, weight 1) then beat L1 at 1 / 2 / 4 steps in both seeds: 227.8 /
# 78.1 / 32.9 and 217.5 / 74.4 / 30.3 against 247.0 / 84.8 / 35.2 and 259.6 / 92.1 / 37.1 (weight 3:
# 241.3 / 83.3 / 34.2). CT with L1 had worse 2- and 4-step samples, so it keeps pseudo-Huber (README:
# "CD, third round").
DISTANCE_DISTILL = "l1_fine"
DISTANCE_DEFAULT = "pseudo_huber"
# CD students: a cosine decay to 0 instead of to 0.1·lr won at 1, 2 and 4 steps in three of four pairs
# of 4000-step runs (L1 in two seeds, l1_fine seed 0: 215.2 / 74.9 / 30.0 against 227.8 / 78.1 / 32.9;
# l1_fine seed 1 a little worse, 221.6 / 81.7 / 31.1 against 217.5 / 74.4 / 30.3); the 16 000-step CD
# runs whose one step beat the teacher's 8 Euler steps used it (with l1_fine). CT and the flow teacher
# were not measured with it and keep 0.1 (README: "CD, third round").
LR_MIN_RATIO_DISTILL = 0.0
LR_MIN_RATIO_DEFAULT = 0.1
PARAMETRIZATIONS = ("auto", "reflow", "blend", "edm")


@dataclass
class TrainConfig:
    # --- what to train on --------------------------------------------------------------
    data: str = "demo"  # folder path | demo | mnist:ROOT | fashionmnist:ROOT | cifar10:ROOT
    resolution: int = 32
    channels: str = "auto"  # auto | 1 | 3
    hflip: bool = False
    method: str = "ct"  # ct | cd | flow
    teacher: str = ""  # run dir or checkpoint of a `flow` run (cd; optional warm start for ct)
    init_from_teacher: bool = True  # cd: the student starts from the teacher's weights

    # --- model ---------------------------------------------------------------------------
    model: str = "tiny"
    dropout: float = -1.0  # < 0 = auto: DROPOUT_DISTILL for cd, none for ct and flow
    # auto = what measured best per method: blend (f = (1-t)*x + t*F) for ct and cd,
    # reflow (f = x - t*v, the network is v) for a flow teacher; a student from a teacher uses the teacher's.
    parametrization: str = "auto"

    # --- optimisation --------------------------------------------------------------------
    batch_size: int = 16  # more updates per image beat larger batches in a CPU budget (measured)
    max_steps: int = 20000
    max_minutes: float = 10.0  # 0 = no time limit; with a limit the schedules follow the clock
    lr: float = 0.0  # 0 = auto: LR_FROM_SCRATCH, or LR_FROM_TEACHER for a student starting from its teacher
    optimizer: str = "radam"
    adam_beta2: float = 0.0  # Adam / RAdam second-moment rate; 0 = auto: BETA2_CONSISTENCY for ct/cd, BETA2_FLOW for flow
    warmup_steps: int = 100
    lr_min_ratio: float = -1.0  # cosine decays to lr * lr_min_ratio; < 0 = auto: 0 for cd, 0.1 for ct and flow
    grad_clip: float = 1.0  # 0 disables
    # roll back to recent good weights when the 50-step mean loss exceeds this many times the
    # mean of the 500 steps before (cmcore/guard.py); 0 disables
    spike_factor: float = 3.0
    weight_decay: float = 0.0
    ema_eval: float = 0.999  # evaluation EMA (previews, sampling); warmed up early on
    precision: str = "fp32"  # fp32 | bf16 | fp16 (CUDA only; falls back to fp32 on CPU)
    seed: int = 0
    device: str = "auto"

    # --- consistency options ---------------------------------------------------------------
    curriculum: str = "ect"
    s0: int = 2  # initial number of steps n
    s1: int = 64  # final number of steps n
    pair_gap: str = "relative"  # ect curricula: r = t·(1 − 1/n) (relative) or max(0, t − 1/n) (absolute: measured worse)
    warmup_fraction: float = 0.25  # ect: fraction of steps at n = 1 (pure denoising target)
    mu0: float = 0.9  # sqrt curriculum: target EMA at n = s0; others use target_ema
    target_ema: float = 0.0  # 0 = stop-gradient copy of theta (iCT / ECT)
    distance: str = "auto"  # auto = DISTANCE_DISTILL for cd, DISTANCE_DEFAULT (pseudo-Huber) for ct
    huber_c: float = 0.0  # 0 = 0.00054 * sqrt(dim), as in improved CT
    fine_weight: float = 1.0  # l1_fine: weight of the within-2×2-pixels part of the difference
    spacing: str = "karras"
    rho: float = 7.0
    t_min: float = 0.002
    k_sampling: str = "lognormal"
    p_mean: float = -1.1  # log-normal time sampling on log(t / (1 - t))
    p_std: float = 2.0
    weighting: str = "inverse_dt"
    teacher_solver: str = "heun"  # cd: one teacher step with euler or heun
    anchor: int = 0  # cd: pairs per batch taken at (t, r) = (1, 0) with the teacher's whole ODE as its step
    anchor_steps: int = 8  # cd: Heun steps of that ODE solve (2·steps − 1 teacher evaluations)
    flow_weighting: str = "uniform"  # flow loss weight w(t): uniform | lognormal (SD3-style, middle times)

    # --- logging / saving -----------------------------------------------------------------
    log_every: int = 10
    preview_every: int = 250
    checkpoint_every: int = 500
    preview_count: int = 16

    def concrete_lr(self) -> float:
        if self.lr > 0:
            return self.lr
        starts_from_teacher = self.method == "cd" and bool(self.teacher) and self.init_from_teacher
        return LR_FROM_TEACHER if starts_from_teacher else LR_FROM_SCRATCH

    def concrete_adam_beta2(self) -> float:
        if self.adam_beta2 > 0:
            return self.adam_beta2
        return BETA2_FLOW if self.method == "flow" else BETA2_CONSISTENCY

    def concrete_dropout(self) -> float:
        if self.dropout >= 0:
            return self.dropout
        return DROPOUT_DISTILL if self.method == "cd" else 0.0

    def concrete_lr_min_ratio(self) -> float:
        if self.lr_min_ratio >= 0:
            return self.lr_min_ratio
        return LR_MIN_RATIO_DISTILL if self.method == "cd" else LR_MIN_RATIO_DEFAULT

    def concrete_distance(self) -> str:
        if self.distance != "auto":
            return self.distance
        return DISTANCE_DISTILL if self.method == "cd" else DISTANCE_DEFAULT

    def concrete_parametrization(self) -> str:
        if self.parametrization != "auto":
            return self.parametrization
        return "reflow" if self.method == "flow" else "blend"

    def resolved(self) -> "TrainConfig":
        """This configuration with every automatic choice replaced by the value it stands for."""
        return self.replace(parametrization=self.concrete_parametrization(), lr=self.concrete_lr(),
                            adam_beta2=self.concrete_adam_beta2(), dropout=self.concrete_dropout(),
                            distance=self.concrete_distance(), lr_min_ratio=self.concrete_lr_min_ratio())

    def validate(self) -> "TrainConfig":
        def choice(name: str, options: tuple[str, ...]) -> None:
            if getattr(self, name) not in options:
                raise ConfigError(f"{name} must be one of {', '.join(options)}, got {getattr(self, name)!r}")

        choice("method", METHODS)
        choice("model", MODELS)
        choice("distance", DISTANCES)
        choice("spacing", SPACINGS)
        choice("k_sampling", K_SAMPLINGS)
        choice("weighting", WEIGHTINGS)
        choice("flow_weighting", FLOW_WEIGHTINGS)
        choice("curriculum", CURRICULA)
        choice("pair_gap", PAIR_GAPS)
        choice("teacher_solver", SOLVERS)
        choice("precision", PRECISIONS)
        choice("optimizer", OPTIMIZERS)
        choice("parametrization", PARAMETRIZATIONS)
        if str(self.channels) not in ("auto", "1", "3"):
            raise ConfigError(f"channels must be auto, 1 or 3, got {self.channels!r}")
        self.channels = str(self.channels)
        if not 16 <= self.resolution <= 256:
            raise ConfigError(f"resolution must be between 16 and 256, got {self.resolution}")
        if self.resolution % 8:
            raise ConfigError(f"resolution must be a multiple of 8, got {self.resolution}")
        if self.batch_size < 1:
            raise ConfigError("batch_size must be at least 1")
        if self.max_steps < 1:
            raise ConfigError("max_steps must be at least 1")
        if self.lr < 0:
            raise ConfigError("lr must be positive (or 0 for the automatic choice)")
        if not 1 <= self.s0 <= self.s1:
            raise ConfigError(f"need 1 <= s0 <= s1, got s0={self.s0}, s1={self.s1}")
        for name in ("ema_eval", "target_ema", "mu0", "adam_beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1)")
        if self.spike_factor != 0 and self.spike_factor <= 1.0:
            raise ConfigError(f"spike_factor must be above 1 (or 0 to disable), got {self.spike_factor}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ConfigError("warmup_fraction must be in [0, 1)")
        if self.anchor < 0 or self.anchor_steps < 1:
            raise ConfigError("anchor must be 0 or more and anchor_steps at least 1")
        if self.lr_min_ratio > 1.0:
            raise ConfigError("lr_min_ratio must be at most 1 (or negative for the automatic choice)")
        if self.fine_weight < 0:
            raise ConfigError("fine_weight must be 0 or more")
        if self.dropout >= 1.0:
            raise ConfigError("dropout must be below 1 (or negative for the automatic choice)")
        if self.method == "cd" and not self.teacher:
            raise ConfigError("method cd needs a teacher: a `flow` run directory or checkpoint")
        return self

    # --- TOML round trip -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(unknown)}")
        kwargs = {}
        for name, value in values.items():
            default = getattr(cls(), name)
            try:
                kwargs[name] = type(default)(value) if not isinstance(default, bool) else _to_bool(value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{name}: cannot read {value!r} ({exc})") from None
        return cls(**kwargs)

    def to_toml(self) -> str:
        return tomli_w.dumps({"train": self.to_dict()})

    @classmethod
    def from_toml(cls, text: str) -> "TrainConfig":
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not a valid TOML file: {exc}") from None
        return cls.from_dict(doc.get("train", doc))

    def save(self, path: str | Path) -> None:
        from .rundir import atomic_write_bytes

        atomic_write_bytes(Path(path), self.to_toml().encode())

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        try:
            return cls.from_toml(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


def _to_bool(value: Any) -> bool:
    if isinstance(value, str):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError("not a boolean")
    return bool(value)


FIELD_NAMES = tuple(f.name for f in fields(TrainConfig))
