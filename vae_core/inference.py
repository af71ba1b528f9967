"""What a trained VAE can do: encode, decode, sample, interpolate, map the latent plane, complete
half-seen digits and compute the exact posterior of a 2-D model.

Inputs are flat images (B, D) with values in [0, 1]; outputs are pixel probabilities (B, D).
Nothing here changes a model's weights or gradients, so a model shared by several app sessions
(or being trained in another thread) can be used safely.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.distributions import Normal, kl_divergence

from .adam import Adam
from .models import VAE
from .objectives import bernoulli_log_lik, log_importance_weights, reparameterized_sample

HIDDEN_HALVES = ("top", "bottom", "left", "right")


def _as_batch(x: torch.Tensor, model: VAE) -> torch.Tensor:
    x = torch.as_tensor(x, dtype=torch.float32, device=model.device)
    return x.reshape(1, -1) if x.dim() == 1 else x.reshape(x.shape[0], -1)


@torch.no_grad()
def encode(model: VAE, x: torch.Tensor, labels=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of q(z|x), each (B, L)."""
    q = model.posterior(_as_batch(x, model), labels)
    return q.loc, q.scale


@torch.no_grad()
def decode(model: VAE, z: torch.Tensor, labels=None) -> torch.Tensor:
    """Pixel probabilities (B, D) of p(x|z) for latents (B, L)."""
    z = torch.as_tensor(z, dtype=torch.float32, device=model.device).reshape(-1, model.latent_dim)
    return torch.sigmoid(model.decoder_logits(z, labels))


@torch.no_grad()
def reconstruct(model: VAE, x: torch.Tensor, labels=None) -> torch.Tensor:
    """Decode the posterior mean: the model's best single guess of x, (B, D)."""
    mu, _ = encode(model, x, labels)
    return decode(model, mu, labels)


