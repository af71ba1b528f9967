"""What a model kind is: one spec per kind ("mlp", "conv"), and everything else asks it.

A spec owns its encoder and decoder networks, how to describe them in one line, the floats per image
their activations hold (the memory estimate's rows, vae_core.limits), what to lower when validation
is the largest part of that estimate, whether the browser can run the decoder (the latent plane's
payload) and whether the hand-written ELBO gradients cover it (vae_core.mlp_elbo_gradients). The
parameter count is the same for every kind: the networks built on the meta device, which allocates
nothing. Adding a kind is one `ModelKind` in `SPECS` plus its tests.

Shapes: images are flat, (B, D) with D = image_size**2; latents are (..., L).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from .errors import ConfigError

if TYPE_CHECKING:  # config.py validates a ModelConfig with its kind's spec, so it imports this module
    from .config import ModelConfig

ACTIVATION_MODULES = {"relu": nn.ReLU, "elu": nn.ELU, "tanh": nn.Tanh}


def _label_columns(config: ModelConfig) -> int:
    """Columns a conditional model appends to the encoder's and decoder's inputs: the label one-hot."""
    return config.num_classes if config.conditional else 0


@dataclass(frozen=True)
class ModelKind:
    name: str  # ModelConfig.kind
    label: str  # how people call it: "MLP", "conv"
    networks: Callable[[ModelConfig], tuple[nn.Module, nn.Module]]  # (encoder, decoder)
    describe: Callable[[ModelConfig], str]  # the architecture in one line, without "(conditional)"
    # Floats per image the encoder keeps for backward, the same for the decoder (per latent sample),
    # and the floats of the intermediate tensors alive at once in a layer's forward or backward.
    row_floats: Callable[[ModelConfig], tuple[int, int, int]]
    # What to lower when the validation pass is the largest part of a run's memory (ELBO runs).
    validation_advice: Callable[[str], str]  # given "Hidden sizes (now 512,256)"-style text
    # The decoder's (weight (out, in), bias (out,)) layers the browser runs between activations
    # (latent plane, hover decode), or None when the browser cannot run this decoder.
    browser_layers: Callable[[nn.Module], list[tuple[torch.Tensor, torch.Tensor]]] | None
    hand_gradients: bool  # mlp_elbo_gradients computes its ELBO gradient (else autograd does)
    form_conditional: bool  # the Train form offers its conditional variant too
    check: Callable[[ModelConfig], None] = lambda config: None  # raises ConfigError


# ----------------------------------------------------------------------------------------- MLP
def _mlp(widths: list[int], activation: str) -> nn.Sequential:
    """Linear layers with an activation between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(w_in, w_out))
        if i < len(widths) - 2:
            layers.append(ACTIVATION_MODULES[activation]())
    return nn.Sequential(*layers)


def mlp_linear_layers(net: nn.Sequential, activation: str) -> list[nn.Linear]:
    """The Linear layers of an MLP's `net`, after checking it holds nothing else but `activation`.

    The hand-written gradients and the browser's decoder compute Linear layers and that activation
    only: a layer of another type (a normalisation, a dropout) would be left out of their
    computation without a word, and its gradients or pixels would be wrong.
    """
    allowed = (nn.Linear, ACTIVATION_MODULES[activation])
    others = [type(m).__name__ for m in net if not isinstance(m, allowed)]
    if others:
        raise NotImplementedError(
            f"this MLP holds {others}, which the hand-written gradients and the browser's decoder "
            "do not compute: teach them those layers, or mark the kind as not covered"
        )
    return [m for m in net if isinstance(m, nn.Linear)]


class MLPEncoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        widths = [config.pixels + _label_columns(config), *config.hidden, 2 * config.latent_dim]
        self.net = _mlp(widths, config.activation)

    def forward(self, x: torch.Tensor, label_onehot: torch.Tensor | None) -> torch.Tensor:
        if label_onehot is not None:
            x = torch.cat([x, label_onehot], dim=-1)
        return self.net(x)  # (B, 2L)


class MLPDecoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        widths = [config.latent_dim + _label_columns(config), *reversed(config.hidden), config.pixels]
        self.net = _mlp(widths, config.activation)

    def forward(self, z: torch.Tensor, label_onehot: torch.Tensor | None) -> torch.Tensor:
        if label_onehot is not None:
            z = torch.cat([z, label_onehot.expand(*z.shape[:-1], -1)], dim=-1)
        return self.net(z)  # (..., D) logits


def _mlp_check(config: ModelConfig) -> None:
    hidden = config.hidden
    if isinstance(hidden, (list, tuple)) and not hidden:
        raise ConfigError("an MLP needs at least one hidden layer of positive width; try --hidden 512,256")
    if isinstance(hidden, (list, tuple)) and any(
        isinstance(h, int) and not isinstance(h, bool) and h < 1 for h in hidden
    ):
        raise ConfigError(
            f"an MLP needs hidden layers of positive width, got {tuple(hidden)}; try --hidden 512,256"
        )


def _mlp_describe(config: ModelConfig) -> str:
    return "-".join(str(w) for w in [config.pixels, *config.hidden, config.latent_dim]) + " MLP VAE"


def _mlp_row_floats(config: ModelConfig) -> tuple[int, int, int]:
    extra, latent, hidden = _label_columns(config), config.latent_dim, sum(config.hidden)
    encoder = config.pixels + extra + hidden + 4 * latent
    decoder = latent + extra + hidden
    return encoder, decoder, 2 * max(config.hidden)


