"""The one configuration dataclass. Every default of the engine lives here.

The same `TrainConfig` is written to a run's ``config.toml``, embedded in checkpoint
metadata, filled by the CLI flags and by the app's Train pane, and saved as presets.
"""
from __future__ import annotations

import dataclasses
import math
import os
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
DISTANCES = ("auto", "pseudo_huber", "l1_fine")
PARAMETRIZATIONS = ("auto", "blend", "reflow")
PRECISIONS = ("fp32", "bf16", "fp16")
CLASSES = ("auto", "on", "off")  # class-conditional training (cmcore/data/classes.py says when "auto" has classes)
AUTO = "auto"

# The automatic choices, one line each on why; the evidence is in docs/measurements.md.
LR_FROM_SCRATCH = 2e-3  # 3e-3 learned faster but collapsed in a 10-minute run ("First ablations")
LR_FROM_TEACHER = 1e-3  # a CD student fine-tunes its teacher's weights and collapsed at 3e-3 ("First ablations")
BETA2_CONSISTENCY = 0.99  # consistency losses spike; with 0.999 the 16 000-step runs never recovered ("Four times the budget")
BETA2_FLOW = 0.999  # the flow loss has a fixed target and never spiked
DROPOUT_DISTILL = 0.1  # better one-step CD in two seeds; CT gained nothing ("CD, second round")
DISTANCE_DISTILL = "l1_fine"  # better CD at 1 / 2 / 4 steps in two seeds ("CD, third round")
DISTANCE_DEFAULT = "pseudo_huber"  # improved CT's distance; L1 was worse for CT at 2 and 4 steps ("CD, third round")
LR_MIN_RATIO_DISTILL = 0.0  # CD decays to 0: better in three of four pairs ("CD, third round")
LR_MIN_RATIO_DEFAULT = 0.1  # CT and the teacher were not measured with a decay to 0
CT_WARMUP_FRACTION = 0.25  # CT starts as a plain denoiser; a CD student starts from a teacher that already is one
HUBER_C_PER_SQRT_DIM = 0.00054  # improved CT: c = 0.00054·√(pixels × channels)

# Data specs NAME:ROOT of the torchvision sets (cmcore/data/torchvision_sets.py; a test keeps the two equal).
DATASET_PREFIXES = ("mnist", "fashionmnist", "cifar10")

# Fields that may hold AUTO, with the kind of value it resolves to.
AUTO_NUMBERS = ("lr", "adam_beta2", "lr_min_ratio", "dropout", "huber_c", "warmup_fraction")

# Options removed in 0.2 (measured worse or never measured; docs/measurements.md, "Options tried and removed"),
# with the value that behaves as the code does now. An old run whose config holds that value still loads and
# resumes; one that holds another value can be sampled (`strict=False`) but not trained further.
RETIRED = {"init_from_teacher": True, "optimizer": "radam", "weight_decay": 0.0, "curriculum": "ect",
           "pair_gap": "relative", "target_ema": 0.0, "fine_weight": 1.0, "k_sampling": "lognormal",
           "weighting": "inverse_dt", "teacher_solver": "heun", "anchor": 0, "flow_weighting": "uniform",
           "mu0": None, "spacing": None, "rho": None, "anchor_steps": None}  # None: had no effect with the rest
_REMOVED_CHOICES = {"distance": ("l1", "l2"), "parametrization": ("edm",)}
# Before 0.2 "automatic" was spelled with a number.
_LEGACY_AUTO = {"lr": lambda v: v == 0, "adam_beta2": lambda v: v == 0, "huber_c": lambda v: v == 0,
                "lr_min_ratio": lambda v: v < 0, "dropout": lambda v: v < 0}


