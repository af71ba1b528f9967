"""Per-image variational inference, and completion of half-seen digits with it.

`fit_posterior` fits fresh Gaussians q*(z) to one image's observed pixels by stochastic
variational inference (SVI), from one or several starts at once; `complete_masked_image` finds
the best q* it can (for 2-D models the best Gaussian on the exact posterior grid, otherwise the
best of several SVI starts), scores it and the encoder with standard errors, and decodes the
hidden pixels from it.
"""

from __future__ import annotations

import math
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
from .posterior import best_gaussian_posterior

ELBO_SAMPLES = 4000  # draws per reported ELBO: its standard error is then ~0.05-0.3 nats
RANDOM_STARTS = 4  # SVI starts drawn at random, beside the encoder's q and the prior
SHORTFALL_NATS = 0.5  # SVI ending this far below the best Gaussian (2-D) has missed its peak


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


@dataclass(frozen=True)
class ELBOEstimate:
    """A Monte Carlo ELBO of one image and its standard error, nats."""

    value: float
    std_error: float
    samples: int


@torch.no_grad()
def observed_elbo_estimate(
    model: VAE,
    x: torch.Tensor,
    mask: torch.Tensor,
    q: Normal,
    labels=None,
    samples: int = ELBO_SAMPLES,
    generator: torch.Generator | None = None,
    chunk: int = 1000,
) -> ELBOEstimate:
    """`observed_elbo` of one image (1, D) under q (batch (1, L)), with the Monte Carlo standard
    error of its reconstruction term (the KL term is exact), drawn `chunk` samples at a time."""
    recon = torch.cat(
        [
            bernoulli_log_lik(
                model.decoder_logits(
                    reparameterized_sample(q, min(chunk, samples - done), generator), labels
                ),
                x,
                mask,
            )[:, 0]
            for done in range(0, samples, chunk)
        ]
    ).double()  # (samples,)
    kl = float(kl_divergence(q, model.prior()).sum())
    return ELBOEstimate(float(recon.mean()) - kl, float(recon.std() / math.sqrt(samples)), samples)


@dataclass
class PosteriorFit:
    """Gaussians q*(z) = N(m, s^2) fitted to one image by SVI from R starts, and their ELBOs."""

    q: Normal  # batch shape (R, L), detached: one row per start
    elbo_trace: np.ndarray  # (steps, R) observed-pixel ELBO estimate of each start at each step, nats


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
    starts: Normal | None = None,
) -> PosteriorFit:
    """Fit q*(z) = N(m, s^2) to one binary image (1, D)'s observed pixels (`mask` (D,), 1 = seen).

    q* starts at `starts` (a Normal with batch shape (R, L): R fits side by side, each with its
    own Adam moments, in one batched pass), else at the prior (or, with `start_at_encoder`, at
    the encoder's q of the visible pixels), and follows Adam on the observed-pixel ELBO
    (reparameterised gradients, drawn from `generator`); only m and log s are optimised, the
    model's weights are untouched. `on_step(step, best ELBO of the starts)` is called after
    every step (for live progress).
    """
    device = model.device
    if starts is None:
        with torch.no_grad():
            starts = model.posterior(binary * mask, labels) if start_at_encoder else model.prior((1,))
    mean = starts.loc.detach().clone().to(device).requires_grad_(True)
    log_std = starts.scale.detach().log().to(device).requires_grad_(True)
    fits = mean.shape[0]
    x = binary.expand(fits, -1)
    fit_labels = (
        None if labels is None else torch.as_tensor(labels, device=device).reshape(-1)[:1].expand(fits)
    )
    optimizer = Adam([mean, log_std], lr=lr)
    trace = np.empty((steps, fits))
    for step in range(steps):
        q = Normal(mean, log_std.exp())
        elbos = observed_elbo(model, x, mask, q, fit_labels, samples_per_step, generator)  # (R,)
        # autograd.grad touches only q's parameters: model weights get no .grad, so a model
        # shared across sessions or being trained elsewhere is left alone. The starts' ELBOs
        # depend on their own parameters only, so the sum's gradient is each start's own.
        grad_mean, grad_log_std = torch.autograd.grad(-elbos.sum(), [mean, log_std])
        mean.grad, log_std.grad = grad_mean, grad_log_std
        optimizer.step()
        trace[step] = elbos.detach().cpu().numpy()
        if on_step is not None:
            on_step(step, float(trace[step].max()))
    return PosteriorFit(Normal(mean.detach(), log_std.detach().exp()), trace)