def _mlp_browser_layers(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    layers = mlp_linear_layers(model.decoder.net, model.config.activation)
    return [(layer.weight, layer.bias) for layer in layers]


MLP = ModelKind(
    name="mlp",
    label="MLP",
    networks=lambda config: (MLPEncoder(config), MLPDecoder(config)),
    describe=_mlp_describe,
    row_floats=_mlp_row_floats,
    validation_advice=lambda widths: f"lower {widths}: validation holds the layers of many digits at once",
    browser_layers=_mlp_browser_layers,
    hand_gradients=True,
    form_conditional=True,
    check=_mlp_check,
)


# ---------------------------------------------------------------------------------------- conv
def _conv_strides(image_size: int) -> tuple[int, int]:
    # Both image sizes reach a 7x7 feature map: 28 -> 14 -> 7, or 14 -> 7 -> 7.
    return (2, 2) if image_size == 28 else (2, 1)


def _conv_width(config: ModelConfig) -> int:
    """The dense layer between the feature maps and the latents: hidden[0], or 256 when empty."""
    return config.hidden[0] if config.hidden else 256


def _down(c_in: int, c_out: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 4 if stride == 2 else 3, stride, 1)


def _up(c_in: int, c_out: int, stride: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(c_in, c_out, 4 if stride == 2 else 3, stride, 1)


def _conv_layout(config: ModelConfig) -> tuple[int, int, int, int, type[nn.Module], int]:
    """Channels (c1, c2), strides (s1, s2), the activation's module and the dense width: what the
    encoder uses going down and the decoder going up."""
    return (*config.conv_channels, *_conv_strides(config.image_size), ACTIVATION_MODULES[config.activation],
            _conv_width(config))  # fmt: skip


class ConvEncoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        c1, c2, s1, s2, act, width = _conv_layout(config)
        self.size = config.image_size
        self.features = nn.Sequential(_down(1, c1, s1), act(), _down(c1, c2, s2), act(), nn.Flatten())
        self.head = nn.Sequential(
            nn.Linear(c2 * 49 + _label_columns(config), width), act(), nn.Linear(width, 2 * config.latent_dim)
        )

    def forward(self, x: torch.Tensor, label_onehot: torch.Tensor | None) -> torch.Tensor:
        h = self.features(x.view(-1, 1, self.size, self.size))  # (B, c2*7*7)
        if label_onehot is not None:
            h = torch.cat([h, label_onehot], dim=-1)
        return self.head(h)


class ConvDecoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        c1, c2, s1, s2, act, width = _conv_layout(config)
        self.c2 = c2
        self.head = nn.Sequential(
            nn.Linear(config.latent_dim + _label_columns(config), width),
            act(),
            nn.Linear(width, c2 * 49),
            act(),
        )
        self.pixels = nn.Sequential(_up(c2, c1, s2), act(), _up(c1, 1, s1))

    def forward(self, z: torch.Tensor, label_onehot: torch.Tensor | None) -> torch.Tensor:
        if label_onehot is not None:
            z = torch.cat([z, label_onehot.expand(*z.shape[:-1], -1)], dim=-1)
        lead = z.shape[:-1]
        h = self.head(z.reshape(-1, z.shape[-1])).view(-1, self.c2, 7, 7)
        return self.pixels(h).reshape(*lead, -1)  # (..., D) logits


def _conv_row_floats(config: ModelConfig) -> tuple[int, int, int]:
    extra, latent, width = _label_columns(config), config.latent_dim, _conv_width(config)
    c1, c2 = config.conv_channels
    maps = c1 * (config.image_size // 2) ** 2 + c2 * 49  # 28 -> 14 -> 7, or 14 -> 7 -> 7
    # A convolution keeps its input and output, and oneDNN's kernels take workspace besides
    # (measured: about 3 floats per feature-map value in the forward pass).
    encoder = config.pixels + extra + 2 * maps + 2 * width + 4 * latent
    decoder = latent + extra + 2 * width + 2 * maps
    return encoder, decoder, 3 * maps + 2 * width


CONV = ModelKind(
    name="conv",
    label="conv",
    networks=lambda config: (ConvEncoder(config), ConvDecoder(config)),
    describe=lambda config: (
        f"conv VAE ({'/'.join(map(str, config.conv_channels))} channels, latent {config.latent_dim})"
    ),
    row_floats=_conv_row_floats,
    validation_advice=lambda widths: (
        "use an MLP: the conv model's feature maps for the validation digits are too large"
    ),
    browser_layers=None,
    hand_gradients=False,
    form_conditional=False,
)


# -------------------------------------------------------------------------------------- lookup
SPECS: dict[str, ModelKind] = {spec.name: spec for spec in (MLP, CONV)}
MODEL_KINDS = tuple(SPECS)


def kind_spec(kind: str) -> ModelKind:
    """The spec of a model kind ("mlp", "conv"); ModelConfig has checked the name already."""
    return SPECS[kind]


def kind_label(kind: str, conditional: bool) -> str:
    """How a person calls a model: "MLP", "conv", "conditional MLP"."""
    return ("conditional " if conditional else "") + SPECS[kind].label


def offered_kinds() -> list[tuple[str, str, bool]]:
    """(label, kind, conditional) of every model the Train form offers: each kind, then the
    conditional variants of the kinds that offer one."""
    plain = [(kind_label(name, False), name, False) for name in SPECS]
    conditional = [(kind_label(name, True), name, True) for name, s in SPECS.items() if s.form_conditional]
    return plain + conditional


@functools.lru_cache(maxsize=256)  # a few ms of module building per config, asked for several times
def parameter_count(config: ModelConfig) -> int:
    """The number of weights `build_model(config)` would allocate: its networks built on the meta
    device, which has shapes and no memory (a hostile config's 16,384-wide layers cost nothing)."""
    with torch.device("meta"):
        encoder, decoder = SPECS[config.kind].networks(config)
    return sum(p.numel() for net in (encoder, decoder) for p in net.parameters())
