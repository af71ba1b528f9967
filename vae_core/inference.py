"""Using a trained VAE: encode, decode, reconstruct, sample, interpolate, map latents to a plane.

The plane: a grid through the Gaussian inverse CDF, or PCA for more than two dimensions.

Inputs are flat images (B, D) with values in [0, 1]; outputs are pixel probabilities (B, D).
Nothing here changes a model's weights or gradients, so a model shared by several app sessions
(or being trained in another thread) can be used safely. Completion (SVI) lives in `svi`, the
exact posterior of a 2-D model in `posterior`, likelihood estimates in `evaluation`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.distributions import Normal

from .models import VAE, flat_images


@torch.no_grad()
def encode(model: VAE, x: torch.Tensor, labels=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of q(z|x), each (B, L)."""
    q = model.posterior(flat_images(x, model), labels)
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
