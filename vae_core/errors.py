"""Errors a user can act on. Each message says what was wrong and what to do about it."""


class VAEError(Exception):
    """Base class of every error vae_core raises on purpose (the CLI prints these without a traceback)."""


class ConfigError(VAEError, ValueError):
    """A model or training setting is out of range."""


class DataError(VAEError):
    """MNIST could not be found, read or downloaded."""


class CheckpointError(VAEError):
    """A checkpoint file is missing, truncated, foreign, or does not fit its model."""


class TrainingDivergedError(VAEError):
    """The loss became NaN or infinite during training."""
