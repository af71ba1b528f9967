"""What a training run costs in memory, and what a public server lets one visitor ask for.

    need = estimate_run_memory(model_config, train_config)   # bytes at the run's peak, by part
    check_run_memory(need, limit_bytes, OPTION_NAMES_CLI)     # ConfigError naming what to lower
    ServerLimits.from_env().check(model_config, train_config) # the app's caps ($VAE_MAX_*)

The estimate is computed from the configs alone, before anything is allocated: a run that would
not fit is refused with a message instead of killing the process half way (a Streamlit Cloud
container gets ~690 MB for the whole app, and the kernel kills it without a word).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from .config import MAX_PARAMETERS, ModelConfig, TrainConfig
from .errors import ConfigError
from .evaluation import ELEMENT_BUDGET  # log_likelihood_estimate's decoder outputs per chunk
from .model_kinds import kind_spec, parameter_count

log = logging.getLogger(__name__)

FLOAT_BYTES = 4
MB = 1_000_000
# What vae_core's loops do, mirrored here (tests/test_hostile_cli.py measures a run against them).
VALIDATION_CHUNK = 2_000  # Trainer.validate's most digits per pass (validation_chunk: fewer for large k)
VALIDATION_IMAGES = 10_000  # Trainer.validate's max_images: their binarised pixels are one tensor
EVALUATION_BATCH = 100  # the CLI's evaluate_model batch (train --eval-k)
TEST_IMAGES = 10_000
ALLOCATOR_SLACK = 1.1  # freed blocks the allocator keeps while the next ones are taken
RUN_OVERHEAD = 8 * 1_000_000  # a run's small tensors: batch order, generators, kernel caches


@dataclass(frozen=True)
class RunMemory:
    """Bytes one run holds at its peak; the dataset itself (shared, uint8) is not counted."""

    parameters: int  # weights, gradients and Adam's two moments: 16 bytes per parameter
    training_step: int  # a step's activations and their gradients, batch x k decoder rows
    validation: int  # Trainer.validate after each epoch (no gradients, k samples for IWAE)
    evaluation: int  # the test-set NLL after training (CLI --eval-k), 0 when not asked for

    @property
    def peak(self) -> int:
        # The step's activations are freed before validation runs, and validation's before the next
        # step: the app and the CLI give the Trainer heap.return_freed_heap_to_os to call between
        # phases, and the CLI calls it before its evaluation.
        return RUN_OVERHEAD + self.parameters + max(self.training_step, self.validation, self.evaluation)

    def describe(self) -> str:
        parts = [
            ("parameters and Adam state", self.parameters),
            ("training step activations", self.training_step),
            ("validation pass", self.validation),
            ("test evaluation", self.evaluation),
        ]
        shown = ", ".join(f"{name} {megabytes(size)}" for name, size in parts if size)
        return f"about {megabytes(self.peak)} at its peak ({shown})"


def megabytes(size: float) -> str:
    return f"{size / MB:,.0f} MB" if size >= 10 * MB else f"{size / MB:,.1f} MB"


def _transient_floats(config: ModelConfig) -> int:
    """Floats alive at once per latent sample in a forward pass without gradients: the logits,
    their log-likelihoods and the negated sum's input are three pixel-sized tensors."""
    return 3 * config.pixels + kind_spec(config.kind).row_floats(config)[2] + 6 * config.latent_dim


