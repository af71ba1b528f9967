"""A training run's state as the page reads it: live views (small, uint8), the run's snapshot history, a job snapshot.

Plain data, no threads and no Streamlit: a job's thread (explorer/training/jobs.py) takes the views
with `take_views` and writes these under the job's lock; the Train page and explorer/training/exports.py
read them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from vae_core import VAE, DigitImages, LatentProjection, activity_of_posterior, decode, reconstruct

RECON_DIGITS = 8
PRIOR_SAMPLES = 16
LIVE_MAP_DIGITS = 1000  # validation digits on the live latent map (ui.resources.SCATTER_DIGITS: other pages)
HISTORY_SIZE = 60  # snapshots a run keeps for time travel (22 kB each for 28x28 digits: 1.3 MB at most)


def to_uint8(probs: torch.Tensor) -> np.ndarray:
    """Pixel probabilities in [0, 1] as 0..255: a quarter of float32's bytes, and a picture shows no more."""
    return (probs.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


@dataclass(frozen=True)
class LiveViews:
    """What the model did at one live-view refresh, stored small so a run can keep a history of them.

    `originals` and `labels` are the same arrays in every snapshot of a run (fixed inputs), so only
    the model's outputs cost memory: uint8 pixels, float16 plane coordinates, per-dimension KLs.
    """

    step: int
    epoch: float
    image_size: int
    originals: np.ndarray  # (8, D) float32 grey validation digits, shared by the run's snapshots
    recon_pixels: np.ndarray  # (8, D) uint8: reconstruction probabilities × 255
    sample_pixels: np.ndarray  # (16, D) uint8: decoded from the same 16 prior latents every time
    plane: np.ndarray  # (N, 2) float16 encoder means of fixed validation digits (PCA for > 2 dims)
    labels: np.ndarray  # (N,) shared by the run's snapshots
    axis_titles: tuple[str, str]
    kl_per_dim: np.ndarray  # (L,) float32 mean KL per latent dimension, nats per image
    active: np.ndarray  # (L,) bool: Burda's active units on the same validation digits

    @property
    def reconstructions(self) -> np.ndarray:
        return self.recon_pixels.astype(np.float32) / 255

    @property
    def samples(self) -> np.ndarray:
        return self.sample_pixels.astype(np.float32) / 255

    @property
    def active_count(self) -> int:
        return int(self.active.sum())

    @property
    def nbytes(self) -> int:
        """Bytes this snapshot adds to a run's history (the shared inputs are not counted)."""
        own = (self.recon_pixels, self.sample_pixels, self.plane, self.kl_per_dim, self.active)
        return sum(array.nbytes for array in own)


class SnapshotHistory:
    """At most `capacity` snapshots spread evenly over a run, always with its first and its newest.

    Snapshots are numbered as they arrive. Those whose number is a multiple of `stride` are kept;
    when they fill all places but one, the stride doubles and every other one goes, so the kept
    ones stay evenly spaced in time however long the run is. The last place holds the newest
    snapshot whatever its number: time travel's default is "now".
    """

    def __init__(self, capacity: int = HISTORY_SIZE):
        if capacity < 2:
            raise ValueError(
                f"a history needs room for its first and newest snapshot, got capacity {capacity}"
            )
        self.capacity = capacity
        self._stride = 1
        self._count = 0
        self._kept: list[tuple[int, LiveViews]] = []
        self._newest: tuple[int, LiveViews] | None = None

    def add(self, views: LiveViews) -> None:
        if self._newest is not None and self._newest[1].step == views.step:
            # Same model state (an epoch or end event right after a step event): one place, newest data.
            number = self._newest[0]
            if self._kept and self._kept[-1][0] == number:
                self._kept[-1] = (number, views)
            self._newest = (number, views)
            return
        number = self._count
        self._count += 1
        if number % self._stride == 0:
            self._kept.append((number, views))
            if len(self._kept) >= self.capacity:
                self._stride *= 2
                self._kept = [(n, v) for n, v in self._kept if n % self._stride == 0]
        self._newest = (number, views)

    def snapshots(self) -> list[LiveViews]:
        """Oldest first; the newest is always last."""
        kept = [views for _, views in self._kept]
        if self._newest is not None and (not self._kept or self._kept[-1][0] != self._newest[0]):
            kept.append(self._newest[1])
        return kept

    def __len__(self) -> int:
        return len(self.snapshots())


@dataclass(frozen=True)
class JobSnapshot:
    """A consistent copy of a job's state (the lists are new lists; their dicts are not mutated)."""

    job_id: int
    status: str
    events: list[dict]
    history: list[LiveViews]  # oldest first, the newest last; see SnapshotHistory
    error: str | None
    stop_requested: bool
    stop_reason: str | None  # "user" | "idle" when the run was stopped
    active_s: float  # wall-clock seconds spent training (pauses excluded)

    @property
    def views(self) -> LiveViews | None:
        """The newest live views."""
        return self.history[-1] if self.history else None

    @property
    def last(self) -> dict | None:
        return self.events[-1] if self.events else None

    @property
    def step(self) -> int:
        return self.events[-1]["step"] if self.events else 0

    @property
    def total_steps(self) -> int:
        return self.events[-1]["total_steps"] if self.events else 0

    @property
    def progress(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    @property
    def images_per_s(self) -> float:
        """Recent training speed as the Trainer measures it (time spent drawing excluded): images
        over seconds of the last five step windows. Each holds the same number of images, so that
        is the harmonic mean of their speeds; their plain mean read 10-20% above the run's speed
        whenever a few windows were slowed down (bench/app_vs_cli_speed.py)."""
        recent = [e for e in self.events[-5:] if e["kind"] == "step" and e["images_per_s"] > 0]
        return len(recent) / sum(1 / e["images_per_s"] for e in recent) if recent else 0.0

    @property
    def wall_images_per_s(self) -> float:
        """Images per wall-clock second, snapshots included: what the user actually gets."""
        seen = self.events[-1]["images_seen"] if self.events else 0
        return seen / self.active_s if self.active_s > 0 else 0.0

    @property
    def eta_s(self) -> float:
        done = self.progress
        return self.active_s * (1 - done) / done if done > 0 else math.inf


# ------------------------------------------------------------------------------ taking views
def next_snapshot_at(started: float, spent: float, every_s: float, share: float) -> float:
    """When the next step event may take a snapshot: `every_s` after this one started, or later
    when this one was slow, so that snapshots take at most `share` of the run's time.

    A snapshot encodes 1,000 validation digits and decodes 24 pictures: ~13 ms for the default
    MLP, far more for a conv model or a slow CPU. On a fixed clock alone a slow snapshot would eat
    the run; epoch and end events snapshot whatever this says.
    """
    return started + max(every_s, spent / share)


def fixed_view_inputs(model: VAE, seed: int, validation: DigitImages) -> dict:
    """The same digits and prior latents every snapshot, so the pictures show learning only."""
    n = min(LIVE_MAP_DIGITS, len(validation))
    shown = validation.subset(slice(0, min(RECON_DIGITS, n)))
    scatter = validation.subset(slice(0, n))
    conditional = model.config.conditional
    generator = torch.Generator().manual_seed(seed)
    device = model.device
    return {
        "originals": shown.grey().numpy(),
        "recon_input": shown.fixed_binary(),
        "recon_labels": shown.labels if conditional else None,
        # the snapshot calls model.posterior directly, so its batch lives on the model's device
        "scatter_input": scatter.fixed_binary().to(device),
        "scatter_labels": scatter.labels.numpy(),
        "scatter_condition": scatter.labels.to(device) if conditional else None,
        "prior_z": torch.randn(PRIOR_SAMPLES, model.config.latent_dim, generator=generator),
        "prior_labels": torch.arange(PRIOR_SAMPLES) % 10 if conditional else None,
    }


@torch.no_grad()
def take_views(model: VAE, inputs: dict, step: int, epoch: float) -> LiveViews:
    """The live views of `model` now, from `fixed_view_inputs`."""
    was_training = model.training
    model.eval()
    try:
        recon = reconstruct(model, inputs["recon_input"], inputs["recon_labels"])
        samples = decode(model, inputs["prior_z"], inputs["prior_labels"])
        q = model.posterior(inputs["scatter_input"], inputs["scatter_condition"])
        mu, activity = q.loc, activity_of_posterior(q)  # one encoder pass for both
        projection = LatentProjection.fit(mu)
        plane = projection.to_plane(mu)
    finally:
        model.train(was_training)
    return LiveViews(
        step=step,
        epoch=epoch,
        image_size=model.config.image_size,
        originals=inputs["originals"],
        recon_pixels=to_uint8(recon),
        sample_pixels=to_uint8(samples),
        plane=plane.cpu().numpy().astype(np.float16),
        labels=inputs["scatter_labels"],
        axis_titles=projection.axis_labels(),
        kl_per_dim=activity.kl_per_dim.float().cpu().numpy(),
        active=activity.active.cpu().numpy(),
    )
