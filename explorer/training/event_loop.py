"""The training thread's loop: it consumes a `vae_core.Trainer`'s events into the job's state.

`TrainingLoop` is mixed into `TrainingJob` (explorer/training/jobs.py, thread control): the loop
writes the job's events, snapshot history (history.py) and results under the job's lock, and asks
the control side only whether to stop (`_idle()`, `stop()`) or park (`_wait_while_paused()`).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from explorer.training.history import LiveViews, to_uint8
from vae_core import (
    DigitImages,
    LatentProjection,
    VAEError,
    activity_of_posterior,
    decode,
    reconstruct,
)
from vae_core.heap import return_freed_heap_to_os

RECON_DIGITS = 8
PRIOR_SAMPLES = 16
SCATTER_DIGITS = 1000

RUNNING, PAUSED, STOPPED, FINISHED, FAILED = "running", "paused", "stopped", "finished", "failed"
ENDED = (STOPPED, FINISHED, FAILED)


def next_snapshot_at(started: float, spent: float, every_s: float, share: float) -> float:
    """When the next step event may take a snapshot: `every_s` after this one started, or later
    when this one was slow, so that snapshots take at most `share` of the run's time.

    A snapshot encodes 1,000 validation digits and decodes 24 pictures: ~13 ms for the default
    MLP, far more for a conv model or a slow CPU. On a fixed clock alone a slow snapshot would eat
    the run; epoch and end events snapshot whatever this says.
    """
    return started + max(every_s, spent / share)


class TrainingLoop:
    """The body of a `TrainingJob`'s thread (`_run`) and the live views it takes along the way."""

    def _fixed_view_inputs(self, validation: DigitImages) -> dict:
        """The same digits and prior latents every snapshot, so the pictures show learning only."""
        n = min(SCATTER_DIGITS, len(validation))
        shown = validation.subset(slice(0, min(RECON_DIGITS, n)))
        scatter = validation.subset(slice(0, n))
        conditional = self.model_config.conditional
        generator = torch.Generator().manual_seed(self.train_config.seed)
        device = self.model.device
        return {
            "originals": shown.grey().numpy(),
            "recon_input": shown.fixed_binary(),
            "recon_labels": shown.labels if conditional else None,
            # the snapshot calls model.posterior directly, so its batch lives on the model's device
            "scatter_input": scatter.fixed_binary().to(device),
            "scatter_labels": scatter.labels.numpy(),
            "scatter_condition": scatter.labels.to(device) if conditional else None,
            "prior_z": torch.randn(PRIOR_SAMPLES, self.model_config.latent_dim, generator=generator),
            "prior_labels": torch.arange(PRIOR_SAMPLES) % 10 if conditional else None,
        }

    @torch.no_grad()
    def _compute_views(self, step: int, epoch: float) -> LiveViews:
        model, inputs = self.model, self._view_inputs
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
            image_size=self.model_config.image_size,
            originals=inputs["originals"],
            recon_pixels=to_uint8(recon),
            sample_pixels=to_uint8(samples),
            plane=plane.cpu().numpy().astype(np.float16),
            labels=inputs["scatter_labels"],
            axis_titles=projection.axis_labels(),
            kl_per_dim=activity.kl_per_dim.float().cpu().numpy(),
            active=activity.active.cpu().numpy(),
        )

    def _run(self) -> None:
        trainer = self.trainer
        next_views = -math.inf
        resumed_at = time.monotonic()
        ended_by = FINISHED
        try:
            for event in trainer.run(self._stop):
                now = time.monotonic()
                record = event.as_dict()
                views = None
                if event.kind != "step" or now >= next_views:
                    views = self._compute_views(event.step, event.epoch)
                    next_views = next_snapshot_at(
                        now, time.monotonic() - now, self.snapshot_every_s, self.snapshot_share
                    )
                with self._lock:
                    self._events.append(record)
                    if views is not None:
                        self._history.add(views)
                    self._active_s += time.monotonic() - resumed_at
                if event.kind == "done":
                    ended_by = STOPPED if event.stopped else FINISHED
                    break
                if self._idle():
                    self.stop("idle")
                self._wait_while_paused()
                resumed_at = time.monotonic()
            self.model.requires_grad_(False)
            self.model.to("cpu")  # other pages run inference on the CPU
            metrics = trainer.metrics()
            metrics.update(device=self.device, data=self.data_note, name=self.name)
            curve = trainer.curve()
            with self._lock:
                self._metrics, self._curve = metrics, curve
                self._status = ended_by
        except Exception as exc:  # shown on the page instead of dying silently in a thread
            message = str(exc) if isinstance(exc, VAEError) else f"{type(exc).__name__}: {exc}"
            with self._lock:
                self._status, self._error = FAILED, message
        finally:
            self.trainer = trainer = None  # the optimiser state and any device copy of the data go now
            self._view_inputs = {}
            return_freed_heap_to_os()
        if self._on_end is not None and self.has_model:
            try:
                self._on_end(self)
            except Exception as exc:  # the model is kept even if the callback fails
                with self._lock:
                    self._error = f"the run ended but could not be shared with other pages: {exc}"