@torch.no_grad()
def sample_prior(
    model: VAE,
    n: int,
    temperature: float = 1.0,
    labels=None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """n latents from N(0, temperature^2 I) and their decoded pixel probabilities."""
    z = temperature * torch.randn(n, model.latent_dim, generator=generator, device=model.device)
    return z, decode(model, z, labels)


def interpolate(
    z_start: torch.Tensor, z_end: torch.Tensor, steps: int = 10, method: str = "linear"
) -> torch.Tensor:
    """Latents (steps, L) on the way from z_start to z_end, ends included.

    "spherical" (slerp) keeps the norm where Gaussian mass lives instead of cutting through the
    low-norm middle, so intermediate decodes look like typical samples.
    """
    a = torch.as_tensor(z_start, dtype=torch.float32).reshape(-1)
    b = torch.as_tensor(z_end, dtype=torch.float32).reshape(-1)
    t = torch.linspace(0, 1, steps).unsqueeze(1)  # (steps, 1)
    if method == "linear":
        return (1 - t) * a + t * b
    if method != "spherical":
        raise ValueError(f"method must be 'linear' or 'spherical', got {method!r}")
    cos = torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    if omega.abs() < 1e-6:
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def gaussian_grid_axis(n: int, low: float = 0.05, high: float = 0.95) -> torch.Tensor:
    """n latent values at evenly spaced prior quantiles (Kingma & Welling's manifold figure)."""
    return Normal(0.0, 1.0).icdf(torch.linspace(low, high, n))


def latent_grid(n: int, low: float = 0.05, high: float = 0.95) -> torch.Tensor:
    """An n x n grid of 2-D latents through the Gaussian inverse CDF: (n*n, 2), rows top to bottom."""
    axis = gaussian_grid_axis(n, low, high)
    z2, z1 = torch.meshgrid(axis.flip(0), axis, indexing="ij")  # top row = largest z2
    return torch.stack([z1.reshape(-1), z2.reshape(-1)], dim=1)


@dataclass
class LatentProjection:
    """A 2-D view of the latent space: PCA for latent > 2, the identity for 2, padding for 1.

    `from_plane` maps any point of the view back to a latent (on the plane through the mean
    spanned by the two principal axes), so every point a user clicks can be decoded.
    """

    mean: torch.Tensor  # (L,)
    components: torch.Tensor  # (min(2, L), L), orthonormal rows
    explained: tuple[float, ...]  # fraction of variance along each axis
    is_pca: bool

    @classmethod
    def fit(cls, latents: torch.Tensor) -> LatentProjection:
        latents = torch.as_tensor(latents, dtype=torch.float32).cpu()
        dim = latents.shape[1]
        if dim <= 2:
            return cls(torch.zeros(dim), torch.eye(dim), (1.0,) * dim, False)
        mean = latents.mean(0)
        centred = latents - mean
        _, s, vh = torch.linalg.svd(centred, full_matrices=False)
        variance = s**2
        explained = tuple((variance[:2] / variance.sum()).tolist())
        return cls(mean, vh[:2].contiguous(), explained, True)

    def axis_labels(self) -> tuple[str, str]:
        if not self.is_pca:
            return ("z₁", "z₂" if self.components.shape[0] > 1 else "(unused)")
        return tuple(f"PC{i + 1} ({100 * e:.0f}% of variance)" for i, e in enumerate(self.explained))

    def to_plane(self, latents: torch.Tensor) -> torch.Tensor:
        latents = torch.as_tensor(latents, dtype=torch.float32).cpu()
        coords = (latents - self.mean) @ self.components.T  # (N, min(2, L))
        if coords.shape[1] < 2:
            coords = torch.cat([coords, torch.zeros(len(coords), 1)], dim=1)
        return coords

    def from_plane(self, points: torch.Tensor) -> torch.Tensor:
        points = torch.as_tensor(points, dtype=torch.float32).reshape(-1, 2).cpu()
        return self.mean + points[:, : self.components.shape[0]] @ self.components


def observed_mask(hidden: str, image_size: int = 28) -> torch.Tensor:
    """A (D,) float mask: 1 for pixels the model sees, 0 for the hidden half."""
    if hidden not in HIDDEN_HALVES:
        raise ValueError(f"hidden must be one of {HIDDEN_HALVES}, got {hidden!r}")
    mask = torch.ones(image_size, image_size)
    half = image_size // 2
    region = {
        "top": (slice(0, half), slice(None)),
        "bottom": (slice(half, None), slice(None)),
        "left": (slice(None), slice(0, half)),
        "right": (slice(None), slice(half, None)),
    }[hidden]
    mask[region] = 0.0
    return mask.reshape(-1)


def centre_square_mask(side: int, image_size: int = 28) -> torch.Tensor:
    """A (D,) float mask hiding a side x side square at the centre of the image (1 = seen).

    When image_size - side is odd the square sits half a pixel up and left of the true centre.
    """
    if not isinstance(side, (int, np.integer)) or not 1 <= side < image_size:
        raise ValueError(
            f"side must be a whole number of pixels from 1 to {image_size - 1} for a {image_size}x{image_size} "
            f"image (something must stay visible), got {side!r}"
        )
    start = (image_size - side) // 2
    mask = torch.ones(image_size, image_size)
    mask[start : start + side, start : start + side] = 0.0
    return mask.reshape(-1)


def random_pixels_mask(fraction: float, image_size: int = 28, seed: int = 0) -> torch.Tensor:
    """A (D,) float mask hiding round(fraction * D) pixels picked uniformly at random (1 = seen).

    The same seed always hides the same pixels, so a completion can be rerun and compared.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction is the share of pixels to hide: use a value in [0, 1), got {fraction!r}")
    n_pixels = image_size * image_size
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randperm(n_pixels, generator=generator)[: round(fraction * n_pixels)]
    mask = torch.ones(n_pixels)
    mask[hidden] = 0.0
    return mask


def painted_region_mask(painting, image_size: int = 28, threshold: float = 0.5) -> torch.Tensor:
    """A (D,) float mask hiding the pixels a user painted over (1 = seen).

    `painting` is an (H, W) array of paint coverage in [0, 1] (a canvas's alpha channel), with H and
    W the same whole multiple of image_size: each image pixel is the mean over its block of canvas
    pixels and is hidden when at least `threshold` of it is painted.
    """
    painting = np.asarray(painting, dtype=np.float32)
    if painting.ndim != 2 or painting.shape[0] != painting.shape[1] or painting.shape[0] % image_size:
        raise ValueError(
            f"painting must be a square (H, H) array with H a multiple of {image_size}, got shape "
            f"{painting.shape}; resize the canvas picture to {image_size}x{image_size} first"
        )
    if painting.size and not (painting.min() >= 0.0 and painting.max() <= 1.0):
        raise ValueError(
            "painting holds paint coverage: values must lie in [0, 1] (divide 8-bit alpha by 255)"
        )
    if not 0.0 < threshold <= 1.0:
        raise ValueError(
            f"threshold is the painted share that hides a pixel: use a value in (0, 1], got {threshold!r}"
        )
    block = painting.shape[0] // image_size
    coverage = painting.reshape(image_size, block, image_size, block).mean(axis=(1, 3))  # (S, S)
    return torch.from_numpy((coverage < threshold).astype(np.float32)).reshape(-1)


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
    """Fit a fresh Gaussian q*(z) = N(m, s^2) to one binary image's observed pixels, then decode.

    q* starts at the prior (or, with `start_at_encoder`, at the encoder's q of the visible
    pixels) and follows Adam on the observed-pixel ELBO (reparameterised gradients); only m and
    log s are optimised, the model's weights are untouched.
    `on_step(step, elbo)` is called after every step (for live progress).
    """
    device = model.device
    x = _as_batch(binary, model)[:1]
    _check_binary(x, "complete_masked_image")
    binary = x
    mask = torch.as_tensor(mask, dtype=torch.float32, device=device).reshape(-1)
    generator = torch.Generator(device=device).manual_seed(seed)
    if start_at_encoder:
        with torch.no_grad():
            start = model.posterior(x * mask, labels)
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
    with torch.no_grad():
        q_star = Normal(mean.detach(), log_std.detach().exp())
        svi_elbo = observed_elbo(model, binary, mask, q_star, labels, 1000, generator).item()
        z = reparameterized_sample(q_star, n_completions, generator)[:, 0]  # (n, L)
        completions = decode(model, z, labels)
        completions = mask * x + (1 - mask) * completions
        q_enc = model.posterior(x * mask, labels)
        encoder_elbo = observed_elbo(model, binary, mask, q_enc, labels, 1000, generator).item()
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
        svi_elbo=svi_elbo,
        encoder_elbo=encoder_elbo,
    )


@dataclass
class PosteriorGrid:
    """p(z | x_obs) of a 2-D model evaluated on a grid, beside the encoder's q(z|x) there."""

    z1: np.ndarray  # (R,) grid axis
    z2: np.ndarray  # (R,)
    log_posterior: np.ndarray  # (R, R) [i, j] at (z2[i], z1[j]); exp sums to 1 over the grid
    log_q: np.ndarray  # (R, R) encoder density, normalised on the same grid
    log_px: float  # log p(x_obs) by quadrature over the grid, nats
    q_mean: np.ndarray  # (2,)
    q_std: np.ndarray  # (2,)


@torch.no_grad()
def _log_joint_on_grid(model, binary, mask, labels, z1, z2, chunk=4096) -> torch.Tensor:
    g2, g1 = torch.meshgrid(z2, z1, indexing="ij")
    z = torch.stack([g1.reshape(-1), g2.reshape(-1)], dim=1).to(model.device)  # (R*R, 2)
    out = []
    for start in range(0, len(z), chunk):
        part = z[start : start + chunk]
        logits = model.decoder_logits(part, labels)
        out.append(bernoulli_log_lik(logits, binary, mask) + model.prior().log_prob(part).sum(-1))
    return torch.cat(out).reshape(len(z2), len(z1))


@torch.no_grad()
def exact_posterior_grid(
    model: VAE,
    binary: torch.Tensor,
    mask: torch.Tensor | None = None,
    labels=None,
    resolution: int = 121,
    extent: tuple[float, float, float, float] | None = None,
) -> PosteriorGrid:
    """log p(z|x_obs) ∝ log p(z) + log p(x_obs|z) on a grid, for one binary image of a 2-D model.

    Without `extent` (z1_min, z1_max, z2_min, z2_max), a coarse pass over [-4.5, 4.5]^2 (twice or
    four times wider while the mass reaches its edge) finds where the posterior mass is and a
    second pass zooms onto it, so sharp posteriors are resolved.
    """
    if model.latent_dim != 2:
        raise ValueError(f"the exact posterior grid needs a 2-D latent; this model has {model.latent_dim}")
    x = _as_batch(binary, model)[:1]
    _check_binary(x, "exact_posterior_grid")
    mask = (
        torch.ones(x.shape[1], device=model.device)
        if mask is None
        else torch.as_tensor(mask, dtype=torch.float32, device=model.device).reshape(-1)
    )
    q = model.posterior(x * mask, labels)
    if extent is None:
        for half_width in (4.5, 9.0, 18.0):  # wider while the mass reaches the coarse grid's edge
            coarse = torch.linspace(-half_width, half_width, 181)
            log_joint = _log_joint_on_grid(model, x, mask, labels, coarse, coarse)
            heavy = log_joint > log_joint.max() - 12.0  # cells within e^-12 of the mode
            rows, cols = torch.nonzero(heavy, as_tuple=True)
            if min(rows.min(), cols.min()) > 0 and max(rows.max(), cols.max()) < len(coarse) - 1:
                break
        step = float(coarse[1] - coarse[0])
        lo1, hi1 = coarse[cols.min()] - 2 * step, coarse[cols.max()] + 2 * step
        lo2, hi2 = coarse[rows.min()] - 2 * step, coarse[rows.max()] + 2 * step
        # Keep the encoder's Gaussian in view too: the point is to compare the two.
        m, s = q.loc[0].cpu(), q.scale[0].cpu()
        lo1, hi1 = min(lo1, m[0] - 3 * s[0]), max(hi1, m[0] + 3 * s[0])
        lo2, hi2 = min(lo2, m[1] - 3 * s[1]), max(hi2, m[1] + 3 * s[1])
        extent = (float(lo1), float(hi1), float(lo2), float(hi2))
    z1 = torch.linspace(extent[0], extent[1], resolution)
    z2 = torch.linspace(extent[2], extent[3], resolution)
    log_joint = _log_joint_on_grid(model, x, mask, labels, z1, z2).cpu().double()
    cell = float((z1[1] - z1[0]) * (z2[1] - z2[0]))
    log_norm = torch.logsumexp(log_joint.reshape(-1), 0)
    g2, g1 = torch.meshgrid(z2, z1, indexing="ij")
    grid = torch.stack([g1, g2], dim=-1).double()  # (R, R, 2)
    q_cpu = Normal(q.loc[0].cpu().double(), q.scale[0].cpu().double())
    log_q = q_cpu.log_prob(grid).sum(-1)
    return PosteriorGrid(
        z1=z1.numpy(),
        z2=z2.numpy(),
        log_posterior=(log_joint - log_norm).numpy(),
        log_q=(log_q - torch.logsumexp(log_q.reshape(-1), 0)).numpy(),
        log_px=float(log_norm + math.log(cell)),
        q_mean=q.loc[0].cpu().numpy(),
        q_std=q.scale[0].cpu().numpy(),
    )


def _check_binary(binary: torch.Tensor, who: str) -> None:
    if not bool(((binary == 0) | (binary == 1)).all()):
        raise ValueError(
            f"{who} scores binary pixels: pass the digit's scoring image (0/1), e.g. "
            "vae_core.data.scoring_binary(grey) or DigitImages.fixed_binary(), not grey levels"
        )


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
    binary = _as_batch(binary, model)[:1]
    _check_binary(binary, "importance_log_px")
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


@dataclass
class BestGaussian:
    """q*(z) = N(mean, diag(std^2)): the diagonal Gaussian with the highest ELBO for one image.

    Found on a grid over the posterior's mass (2-D latents only), so log p(x) - ELBO(q*) is the
    approximation gap: what even the best Gaussian for this image loses, in nats.
    """

    mean: np.ndarray  # (2,)
    std: np.ndarray  # (2,)
    elbo: float  # ELBO(q*) by Monte Carlo over `samples` draws from q*, nats
    elbo_std_error: float  # its standard error, nats
    samples: int
    grid_elbo: float  # ELBO(q*) on the grid around q*: the objective that was maximised, nats
    grid_log_px: float  # log p(x) by quadrature: the exact posterior grid's, nats
    converged: bool
    message: str  # what went wrong when not converged; "" when converged
    gradient: float  # largest |dELBO/d(mean/std)| or |dELBO/d log std| at the end, nats

    @property
    def grid_kl(self) -> float:
        """KL(q* || p(z|x)) = log p(x) - ELBO(q*) by quadrature (no sampling), nats."""
        return self.grid_log_px - self.grid_elbo


class _GridJoint:
    """log p(x_obs, z) of one image on a resolution^2 grid over `box` (z1_lo, z1_hi, z2_lo, z2_hi)."""

    def __init__(self, model, binary, mask, labels, box, resolution: int):
        z1 = torch.linspace(box[0], box[1], resolution)
        z2 = torch.linspace(box[2], box[3], resolution)
        self.log_joint = _log_joint_on_grid(model, binary, mask, labels, z1, z2).cpu().double().reshape(-1)
        g2, g1 = torch.meshgrid(z2.double(), z1.double(), indexing="ij")
        self.z = torch.stack([g1.reshape(-1), g2.reshape(-1)], dim=1)  # (R*R, 2), z1 fastest
        self.cells = torch.tensor([float(z1[1] - z1[0]), float(z2[1] - z2[0])], dtype=torch.float64)
        self.log_cell = math.log(float(self.cells.prod()))

    def elbo(self, theta: torch.Tensor) -> torch.Tensor:
        """ELBO of N(theta[:2], exp(theta[2:])^2), q normalised over the cells (weights w_c).

        sum_c w_c (log p(x, z_c) - log(w_c / cell)): at most the grid's log p(x), with equality
        when w is the grid posterior; the difference is the discrete KL(w || posterior).
        """
        log_q = -0.5 * (((self.z - theta[:2]) / theta[2:].exp()) ** 2).sum(-1)  # (N,), up to a constant
        log_w = log_q - torch.logsumexp(log_q, 0)
        return (log_w.exp() * (self.log_joint - log_w)).sum() + self.log_cell

    def maximise_elbo(
        self, start: torch.Tensor, max_iter: int, tolerance: float
    ) -> tuple[torch.Tensor, float, float]:
        """Newton's method with backtracking from `start` (mean, log std), until the gradient
        is below tolerance / 100 or no step goes uphill.

        Returns (theta, ELBO, largest gradient in natural units: per std of q for the mean, per
        unit of log std). Four parameters, so the exact Hessian is cheap; where it is not
        negative definite the step is plain gradient ascent. Hand-written rather than
        torch.optim.LBFGS, which imports torch._dynamo (seconds, ~150 MB) on first use.
        """
        theta = start.detach().clone().double()
        for _ in range(max_iter):
            value, grad, scaled = self._value_and_gradient(theta)
            if scaled < tolerance / 100:
                break
            hessian = torch.autograd.functional.hessian(self.elbo, theta)
            step = (
                -torch.linalg.solve(hessian, grad)
                if bool((torch.linalg.eigvalsh(hessian) < 0).all())
                else grad
            )
            # At most 2 std of q for the mean and a factor e for the std in one step.
            limit = torch.cat([2 * theta[2:].exp(), torch.ones(2, dtype=theta.dtype)])
            step = step * min(1.0, float((limit / step.abs().clamp_min(1e-300)).min()))
            rise = float(grad @ step)
            size = 1.0
            while size > 1e-6 and float(self.elbo(theta + size * step)) < value + 1e-4 * size * rise:
                size /= 2
            if size <= 1e-6 or rise < 1e-12:
                break  # no step uphill: a maximum to numerical precision
            theta = theta + size * step
        value, _, scaled = self._value_and_gradient(theta)
        return theta, value, scaled

    def _value_and_gradient(self, theta: torch.Tensor) -> tuple[float, torch.Tensor, float]:
        theta = theta.detach().requires_grad_(True)
        value = self.elbo(theta)
        (grad,) = torch.autograd.grad(value, theta)
        scaled = torch.cat([grad[:2] * theta[2:].exp(), grad[2:]]).abs().max()
        return value.item(), grad, scaled.item()


def best_gaussian_posterior(
    model: VAE,
    binary: torch.Tensor,
    mask: torch.Tensor | None = None,
    labels=None,
    grid: PosteriorGrid | None = None,
    resolution: int = 101,
    local_resolution: int = 81,
    samples: int = 8192,
    seed: int = 0,
    tolerance: float = 1e-4,
    max_iter: int = 100,
) -> BestGaussian:
    """The best diagonal Gaussian q* for one binary image of a 2-D model, and its ELBO.

    The exact posterior (`grid`, computed if not given) says where the mass is and gives
    log p(x_obs). Stage 1: a `resolution`^2 grid over that mass holds log p(x_obs, z), and the
    ELBO on it (deterministic, no sampling) is maximised by Newton's method from two starts, the
    grid posterior's mean and std and its mode with the local curvature's std; the better end is
    kept. Stage 2: a `local_resolution`^2 grid over q* +- 8 std, and Newton continued there to
    `tolerance`, so a q* on one narrow peak of a wide posterior is still resolved.
    `converged` means: the largest gradient (per std of q* for the mean, per unit of log std) is
    below `tolerance` nats, q* is at least four cells wide and 5 std inside its grid's edges,
    and ELBO(q*) <= log p(x) + 0.01 on the grids; otherwise `message` says which failed.
    ELBO(q*) is then re-estimated by `samples` Monte Carlo draws from q*, independently of grids.
    """
    if model.latent_dim != 2:
        raise ValueError(
            f"the best Gaussian is found on a grid: it needs a 2-D latent, not {model.latent_dim}"
        )
    binary = _as_batch(binary, model)[:1]
    _check_binary(binary, "best_gaussian_posterior")
    mask = (
        torch.ones(binary.shape[1], device=model.device)
        if mask is None
        else torch.as_tensor(mask, dtype=torch.float32, device=model.device).reshape(-1)
    )
    grid = exact_posterior_grid(model, binary, mask, labels) if grid is None else grid
    # Stage 1, where the mass is: a grid over the cells within e^-20 of the posterior's peak (a
    # fifth of its width beyond), holding log p(x_obs, z), to find q*'s basin.
    rows, cols = np.nonzero(grid.log_posterior > grid.log_posterior.max() - 20.0)
    lo1, hi1, lo2, hi2 = grid.z1[cols.min()], grid.z1[cols.max()], grid.z2[rows.min()], grid.z2[rows.max()]
    pad1 = 0.2 * (hi1 - lo1) + (grid.z1[1] - grid.z1[0])
    pad2 = 0.2 * (hi2 - lo2) + (grid.z2[1] - grid.z2[0])
    cover = _GridJoint(
        model, binary, mask, labels, (lo1 - pad1, hi1 + pad1, lo2 - pad2, hi2 + pad2), resolution
    )
    posterior = torch.softmax(cover.log_joint, 0)
    moment_mean = (posterior[:, None] * cover.z).sum(0)
    moment_var = (posterior[:, None] * (cover.z - moment_mean) ** 2).sum(0)
    moment_std = moment_var.sqrt().clamp_min(float(cover.cells.max()))
    # The mode, with std from the curvature of log p along each axis (finite differences).
    surface = cover.log_joint.reshape(resolution, resolution)
    i, j = divmod(int(torch.argmax(cover.log_joint)), resolution)
    i, j = min(max(i, 1), resolution - 2), min(max(j, 1), resolution - 2)
    curvature = torch.stack(
        [
            (surface[i, j + 1] - 2 * surface[i, j] + surface[i, j - 1]) / cover.cells[0] ** 2,
            (surface[i + 1, j] - 2 * surface[i, j] + surface[i - 1, j]) / cover.cells[1] ** 2,
        ]
    )
    mode_std = (-curvature).clamp_min(1e-12).rsqrt().clamp(float(cover.cells.max()), float(moment_std.max()))
    starts = [
        torch.cat([moment_mean, moment_std.log()]),
        torch.cat([cover.z[i * resolution + j], mode_std.log()]),
    ]
    theta = max(
        (cover.maximise_elbo(start, min(max_iter, 25), max(tolerance, 1e-2)) for start in starts),
        key=lambda fit: fit[1],
    )[0]
    # Stage 2, q* resolved: a grid over q* +- 8 std (q* may be one narrow peak of a wide
    # posterior), and the fit continued there. The ELBO needs the grid to hold q*'s mass only.
    mean, std = theta[:2], theta[2:].exp()
    local_box = (
        *(mean[0] + 8 * std[0] * torch.tensor([-1, 1])),
        *(mean[1] + 8 * std[1] * torch.tensor([-1, 1])),
    )
    local = _GridJoint(model, binary, mask, labels, tuple(float(v) for v in local_box), local_resolution)
    theta, grid_elbo, gradient = local.maximise_elbo(theta, max_iter, tolerance)
    mean, std = theta[:2], theta[2:].exp()

    problems = []
    if not gradient < tolerance:
        problems.append(f"the ELBO's gradient is still {gradient:.1e} nats after {max_iter} Newton steps")
    if (std < 4 * local.cells).any():
        problems.append("q* is narrower than four grid cells: its ELBO on the grid is coarse")
    low, high = local.z[0], local.z[-1]
    if ((mean - 5 * std) < low).any() or ((mean + 5 * std) > high).any():
        problems.append("q* moved beyond its grid (5 std): its ELBO there is truncated")
    if grid_elbo > grid.log_px + 0.01:
        problems.append("ELBO(q*) exceeds log p(x) on the grid: the posterior grid misses mass")

    # An independent estimate of ELBO(q*): Monte Carlo draws, no grid.
    q_star = Normal(mean.float().to(model.device)[None], std.float().to(model.device)[None])
    generator = torch.Generator(device=model.device).manual_seed(seed)
    with torch.no_grad():
        terms = torch.cat(
            [
                log_importance_weights(
                    model, binary, labels, min(4096, samples - done), q_star, generator, mask
                )
                for done in range(0, samples, 4096)
            ]
        ).double()[:, 0]  # (samples,) log p(x_obs, z) - log q*(z): their mean is ELBO(q*)
    return BestGaussian(
        mean=mean.numpy(),
        std=std.numpy(),
        elbo=float(terms.mean()),
        elbo_std_error=float(terms.std() / math.sqrt(samples)),
        samples=samples,
        grid_elbo=grid_elbo,
        grid_log_px=grid.log_px,
        converged=not problems,
        message="; ".join(problems),
        gradient=gradient,
    )
