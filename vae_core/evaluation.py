"""How good a model is, in nats per image: log p(x), IWAE bounds against k, test-set scores.

`log_likelihood_estimate` (chunked importance-sampled log p(x) of a batch), importance-sampled
log p(x) of one image (with its ESS), the IWAE bound L_k for a range of k, and `evaluate_model`, the test-set evaluation the CLI and the benchmarks report.
"""

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
from .objectives import elbo_terms, log_importance_weights, log_mean_exp

ELEMENT_BUDGET = 2**23  # decoder outputs per chunk of importance samples: 32 MiB in float32


def _samples_per_chunk(batch: int, pixels: int, budget: int) -> int:
    return max(1, budget // max(1, batch * pixels))


@torch.no_grad()
def log_likelihood_estimate(
    model: VAE,
    x: torch.Tensor,
    labels: torch.Tensor | None = None,
    k: int = 5000,
    generator: torch.Generator | None = None,
    element_budget: int = ELEMENT_BUDGET,
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


@torch.no_grad()
def one_image_log_weights(
    model: VAE,
    binary: torch.Tensor,
    labels,
    k: int,
    q: Normal,
    generator: torch.Generator,
    mask: torch.Tensor | None = None,
    chunk: int = 4096,
) -> torch.Tensor:
    """log p(x_obs, z_s) - log q(z_s) for k draws z_s ~ q of one image (1, D), `chunk` at a time: (k,) float64."""
    return torch.cat(
        [
            log_importance_weights(model, binary, labels, min(chunk, k - done), q, generator, mask)[:, 0]
            for done in range(0, k, chunk)
        ]
    ).double()


# Below this share of k effective samples an importance-sampling estimate states no error interval:
# the encoder's q on half-hidden mlp2d digits was 1.7-21 nats off with ESS 1-52 of 1,000 (6-42 SE).
MIN_TRUSTED_ESS_SHARE = 0.1


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

    @property
    def interval_trusted(self) -> bool:
        """Whether log_px ± std_error may be stated: with at least a tenth of k effective samples.

        With few effective samples the weights' spread is itself estimated from those few, and a
        proposal that misses part of the posterior shows a small error while being nats off.
        """
        return self.ess >= MIN_TRUSTED_ESS_SHARE * self.k

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
    log_w = one_image_log_weights(model, binary, labels, k, q, generator, mask, chunk)  # (k,)
    log_sum = torch.logsumexp(log_w, 0)
    ess = float(torch.exp(2 * log_sum - torch.logsumexp(2 * log_w, 0)))
    return ImportanceEstimate(
        log_px=float(log_sum - math.log(k)),
        ess=ess,
        std_error=math.sqrt(max(0.0, 1.0 / ess - 1.0 / k)),
        k=k,
    )


@dataclass
class BoundsByK:
    """The IWAE bound L_k for each k: its mean over the images, nats per image, and its spread."""

    ks: tuple[int, ...]
    mean: np.ndarray  # (len(ks),) average of the repeats' estimates
    std: np.ndarray  # (len(ks),) their sample standard deviation; nan with one repeat

    def as_dict(self) -> dict[int, float]:
        return {k: float(m) for k, m in zip(self.ks, self.mean, strict=True)}


@torch.no_grad()
def bounds_against_k(
    model: VAE,
    x: torch.Tensor,
    labels=None,
    ks: tuple[int, ...] = (1, 5, 50, 500, 5000),
    seed: int = 0,
    repeats: int = 1,
    samples_per_k: int | None = None,
    progress: Callable[[float], None] | None = None,
    element_budget: int = ELEMENT_BUDGET,
    mask: torch.Tensor | None = None,
) -> BoundsByK:
    """Mean IWAE bound L_k (nats per image) over the images for each k; k=1 is the ELBO.

    With `mask` (D,), 1 = seen, the bounds are of log p(x_obs), from the encoder's q of the
    visible pixels: the same quantity the Posterior page shows for a half-hidden digit.

    Each k of each repeat r is drawn from its own generator seeded `seed + r`, so a k's value
    does not depend on which other ks are asked for. L_k is an expectation over sets of k samples
    and one set is noisy (a single ELBO sample of one digit varies by several nats): with
    `samples_per_k`, each image is scored with max(1, min(200, samples_per_k // k)) sets.
    Large k is computed chunked (the same estimator as log p(x)), so k=5000 is affordable.
    `progress(fraction of all samples drawn)` is called as the work goes (k=5000 is most of it).
    `element_budget` bounds the decoder outputs alive at once, as in `log_likelihood_estimate`.
    """
    total, before = sum(ks) * repeats, 0
    means, stds = [], []
    for k in ks:
        sets = 1 if samples_per_k is None else max(1, min(200, samples_per_k // k))
        xs = x.repeat_interleave(sets, 0)  # (B * sets, D)
        ls = None if labels is None else torch.as_tensor(labels).repeat_interleave(sets, 0)
        q = None if mask is None else model.posterior(xs * mask, ls)  # None: the encoder's q of xs
        values = []
        for r in range(repeats):
            generator = torch.Generator(device=model.device).manual_seed(seed + r)
            if k * xs.shape[0] * xs.shape[1] <= element_budget:
                value = log_mean_exp(log_importance_weights(model, xs, ls, k, q, generator, mask))
            else:
                on_chunk = (
                    None
                    if progress is None
                    else (lambda done, before=before: progress((before + done) / total))
                )
                value = log_likelihood_estimate(
                    model, xs, ls, k, generator, element_budget, q=q, mask=mask, on_chunk=on_chunk
                )
            values.append(float(value.mean()))
            before += k
            if progress is not None:
                progress(before / total)
        means.append(np.mean(values))
        stds.append(np.std(values, ddof=1) if repeats > 1 else math.nan)
    return BoundsByK(tuple(ks), np.array(means), np.array(stds))


def bounds_by_k(
    model: VAE,
    x: torch.Tensor,
    labels=None,
    ks: tuple[int, ...] = (1, 5, 50, 500, 5000),
    seed: int = 0,
    progress: Callable[[float], None] | None = None,
) -> dict[int, float]:
    """`bounds_against_k` once, as {k: mean bound}."""
    return bounds_against_k(model, x, labels, ks, seed, progress=progress).as_dict()


def repeated_bounds_by_k(
    model: VAE,
    x: torch.Tensor,
    labels=None,
    ks: tuple[int, ...] = (1, 5, 50, 500, 5000),
    repeats: int = 5,
    samples_per_k: int = 4000,
    mask: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`bounds_against_k` over seeds 0 … repeats-1, as (mean, std) per k: the Posterior page's form."""
    if repeats < 2:
        raise ValueError(f"repeats must be at least 2 to give a spread, got {repeats}")
    bounds = bounds_against_k(model, x, labels, ks, 0, repeats, samples_per_k, mask=mask)
    return bounds.mean, bounds.std


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
