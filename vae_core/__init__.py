"""vae_core: train and run Variational Autoencoders on MNIST, on CPU or GPU. No Streamlit here."""

from .checkpoint import Checkpoint, checkpoint_bytes, load_checkpoint, save_checkpoint
from .config import ModelConfig, TrainConfig
from .data import DigitImages, scoring_binary
from .errors import CheckpointError, ConfigError, DataError, TrainingDivergedError, VAEError
from .evaluation import (
    ImportanceEstimate,
    bounds_by_k,
    evaluate_model,
    importance_log_px,
    repeated_bounds_by_k,
)
from .inference import LatentProjection, decode, encode, interpolate, latent_grid, reconstruct, sample_prior
from .masks import HIDDEN_HALVES, centre_square_mask, observed_mask, painted_region_mask, random_pixels_mask
from .mnist import load_digits, load_sample_digits, load_train_validation
from .models import VAE, build_model
from .objectives import elbo_terms, iwae_bound, log_likelihood_estimate
from .posterior import BestGaussian, PosteriorGrid, best_gaussian_posterior, exact_posterior_grid
from .svi import CompletionResult, PosteriorFit, complete_masked_image, fit_posterior, observed_elbo
from .train import Trainer, TrainingEvent, resolve_device

__all__ = [name for name in dir() if not name.startswith("_")]
