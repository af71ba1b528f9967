"""Per-image stochastic variational inference (SVI), and completion of half-seen digits with it.

`fit_posterior` fits a fresh Gaussian q*(z) to one image's observed pixels;
`complete_masked_image` decodes the hidden pixels from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.distributions import Normal, kl_divergence

from .adam import Adam
from .data import require_binary
from .inference import decode
from .models import VAE, flat_images
from .objectives import bernoulli_log_lik, reparameterized_sample


def observed_elbo(
    model: VAE,
    x: torch.Tensor,
    mask: torch.Tensor,
    q: Normal,
    labels=None,
    samples: int = 64,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """ELBO of the observed pixels under q: E_q[log p(x_obs|z)] - KL(q || p(z)), (B,) nats."""
    z = reparameterized_sample(q, samples, generator)  # (S, B, L)
    recon = bernoulli_log_lik(model.decoder_logits(z, labels), x, mask).mean(0)
    return recon - kl_divergence(q, model.prior()).sum(-1)


@dataclass
class CompletionResult:
    """Half-image completion by per-image stochastic variational inference (SVI)."""

    elbo_trace: np.ndarray  # (steps,) observed-pixel ELBO estimate at each SVI step, nats
    q_mean: torch.Tensor  # (L,) fitted q*(z)
    q_std: torch.Tensor  # (L,)
    completions: torch.Tensor  # (n, D) pixel probabilities decoded from z ~ q*, seen pixels kept
    mean_completion: torch.Tensor  # (D,) average of the completions
    encoder_completion: torch.Tensor  # (D,) decoded from the encoder's mean on the masked image
    encoder_q_mean: torch.Tensor  # (L,)
    encoder_q_std: torch.Tensor  # (L,)
    svi_elbo: float  # observed-pixel ELBO of q*, 1,000 samples
    encoder_elbo: float  # observed-pixel ELBO of the encoder's q on the masked image


@dataclass
class PosteriorFit:
    """A Gaussian q*(z) = N(m, s^2) fitted to one image by SVI, and the ELBO at every step."""

    q: Normal  # batch shape (1, L), detached
    elbo_trace: np.ndarray  # (steps,) observed-pixel ELBO estimate at each step, nats


def fit_posterior(
    model: VAE,
    binary: torch.Tensor,
    mask: torch.Tensor,
    labels=None,
    steps: int = 300,
    lr: float = 0.05,
    samples_per_step: int = 16,
    generator: torch.Generator | None = None,
    on_step: Callable[[int, float], None] | None = None,
    start_at_encoder: bool = False,
) -> PosteriorFit:
    """Fit q*(z) = N(m, s^2) to one binary image (1, D)'s observed pixels (`mask` (D,), 1 = seen).

    q* starts at the prior (or, with `start_at_encoder`, at the encoder's q of the visible
    pixels) and follows Adam on the observed-pixel ELBO (reparameterised gradients, drawn from
    `generator`); only m and log s are optimised, the model's weights are untouched.
    `on_step(step, elbo)` is called after every step (for live progress).
    """
    device = model.device
    if start_at_encoder:
        with torch.no_grad():
            start = model.posterior(binary * mask, labels)
        mean, log_std = start.loc.clone().requires_grad_(True), start.scale.log().requires_grad_(True)
    else:
        mean = torch.zeros(1, model.latent_dim, device=device, requires_grad=True)
        log_std = torch.zeros(1, model.latent_dim, device=device, requires_grad=True)
    optimizer = Adam([mean, log_std], lr=lr)
    trace = np.empty(steps)
    for step in range(steps):
        q = Normal(mean, log_std.exp())
        elbo = observed_elbo(model, binary, mask, q, labels, samples_per_step, generator).sum()
        # autograd.grad touches only q's parameters: model weights get no .grad, so a model
        # shared across sessions or being trained elsewhere is left alone.
        grad_mean, grad_log_std = torch.autograd.grad(-elbo, [mean, log_std])
        mean.grad, log_std.grad = grad_mean, grad_log_std
        optimizer.step()
        trace[step] = elbo.item()
        if on_step is not None:
            on_step(step, trace[step])
    return PosteriorFit(Normal(mean.detach(), log_std.detach().exp()), trace)


def complete_masked_image(
    model: VAE,
    binary: torch.Tensor,
    mask: torch.Tensor,
    labels=None,
    steps: int = 300,
    lr: float = 0.05,
    samples_per_step: int = 16,
    n_completions: int = 8,
    seed: int = 0,
    on_step: Callable[[int, float], None] | None = None,
    start_at_encoder: bool = False,
) -> CompletionResult:
    """Fit q*(z) to one binary image's observed pixels (`fit_posterior`), then decode the hidden ones.

    Beside it, the encoder's q of the masked image, completed and scored the same way.
    """
    device = model.device
    x = flat_images(binary, model)[:1]
    require_binary(x, "complete_masked_image")
    mask = torch.as_tensor(mask, dtype=torch.float32, device=device).reshape(-1)
    generator = torch.Generator(device=device).manual_seed(seed)
    fit = fit_posterior(
        model, x, mask, labels, steps, lr, samples_per_step, generator, on_step, start_at_encoder
    )
    q_star = fit.q
    with torch.no_grad():
        svi_elbo = observed_elbo(model, x, mask, q_star, labels, 1000, generator).item()
        z = reparameterized_sample(q_star, n_completions, generator)[:, 0]  # (n, L)
        completions = decode(model, z, labels)
        completions = mask * x + (1 - mask) * completions
        q_enc = model.posterior(x * mask, labels)
        encoder_elbo = observed_elbo(model, x, mask, q_enc, labels, 1000, generator).item()
        encoder_completion = mask * x + (1 - mask) * decode(model, q_enc.loc, labels)
    return CompletionResult(
        elbo_trace=fit.elbo_trace,
        q_mean=q_star.loc[0],
        q_std=q_star.scale[0],
        completions=completions,
        mean_completion=completions.mean(0),
        encoder_completion=encoder_completion[0],
        encoder_q_mean=q_enc.loc[0],
        encoder_q_std=q_enc.scale[0],
        svi_elbo=svi_elbo,
        encoder_elbo=encoder_elbo,
    )
