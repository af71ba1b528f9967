"""The training engine: a generator of progress events that never prints or draws.

    trainer = Trainer(model_config, train_config, train_digits, validation_digits)
    for event in trainer.run(stop_event):
        ...  # the CLI draws a progress bar, the app draws charts

Whoever consumes the events sets the pace: a consumer that stops iterating pauses training,
and a `threading.Event` set from any thread stops it at the next step.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.distributions import kl_divergence
from torch.nn.parallel import DistributedDataParallel

from . import mlp_elbo_gradients
from .adam import Adam
from .config import ModelConfig, TrainConfig
from .data import DigitImages
from .distributed import DistributedContext, all_reduce_sum
from .errors import ConfigError, TrainingDivergedError
from .limits import validation_chunk
from .models import VAE, build_model
from .objectives import elbo_terms, importance_terms, iwae_bound, log_mean_exp

VALIDATION_SEED = 1  # fixed noise for validation terms, so epochs compare


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when a GPU is visible, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but no CUDA GPU is visible; use 'cpu' or 'auto'")
    return torch.device(name)


@dataclass
class TrainingEvent:
    """One progress report. Training terms are averages over the images since the last event."""

    kind: str  # "step" (every log_every steps) | "epoch" (with validation) | "done"
    step: int
    total_steps: int
    epoch: float  # fractional epochs done
    images_seen: int
    recon: float  # nats per image
    kl: float
    # The bound the run maximises, nats per image: the ELBO for the ELBO objective, the IWAE bound
    # with the run's k for the IWAE objective (validation's "elbo" is the ELBO for both).
    bound: float
    beta: float  # KL weight in force (warm-up ramps it)
    images_per_s: float
    elapsed_s: float
    validation: dict[str, float] | None = None
    stopped: bool = False  # "done" because someone asked to stop

    @property
    def progress(self) -> float:
        return min(1.0, self.step / max(1, self.total_steps))

    @property
    def eta_s(self) -> float:
        done = self.progress
        return self.elapsed_s * (1 - done) / done if done > 0 else math.inf

    def as_dict(self) -> dict:
        """The event as plain data, with `bound` under the key "elbo" (in the same place).

        The key stays "elbo" so the format does not change: checkpoint curve rows (which the loader
        validates), the Train page's curves and CSV, and files saved before the rename all use it.
        """
        return {("elbo" if key == "bound" else key): value for key, value in asdict(self).items()}


class ObjectiveModule(nn.Module):
    """The training objective as a module, so DistributedDataParallel can wrap one forward pass.

    forward returns the loss to minimise and the batch sums (3,) of (recon, kl, objective) per image.
    """

    def __init__(self, model: VAE, objective: str, k: int):
        super().__init__()
        self.model, self.objective, self.k = model, objective, k

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None, beta: float, generator: torch.Generator):
        if self.objective == "elbo":
            terms = elbo_terms(self.model, x, labels, generator)
            return terms.loss(beta), torch.stack((terms.recon, terms.kl, terms.elbo)).detach().sum(1)
        q = self.model.posterior(x, labels)
        terms = importance_terms(self.model, x, labels, self.k, q, generator)  # (k, B) each
        bound = log_mean_exp(terms.log_weights(beta))  # warm-up scales the prior/posterior ratio
        plain = bound if beta == 1.0 else log_mean_exp(terms.log_weights())
        kl = kl_divergence(q, self.model.prior()).sum(-1)
        return -bound.mean(), torch.stack((terms.log_px_z.mean(0), kl, plain)).detach().sum(1)


@dataclass
class _Window:
    """Sums of per-image terms since the window started, kept on the device to avoid syncs."""

    sums: torch.Tensor  # (3,) recon, kl, objective summed over the window's images
    images: int = 0
    started: float = field(default_factory=time.perf_counter)


class Trainer:
    """Trains one VAE on digits already in memory; `run()` yields TrainingEvents."""

    def __init__(
        self,
        model_config: ModelConfig,
        train_config: TrainConfig,
        train_digits: DigitImages,
        validation_digits: DigitImages | None = None,
        model: VAE | None = None,
        distributed: DistributedContext | None = None,
        between_phases: Callable[[], None] | None = None,
    ):
        """`between_phases`, when given, is called before each validation pass allocates: the
        app and the CLI pass vae_core.heap.return_freed_heap_to_os, which the memory estimate
        counts on (the library itself changes nothing process-wide)."""
        self.between_phases = between_phases
        self.dist = distributed or DistributedContext()
        if model_config.conditional and not train_digits.has_labels:
            raise ConfigError("a conditional VAE needs labelled digits; binarized MNIST has no labels")
        if train_digits.image_size != model_config.image_size:
            raise ConfigError(
                f"digits are {train_digits.image_size}x{train_digits.image_size} but the model "
                f"expects {model_config.image_size}x{model_config.image_size}"
            )
        if train_config.batch_size % self.dist.world_size:
            raise ConfigError(
                f"batch size {train_config.batch_size} must divide evenly over {self.dist.world_size} processes"
            )
        if len(train_digits) < train_config.batch_size:
            raise ConfigError(
                f"batch size {train_config.batch_size} is larger than the {len(train_digits)} training digits"
            )
        self.model_config = model_config
        self.config = train_config
        self.device = (
            self.dist.device_for(train_config.device)
            if self.dist.enabled
            else resolve_device(train_config.device)
        )
        self.train_digits = train_digits.to(self.device)
        self.validation_digits = (
            validation_digits.to(self.device)
            if validation_digits is not None and len(validation_digits)
            else None
        )
        # Every rank draws the same batch order; noise (binarisation, z samples) differs per rank.
        self.order_generator = torch.Generator(device=self.device).manual_seed(train_config.seed)
        self.generator = torch.Generator(device=self.device).manual_seed(
            train_config.seed + 1_000_003 * self.dist.rank
        )
        # Weights are initialised from the run's own generator (build_model's seed): the global
        # RNG is shared by every session of a server, and seeding it from two threads interleaves.
        self.model = (model or build_model(model_config, train_config.seed)).to(self.device)
        self.objective = ObjectiveModule(self.model, train_config.objective, train_config.k)
        # DDP broadcasts rank 0's weights at construction and averages gradients in backward.
        self.step_module = DistributedDataParallel(self.objective) if self.dist.enabled else self.objective
        self.optimizer = Adam(self.model.parameters(), lr=train_config.lr)
        # The one place that picks how gradients are computed: by hand where mlp_elbo_gradients
        # covers the run (a third of a small step was autograd's bookkeeping), else by autograd.
        self.compute_gradients = (
            mlp_elbo_gradients.MLPElboGradients(self.model, self.generator)
            if mlp_elbo_gradients.covers(model_config, train_config, self.dist.enabled)
            else self._autograd_gradients
        )
        self.steps_per_epoch = len(self.train_digits) // train_config.batch_size
        self.total_steps = max(1, math.ceil(train_config.epochs * self.steps_per_epoch))
        self.step = 0
        self.history: list[dict] = []  # step and epoch events, as dicts, for curves and checkpoints
        self.elapsed_s = 0.0

    def beta_at(self, step: int) -> float:
        warmup_steps = self.config.warmup_epochs * self.steps_per_epoch
        if warmup_steps <= 0:
            return self.config.beta
        return self.config.beta * min(1.0, step / warmup_steps)

    def _lr_at(self, step: int) -> float:
        if not self.config.lr_decay:
            return self.config.lr
        return self.config.lr * 0.5 * (1 + math.cos(math.pi * step / self.total_steps))

    def _autograd_gradients(self, x: torch.Tensor, labels: torch.Tensor | None, beta: float) -> torch.Tensor:
        """Sets the parameters' .grad by backpropagation; returns the batch sums (3,) of the terms."""
        loss, sums = self.step_module(x, labels, beta, self.generator)
        self.optimizer.zero_grad()
        loss.backward()
        return sums

    def _labels(self, digits: DigitImages, index) -> torch.Tensor | None:
        return digits.labels[index] if self.model_config.conditional else None

    @torch.no_grad()
    def validate(self, max_images: int = 10_000) -> dict[str, float]:
        """Validation ELBO terms (and IWAE bound for IWAE runs), nats per image, fixed noise."""
        digits = self.validation_digits
        if digits is None:
            return {}
        if self.between_phases is not None:
            self.between_phases()  # the steps' freed tensors: see estimate_run_memory's phases
        self.model.eval()
        total = min(len(digits), max_images)
        binary = digits.subset(slice(0, total)).fixed_binary(VALIDATION_SEED)
        # Each rank validates its own share of the digits; the sums are added up below.
        digits = digits.subset(slice(self.dist.rank, total, self.dist.world_size))
        binary = binary[self.dist.rank :: self.dist.world_size]
        n = len(binary)
        generator = torch.Generator(device=self.device).manual_seed(VALIDATION_SEED + self.dist.rank)
        sums = torch.zeros(4, device=self.device)
        samples = self.config.k if self.config.objective == "iwae" else 1
        chunk = validation_chunk(self.model_config, samples)
        for start in range(0, n, chunk):
            index = slice(start, min(n, start + chunk))
            x, labels = binary[index], self._labels(digits, index)
            terms = elbo_terms(self.model, x, labels, generator)
            sums[0] += terms.recon.sum()
            sums[1] += terms.kl.sum()
            sums[2] += terms.elbo.sum()
            if self.config.objective == "iwae":
                sums[3] += iwae_bound(self.model, x, labels, self.config.k, generator).sum()
        self.model.train()
        recon, kl, elbo, iwae = (all_reduce_sum(sums, self.dist) / total).tolist()
        result = {"recon": recon, "kl": kl, "elbo": elbo}
        if self.config.objective == "iwae":
            result[f"iwae_k{self.config.k}"] = iwae
        return result

    def _event(self, kind: str, window: _Window, validation=None, stopped=False) -> TrainingEvent:
        local = torch.cat([window.sums, torch.tensor([float(window.images)], device=self.device)])
        recon, kl, bound, images = all_reduce_sum(local, self.dist).tolist()
        recon, kl, bound = (v / max(1.0, images) for v in (recon, kl, bound))
        if not all(math.isfinite(v) for v in (recon, kl, bound)):
            raise TrainingDivergedError(
                f"training diverged at step {self.step}: the loss became NaN or infinite "
                f"(recon {recon}, KL {kl}). Lower the learning rate (now {self.config.lr:g}) "
                "or use a larger batch, then start again."
            )
        seconds = max(1e-9, time.perf_counter() - window.started)
        event = TrainingEvent(
            kind=kind,
            step=self.step,
            total_steps=self.total_steps,
            epoch=self.step / self.steps_per_epoch,
            images_seen=self.step * self.config.batch_size,
            recon=recon,
            kl=kl,
            bound=bound,
            beta=self.beta_at(self.step),
            images_per_s=images / seconds if images else 0.0,
            elapsed_s=self.elapsed_s,
            validation=validation,
            stopped=stopped,
        )
        self.history.append(event.as_dict())
        return event

    def run(self, stop_event: threading.Event | None = None) -> Iterator[TrainingEvent]:
        """Train until the configured epochs are done or `stop_event` is set."""
        if self.config.num_threads:
            torch.set_num_threads(self.config.num_threads)
        batch = self.config.batch_size
        local_batch = batch // self.dist.world_size
        rank_slice = slice(self.dist.rank * local_batch, (self.dist.rank + 1) * local_batch)
        n = len(self.train_digits)
        self.model.train()
        # One accumulator for both windows (rows: since the last step event, since the epoch began),
        # so a step adds its sums with one operation.
        totals = torch.zeros(2, 3, device=self.device)
        window, epoch_window = _Window(totals[0]), _Window(totals[1])
        last_epoch_window = _Window(torch.zeros(3, device=self.device))
        stopped = False
        last_tick = time.perf_counter()
        while self.step < self.total_steps and not stopped:
            order = torch.randperm(n, generator=self.order_generator, device=self.device)
            for i in range(self.steps_per_epoch):
                if self.step >= self.total_steps:
                    break
                if stop_event is not None and stop_event.is_set():
                    stopped = True
                    break
                index = order[i * batch : (i + 1) * batch][rank_slice]
                x = self.train_digits.binary_batch(index, self.generator)
                labels = self._labels(self.train_digits, index)
                beta = self.beta_at(self.step)
                self.optimizer.lr = self._lr_at(self.step)
                sums = self.compute_gradients(x, labels, beta)
                self.optimizer.step()
                self.step += 1
                totals += sums  # (2, 3) += (3,)
                window.images += local_batch
                epoch_window.images += local_batch
                now = time.perf_counter()
                self.elapsed_s += now - last_tick
                last_tick = now
                if self.step % self.config.log_every == 0:
                    yield self._event("step", window)
                    window = _Window(totals[0].zero_())
                    last_tick = time.perf_counter()  # time spent by the consumer is not training
            if not stopped and (self.step % self.steps_per_epoch == 0 or self.step >= self.total_steps):
                validation = self.validate()
                yield self._event("epoch", epoch_window, validation)
                last_epoch_window = _Window(
                    epoch_window.sums.clone(), epoch_window.images, epoch_window.started
                )
                epoch_window = _Window(totals[1].zero_())
                last_tick = time.perf_counter()
        self.model.eval()
        self.optimizer.zero_grad()  # gradients are not needed once a run ends
        final = epoch_window if epoch_window.images else last_epoch_window
        yield self._event("done", final, self.validate(), stopped)

    def metrics(self) -> dict:
        """A summary for the checkpoint: last epoch's training and validation terms, speed, time."""
        epochs = [e for e in self.history if e["kind"] in ("epoch", "done")]
        last = epochs[-1] if epochs else (self.history[-1] if self.history else {})
        return {
            "steps": self.step,
            "epochs": self.step / self.steps_per_epoch,
            "train_elbo": last.get("elbo"),
            "train_recon": last.get("recon"),
            "train_kl": last.get("kl"),
            "validation": last.get("validation") or {},
            "train_seconds": self.elapsed_s,
            "images_per_s": self.step * self.config.batch_size / max(1e-9, self.elapsed_s),
        }

    def curve(self, max_points: int = 400) -> list[dict]:
        """Training curve for the model card: epoch rows plus evenly thinned step rows."""
        steps = [e for e in self.history if e["kind"] == "step"]
        stride = max(1, math.ceil(len(steps) / max_points))
        keep = steps[::stride] + [e for e in self.history if e["kind"] in ("epoch", "done")]
        fields = ("kind", "step", "epoch", "recon", "kl", "elbo", "validation")
        return [{f: e[f] for f in fields} for e in sorted(keep, key=lambda e: e["step"])]
