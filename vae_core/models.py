"""A VAE: an encoder x -> q(z|x) (diagonal Gaussian) and a decoder z -> Bernoulli logits, whose
networks its kind's spec builds (vae_core.model_kinds).

Shapes: images are flat, (B, D) with D = image_size**2; latents are (..., L); labels are (B,) ints.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal

from .config import ModelConfig
from .model_kinds import kind_spec

# q(z|x)'s log variance is clamped to this range: it keeps exp() finite on a diverging run
# without touching sensible values.
LOG_VAR_RANGE = (-30.0, 20.0)


class VAE(nn.Module):
    """A VAE with Gaussian q(z|x), standard normal p(z) and Bernoulli p(x|z) given as logits."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder, self.decoder = kind_spec(config.kind).networks(config)

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
    convolution layers: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)); normalisation layers
    start at scale 1 and shift 0. The process-global
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
            elif isinstance(module, (nn.LayerNorm, nn.GroupNorm)):  # PyTorch's rule: scale 1, shift 0
                module.reset_parameters()  # draws nothing
                initialised.update(id(p) for p in module.parameters())
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
