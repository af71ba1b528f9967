"""How good a model is, in nats per image: importance-sampled log p(x), IWAE bounds against k, and
the test-set evaluation the CLI and the benchmarks report."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.distributions import Normal

from .data import EVALUATION_BINARIZATION_SEED, require_binary
from .errors import ConfigError
from .models import VAE, flat_images
from .objectives import elbo_terms, iwae_bound, log_importance_weights, log_likelihood_estimate


@dataclass
class ImportanceEstimate:
    """log p(x) (or log p(x_obs)) of one image by importance sampling, with its reliability.

    ess: effective sample size of the k weights, (sum w)^2 / sum w^2, from 1 to k.
    std_error: the delta-method standard error of log p, sqrt(1/ess - 1/k) nats. Both are
    computed from the same weights, so a proposal that misses the posterior can look confident:
    judge the estimate by its ESS too, and for 2-D models against quadrature (`disagrees_with`).
    """

    log_px: float
    ess: float
    std_error: float
    k: int

    def disagrees_with(self, exact_log_px: float, grid_error: float = 0.05) -> bool:
        """Whether the estimate is further from `exact_log_px` than 3 standard errors + grid error."""
        return abs(self.log_px - exact_log_px) > 3.0 * self.std_error + grid_error


@torch.no_grad()
def importance_log_px(
    model: VAE,
    binary: torch.Tensor,
    mask: torch.Tensor | None = None,
    labels=None,
    k: int = 1000,
    seed: int = 0,
    proposal: Normal | None = None,
    chunk: int = 4096,
) -> ImportanceEstimate:
    """log p(x) (or log p(x_obs) with `mask`) of one binary image by k importance samples.

    The proposal defaults to the encoder's q of the visible pixels; any Normal with batch shape
    (1, L) may be given instead (e.g. a widened best Gaussian q*, which covers the posterior).
    """
    binary = flat_images(binary, model)[:1]
    require_binary(binary, "importance_log_px")
    if mask is not None:
        mask = torch.as_tensor(mask, dtype=torch.float32, device=model.device).reshape(-1)
    q = model.posterior(binary if mask is None else binary * mask, labels) if proposal is None else proposal
    generator = torch.Generator(device=model.device).manual_seed(seed)
    log_w = torch.cat(
        [
            log_importance_weights(model, binary, labels, min(chunk, k - done), q, generator, mask)[:, 0]
            for done in range(0, k, chunk)
        ]
    ).double()  # (k,)
    log_sum = torch.logsumexp(log_w, 0)
    ess = float(torch.exp(2 * log_sum - torch.logsumexp(2 * log_w, 0)))
    return ImportanceEstimate(
        log_px=float(log_sum - math.log(k)),
        ess=ess,
        std_error=math.sqrt(max(0.0, 1.0 / ess - 1.0 / k)),
        k=k,
    )


@torch.no_grad()
def bounds_by_k(
    model: VAE,
    x: torch.Tensor,
    labels=None,
    ks: tuple[int, ...] = (1, 5, 50, 500, 5000),
    seed: int = 0,
    progress: Callable[[float], None] | None = None,
) -> dict[int, float]:
    """Mean IWAE bound (nats per image) over the images for each k; k=1 is the ELBO.

    Large k is computed chunked (the same estimator as log p(x)), so k=5000 is affordable.
    `progress(fraction of all samples drawn)` is called as the work goes (k=5000 is most of it).
    """
    generator = torch.Generator(device=model.device).manual_seed(seed)
    total, before = sum(ks), 0
    result = {}
    for k in ks:
        if k * x.shape[0] * x.shape[1] <= 2**23:
            value = iwae_bound(model, x, labels, k, generator)
        else:
            on_chunk = (
                None if progress is None else (lambda done, before=before: progress((before + done) / total))
            )
            value = log_likelihood_estimate(model, x, labels, k, generator, on_chunk=on_chunk)
        result[k] = float(value.mean())
        before += k
        if progress is not None:
            progress(before / total)
    return result


def repeated_bounds_by_k(
    model: VAE,
    x: torch.Tensor,
    labels=None,
    ks: tuple[int, ...] = (1, 5, 50, 500, 5000),
    repeats: int = 5,
    samples_per_k: int = 4000,
) -> tuple[np.ndarray, np.ndarray]:
    """Estimates of the IWAE bound L_k (mean over the images) and their spread: (mean, std) per k.

    L_k is an expectation over sets of k samples; one set is a noisy estimate of it (a single
    ELBO sample of one digit varies by several nats). Each estimate here averages
    samples_per_k // k sets per image (1 to 200), and is repeated with seeds 0 … repeats-1.
    """
    if repeats < 2:
        raise ValueError(f"repeats must be at least 2 to give a spread, got {repeats}")
    means, stds = [], []
    for k in ks:
        sets = max(1, min(200, samples_per_k // k))
        xs = x.repeat_interleave(sets, 0)
        ls = None if labels is None else torch.as_tensor(labels).repeat_interleave(sets, 0)
        values = np.array([bounds_by_k(model, xs, ls, (k,), seed)[k] for seed in range(repeats)])
        means.append(values.mean())
        stds.append(values.std(ddof=1))
    return np.array(means), np.array(stds)


@torch.no_grad()
def evaluate_model(model, digits, k: int, batch_size: int = 100, seed: int = 0, progress=None) -> dict:
    """Test-set ELBO terms and NLL (-log p(x), k importance samples), nats per image."""
    if not (isinstance(k, int) and k >= 1 and isinstance(batch_size, int) and batch_size >= 1):
        raise ConfigError(
            f"evaluation needs k >= 1 and batch_size >= 1, got k={k!r}, batch_size={batch_size!r}"
        )
    if len(digits) == 0:
        raise ConfigError("there are no test digits to evaluate")
    binary = digits.fixed_binary(EVALUATION_BINARIZATION_SEED).to(model.device)
    labels = digits.labels.to(model.device)
    generator = torch.Generator(device=model.device).manual_seed(seed)
    sums = {"recon": 0.0, "kl": 0.0, "elbo": 0.0, "log_px": 0.0}
    for start in range(0, len(binary), batch_size):
        x = binary[start : start + batch_size]
        y = labels[start : start + batch_size]  # the model uses them only when conditional
        terms = elbo_terms(model, x, y, generator)
        sums["recon"] += terms.recon.sum().item()
        sums["kl"] += terms.kl.sum().item()
        sums["elbo"] += terms.elbo.sum().item()
        sums["log_px"] += log_likelihood_estimate(model, x, y, k, generator).sum().item()
        if progress is not None:
            progress(len(x))
    n = len(binary)
    return {
        "elbo": sums["elbo"] / n,
        "recon": sums["recon"] / n,
        "kl": sums["kl"] / n,
        "nll": -sums["log_px"] / n,
        "n": n,
        "k": k,
        "binarization_seed": EVALUATION_BINARIZATION_SEED,
    }