def validation_chunk(config: ModelConfig, samples: int) -> int:
    """Digits per pass of Trainer.validate: VALIDATION_CHUNK, or fewer, so that their `samples`
    latent samples each (k for IWAE) keep to ELEMENT_BUDGET floats of transient tensors. A fixed
    2,000 digits x k = 50 samples held 313 MB of logits alone; the conv model's feature maps,
    245 MB at k = 1."""
    return max(1, min(VALIDATION_CHUNK, ELEMENT_BUDGET // (samples * _transient_floats(config))))


def estimate_run_memory(
    model_config: ModelConfig, train_config: TrainConfig, eval_k: int = 0, world_size: int = 1
) -> RunMemory:
    """Peak memory of training `model_config` with `train_config` in one process, in bytes.

    Counted: 16 bytes per parameter (weight, gradient, two Adam moments); per training step the
    encoder's activations for the batch and the decoder's for batch x k latent samples, whose
    784 (or 196) logits dominate: the logits kept for backward and, alive with them at once, the
    fused log-likelihood's two per-pixel temporaries or the logits' gradient (3 floats per pixel);
    the validation pass (10,000 binarised digits and `validation_chunk` digits at a time with k
    samples each); and with `eval_k` the test-set NLL (chunks of 2^23 decoder outputs).
    An overestimate by design: measured peaks are below it (tests/test_hostile_cli.py).
    """
    pixels = model_config.pixels
    samples = train_config.k if train_config.objective == "iwae" else 1
    batch = math.ceil(train_config.batch_size / world_size)
    encoder, decoder, working = kind_spec(model_config.kind).row_floats(model_config)
    parameters = 4 * FLOAT_BYTES * parameter_count(model_config)
    per_sample = decoder + 3 * pixels + working + 6 * model_config.latent_dim
    training_step = FLOAT_BYTES * batch * (encoder + working + samples * per_sample)
    transient = _transient_floats(model_config)
    validation_images = min(train_config.validation_size, VALIDATION_IMAGES)
    chunk = min(validation_chunk(model_config, samples), validation_images)
    validation = FLOAT_BYTES * (validation_images * pixels + chunk * samples * transient)
    if validation_images == 0:
        validation = 0
    evaluation = 0
    if eval_k:
        per_chunk = max(1, ELEMENT_BUDGET // (EVALUATION_BATCH * pixels))  # samples per chunk
        rows = EVALUATION_BATCH * min(eval_k, per_chunk)
        evaluation = FLOAT_BYTES * (TEST_IMAGES * pixels + rows * transient)
    return RunMemory(
        parameters, *(math.ceil(ALLOCATOR_SLACK * part) for part in (training_step, validation, evaluation))
    )


def estimate_sampling_memory(
    model_config: ModelConfig, images: int, samples: int, element_budget: int = ELEMENT_BUDGET
) -> int:
    """Peak bytes of drawing `samples` latents for each of `images` images and decoding them without
    gradients (log p(x), IWAE bounds, grids of latents, SVI's scoring), in chunks of at most
    `element_budget` decoder outputs as `log_likelihood_estimate` takes them: the app asks its
    server-wide work admission for this much before it starts. An overestimate, like a run's:
    the IWAE bounds of 100 digits up to k=5000 measured 74-102 MB above the process's resident set, against 161-175 MB here."""
    per_chunk = max(1, element_budget // max(1, images * model_config.pixels))
    rows = images * min(samples, per_chunk)
    return math.ceil(ALLOCATOR_SLACK * FLOAT_BYTES * rows * _transient_floats(model_config)) + RUN_OVERHEAD


# How each interface names the settings a refusal asks to lower.
OPTION_NAMES_CLI = {"k": "--k", "batch_size": "--batch-size", "hidden": "--hidden", "eval_k": "--eval-k"}
OPTION_NAMES_APP = {"k": "IWAE samples k", "batch_size": "Batch size", "hidden": "Hidden sizes"}


def _advice(need: RunMemory, model_config: ModelConfig, train_config: TrainConfig, names: dict) -> str:
    iwae = train_config.objective == "iwae"
    k = f"{names['k']} (now {train_config.k})"
    batch = f"{names['batch_size']} (now {train_config.batch_size})"
    widths = f"{names['hidden']} (now {','.join(map(str, model_config.hidden))})"
    parts = {
        "parameters": need.parameters,
        "training_step": need.training_step,
        "validation": need.validation,
        "evaluation": need.evaluation,
    }
    largest = max(parts, key=parts.get)
    if largest == "parameters":
        return f"lower {widths} or the latent size"
    if largest == "evaluation":
        return f"lower {widths}, or leave out {names.get('eval_k', 'the test evaluation')}"
    if largest == "validation":
        if iwae:
            return f"lower {k}: validation decodes k samples of each digit"
        return kind_spec(model_config.kind).validation_advice(widths)
    if iwae:
        return f"lower {k} or {batch}: each step decodes k x batch images"
    return f"lower {batch} or {widths}"


def check_run_memory(
    model_config: ModelConfig,
    train_config: TrainConfig,
    limit_bytes: float,
    names: Mapping[str, str] = OPTION_NAMES_CLI,
    eval_k: int = 0,
    where: str = "",
) -> RunMemory:
    """The run's estimate, or a ConfigError that says how much it needs and what to lower."""
    need = estimate_run_memory(model_config, train_config, eval_k)
    if need.peak > limit_bytes:
        raise ConfigError(
            f"this run would need {need.describe()}; the limit{where} is {megabytes(limit_bytes)}. "
            f"To fit, {_advice(need, model_config, train_config, dict(names))}."
        )
    return need


# ------------------------------------------------------------------------------- server limits
def env_number(name: str, default: float, integer: bool = False, environ: Mapping[str, str] | None = None):
    """A positive number from the environment; a missing one gives `default`, and so does a bad one
    (not a number, nan, inf, zero, negative, a fraction where a count belongs), with a log warning."""
    text = (os.environ if environ is None else environ).get(name)
    if text is None or not text.strip():
        return default
    try:
        value = float(text.strip().replace("_", ""))
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0 or (integer and not value.is_integer()):
        log.warning("ignoring $%s=%r: expected a positive %s; using %s", name, text,
                    "whole number" if integer else "number", default)  # fmt: skip
        return default
    return int(value) if integer else value


@dataclass(frozen=True)
class ServerLimits:
    """What one visitor's run may ask for on a shared server. The defaults fit Streamlit Community
    Cloud's ~690 MB container, where the app itself takes ~450 MB: they admit the Train form's
    defaults (ELBO: ~72 MB; IWAE k=5: ~83 MB) and the conv model (ELBO ~101 MB; IWAE k=5 ~199 MB,
    just in), and refuse larger IWAE conv runs. The app also admits each run, by this estimate,
    into its server-wide budget for heavy work (explorer/state/work_admission.py, $VAE_WORK_MEMORY_MB),
    and takes uploaded models up to `max_parameters` too.
    A deployer with more room raises them by environment variable."""

    max_run_memory_mb: float = 200.0  # $VAE_MAX_RUN_MEMORY_MB: estimate_run_memory's peak
    max_epochs: float = 500.0  # $VAE_MAX_EPOCHS (CPU time: the form's own maximum)
    max_k: int = 50  # $VAE_MAX_K: IWAE samples per image
    max_batch_size: int = 1024  # $VAE_MAX_BATCH_SIZE
    max_hidden_width: int = 2048  # $VAE_MAX_HIDDEN_WIDTH: each hidden layer
    max_parameters: int = 5_000_000  # $VAE_MAX_PARAMETERS (80 MB with gradients and Adam state)

    ENV = {
        "max_run_memory_mb": "VAE_MAX_RUN_MEMORY_MB",
        "max_epochs": "VAE_MAX_EPOCHS",
        "max_k": "VAE_MAX_K",
        "max_batch_size": "VAE_MAX_BATCH_SIZE",
        "max_hidden_width": "VAE_MAX_HIDDEN_WIDTH",
        "max_parameters": "VAE_MAX_PARAMETERS",
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerLimits:
        """The defaults, each replaced by its $VAE_MAX_* variable when that holds a positive number.
        Values above vae_core's own caps (hidden width 16,384, 50 M parameters, k 5,000) change nothing:
        those caps still apply."""
        defaults = cls()
        values = {}
        for name, variable in cls.ENV.items():
            default = getattr(defaults, name)
            values[name] = env_number(variable, default, isinstance(default, int), environ)
        return cls(**values)

    def check_hidden(self, hidden: tuple[int, ...]) -> None:
        """The widths alone, before a ModelConfig is built (its own cap is far above a server's)."""
        too_wide = [w for w in hidden if isinstance(w, int) and w > self.max_hidden_width]
        if too_wide:
            raise ConfigError(
                f"hidden layers of width {too_wide[0]:,} are more than this server allows "
                f"({self.max_hidden_width:,} each); try 256,128"
            )

    def check(self, model_config: ModelConfig, train_config: TrainConfig) -> RunMemory:
        """Refuse (ConfigError) settings above this server's limits; return the memory estimate."""
        self.check_hidden(model_config.hidden)
        count = parameter_count(model_config)
        if count > min(self.max_parameters, MAX_PARAMETERS):
            raise ConfigError(
                f"{model_config.describe()} has {count:,} parameters; this server allows "
                f"{self.max_parameters:,}. Use narrower hidden layers"
            )
        if train_config.epochs > self.max_epochs:
            raise ConfigError(
                f"{train_config.epochs:g} epochs is more than this server allows ({self.max_epochs:g}); "
                "lower Epochs"
            )
        if train_config.batch_size > self.max_batch_size:
            raise ConfigError(
                f"batch size {train_config.batch_size} is larger than this server allows "
                f"({self.max_batch_size:,}); 64 to 512 works well"
            )
        if train_config.objective == "iwae" and train_config.k > self.max_k:
            raise ConfigError(
                f"IWAE with k={train_config.k:,} is more than this server allows (k up to {self.max_k:,}); "
                "k=5 to 50 already shows the effect"
            )
        return check_run_memory(
            model_config, train_config, self.max_run_memory_mb * MB, OPTION_NAMES_APP, where=" on this server"
        )
