"""Latent traversals: decode z with one dimension swept over the prior while the others stay put."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .diagnostics import latent_activity
from .inference import decode
from .models import VAE

MAX_STEPS = 64  # decodes per row: bounds memory (L * steps * D floats) for a visitor's choice


@dataclass
class Traversal:
    """One row per latent dimension, ordered by average KL (largest first)."""

    order: list[int]  # latent dimension shown in each row
    kl_per_dim: list[float]  # nats per image, in row order
    collapsed: list[bool]  # in row order: inactive units (the posterior ignores x there)
    values: torch.Tensor  # (steps,) the swept values, -span … +span
    base: torch.Tensor  # (L,) where the other dimensions stay
    latents: torch.Tensor  # (rows, steps, L) the decoded latents
    probs: torch.Tensor  # (rows, steps, D) pixel probabilities


def latent_traversal(
    model: VAE,
    reference_x: torch.Tensor,
    base: torch.Tensor | None = None,
    steps: int = 9,
    span: float = 3.0,
    labels=None,
    reference_labels=None,
) -> Traversal:
    """Sweep each latent dimension over [-span, span] (prior standard deviations; σ_prior = 1).

    `reference_x` (N, D) binary images rank the dimensions by KL and mark collapsed ones
    (`vae_core.diagnostics.latent_activity`). `base` (L,) holds the other dimensions, e.g. a
    digit's μ; None means the prior mean 0. `labels` (one class) is what a conditional decoder gets.
    """
    if not 2 <= int(steps) <= MAX_STEPS:
        raise ValueError(f"steps must be between 2 and {MAX_STEPS}, got {steps}")
    if not 0 < float(span) <= 10:
        raise ValueError(f"span must be in (0, 10] prior standard deviations, got {span}")
    dim = model.latent_dim
    base = torch.zeros(dim) if base is None else torch.as_tensor(base, dtype=torch.float32).reshape(-1).cpu()
    if base.shape != (dim,):
        raise ValueError(f"base must have {dim} values, got {tuple(base.shape)}")
    activity = latent_activity(model, reference_x, reference_labels)
    kl = activity.kl_per_dim.cpu()
    order = torch.argsort(kl, descending=True).tolist()
    values = torch.linspace(-span, span, int(steps))
    latents = base.repeat(dim, int(steps), 1)  # (rows, steps, L)
    for row, d in enumerate(order):
        latents[row, :, d] = values
    # One class for every decode; VAE.label_onehot ignores it for an unconditional model.
    label = None if labels is None else torch.as_tensor(labels).reshape(-1)[:1]
    probs = decode(model, latents.reshape(-1, dim), label).cpu().reshape(dim, int(steps), -1)
    return Traversal(
        order, kl[order].tolist(), (~activity.active.cpu())[order].tolist(), values, base, latents, probs
    )
