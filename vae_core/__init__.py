"""vae_core: train and run Variational Autoencoders on MNIST, on CPU or GPU. No Streamlit here."""

from .checkpoint import Checkpoint, checkpoint_bytes, load_checkpoint, save_checkpoint
from .config import ModelConfig, TrainConfig
from .data import DigitImages, load_digits, load_sample_digits, load_train_validation
from .errors import CheckpointError, ConfigError, DataError, TrainingDivergedError, VAEError
from .inference import (
    CompletionResult,
    LatentProjection,
    PosteriorGrid,
    centre_square_mask,
    complete_masked_image,
    decode,
    encode,
    exact_posterior_grid,
    importance_log_px,
    interpolate,
    latent_grid,
    observed_mask,
    painted_region_mask,
    random_pixels_mask,
    reconstruct,
    sample_prior,
)
from .models import VAE, build_model
from .objectives import elbo_terms, iwae_bound, log_likelihood_estimate
from .train import Trainer, TrainingEvent, resolve_device

__all__ = [name for name in dir() if not name.startswith("_")]
