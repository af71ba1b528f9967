"""Two models side by side: the card's numbers on the same digits (figures: explorer/figures/comparison.py).

Pure functions of models, tensors and arrays (no Streamlit), so each can be tested without a page.
Every number is computed on the *same* explored test digits for both models (the first
`ACTIVITY_DIGITS` for ELBO, KL and active units; the first `BOUND_DIGITS` of those for the
expensive importance-sampled bounds), binarised once with the evaluation seed, with seeded noise,
so a model's numbers do not depend on which model it is compared with.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from explorer.state.registry import ModelEntry
from explorer.state.work_admission import server_work
from vae_core import (
    DigitImages,
    LatentActivity,
    bounds_against_k,
    count_parameters,
    elbo_terms,
    latent_activity,
)
from vae_core.evaluation import ELEMENT_BUDGET
from vae_core.limits import MB, estimate_sampling_memory

if TYPE_CHECKING:  # at run time pandas is imported by the table alone: 0.5 s off the Overview's first render
    import pandas as pd

ACTIVITY_DIGITS = 2000  # ELBO, KL per dimension, active units: one encoder pass, cheap
BOUND_DIGITS = 100  # IWAE bounds up to k=5000: ~15-25 s per model on one CPU thread
BOUND_KS = (1, 2, 5, 10, 50, 100, 500, 1000, 5000)
NOISE_SEED = 0  # the reparameterisation noise: fixed, so a rerun (or a test) gets the same numbers
# Decoder outputs alive at once while sampling bounds: a quarter of vae_core's default (8 MiB of
# logits, 26 samples of 100 digits per chunk), so that a visitor's curve leaves room beside the rest
# of the server's heavy work. Measured (best, mlp2d; 100 digits, k up to 5000; one thread): peak
# 90-112 -> 27-28 MB above the resident set, the same bounds, 11-14 s against 13-29 s.
BOUND_ELEMENT_BUDGET = ELEMENT_BUDGET // 4


@dataclass
class ModelSummary:
    """One model's comparable numbers (nats per image) and the arrays behind the figures."""

    name: str  # unique within a comparison (see `distinct_names`)
    conditional: bool
    latent_dim: int
    parameters: int
    image_size: int
    elbo: float  # mean over ACTIVITY_DIGITS; one seeded sample of z per digit, analytic KL
    recon: float  # E_q[log p(x|z)] estimate, same sample
    kl: float  # KL(q(z|x) || p(z)), analytic
    activity: LatentActivity
    bounds: dict[int, float]  # k -> mean IWAE bound over BOUND_DIGITS; k=1 is a one-sample ELBO
    activity_digits: int
    bound_digits: int

    @property
    def likelihood_name(self) -> str:
        """What the bounds bound: a conditional model is given the label, so it is log p(x|y)."""
        return "log p(x|y)" if self.conditional else "log p(x)"

    @property
    def log_px(self) -> float:
        """The largest-k bound: the importance-sampled estimate of log p(x) (or log p(x|y))."""
        return self.bounds[max(self.bounds)]

    @property
    def bound_gap(self) -> float:
        """Largest-k bound minus the k=1 ELBO on the same digits: what the ELBO leaves out."""
        return self.log_px - self.bounds[min(self.bounds)]


