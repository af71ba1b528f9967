"""Things loaded once per server and shared read-only by every session (st.cache_resource),
and the per-session model list built on top of them.

Importing this module imports no torch, and neither do the sidebar and the Overview's first paint
(the model card, from the cards shipped in pretrained/): on a freshly started server torch takes
seconds to import, and the first visitor sees the card meanwhile. torch and vae_core are imported
inside the functions that need them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from explorer.runtime_settings import app_torch
from explorer.state.registry import PRETRAINED_DIR
from explorer.state.visitor_text import inert

if TYPE_CHECKING:
    import torch

    from explorer.state.registry import ModelEntry
    from vae_core import DigitImages, LatentProjection

SCATTER_DIGITS = 2000  # test digits drawn on latent maps: enough to see structure, light to draw
KEPT_RESULTS = 12  # a session keeps a page's latest results, not all it ever computed
CARD_TEXT_CHARS = 300  # of a checkpoint's text fields on its card (the longest shipped command: 171)


# Written by scripts/make_overview_cards.py beside the checkpoints it describes.
CARDS_FILE = "overview_cards.json"
PRIOR_SAMPLES = 16  # the card's picture: prior samples in a 4x4 grid, seed PRIOR_SEED
PRIOR_SEED = 0


SAMPLE_NOTE = (
    "Digits: 5,000 MNIST test digits shipped with the app, every other one of the 10,000, because "
    "the full MNIST test set is not available on this server."
)


@dataclass
class DigitSet:
    """The digits the pages explore (the MNIST test split, or the shipped test sample offline)."""

    digits: DigitImages  # 28x28, as loaded
    is_full_test_set: bool
    note: str  # what to tell the user about where these came from


def downloads_allowed() -> bool:
    """False when $VAE_OFFLINE says so (tests, air-gapped servers): then no network is tried."""
    return os.environ.get("VAE_OFFLINE", "") not in ("1", "true", "yes")


@st.cache_resource(show_spinner="Loading MNIST test digits…")
def explore_digits() -> DigitSet:
    """Test digits from $VAE_DATA_DIR, else a download, else the 5,000 test digits shipped in vae_core.

    vae_core bounds the download itself (a 2 s reachability probe, a time-limited child process),
    so a slow or dead network cannot hang the app.
    """
    app_torch()
    from vae_core import DataError, load_digits, load_sample_digits

    try:
        digits = load_digits("test", allow_download=downloads_allowed())
        return DigitSet(digits, True, f"Digits: the 10,000 MNIST test images — {digits.source}.")
    except DataError as exc:
        # The reason (an OSError, a cache path) is for whoever runs the server, not for the visitor.
        logging.getLogger(__name__).warning("full MNIST unavailable, using the bundled sample: %s", exc)
        return DigitSet(load_sample_digits(split="test"), False, SAMPLE_NOTE)


@st.cache_resource(show_spinner="Loading pretrained models…")
def pretrained_models() -> dict[str, ModelEntry]:
    app_torch()
    from explorer.state.registry import load_pretrained_models

    return load_pretrained_models()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@st.cache_resource(show_spinner=False)
def pretrained_cards() -> dict[str, dict]:
    """The Overview cards shipped for the pretrained models, by model key, in the picker's order;
    empty (the pages then wait for the models) unless there is one card for every checkpoint in
    the directory and each names its checkpoint's current SHA-256: a card never outlives its model."""
    directory = PRETRAINED_DIR
    try:
        cards = json.loads((directory / CARDS_FILE).read_text())["cards"]
        checkpoints = {path.name for path in directory.glob("*.safetensors")}
        if {card["file"] for card in cards} != checkpoints:
            raise ValueError(
                f"cards for {sorted(c['file'] for c in cards)}, checkpoints {sorted(checkpoints)}"
            )
        stale = [card["file"] for card in cards if _sha256(directory / card["file"]) != card["sha256"]]
        if stale:
            raise ValueError(f"checkpoints changed since their cards were made: {stale}")
    except (OSError, ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
        logging.getLogger(__name__).info(
            "Overview cards not used (%s): the first visitor waits for torch", exc
        )
        return {}
    return {card["key"]: card for card in cards}


def overview_card(entry: ModelEntry) -> dict:
    """What the Overview's model card shows of `entry` as plain data (JSON-ready): its label, the
    four metrics, the description rows and the prior-samples picture (PNG, base64). Computed from
    the model; scripts/make_overview_cards.py stores it for each pretrained model."""
    import math

    from explorer.figures.pictures import digit_grid_png
    from vae_core import count_parameters, sample_prior

    torch = app_torch()
    config, train_config = entry.config, entry.checkpoint.train_config
    metrics, test = entry.checkpoint.metrics, entry.test_metrics
    bits = config.pixels * math.log(2)  # nats per image -> bits per dimension (pixel)
    generator = torch.Generator().manual_seed(PRIOR_SEED)
    labels = torch.arange(PRIOR_SAMPLES) % 10  # an unconditional model ignores them
    _, probs = sample_prior(entry.model, PRIOR_SAMPLES, 1.0, labels, generator)
    rows = {
        "Architecture": config.describe(),
        "Decoder": "Bernoulli logits per pixel",
        "Images": f"{config.image_size}×{config.image_size}",
        "Binarisation": train_config.get("binarization", "—"),  # load_checkpoint allows BINARIZATIONS only
        "Objective": (
            f"IWAE, k={train_config.get('k')}" if train_config.get("objective") == "iwae" else "ELBO"
        )
        + (
            f", β={train_config.get('beta')} (the KL term weighted β times: a β-VAE trades reconstruction "
            "for a latent code closer to the prior, with fewer active units)"
            if train_config.get("beta", 1.0) != 1.0
            else ""
        ),
        "Training": (
            f"{metrics.get('epochs', 0):.0f} epochs, batch {train_config.get('batch_size', '—')}, "
            f"lr {train_config.get('lr', '—')}"
            if metrics
            else "—"
        ),
        # text fields of an uploaded checkpoint are the uploader's words: inert
        "Trained on": inert(metrics["data"], CARD_TEXT_CHARS) if "data" in metrics else "—",
        "Training time": (
            f"{metrics['train_seconds'] / 60:.1f} min on {inert(metrics.get('device', '?'), CARD_TEXT_CHARS)}"
            if "train_seconds" in metrics
            else "—"
        ),
        "Command": inert(metrics["command"], CARD_TEXT_CHARS) if "command" in metrics else "—",
        "Origin": entry.origin,
    }
    nll_help = (
        "−log p(x) estimated by importance sampling, nats per image (below it in bits per dimension); lower is "
        "better" + (". For this conditional model it is −log p(x | label)." if config.conditional else "")
    )
    return {
        "key": entry.key,
        "name": entry.name,
        "label": entry.label,
        "metrics": [  # (label, value, delta, help) for st.metric
            ["Latent size", str(config.latent_dim), None, None],
            ["Parameters", f"{count_parameters(entry.model):,}", None, None],
            [
                "Test ELBO",
                f"{test['elbo']:.2f}" if "elbo" in test else "—",
                f"{-test['elbo'] / bits:.4f} bits/dim" if "elbo" in test else None,
                f"nats per image; below it −ELBO in bits per dimension (nats / ({config.pixels} · ln 2))",
            ],
            [
                f"Test NLL (k={test.get('k', '?')})",
                f"{test['nll']:.2f}" if "nll" in test else "—",
                f"{test['nll'] / bits:.4f} bits/dim" if "nll" in test else None,
                nll_help,
            ],
        ],
        "rows": rows,
        "test_caption": (
            f"Test figures: {test.get('n', '?')} MNIST test digits binarised once (seed "
            f"{test.get('binarization_seed', 0)}); NLL from {test.get('k', '?')} importance samples per digit."
            + (
                f" Exact for a 2-D latent, by quadrature on the first {test['nll_quadrature_n']:,} of them: NLL "
                f"{test['nll_quadrature']:.2f}, against {test['nll_importance']:.2f} by importance sampling on the "
                f"same digits: sampling overstates the NLL by {test['nll_importance'] - test['nll_quadrature']:.2f} "
                "nats there."
                if {"nll_quadrature", "nll_importance", "nll_quadrature_n"} <= test.keys()
                else ""
            )
            if test
            else None
        ),
        "prior_samples_png": base64.b64encode(
            digit_grid_png(probs, config.image_size, columns=4, scale=3)
        ).decode("ascii"),
    }


def overview_cards(directory: Path) -> dict:
    """The document pretrained_cards reads (CARDS_FILE): the card of every checkpoint in
    `directory` that loads, in the picker's order, with its file's name and SHA-256."""
    from explorer.state.registry import load_pretrained_models

    return {
        "made_by": "python scripts/make_overview_cards.py (from the checkpoints beside this file)",
        "cards": [
            {"file": f"{entry.name}.safetensors", "sha256": _sha256(directory / f"{entry.name}.safetensors"),
             **overview_card(entry)}
            for entry in load_pretrained_models(directory).values()
        ],
    }  # fmt: skip


def card_for(key: str) -> dict:
    """The Overview card of the model `key`: the shipped one of a pretrained model, else computed
    from the model (loading the models first) and kept with it."""
    shipped = pretrained_cards().get(key)
    if shipped is not None:
        return shipped
    entry = available_models()[key]
    return entry.cached("overview_card", lambda: overview_card(entry))


def model_labels() -> dict[str, str]:
    """The picker's choices, key -> label, in order: from the shipped cards while they describe
    every pretrained checkpoint (no torch needed), else from the loaded models; then this session's."""
    cards = pretrained_cards()
    pretrained = {key: card["label"] for key, card in cards.items()} if cards else None
    if pretrained is None:
        pretrained = {key: entry.label for key, entry in pretrained_models().items()}
    return {**pretrained, **{key: entry.label for key, entry in session_models().items()}}


def session_models() -> dict[str, ModelEntry]:
    """This session's own models (trained on the Train page or uploaded)."""
    return st.session_state.setdefault("user_models", {})


def available_models() -> dict[str, ModelEntry]:
    return {**pretrained_models(), **session_models()}


def register_session_model(entry: ModelEntry) -> None:
    session_models()[entry.key] = entry


def session_probe():
    """A check the training thread may call: is this browser session still connected?

    With it a run keeps going while its user looks at other pages (which do not poll it) and still
    stops soon after the tab closes. Under AppTest there is no runtime and only polling counts.
    """
    from streamlit.runtime import Runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None or not Runtime.exists():
        return None
    runtime, session_id = Runtime.instance(), ctx.session_id
    return lambda: runtime.is_active_session(session_id)


def digits_for(entry: ModelEntry) -> DigitImages:
    """The explored digits at the model's image size (28, or 14 by 2x2 averaging)."""
    from vae_core import DigitImages, pool_to_14

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
    from vae_core import LatentProjection, encode

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
