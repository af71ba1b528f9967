"""Model and training settings as small dataclasses; both are saved inside every checkpoint."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .model_kinds import SPECS, kind_spec, parameter_count

OBJECTIVES = ("elbo", "iwae")
# dynamic: Bernoulli resampled each epoch; threshold: level > 127; binarized: the statically
# binarised MNIST of Larochelle & Murray. Checkpoints, links and commands from before the rename
# say "static" for the threshold: read as "threshold", never written.
BINARIZATIONS = ("dynamic", "threshold", "binarized")
BINARIZATION_ALIASES = {"static": "threshold"}
# Training settings older checkpoints carry that no longer exist (nothing read them); dropped on load.
RETIRED_TRAIN_SETTINGS = ("extra",)
DEVICES = ("auto", "cpu", "cuda")
ACTIVATIONS = ("relu", "elu", "tanh")
IMAGE_SIZES = (28, 14)

# Bounds on an architecture, checked before anything is built: a checkpoint's config comes from
# whoever made the file. The largest sensible MNIST VAE has a few million parameters; 50 M (200 MB
# of float32) is far above that and still safe to allocate on a small server.
MAX_PARAMETERS = 50_000_000
MAX_LATENT_DIM = 256
MAX_HIDDEN_LAYERS = 8
MAX_HIDDEN_WIDTH = 16_384
MAX_CONV_CHANNELS = 1024
MAX_NUM_CLASSES = 1000


def is_whole_number(value: Any) -> bool:
    """An int and not a bool (True is an int in Python, and JSON true is no size)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, int):  # math.isfinite(10**400) raises OverflowError: such an int is no setting
        return abs(value) < 2**63
    return math.isfinite(value)


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if not is_whole_number(value):
        raise ConfigError(f"{name} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")


def _check_widths(name: str, value: Any, count: tuple[int, int], high: int) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{name} must be a list of whole numbers, got {value!r}")
    if not count[0] <= len(value) <= count[1]:
        raise ConfigError(f"{name} must have {count[0]} to {count[1]} entries, got {len(value)}")
    for width in value:
        _check_int(f"each of {name}", width, 1, high)
    return tuple(value)


# ------------------------------------------------------------------ settings read from text
# One reader for every interface: the CLI's arguments and the Train form's fields (text boxes give
# text, number inputs give numbers) go through these, so a value is refused with the same words
# wherever it was typed. The config classes then check what the values mean together.
_INTEGER = re.compile(r"[+-]?[0-9][0-9_]*")  # ASCII digits only ('٣' and '²' are not numbers here)


