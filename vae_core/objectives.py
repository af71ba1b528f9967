"""The ELBO, the IWAE bound and importance-sampled log p(x), per image, in nats.

Every function returns one number per image (shape (B,)): sums over pixels and latent
dimensions, never means over them. Callers average over images.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from .models import VAE


def bernoulli_log_lik(
    logits: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """log p(x|z) summed over pixels: (..., D) logits and (..., D) binary x -> (...).

    With `mask` (D,) of 1 for observed and 0 for hidden pixels, only observed pixels count:
    that is log p(x_obs|z), since the hidden pixels marginalise out of a factorised decoder.
    """
    # The with-logits form is exact for large |logits| where log(sigmoid) would underflow.
    per_pixel = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
    if mask is not None:
        per_pixel = per_pixel * mask
    return per_pixel.sum(-1)


def reparameterized_sample(
    q: Normal, samples: int | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """z = mu + sigma * eps with eps drawn from `generator`: (B, L), or (S, B, L) for S samples."""
    shape = q.loc.shape if samples is None else (samples, *q.loc.shape)
    eps = torch.randn(shape, generator=generator, device=q.loc.device, dtype=q.loc.dtype)
    return q.loc + q.scale * eps


@dataclass
class ELBOTerms:
    """Per-image terms, (B,) each, in nats: elbo = recon - kl."""

    recon: torch.Tensor  # one-sample estimate of E_q[log p(x|z)], <= 0
    kl: torch.Tensor  # KL(q(z|x) || p(z)), analytic, >= 0
    elbo: torch.Tensor

    def loss(self, beta: float = 1.0) -> torch.Tensor:
        """Negative beta-weighted ELBO, averaged over images: what the optimiser minimises."""
        return (beta * self.kl - self.recon).mean()


def elbo_terms(
    model: VAE,
    x: torch.Tensor,
    labels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> ELBOTerms:
    q = model.posterior(x, labels)
    z = reparameterized_sample(q, generator=generator)
    recon = bernoulli_log_lik(model.decoder_logits(z, labels), x)
    kl = kl_divergence(q, model.prior()).sum(-1)
    return ELBOTerms(recon=recon, kl=kl, elbo=recon - kl)


def log_importance_weights(
    model: VAE,
    x: torch.Tensor,
    labels: torch.Tensor | None,
    samples: int,
    q: Normal | None = None,
    generator: torch.Generator | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """log p(x, z_s) - log q(z_s|x) for S samples z_s ~ q: (S, B); only observed pixels with `mask`."""
    q = model.posterior(x, labels) if q is None else q
    z = reparameterized_sample(q, samples, generator)  # (S, B, L)
    log_px_z = bernoulli_log_lik(model.decoder_logits(z, labels), x, mask)
    log_pz = model.prior().log_prob(z).sum(-1)
    log_qz = q.log_prob(z).sum(-1)
    return log_px_z + log_pz - log_qz


def iwae_bound(
    model: VAE,
    x: torch.Tensor,
    labels: torch.Tensor | None = None,
    k: int = 5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """IWAE bound log (1/k) sum_s w_s, per image (B,); k=1 gives a one-sample ELBO estimate."""
    log_w = log_importance_weights(model, x, labels, k, generator=generator)
    return torch.logsumexp(log_w, dim=0) - math.log(k)


def _samples_per_chunk(batch: int, pixels: int, budget: int) -> int:
    return max(1, budget // max(1, batch * pixels))


@torch.no_grad()
def log_likelihood_estimate(
    model: VAE,
    x: torch.Tensor,
    labels: torch.Tensor | None = None,
    k: int = 5000,
    generator: torch.Generator | None = None,
    element_budget: int = 2**23,
    q: Normal | None = None,
    mask: torch.Tensor | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """log p(x) estimated with k importance samples from q(z|x), per image (B,), in nats.

    Samples are drawn in chunks so that a chunk's decoder output holds at most
    `element_budget` numbers (32 MiB in float32), whatever k is; the chunks' weights are
    combined with a running log-sum-exp, so the result equals the unchunked estimate.
    A proposal `q` other than the encoder's may be given; with `mask`, it estimates log p(x_obs).
    `on_chunk(samples done so far)` is called after each chunk: large k takes seconds.
    """
    q = model.posterior(x, labels) if q is None else q
    chunk = _samples_per_chunk(x.shape[0], x.shape[1], element_budget)
    total = torch.full((x.shape[0],), -math.inf, device=x.device)
    done = 0
    while done < k:
        take = min(chunk, k - done)
        log_w = log_importance_weights(model, x, labels, take, q, generator, mask)
        total = torch.logaddexp(total, torch.logsumexp(log_w, dim=0))
        done += take
        if on_chunk is not None:
            on_chunk(done)
    return total - math.log(k)
