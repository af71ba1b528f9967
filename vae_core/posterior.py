"""The exact posterior of a 2-D model on a grid, and the best Gaussian q* found from it.

For 2-D latents the grid is the referee: log p(x_obs) by quadrature, and q* the diagonal Gaussian
with the highest ELBO (Newton's method on the grid ELBO), so gaps measured against them are exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.distributions import Normal

from .data import require_binary
from .evaluation import one_image_log_weights
from .masks import mask_or_all_seen
from .models import VAE, flat_images
from .objectives import bernoulli_log_lik


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
    x = flat_images(binary, model)[:1]
    require_binary(x, "exact_posterior_grid")
    mask = mask_or_all_seen(mask, x.shape[1], model.device)
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
    binary = flat_images(binary, model)[:1]
    require_binary(binary, "best_gaussian_posterior")
    mask = mask_or_all_seen(mask, binary.shape[1], model.device)
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
    # (samples,) log p(x_obs, z) - log q*(z): their mean is ELBO(q*)
    terms = one_image_log_weights(model, binary, labels, samples, q_star, generator, mask)
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