def svi_starts(
    model: VAE,
    binary: torch.Tensor,
    mask: torch.Tensor,
    labels,
    generator,
    random_starts: int = RANDOM_STARTS,
) -> Normal:
    """Where SVI starts, batch (2 + random_starts, L): the encoder's q of the visible pixels, the
    prior, and means drawn from the prior with std 0.5 (a posterior can have several peaks, and
    one start finds the one nearest to it)."""
    with torch.no_grad():
        encoder = model.posterior(binary * mask, labels)
        shape = (random_starts, model.latent_dim)
        drawn = torch.randn(shape, generator=generator, device=model.device)
        means = torch.cat([encoder.loc, torch.zeros_like(encoder.loc), drawn])
        stds = torch.cat(
            [encoder.scale, torch.ones_like(encoder.scale), torch.full(shape, 0.5, device=model.device)]
        )
    return Normal(means, stds)


def still_climbing(trace: np.ndarray, tolerance: float = SHORTFALL_NATS) -> bool:
    """Whether an SVI trace (steps,) still rose by more than `tolerance` nats (plus 3 standard
    errors of the noisy per-step estimates) from its second-last to its last tenth of steps."""
    n = max(5, len(trace) // 10)
    if len(trace) < 2 * n:
        return True
    last, before = trace[-n:], trace[-2 * n : -n]
    noise = math.sqrt((last.var(ddof=1) + before.var(ddof=1)) / n)
    return float(last.mean() - before.mean()) > tolerance + 3 * noise


@dataclass
class CompletionResult:
    """Half-image completion from the best per-image Gaussian q*(z) found, beside the encoder's q."""

    elbo_trace: np.ndarray  # (steps,) observed-pixel ELBO estimate at each SVI step of the best start
    q_mean: torch.Tensor  # (L,) q*(z), the Gaussian the completions are drawn from
    q_std: torch.Tensor  # (L,)
    completions: torch.Tensor  # (n, D) pixel probabilities decoded from z ~ q*, seen pixels kept
    mean_completion: torch.Tensor  # (D,) average of the completions
    encoder_completion: torch.Tensor  # (D,) decoded from the encoder's mean on the masked image
    encoder_q_mean: torch.Tensor  # (L,)
    encoder_q_std: torch.Tensor  # (L,)
    q_star_elbo: ELBOEstimate  # observed-pixel ELBO of q*
    svi_elbo: ELBOEstimate  # observed-pixel ELBO of the best SVI start (q* itself unless 2-D)
    encoder_elbo: ELBOEstimate  # observed-pixel ELBO of the encoder's q on the masked image
    method: str  # how q* was found, for people
    converged: bool  # whether q* is a maximum (2-D: the grid's checks; else SVI stopped climbing)
    message: str  # why not, when not converged; "" otherwise

    @property
    def gain(self) -> ELBOEstimate:
        """ELBO(q*) - ELBO(encoder's q), its standard error from the two independent estimates."""
        se = math.hypot(self.q_star_elbo.std_error, self.encoder_elbo.std_error)
        return ELBOEstimate(self.q_star_elbo.value - self.encoder_elbo.value, se, self.q_star_elbo.samples)


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
    elbo_samples: int = ELBO_SAMPLES,
) -> CompletionResult:
    """Find q*(z) for one binary image's observed pixels, then decode the hidden ones from it.

    SVI runs from several starts at once (`svi_starts`; with `start_at_encoder`, from the
    encoder's q only) and the start with the highest ELBO is kept: one start from the prior
    lands on whichever peak of the posterior is nearest. For a 2-D model q* is instead the best
    Gaussian found on the exact posterior grid (`best_gaussian_posterior`), which no SVI run can
    beat by more than Monte Carlo error; SVI's own result is kept beside it for comparison.
    Beside q*, the encoder's q of the masked image, completed and scored the same way. Every
    ELBO is estimated with `elbo_samples` draws and carries its standard error.
    """
    device = model.device
    x = flat_images(binary, model)[:1]
    require_binary(x, "complete_masked_image")
    mask = torch.as_tensor(mask, dtype=torch.float32, device=device).reshape(-1)
    if labels is not None:
        labels = torch.as_tensor(labels, device=device).reshape(-1)[:1]
    generator = torch.Generator(device=device).manual_seed(seed)
    # A 2-D model's q* comes from the grid: SVI, shown beside it, needs no random starts there.
    random_starts = 0 if model.latent_dim == 2 else RANDOM_STARTS
    starts = None if start_at_encoder else svi_starts(model, x, mask, labels, generator, random_starts)
    fit = fit_posterior(
        model, x, mask, labels, steps, lr, samples_per_step, generator, on_step, start_at_encoder, starts
    )
    # The start that ended best, judged on its last tenth of steps (one step's estimate is noisy).
    tail = fit.elbo_trace[-max(1, steps // 10) :].mean(0)
    best = int(np.argmax(tail))
    svi_q = Normal(fit.q.loc[best : best + 1], fit.q.scale[best : best + 1])
    svi_elbo = observed_elbo_estimate(model, x, mask, svi_q, labels, elbo_samples, generator)
    trace = fit.elbo_trace[:, best]
    q_star, q_star_elbo = svi_q, svi_elbo
    starts_text = "the encoder's q" if start_at_encoder else f"{fit.q.loc.shape[0]} starts"
    method = f"SVI, {steps} steps from {starts_text}, the best kept"
    converged = not still_climbing(trace)
    message = "" if converged else "SVI was still climbing at its last step: more steps may find a better q*"
    if model.latent_dim == 2:
        grid_fit = best_gaussian_posterior(model, x, mask, labels, samples=256, seed=seed)
        grid_q = Normal(
            torch.as_tensor(grid_fit.mean, dtype=torch.float32, device=device)[None],
            torch.as_tensor(grid_fit.std, dtype=torch.float32, device=device)[None],
        )
        grid_elbo = observed_elbo_estimate(model, x, mask, grid_q, labels, elbo_samples, generator)
        if grid_elbo.value >= svi_elbo.value:  # the grid's q* is the maximum; SVI may tie it
            q_star, q_star_elbo = grid_q, grid_elbo
            method = "the best Gaussian on the exact posterior grid (a 2-D model: Newton's method from the grid's moments)"
            converged, message = grid_fit.converged, grid_fit.message
    with torch.no_grad():
        z = reparameterized_sample(q_star, n_completions, generator)[:, 0]  # (n, L)
        completions = decode(model, z, labels)
        completions = mask * x + (1 - mask) * completions
        q_enc = model.posterior(x * mask, labels)
        encoder_elbo = observed_elbo_estimate(model, x, mask, q_enc, labels, elbo_samples, generator)
        encoder_completion = mask * x + (1 - mask) * decode(model, q_enc.loc, labels)
    return CompletionResult(
        elbo_trace=trace,
        q_mean=q_star.loc[0],
        q_std=q_star.scale[0],
        completions=completions,
        mean_completion=completions.mean(0),
        encoder_completion=encoder_completion[0],
        encoder_q_mean=q_enc.loc[0],
        encoder_q_std=q_enc.scale[0],
        q_star_elbo=q_star_elbo,
        svi_elbo=svi_elbo,
        encoder_elbo=encoder_elbo,
        method=method,
        converged=converged,
        message=message,
    )
