"""The ELBO, the IWAE bound and the importance weights behind them, per image, in nats.

The chunked, importance-sampled log p(x) estimate is `evaluation.log_likelihood_estimate`.

Every function returns one number per image (shape (B,)): sums over pixels and latent
dimensions, never means over them. Callers average over images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.distributions import Normal, kl_divergence

from .models import VAE


def _group_size(pixels: int, dtype: torch.dtype) -> int:
    """The largest divisor of `pixels` whose product of factors in [1/2, 1) cannot underflow."""
    limit = -math.frexp(torch.finfo(dtype).tiny)[1] - 1  # 125 for float32, 1021 for float64
    return max(g for g in range(1, min(pixels, limit) + 1) if pixels % g == 0)


def bernoulli_log_lik_values(
    logits: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """sum_d m_d [x_d l_d - softplus(l_d)]: `bernoulli_log_lik` without autograd, x and mask
    already in the logits' dtype.

    softplus(l) = relu(l) - log sigmoid(|l|). PyTorch's CPU log-sigmoid and log1p are scalar code
    (about as slow as the decoder's last GEMM), so the sum of log sigmoid(|l|) in [log 1/2, 0) is
    taken as the log of products over groups of pixels (112 for 28x28 in float32: >= 2**-112, no
    underflow). Six vectorised passes replace the ~12 of -binary_cross_entropy_with_logits(...)
    .sum(-1); the sum of the pixels' own terms is kept pixel by pixel, so no large sums cancel.
    """
    # relu(l) - x l per pixel: 0 for a confident right pixel, |l| for a confident wrong one.
    per_pixel = logits.clamp_min(0).addcmul_(x, logits, value=-1)  # (..., D)
    if mask is not None:  # hidden pixels are wrong by 0 and count as certain (factor 1)
        per_pixel.mul_(mask)
    wrong = per_pixel.sum(-1)
    # sigmoid(|l|) in [1/2, 1), in the same buffer: a fresh one is a cache miss on every pixel
    confidence = torch.abs(logits, out=per_pixel).sigmoid_()
    if mask is not None:
        confidence = torch.where(mask > 0, confidence, 1.0)
    size = _group_size(logits.shape[-1], logits.dtype)
    log_confidence = confidence.unflatten(-1, (-1, size)).prod(-1).log_().sum(-1)
    return log_confidence - wrong


class _BernoulliLogLik(torch.autograd.Function):
    """`bernoulli_log_lik_values` with the gradient (x - sigmoid(l)) m written by hand: three
    vectorised passes instead of autograd's graph through the forward's six."""

    @staticmethod
    def forward(ctx, logits, x, mask):
        ctx.save_for_backward(logits, x, mask)
        return bernoulli_log_lik_values(logits, x, mask)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # grad (...,): d loss / d log p(x|z) per image
        logits, x, mask = ctx.saved_tensors
        grad = grad.unsqueeze(-1)
        grad_logits = grad_x = None
        if ctx.needs_input_grad[0]:
            grad_logits = torch.sigmoid(logits).sub_(x).mul_(-grad)  # (x - sigmoid(l)) * grad
            if mask is not None:
                grad_logits.mul_(mask)
        if ctx.needs_input_grad[1]:
            grad_x = (logits * grad if mask is None else logits * grad * mask).sum_to_size(x.shape)
        return grad_logits, grad_x, None


def bernoulli_log_lik(
    logits: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """log p(x|z) summed over pixels: (..., D) logits and (..., D) or (B, D) binary x -> (...).

    With `mask` (D,) of 1 for observed and 0 for hidden pixels, only observed pixels count:
    that is log p(x_obs|z), since the hidden pixels marginalise out of a factorised decoder.
    Computed from logits, so it stays exact where sigmoid(logits) rounds to 0 or 1.
    """
    if mask is not None:
        mask = mask.to(logits.dtype)
    return _BernoulliLogLik.apply(logits, x.to(logits.dtype), mask)


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


@dataclass
class ForwardPass:
    """The way through the VAE that the ELBO takes, with every intermediate kept (How it works shows them)."""

    q: Normal  # q(z|x), batch shape (B, L)
    z: torch.Tensor  # (B, L), or (S, L) for S noise draws of one image
    logits: torch.Tensor  # Bernoulli logits of p(x|z), (..., D)
    recon: torch.Tensor  # log p(x|z), nats, (B,) or (S,)
    kl_per_dim: torch.Tensor  # KL(q(z_u|x) || p(z_u)), analytic, (B, L)

    @property
    def kl(self) -> torch.Tensor:
        return self.kl_per_dim.sum(-1)


def forward_pass(
    model: VAE,
    x: torch.Tensor,
    labels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    eps: torch.Tensor | None = None,
) -> ForwardPass:
    """Encode, sample z = mu + sigma * eps (eps given, else drawn from `generator`), decode, score."""
    q = model.posterior(x, labels)
    z = reparameterized_sample(q, generator=generator) if eps is None else q.loc + q.scale * eps
    logits = model.decoder_logits(z, labels)
    return ForwardPass(q, z, logits, bernoulli_log_lik(logits, x), kl_divergence(q, model.prior()))


def elbo_terms(
    model: VAE,
    x: torch.Tensor,
    labels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> ELBOTerms:
    passed = forward_pass(model, x, labels, generator)
    return ELBOTerms(recon=passed.recon, kl=passed.kl, elbo=passed.recon - passed.kl)


@dataclass
class ImportanceTerms:
    """The two parts of the log importance weights of S samples z_s ~ q(z|x), (S, B) each, nats."""

    log_px_z: torch.Tensor  # log p(x|z_s), over the observed pixels only with a mask
    log_prior_ratio: torch.Tensor  # log p(z_s) - log q(z_s|x); its mean over samples is -KL

    def log_weights(self, beta: float = 1.0) -> torch.Tensor:
        """log w_s = log p(x|z_s) + beta (log p(z_s) - log q(z_s|x)); beta = 1 is the true weight.

        KL warm-up trains with beta < 1: it scales the prior/posterior ratio, which is the KL
        term when k = 1.
        """
        return self.log_px_z + beta * self.log_prior_ratio


def importance_terms(
    model: VAE,
    x: torch.Tensor,
    labels: torch.Tensor | None,
    samples: int,
    q: Normal | None = None,
    generator: torch.Generator | None = None,
    mask: torch.Tensor | None = None,
) -> ImportanceTerms:
    """log p(x|z_s) and log p(z_s) - log q(z_s|x) for S samples z_s ~ q (the encoder's by default)."""
    q = model.posterior(x, labels) if q is None else q
    z = reparameterized_sample(q, samples, generator)  # (S, B, L)
    log_px_z = bernoulli_log_lik(model.decoder_logits(z, labels), x, mask)
    log_prior_ratio = model.prior().log_prob(z).sum(-1) - q.log_prob(z).sum(-1)
    return ImportanceTerms(log_px_z, log_prior_ratio)


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
    return importance_terms(model, x, labels, samples, q, generator, mask).log_weights()


def log_mean_exp(log_w: torch.Tensor) -> torch.Tensor:
    """log (1/S) sum_s exp(log_w_s) over the first dimension: (S, B) -> (B,)."""
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])


def iwae_bound(
    model: VAE,
    x: torch.Tensor,
    labels: torch.Tensor | None = None,
    k: int = 5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """IWAE bound log (1/k) sum_s w_s, per image (B,); k=1 gives a one-sample ELBO estimate."""
    return log_mean_exp(log_importance_weights(model, x, labels, k, generator=generator))