def setting_number(
    value: str | float, name: str, low: float | None = None, high: float | None = None,
    whole: bool = False, low_open: bool = False,
) -> int | float:  # fmt: skip
    """A setting's number from text or from a number input: finite, whole where a count belongs, in
    [low, high] (or (low, high] with `low_open`); else a ConfigError that names the setting.

    Text is bounded before it is read: at most 24 ASCII digits for a whole number, 40 ASCII
    characters for a number (no '٣', no 5,000-digit integers)."""
    if isinstance(value, str):
        text = value.strip()
        if whole:
            if len(text) > 24 or not _INTEGER.fullmatch(text):
                raise ConfigError(f"{name} must be a whole number, got {text[:24]!r}")
            value = int(text)
        else:
            try:
                value = float(text) if len(text) <= 40 and text.isascii() else math.nan
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {text[:40]!r}")
    elif not _is_number(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if whole and value != int(value):
        raise ConfigError(f"{name} must be a whole number, got {value!r}")
    value = int(value) if whole else float(value)
    low_side = -math.inf if low is None else low
    high_side = math.inf if high is None else high
    if value < low_side or (low_open and value == low_side) or value > high_side:
        if low_open:
            raise ConfigError(f"{name} must be above {low:g} and at most {high_side:g}, got {value:g}")
        raise ConfigError(f"{name} must be between {low_side:,} and {high_side:,}, got {value:,}")
    return value


def parse_hidden(text: str, high: int = MAX_HIDDEN_WIDTH) -> tuple[int, ...]:
    """'256,128' -> (256, 128): 1 to MAX_HIDDEN_LAYERS comma-separated widths, each from 1 to `high`."""
    parts = [part.strip() for part in text.split(",") if part.strip()] if len(text) <= 200 else []
    widths = [int(p) if re.fullmatch(r"[0-9]{1,7}", p) else 0 for p in parts]
    if not 1 <= len(parts) <= MAX_HIDDEN_LAYERS or not all(1 <= w <= high for w in widths):
        raise ConfigError(
            f"hidden sizes must be 1 to {MAX_HIDDEN_LAYERS} comma-separated widths like 256,128, each a "
            f"whole number from 1 to {high:,}; got {text[:40]!r}"
        )
    return tuple(widths)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a VAE: everything needed to rebuild it before loading weights."""

    kind: str = "mlp"  # a name in model_kinds.SPECS: "mlp" | "conv"
    latent_dim: int = 2
    hidden: tuple[int, ...] = (512, 256)  # MLP hidden widths, encoder order (decoder mirrors);
    # the conv model uses hidden[0] as the width of its dense layer (256 when empty)
    conditional: bool = False  # label one-hot goes into encoder and decoder
    image_size: int = 28  # 28 or 14 (2x2 average-pooled MNIST)
    num_classes: int = 10
    conv_channels: tuple[int, ...] = (32, 64)
    activation: str = "relu"

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in SPECS:
            raise ConfigError(f"model kind must be one of {tuple(SPECS)}, got {self.kind!r}")
        _check_int("latent_dim", self.latent_dim, 1, MAX_LATENT_DIM)
        if self.image_size not in IMAGE_SIZES or not is_whole_number(self.image_size):
            raise ConfigError(f"image_size must be 28 or 14, got {self.image_size!r}")
        if not isinstance(self.conditional, bool):
            raise ConfigError(f"conditional must be true or false, got {self.conditional!r}")
        _check_int("num_classes", self.num_classes, 2, MAX_NUM_CLASSES)
        kind_spec(self.kind).check(self)
        hidden = _check_widths("hidden", self.hidden, (0, MAX_HIDDEN_LAYERS), MAX_HIDDEN_WIDTH)
        object.__setattr__(self, "hidden", hidden)
        if isinstance(self.conv_channels, (list, tuple)) and len(self.conv_channels) != 2:
            raise ConfigError(f"conv_channels must be two positive widths, got {tuple(self.conv_channels)}")
        channels = _check_widths("conv_channels", self.conv_channels, (2, 2), MAX_CONV_CHANNELS)
        object.__setattr__(self, "conv_channels", channels)
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        count = parameter_count(self)
        if count > MAX_PARAMETERS:
            raise ConfigError(
                f"{self.describe()} would have {count:,} parameters; the limit is {MAX_PARAMETERS:,}"
            )

    @property
    def pixels(self) -> int:
        return self.image_size * self.image_size

    def describe(self) -> str:
        """One line a person can read: '784-512-256-2 MLP VAE (conditional)'."""
        return kind_spec(self.kind).describe(self) + (" (conditional)" if self.conditional else "")


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained. `warmup_epochs` ramps the KL weight from 0 to beta linearly."""

    epochs: float = 10
    batch_size: int = 128
    lr: float = 1e-3
    beta: float = 1.0
    objective: str = "elbo"  # "elbo" | "iwae"
    k: int = 1  # importance samples per image for the IWAE objective
    warmup_epochs: float = 0.0
    seed: int = 0
    device: str = "auto"
    binarization: str = "dynamic"  # one of BINARIZATIONS: how the training digits become 0/1
    validation_size: int = 10_000  # digits held out from the end of the training set
    log_every: int = 20  # steps between progress events
    num_threads: int | None = None  # torch intra-op threads for this run; None keeps the default
    lr_decay: bool = False  # cosine decay of the learning rate to 0 over the run

    def __post_init__(self) -> None:
        for name in ("epochs", "lr", "beta", "warmup_epochs"):
            value = getattr(self, name)
            if not _is_number(value):
                raise ConfigError(f"{name} must be a finite number, got {value!r}")
        for name in ("batch_size", "k", "seed", "validation_size", "log_every"):
            if not is_whole_number(getattr(self, name)):
                raise ConfigError(f"{name} must be a whole number, got {getattr(self, name)!r}")
        if not self.epochs > 0:
            raise ConfigError(f"epochs must be positive, got {self.epochs}")
        if self.batch_size < 2:
            raise ConfigError(f"batch_size must be at least 2, got {self.batch_size}; 64 to 512 works well")
        if not 0 < self.lr <= 1:
            raise ConfigError(f"learning rate must be in (0, 1], got {self.lr}; 1e-3 works well")
        if self.beta < 0:
            raise ConfigError(f"beta must be >= 0, got {self.beta}")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if not 1 <= self.k <= 5000:
            raise ConfigError(f"k must be between 1 and 5000, got {self.k}")
        if self.warmup_epochs < 0:
            raise ConfigError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {DEVICES}, got {self.device!r}")
        if isinstance(self.binarization, str):
            object.__setattr__(self, "binarization", binarization_name(self.binarization))
        if self.binarization not in BINARIZATIONS:
            raise ConfigError(f"binarization must be one of {BINARIZATIONS}, got {self.binarization!r}")
        if self.validation_size < 0:
            raise ConfigError(f"validation_size must be >= 0, got {self.validation_size}")
        if self.log_every < 1:
            raise ConfigError(f"log_every must be >= 1, got {self.log_every}")
        if self.num_threads is not None and (not is_whole_number(self.num_threads) or self.num_threads < 1):
            raise ConfigError(f"num_threads must be a whole number >= 1, got {self.num_threads!r}")
        if not isinstance(self.lr_decay, bool):
            raise ConfigError(f"lr_decay must be true or false, got {self.lr_decay!r}")


def binarization_name(name: str) -> str:
    """The current name of a binarisation: "static" (before the rename) reads as "threshold"."""
    return BINARIZATION_ALIASES.get(name, name)


def field_defaults(config_class: type) -> dict[str, Any]:
    """Each field's default value: the one source the CLI's flags take their defaults from."""
    return {f.name: f.default for f in dataclasses.fields(config_class)}


def upgrade_train_settings(data: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's train_config in today's names: retired settings dropped, old names renamed."""
    data = {k: v for k, v in data.items() if k not in RETIRED_TRAIN_SETTINGS}
    if isinstance(data.get("binarization"), str):
        data["binarization"] = binarization_name(data["binarization"])
    return data


def config_to_dict(config: ModelConfig | TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def _as_mapping(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f"{what} must be a JSON object, got {type(data).__name__}")
    return data


def model_config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """A ModelConfig from a checkpoint's JSON: every field present, of its type, in its range."""
    data = _as_mapping(data, "model_config")
    known = [f.name for f in dataclasses.fields(ModelConfig)]
    unknown = set(data) - set(known)
    if unknown:
        raise ConfigError(f"unknown model settings {sorted(map(str, unknown))[:5]}; known: {sorted(known)}")
    missing = [name for name in known if name not in data]
    if missing:
        raise ConfigError(f"model settings missing: {missing}")
    for name in ("kind", "activation"):
        if not isinstance(data[name], str):
            raise ConfigError(f"{name} must be a string, got {data[name]!r}")
    return ModelConfig(**data)


def train_config_from_dict(data: dict[str, Any], strict: bool = False) -> TrainConfig:
    """A TrainConfig from a dict; `strict` (a file's JSON) also refuses unknown settings and
    strings where enum settings belong. Missing settings take their defaults."""
    data = upgrade_train_settings(_as_mapping(data, "train_config"))
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    if strict:
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown training settings {sorted(map(str, unknown))[:5]}")
        for name in ("objective", "device", "binarization"):
            if name in data and not isinstance(data[name], str):
                raise ConfigError(f"{name} must be a string, got {data[name]!r}")
    return TrainConfig(**{k: v for k, v in data.items() if k in known})
