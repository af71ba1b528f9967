"""Shared fixtures: the MNIST folder (from $VAE_DATA_DIR or ../shared/data/mnist) and small trained models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from vae_core import ModelConfig, TrainConfig, Trainer, load_sample_digits

REPO_ROOT = Path(__file__).resolve().parents[1]


def find_mnist_dir() -> Path | None:
    for candidate in (os.environ.get("VAE_DATA_DIR"), REPO_ROOT.parent / "shared" / "data" / "mnist"):
        if candidate and Path(candidate, "t10k-images-idx3-ubyte.gz").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    found = find_mnist_dir()
    if found is None:
        pytest.fail("MNIST IDX files not found: set VAE_DATA_DIR (CI uses ../shared/data/mnist)")
    return found


@pytest.fixture(scope="session")
def sample_digits():
    return load_sample_digits()


def _train_small(digits, latent_dim: int, conditional: bool = False, epochs: float = 4):
    train, valid = digits.subset(slice(0, 4500)), digits.subset(slice(4500, None))
    config = ModelConfig(latent_dim=latent_dim, hidden=(256, 128), conditional=conditional)
    trainer = Trainer(config, TrainConfig(epochs=epochs, batch_size=64, seed=0, device="cpu"), train, valid)
    for _ in trainer.run():
        pass
    return trainer.model.eval()


@pytest.fixture(scope="session")
def trained_2d(sample_digits):
    """A 2-D MLP VAE trained for a few seconds on the bundled 5k MNIST sample."""
    return _train_small(sample_digits, 2)


@pytest.fixture(scope="session")
def trained_8d(sample_digits):
    return _train_small(sample_digits, 8)


@pytest.fixture(scope="session")
def test_batch(sample_digits):
    """20 digits binarised once, (20, 784) float."""
    return sample_digits.subset(slice(4600, 4620)).fixed_binary(0)


class RunsCodeWhenUnpickled:
    """A pickle payload that creates `marker` if anything ever unpickles it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture(autouse=True)
def _deterministic_global_rng():
    torch.manual_seed(1234)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module's app tests: two threads on two busy cores made one SVI
    run ten times slower here, and the app's numbers do not depend on the thread count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# The fast lane (README: `pytest -m "not slow"`) leaves out the tests that drive the whole app:
# AppTest runs every page's script (seconds per test), the browser tests a real server and chromium.
# CI runs everything. Single slow tests elsewhere carry their own @pytest.mark.slow.
SLOW_MODULES = {
    "test_app_compare", "test_app_diagnostics", "test_app_how_it_works", "test_app_masks_and_drawing",
    "test_app_overview_latent_map", "test_app_pages", "test_app_share_export", "test_app_train",
    "test_hostile_train_form", "test_app_overview_words", "test_runtime_settings",
}  # fmt: skip


def pytest_collection_modifyitems(items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if module in SLOW_MODULES or item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.slow)