@dataclass
class TrainConfig:
    # --- what to train on --------------------------------------------------------------
    data: str = "demo"  # folder path | demo | mnist:ROOT | fashionmnist:ROOT | cifar10:ROOT
    resolution: int = 32
    channels: str = AUTO  # auto | 1 | 3
    hflip: bool = False
    # auto: with classes when a folder's images sit in 2+ sub-folders (their names); on: required (the demo's and
    # torchvision sets' own labels too); off: never. A cd run's teacher must have the same classes.
    classes: str = AUTO
    method: str = "ct"  # ct | cd | flow
    teacher: str = ""  # cd: run folder or checkpoint of a `flow` run; the student starts from its weights

    # --- model ---------------------------------------------------------------------------
    model: str = "tiny"  # tiny | small | base (cd: the teacher's)
    dropout: float | str = AUTO  # auto: DROPOUT_DISTILL for cd, 0 for ct and flow
    # f = c_skip·x + c_out·F (cmcore/precond.py). auto: blend for ct, reflow for a flow teacher, the teacher's for cd
    parametrization: str = AUTO

    # --- optimisation (RAdam) ------------------------------------------------------------
    batch_size: int = 16  # more updates per image beat larger batches in a CPU budget
    max_steps: int = 20000
    max_minutes: float = 10.0  # 0 = no time limit; with a limit the schedules follow the clock
    lr: float | str = AUTO  # auto: LR_FROM_SCRATCH, or LR_FROM_TEACHER for cd
    adam_beta2: float | str = AUTO  # auto: BETA2_CONSISTENCY for ct and cd, BETA2_FLOW for flow
    warmup_steps: int = 100  # linear learning-rate warm-up
    lr_min_ratio: float | str = AUTO  # cosine decay to lr·ratio; auto: LR_MIN_RATIO_DISTILL for cd, else LR_MIN_RATIO_DEFAULT
    grad_clip: float = 1.0  # 0 disables
    # roll back to recent good weights when the 50-step mean loss exceeds this many times the
    # mean of the 500 steps before (cmcore/guard.py); 0 disables
    spike_factor: float = 3.0
    ema_eval: float = 0.999  # evaluation EMA (previews, sampling); warmed up early on
    precision: str = "fp32"  # fp32 | bf16 | fp16 (CUDA only; falls back to fp32 elsewhere)
    seed: int = 0
    device: str = AUTO

    # --- the consistency losses (ct, cd) ---------------------------------------------------
    # The curriculum: n = 1 for a warm-up fraction of the run, then n doubles from s0 to s1 (cmcore/schedules.py)
    s0: int = 2
    s1: int = 64
    warmup_fraction: float | str = AUTO  # auto: CT_WARMUP_FRACTION for ct, 0 for cd
    distance: str = AUTO  # auto: DISTANCE_DISTILL for cd, DISTANCE_DEFAULT for ct
    huber_c: float | str = AUTO  # pseudo-Huber's c; auto: HUBER_C_PER_SQRT_DIM·√dim
    t_min: float = 0.002
    p_mean: float = -1.1  # times: log(t / (1 − t)) ~ N(p_mean, p_std²)
    p_std: float = 2.0

    # --- logging / saving -----------------------------------------------------------------
    log_every: int = 10
    preview_every: int = 250  # 0 = no previews
    checkpoint_every: int = 500  # 0 = only at the end
    preview_count: int = 16
    score: bool = True  # hold out images and score each checkpoint on them; keeps the best (cmcore/evaluation.py)
    tensorboard: bool = False  # also write the metrics to RUN/tensorboard (cmcore/tensorboard_mirror.py)

    # --- automatic choices ------------------------------------------------------------------
    def resolved(self, channels: int | None = None, teacher: "TrainConfig | None" = None,
                 class_names: tuple[str, ...] | None = None) -> "TrainConfig":
        """This configuration with every automatic choice replaced by the value it stands for.

        `channels`: the data's channel count (needed when `channels` is auto); `teacher`: the
        resolved config of a cd run's teacher, whose model size and parametrization the student inherits.
        `device` stays as given: "auto" is resolved where the run starts (`cmcore.devices.resolve_device`),
        so a resumed run picks the device of the machine it resumes on. `class_names`: the classes the run
        trains with (cmcore.data.classes decided them), so `classes` auto is written out as on or off.
        """
        c = self.replace()
        if c.classes == AUTO:
            c.classes = "on" if class_names else "off"
        is_cd, is_flow = c.method == "cd", c.method == "flow"
        if c.channels == AUTO:
            c.channels = str(channels or 3)
        if not is_cd:
            c.teacher = ""
        elif teacher is not None:
            c.model, c.parametrization = teacher.model, teacher.parametrization
        if c.parametrization == AUTO:
            c.parametrization = "reflow" if is_flow else "blend"
        auto = {
            "lr": LR_FROM_TEACHER if is_cd else LR_FROM_SCRATCH,
            "adam_beta2": BETA2_FLOW if is_flow else BETA2_CONSISTENCY,
            "lr_min_ratio": LR_MIN_RATIO_DISTILL if is_cd else LR_MIN_RATIO_DEFAULT,
            "dropout": DROPOUT_DISTILL if is_cd else 0.0,
            "warmup_fraction": CT_WARMUP_FRACTION if c.method == "ct" else 0.0,
            "huber_c": HUBER_C_PER_SQRT_DIM * math.sqrt(int(c.channels) * c.resolution**2),
        }
        for name, value in auto.items():
            if getattr(c, name) == AUTO:
                setattr(c, name, value)
        if c.distance == AUTO:
            c.distance = DISTANCE_DISTILL if is_cd else DISTANCE_DEFAULT
        return c

    @property
    def default_sampler(self) -> str:
        """How the gallery and previews sample this model: a flow teacher by integrating its ODE,
        a consistency model with the multistep sampler."""
        return "ode" if self.method == "flow" else "multistep"

    def validate(self) -> "TrainConfig":
        """Check every value; each error is one line naming the field."""
        def choice(name: str, options: tuple[str, ...]) -> None:
            if getattr(self, name) not in options:
                raise ConfigError(f"{name} must be one of {', '.join(options)}, got {getattr(self, name)!r}")

        def number(name: str, low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> None:
            value = getattr(self, name)
            if value == AUTO and name in AUTO_NUMBERS:
                return
            above = value > low if low_open else value >= low
            below = value < high if high_open else value <= high
            if not (above and below):
                lo, hi = ("(" if low_open else "[") + f"{low:g}", f"{high:g}" + (")" if high_open else "]")
                raise ConfigError(f"{name} must be in {lo}, {hi}, got {value!r}")

        for name, gone in _REMOVED_CHOICES.items():
            if getattr(self, name) in gone:
                raise ConfigError(f"{name} = {getattr(self, name)!r} was removed in version 0.2 (measured worse; see "
                                  "docs/measurements.md): this run can be sampled but not trained further")
        choice("method", METHODS)
        choice("model", MODELS)
        choice("distance", DISTANCES)
        choice("precision", PRECISIONS)
        choice("parametrization", PARAMETRIZATIONS)
        choice("classes", CLASSES)
        if str(self.channels) not in (AUTO, "1", "3"):
            raise ConfigError(f"channels must be auto, 1 or 3, got {self.channels!r}")
        self.channels = str(self.channels)
        if not 16 <= self.resolution <= 256 or self.resolution % 8:
            raise ConfigError(f"resolution must be a multiple of 8 from 16 to 256, got {self.resolution}")
        for name in ("batch_size", "max_steps", "log_every", "preview_count", "s0"):
            number(name, 1, math.inf)
        for name in ("warmup_steps", "preview_every", "checkpoint_every", "seed"):
            number(name, 0, math.inf)
        number("max_minutes", 0, math.inf)
        number("lr", 0, math.inf, low_open=True)
        number("adam_beta2", 0, 1, low_open=True, high_open=True)
        number("ema_eval", 0, 1, high_open=True)
        number("lr_min_ratio", 0, 1)
        number("dropout", 0, 1, high_open=True)
        number("warmup_fraction", 0, 1, high_open=True)
        number("huber_c", 0, math.inf, low_open=True)
        number("grad_clip", 0, math.inf)
        number("t_min", 0, 1, low_open=True, high_open=True)
        number("p_std", 0, math.inf, low_open=True)
        if self.s1 < self.s0:
            raise ConfigError(f"need s0 <= s1, got s0={self.s0}, s1={self.s1}")
        if self.spike_factor != 0 and self.spike_factor <= 1.0:
            raise ConfigError(f"spike_factor must be above 1 (or 0 to disable), got {self.spike_factor}")
        if self.method == "cd" and not self.teacher:
            raise ConfigError("method cd needs a teacher: a `flow` run directory or checkpoint")
        return self

    # --- paths ----------------------------------------------------------------------------
    def with_absolute_paths(self) -> "TrainConfig":
        """`data` and `teacher` made absolute (from the current folder), so the run's record means the same
        from any folder a resume starts in; `demo` stays, NAME:ROOT keeps its form with ROOT absolute."""
        kind, root = split_data_spec(self.data)
        data = self.data if kind == "demo" or not root.strip() else (
            f"{kind}:{_absolute(root)}" if kind != "folder" else _absolute(root))
        return self.replace(data=data, teacher=_absolute(self.teacher) if self.teacher.strip() else self.teacher)

    def check_paths(self, teacher: bool = True) -> "TrainConfig":
        """The data folder (or a data set's ROOT) and, for cd, the teacher exist: else one line naming the key."""
        kind, root = split_data_spec(self.data)
        if kind != "demo":
            what = "folder" if kind == "folder" else f"{kind} ROOT folder"
            if not root.strip():
                raise ConfigError(f"data: no {what} given")
            if not Path(root).expanduser().is_dir():
                state = "is not a folder" if Path(root).expanduser().exists() else "does not exist"
                raise ConfigError(f"data: the {what} {root} {state} (or use demo, mnist:ROOT, fashionmnist:ROOT, "
                                  "cifar10:ROOT)")
        if teacher and self.method == "cd" and self.teacher and not Path(self.teacher).expanduser().exists():
            raise ConfigError(f"teacher: {self.teacher} does not exist: give a `flow` run folder or checkpoint")
        return self

    # --- TOML round trip -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], strict: bool = True) -> "TrainConfig":
        """A config from plain values (TOML, JSON, CLI flags), each checked against its field's type.

        Options removed in 0.2 are dropped when they hold the value that behaves as today; with
        another value they are an error, unless `strict=False` (loading an old model to sample it).
        """
        known = {f.name for f in fields(cls)}
        values = dict(values)
        for name, same in RETIRED.items():
            if name in values:
                value = values.pop(name)
                if strict and same is not None and value != same:
                    raise ConfigError(f"{name} = {value!r} is an option removed in version 0.2 (measured worse or never "
                                      "measured; see docs/measurements.md): this run can be sampled but not trained further")
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(unknown)}")
        defaults = cls()
        kwargs = {name: _convert(name, value, getattr(defaults, name)) for name, value in values.items()}
        return cls(**kwargs)

    def to_toml(self) -> str:
        return tomli_w.dumps({"train": self.to_dict()})

    @classmethod
    def from_toml(cls, text: str, strict: bool = True) -> "TrainConfig":
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not a valid TOML file: {exc}") from None
        section = doc.get("train", doc)
        if not isinstance(section, dict):
            raise ConfigError("the [train] section must be a table")
        return cls.from_dict(section, strict)

    def save(self, path: str | Path) -> None:
        from .rundir import atomic_write_bytes

        atomic_write_bytes(Path(path), self.to_toml().encode())

    @classmethod
    def load(cls, path: str | Path, strict: bool = True) -> "TrainConfig":
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"cannot read config {path}: not UTF-8 text") from None
        return cls.from_toml(text, strict)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


