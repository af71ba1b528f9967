"""Model and training settings as small dataclasses; both are saved inside every checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

MODEL_KINDS = ("mlp", "conv")
OBJECTIVES = ("elbo", "iwae")
BINARIZATIONS = ("dynamic", "static", "binarized")
DEVICES = ("auto", "cpu", "cuda")
ACTIVATIONS = ("relu", "elu", "tanh")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a VAE: everything needed to rebuild it before loading weights."""

    kind: str = "mlp"  # "mlp" | "conv"
    latent_dim: int = 2
    hidden: tuple[int, ...] = (512, 256)  # MLP hidden widths, encoder order (decoder mirrors)
    conditional: bool = False  # label one-hot goes into encoder and decoder
    image_size: int = 28  # 28 or 14 (2x2 average-pooled MNIST)
    num_classes: int = 10
    conv_channels: tuple[int, ...] = (32, 64)
    activation: str = "relu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "conv_channels", tuple(int(c) for c in self.conv_channels))
        if self.kind not in MODEL_KINDS:
            raise ConfigError(f"model kind must be one of {MODEL_KINDS}, got {self.kind!r}")
        if not 1 <= self.latent_dim <= 256:
            raise ConfigError(f"latent_dim must be between 1 and 256, got {self.latent_dim}")
        if self.image_size not in (28, 14):
            raise ConfigError(f"image_size must be 28 or 14, got {self.image_size}")
        if self.kind == "mlp" and (not self.hidden or min(self.hidden) < 1):
            raise ConfigError(
                f"an MLP needs at least one hidden layer of positive width, got {self.hidden}; "
                "try --hidden 512,256"
            )
        if self.kind == "conv" and (len(self.conv_channels) != 2 or min(self.conv_channels) < 1):
            raise ConfigError(f"conv_channels must be two positive widths, got {self.conv_channels}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")

    @property
    def pixels(self) -> int:
        return self.image_size * self.image_size

    def describe(self) -> str:
        """One line a person can read: '784-512-256-2 MLP VAE (conditional)'."""
        if self.kind == "mlp":
            widths = [self.pixels, *self.hidden, self.latent_dim]
            text = "-".join(str(w) for w in widths) + " MLP VAE"
        else:
            text = f"conv VAE ({'/'.join(map(str, self.conv_channels))} channels, latent {self.latent_dim})"
        return text + (" (conditional)" if self.conditional else "")


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
    binarization: str = "dynamic"
    validation_size: int = 10_000
    log_every: int = 20  # steps between progress events
    num_threads: int | None = None  # torch intra-op threads for this run; None keeps the default
    lr_decay: bool = False  # cosine decay of the learning rate to 0 over the run
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
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
        if self.binarization not in BINARIZATIONS:
            raise ConfigError(f"binarization must be one of {BINARIZATIONS}, got {self.binarization!r}")
        if self.validation_size < 0:
            raise ConfigError(f"validation_size must be >= 0, got {self.validation_size}")
        if self.log_every < 1:
            raise ConfigError(f"log_every must be >= 1, got {self.log_every}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigError(f"num_threads must be >= 1, got {self.num_threads}")


def config_to_dict(config: ModelConfig | TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def model_config_from_dict(data: dict[str, Any]) -> ModelConfig:
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"unknown model settings {sorted(unknown)}; known: {sorted(known)}")
    return ModelConfig(**data)


def train_config_from_dict(data: dict[str, Any]) -> TrainConfig:
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in data.items() if k in known})
