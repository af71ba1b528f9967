"""VAE networks: an encoder x -> q(z|x) (diagonal Gaussian) and a decoder z -> Bernoulli logits.

Shapes: images are flat, (B, D) with D = image_size**2; latents are (..., L); labels are (B,) ints.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal

from .config import ModelConfig

_ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "tanh": nn.Tanh}
# q(z|x)'s log variance is clamped to this range: it keeps exp() finite on a diverging run
# without touching sensible values.
LOG_VAR_RANGE = (-30.0, 20.0)


def _mlp(widths: list[int], activation: str) -> nn.Sequential:
    """Linear layers with an activation between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(w_in, w_out))
        if i < len(widths) - 2:
            layers.append(_ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        extra = config.num_classes if config.conditional else 0
        self.net = _mlp([config.pixels + extra, *config.hidden, 2 * config.latent_dim], config.activation)

    def forward(self, x: torch.Tensor, label_onehot: torch.Tensor | None) -> torch.Tensor:
        if label_onehot is not None:
            x = torch.cat([x, label_onehot], dim=-1)
        return self.net(x)  # (B, 2L)


class MLPDecoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        extra = config.num_classes if config.conditional else 0
        widths = [config.latent_dim + extra, *reversed(config.hidden), config.pixels]
        self.net = _mlp(widths, config.activation)

    def forward(self, z: torch.Tensor, label_onehot: torch.Tensor | None) -> torch.Tensor:
        if label_onehot is not None:
            z = torch.cat([z, label_onehot.expand(*z.shape[:-1], -1)], dim=-1)
        return self.net(z)  # (..., D) logits


def _conv_strides(image_size: int) -> tuple[int, int]:
    # Both image sizes reach a 7x7 feature map: 28 -> 14 -> 7, or 14 -> 7 -> 7.
    return (2, 2) if image_size == 28 else (2, 1)


def _down(c_in: int, c_out: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 4 if stride == 2 else 3, stride, 1)


def _up(c_in: int, c_out: int, stride: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(c_in, c_out, 4 if stride == 2 else 3, stride, 1)


class ConvEncoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        c1, c2 = config.conv_channels
        s1, s2 = _conv_strides(config.image_size)
        act = _ACTIVATIONS[config.activation]
        self.size = config.image_size
        self.features = nn.Sequential(_down(1, c1, s1), act(), _down(c1, c2, s2), act(), nn.Flatten())
        extra = config.num_classes if config.conditional else 0
        width = config.hidden[0] if config.hidden else 256
        self.head = nn.Sequential(
            nn.Linear(c2 * 49 + extra, width), act(), nn.Linear(width, 2 * config.latent_dim)
        )

    def forward(self, x: torch.Tensor, label_onehot: torch.Tensor | None) -> torch.Tensor:
        h = self.features(x.view(-1, 1, self.size, self.size))  # (B, c2*7*7)
        if label_onehot is not None:
            h = torch.cat([h, label_onehot], dim=-1)
        return self.head(h)


class ConvDecoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        c1, c2 = config.conv_channels
        s1, s2 = _conv_strides(config.image_size)
        act = _ACTIVATIONS[config.activation]
        extra = config.num_classes if config.conditional else 0
        width = config.hidden[0] if config.hidden else 256
        self.c2 = c2
        self.head = nn.Sequential(
            nn.Linear(config.latent_dim + extra, width), act(), nn.Linear(width, c2 * 49), act()
        )
        self.pixels = nn.Sequential(_up(c2, c1, s2), act(), _up(c1, 1, s1))

    def forward(self, z: torch.Tensor, label_onehot: torch.Tensor | None) -> torch.Tensor:
        if label_onehot is not None:
            z = torch.cat([z, label_onehot.expand(*z.shape[:-1], -1)], dim=-1)
        lead = z.shape[:-1]
        h = self.head(z.reshape(-1, z.shape[-1])).view(-1, self.c2, 7, 7)
        return self.pixels(h).reshape(*lead, -1)  # (..., D) logits


class VAE(nn.Module):
    """A VAE with Gaussian q(z|x), standard normal p(z) and Bernoulli p(x|z) given as logits."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        if config.kind == "mlp":
            self.encoder, self.decoder = MLPEncoder(config), MLPDecoder(config)
        else:
            self.encoder, self.decoder = ConvEncoder(config), ConvDecoder(config)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def label_onehot(self, labels: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        if not self.config.conditional:
            return None
        if labels is None:
            raise ValueError("this is a conditional VAE: pass the digit labels (0-9) too")
        labels = torch.as_tensor(labels, device=self.device).long().reshape(-1)
        if labels.numel() == 1 and batch > 1:
            labels = labels.expand(batch)
        if (labels < 0).any() or (labels >= self.config.num_classes).any():
            raise ValueError(f"labels must be in 0..{self.config.num_classes - 1}")
        return F.one_hot(labels, self.config.num_classes).float()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def posterior(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> Normal:
        """q(z|x) as a distribution with batch shape (B, L)."""
        stats = self.encoder(x, self.label_onehot(labels, x.shape[0]))
        mu, log_var = stats.chunk(2, dim=-1)
        std = torch.exp(0.5 * log_var.clamp(*LOG_VAR_RANGE))
        return Normal(mu, std, validate_args=False)

    def decoder_logits(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Bernoulli logits (..., D) for latents (..., L); labels (B,) broadcast over leading dims."""
        batch = z.shape[-2] if z.dim() > 1 else 1
        onehot = self.label_onehot(labels, batch)
        return self.decoder(z, onehot)

    def prior(self, shape: tuple[int, ...] = ()) -> Normal:
        zeros = torch.zeros(*shape, self.latent_dim, device=self.device)
        return Normal(zeros, torch.ones_like(zeros), validate_args=False)


def build_model(config: ModelConfig, seed: int = 0) -> VAE:
    """A freshly initialised VAE whose weights depend only on `seed`.

    The modules are built on the meta device (no memory, no random draws) and then initialised
    from a private torch.Generator with PyTorch's default rule for Linear and (transposed)
    convolution layers: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)). The process-global
    RNG is neither read nor advanced, so runs started at once in several threads (app sessions)
    cannot interleave each other's draws.
    """
    with torch.device("meta"):
        model = VAE(config)
    for module in model.modules():  # real, uninitialised memory; Module.to_empty imports sympy
        for name, meta in list(module._parameters.items()):
            if meta is not None:
                module._parameters[name] = nn.Parameter(torch.empty(meta.shape, dtype=meta.dtype))
        for name, meta in list(module._buffers.items()):
            if meta is not None:
                module._buffers[name] = torch.zeros(meta.shape, dtype=meta.dtype)
    generator = torch.Generator().manual_seed(seed)
    initialised = set()
    with torch.no_grad():
        for module in model.modules():  # a fixed order: the order the modules were created in
            if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                fan_in, _ = nn.init._calculate_fan_in_and_fan_out(module.weight)
                bound = 1.0 / math.sqrt(fan_in)
                for tensor in (module.weight, module.bias):
                    if tensor is not None:
                        tensor.uniform_(-bound, bound, generator=generator)
                        initialised.add(id(tensor))
    left = [name for name, p in model.named_parameters() if id(p) not in initialised]
    if left:  # a new layer type needs its rule here: never ship uninitialised (to_empty) memory
        raise NotImplementedError(f"build_model has no initialisation rule for {left}")
    return model


def flat_images(x: torch.Tensor, model: VAE) -> torch.Tensor:
    """Images as the model takes them: float32 (B, D) on its device; one image (D,) becomes (1, D)."""
    x = torch.as_tensor(x, dtype=torch.float32, device=model.device)
    return x.reshape(1, -1) if x.dim() == 1 else x.reshape(x.shape[0], -1)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
