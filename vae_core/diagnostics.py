"""Looking inside a trained VAE: which latent dimensions it uses, and where its ELBO loses.

The ELBO's gap to log p(x) splits into the amortisation and approximation gaps (Cremer et al.).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.distributions import Normal, kl_divergence

from .evaluation import importance_log_px
from .models import VAE
from .posterior import best_gaussian_posterior
from .svi import fit_posterior, observed_elbo

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. (2015): a unit is active if Cov_x(E_q[z_u]) > 0.01


@dataclass
class LatentActivity:
    """Per latent dimension: its average KL (nats per image) and how much its mean moves with x."""

    kl_per_dim: torch.Tensor  # (L,)
    mean_variance: torch.Tensor  # (L,) variance over images of E_q[z_u]
    active: torch.Tensor  # (L,) bool

    @property
    def active_count(self) -> int:
        return int(self.active.sum())


@torch.no_grad()
def latent_activity(model: VAE, x: torch.Tensor, labels=None) -> LatentActivity:
    """Posterior collapse check: a dimension whose q(z_u|x) ignores x carries ~0 KL and is inactive."""
    return activity_of_posterior(model.posterior(x, labels))


def activity_of_posterior(q: Normal) -> LatentActivity:
    """`latent_activity` from an encoder output already computed (B, L): no second encoder pass."""
    kl = kl_divergence(q, Normal(torch.zeros_like(q.loc), torch.ones_like(q.scale))).mean(0)  # (L,)
    variance = q.loc.var(0)
    return LatentActivity(kl, variance, variance > ACTIVE_UNIT_THRESHOLD)


@dataclass
class GapSummary:
    """Per image (nats): log p(x), the encoder's ELBO and the best Gaussian q*'s ELBO."""

    log_px: torch.Tensor  # (N,)
    encoder_elbo: torch.Tensor  # (N,)
    q_star_elbo: torch.Tensor  # (N,)
    converged: torch.Tensor  # (N,) bool: whether q* was found to the library's criterion
    exact: bool  # log p(x) by quadrature and q* the best Gaussian (2-D), else IS and SVI

    @property
    def amortisation_gap(self) -> float:
        """Mean ELBO(q*) - ELBO(q): what sharing one encoder across images costs."""
        return float((self.q_star_elbo - self.encoder_elbo).mean())

    @property
    def approximation_gap(self) -> float:
        """Mean log p(x) - ELBO(q*): what even the best Gaussian per image misses."""
        return float((self.log_px - self.q_star_elbo).mean())


def inference_gaps(
    model: VAE,
    binary: torch.Tensor,
    labels=None,
    svi_steps: int = 300,
    k: int = 1000,
    elbo_samples: int = 4096,
    progress=None,
) -> GapSummary:
    """Split each binary image's ELBO gap into amortisation and approximation parts (Cremer et al. 2018).

    2-D latents: log p(x) by quadrature and q* the best Gaussian found on the grid
    (`best_gaussian_posterior`), so both gaps are what they claim to be. More dimensions: log p(x)
    by k importance samples and q* by `svi_steps` of SVI from the encoder's q, so the
    approximation gap is an upper estimate; `converged` is then False throughout.
    Every ELBO is estimated with `elbo_samples` draws. `progress(i)` is called after each image.
    """
    mask = torch.ones(binary.shape[1], device=model.device)
    exact = model.latent_dim == 2
    rows = []
    for i in range(len(binary)):
        x = binary[i : i + 1].to(model.device)
        label = None if labels is None else labels[i : i + 1]
        generator = torch.Generator(device=model.device).manual_seed(i)
        with torch.no_grad():
            q = model.posterior(x, label)
            encoder_elbo = observed_elbo(model, x, mask, q, label, elbo_samples, generator).item()
        if exact:
            fit = best_gaussian_posterior(model, x, None, label, samples=elbo_samples, seed=i)
            rows.append((fit.grid_log_px, encoder_elbo, fit.elbo, fit.converged))
        else:
            svi_generator = torch.Generator(device=model.device).manual_seed(i)
            fit = fit_posterior(
                model, x, mask, label, steps=svi_steps, generator=svi_generator, start_at_encoder=True
            )
            with torch.no_grad():
                q_star_elbo = observed_elbo(model, x, mask, fit.q, label, 1000, svi_generator).item()
            log_px = importance_log_px(model, x, None, label, k=k, seed=i).log_px
            rows.append((log_px, encoder_elbo, q_star_elbo, False))
        if progress is not None:
            progress(i)
    log_px, encoder, q_star, converged = zip(*rows, strict=True)
    return GapSummary(
        torch.tensor(log_px, dtype=torch.float64),
        torch.tensor(encoder, dtype=torch.float64),
        torch.tensor(q_star, dtype=torch.float64),
        torch.tensor(converged),
        exact,
    )