def split_data_spec(spec: str) -> tuple[str, str]:
    """("demo", ""), (NAME, ROOT) for a torchvision set NAME:ROOT, or ("folder", spec)."""
    if spec.strip().lower() == "demo":
        return "demo", ""
    name, sep, root = spec.partition(":")
    if sep and name.strip().lower() in DATASET_PREFIXES:
        return name.strip().lower(), root.strip()
    return "folder", spec


def _absolute(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def _convert(name: str, value: Any, default: Any) -> Any:
    """`value` as the type of the field `name` (whose default is `default`), or a ConfigError naming it."""
    if name in _LEGACY_AUTO and _is_real(value) and _LEGACY_AUTO[name](value):
        return AUTO
    if name in AUTO_NUMBERS or name == "channels":
        if isinstance(value, str) and value.strip().lower() == AUTO:
            return AUTO
        if name == "channels":
            return str(value)
    try:
        if isinstance(default, bool):
            return _to_bool(value)
        if isinstance(default, int):
            return _to_int(value)
        if isinstance(default, float) or name in AUTO_NUMBERS:
            return _to_float(value)
        if isinstance(value, (dict, list)):
            raise ValueError("expected text")
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: cannot read {value!r} ({exc})") from None


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _to_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("expected a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("must be a finite number")
    return number


def _to_int(value: Any) -> int:
    number = _to_float(value)
    if number != int(number):
        raise ValueError("expected a whole number")
    return int(number)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return value.lower() in ("1", "true", "yes", "on")
    if _is_real(value) and value in (0, 1):
        return bool(value)
    raise ValueError("expected true or false")


FIELD_NAMES = tuple(f.name for f in fields(TrainConfig))