def binary_digits(digits: DigitImages, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n digits binarised once (the evaluation seed), (n, D), and their labels (n,)."""
    chosen = digits.subset(slice(0, min(n, len(digits))))
    return chosen.fixed_binary(), chosen.labels


def iwae_curve(
    model,
    x: torch.Tensor,
    labels: torch.Tensor | None,
    ks: tuple[int, ...] | None = None,
    progress: Callable[[float, int], None] | None = None,
) -> dict[int, float]:
    """Mean IWAE bound for each k (default BOUND_KS), each from its own seeded draw.

    `bounds_against_k` (seed NOISE_SEED) over the ks in increasing order, reporting
    `progress(fraction of samples done, k)` before each k and, for large k, within it (k=5000 is
    three quarters of the work); each value equals `bounds_by_k(model, x, labels, ks=(k,), seed=NOISE_SEED)[k]`.
    """
    ks = tuple(sorted(BOUND_KS if ks is None else ks))
    on_fraction = None
    if progress is not None:
        total = sum(ks)
        # bounds_against_k reports (samples drawn) / total: a fraction at or past a k's end is the next k's
        ends = [end / total for end in itertools.accumulate(ks)]

        def on_fraction(fraction: float) -> None:
            progress(fraction, ks[min(bisect.bisect_right(ends, fraction), len(ks) - 1)])

        progress(0.0, ks[0])
    result = bounds_against_k(
        model, x, labels, ks, NOISE_SEED, progress=on_fraction, element_budget=BOUND_ELEMENT_BUDGET
    ).as_dict()
    if progress is not None:
        progress(1.0, ks[-1])
    return result


@torch.no_grad()
def elbo_means(model, x: torch.Tensor, labels: torch.Tensor | None) -> tuple[float, float, float]:
    """Mean ELBO, reconstruction and KL over the images, one seeded z sample per image."""
    terms = elbo_terms(model, x, labels, torch.Generator(device=model.device).manual_seed(NOISE_SEED))
    return float(terms.elbo.mean()), float(terms.recon.mean()), float(terms.kl.mean())


# The getters below cache on the entry (once per model per server for pretrained ones) under the
# names the Overview card uses, so the card and a comparison share their work; digits are
# binarised inside the computations, so a cached rerun costs nothing.


def activity_of(entry: ModelEntry, digits: DigitImages) -> LatentActivity:
    """KL per dimension and active units over the first ACTIVITY_DIGITS of `digits`."""

    def compute() -> LatentActivity:
        x, labels = binary_digits(digits, ACTIVITY_DIGITS)
        with server_work().admit(activity_cost_mb(entry), "the latent dimensions' KL"):
            return latent_activity(entry.model, x, labels)

    return entry.cached("latent_activity", compute)


def elbo_of(entry: ModelEntry, digits: DigitImages) -> tuple[float, float, float]:
    """Mean (ELBO, reconstruction, KL) over the first ACTIVITY_DIGITS of `digits`."""

    def compute() -> tuple[float, float, float]:
        x, labels = binary_digits(digits, ACTIVITY_DIGITS)
        with server_work().admit(activity_cost_mb(entry), "the ELBO of the test digits"):
            return elbo_means(entry.model, x, labels)

    return entry.cached("elbo_means", compute)


def bound_digits(digits: DigitImages) -> tuple[torch.Tensor, torch.Tensor]:
    """The first BOUND_DIGITS of the activity digits, binarised exactly as they were there."""
    x, labels = binary_digits(digits, ACTIVITY_DIGITS)  # binarise the 2000, then take a prefix
    return x[:BOUND_DIGITS], labels[:BOUND_DIGITS]


def bounds_cost_mb(entry: ModelEntry) -> float:
    """What the IWAE curve of `entry` asks the server's work admission for: the peak of k=5000
    importance samples of BOUND_DIGITS digits (vae_core.limits.estimate_sampling_memory)."""
    return estimate_sampling_memory(entry.config, BOUND_DIGITS, max(BOUND_KS), BOUND_ELEMENT_BUDGET) / MB


def activity_cost_mb(entry: ModelEntry) -> float:
    """What one pass over the ACTIVITY_DIGITS asks the work admission for (one latent sample each)."""
    return estimate_sampling_memory(entry.config, ACTIVITY_DIGITS, 1) / MB


def bounds_of(
    entry: ModelEntry, digits: DigitImages, progress: Callable[[float, int], None] | None = None
) -> dict[int, float]:
    """The IWAE curve (BOUND_KS) over the first BOUND_DIGITS of `digits`: the slow part.

    Computed once per model, admitted by the server's work budget (ServerBusy when it has no
    room): sessions asking for the same model's curve at once share one computation, the later
    ones waiting for the first one's result (`ModelEntry.cached` holds one lock per name, so the
    other arrays cached on the model stay available meanwhile).
    """

    def compute() -> dict[int, float]:
        x, labels = bound_digits(digits)
        with server_work().admit(bounds_cost_mb(entry), "the IWAE bounds of this model"):
            return iwae_curve(entry.model, x, labels, progress=progress)

    return entry.cached("iwae_curve", compute)


def summarise(
    entry: ModelEntry,
    digits: DigitImages,
    name: str | None = None,
    progress: Callable[[float, int], None] | None = None,
) -> ModelSummary:
    """The comparable numbers of one model on `digits` (already at the model's image size)."""
    elbo, recon, kl = elbo_of(entry, digits)
    bounds = bounds_of(entry, digits, progress)
    return ModelSummary(
        name=name or entry.name, conditional=entry.config.conditional, latent_dim=entry.config.latent_dim,
        parameters=count_parameters(entry.model), image_size=entry.config.image_size, elbo=elbo,
        recon=recon, kl=kl, activity=activity_of(entry, digits), bounds=bounds,
        activity_digits=min(ACTIVITY_DIGITS, len(digits)), bound_digits=min(BOUND_DIGITS, len(digits)),
    )  # fmt: skip


def comparison_choices(models: Mapping[str, ModelEntry], shown_key: str) -> list[str]:
    """The keys the "Compare with" picker offers: every model but the one on the card already."""
    return [key for key in models if key != shown_key]


def distinct_names(first: ModelEntry, second: ModelEntry) -> tuple[str, str]:
    """Column and legend names for two models; an uploaded `best` beside the pretrained one gets its origin."""
    if first.name != second.name:
        return first.name, second.name
    return f"{first.name} ({first.origin})", f"{second.name} ({second.origin})"


def comparison_table(first: ModelSummary, second: ModelSummary) -> pd.DataFrame:
    """One row per quantity, one column per model (as text), and which digits it was measured on."""
    import pandas as pd

    on_activity = f"first {first.activity_digits:,} test digits"
    on_bounds = f"first {first.bound_digits:,} test digits"
    k_max = max(first.bounds)

    # A conditional model is given the label: its bound is on log p(x|y). Name both when they differ.
    if first.conditional == second.conditional:
        likelihood = first.likelihood_name
    else:
        likelihood = f"{first.likelihood_name} | {second.likelihood_name}"
    rows = [
        ("Latent size", first.latent_dim, second.latent_dim, "—"),
        ("Parameters", first.parameters, second.parameters, "—"),
        ("ELBO (nats)", first.elbo, second.elbo, on_activity),
        ("Reconstruction E_q log p(x|z) (nats)", first.recon, second.recon, on_activity),
        ("KL(q(z|x) ‖ p(z)) (nats)", first.kl, second.kl, on_activity),
        ("Active units", first.activity.active_count, second.activity.active_count, on_activity),
        (f"{likelihood} estimate, k={k_max} (nats)", first.log_px, second.log_px, on_bounds),
        (f"Bound gap k={k_max} − k=1 (nats)", first.bound_gap, second.bound_gap, on_bounds),
    ]
    # Shown as text: a numeric column would turn the counts into floats ("17.00 active units").
    shown = [(name, _shown(a), _shown(b), on) for name, a, b, on in rows]
    # Bits per dimension, the unit image-model papers report: nats / (pixels · ln 2), beside the nats.
    shown.insert(
        3,
        (
            "−ELBO (bits/dim)",
            *(f"{bits_per_dim(-s.elbo, s.image_size):.4f}" for s in (first, second)),
            on_activity,
        ),
    )
    shown.insert(
        8,
        (
            f"−{likelihood} (bits/dim)",
            *(f"{bits_per_dim(-s.log_px, s.image_size):.4f}" for s in (first, second)),
            on_bounds,
        ),
    )
    return pd.DataFrame(shown, columns=["", first.name, second.name, "measured on"]).set_index("")


def bits_per_dim(nats: float, image_size: int) -> float:
    """Nats per image -> bits per pixel: nats / (image_size² · ln 2)."""
    return nats / (image_size**2 * np.log(2))


def _shown(value: int | float) -> str:
    """Counts with thousands separators, nats to two decimals."""
    return f"{value:,}" if isinstance(value, int) else f"{value:.2f}"
