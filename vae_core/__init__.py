"""vae_core: train and run Variational Autoencoders on MNIST, on CPU or GPU. No Streamlit here.

The public API is what this file imports; each name's module is its one home (see README,
Architecture: vae_core/).
"""

from .checkpoint import Checkpoint, checkpoint_bytes, load_checkpoint, save_checkpoint
from .config import ModelConfig, TrainConfig, config_to_dict
from .data import DigitImages, pool_to_14, scoring_binary
from .diagnostics import GapSummary, LatentActivity, activity_of_posterior, inference_gaps, latent_activity
from .errors import CheckpointError, ConfigError, DataError, TrainingDivergedError, VAEError
from .evaluation import (
    BoundsByK,
    ImportanceEstimate,
    bounds_against_k,
    bounds_by_k,
    evaluate_model,
    importance_log_px,
    log_likelihood_estimate,
    repeated_bounds_by_k,
)
from .images import mnist_style_digit, mnist_style_pixels, tile_images
from .inference import LatentProjection, decode, encode, interpolate, latent_grid, reconstruct, sample_prior
from .masks import HIDDEN_HALVES, centre_square_mask, observed_mask, painted_region_mask, random_pixels_mask
from .mnist import load_digits, load_sample_digits, load_train_validation
from .models import VAE, build_model, count_parameters
from .objectives import bernoulli_log_lik, elbo_terms, iwae_bound
from .posterior import BestGaussian, PosteriorGrid, best_gaussian_posterior, exact_posterior_grid
from .svi import CompletionResult, PosteriorFit, complete_masked_image, fit_posterior, observed_elbo
from .train import Trainer, TrainingEvent, resolve_device
from .traversals import latent_traversal

__all__ = [name for name in dir() if not name.startswith("_")]
