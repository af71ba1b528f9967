"""The Overview reads right: IWAE explained where a card says so, the trained bound named on the curve,
bits/dim as plain captions, the bound gap called what it is, and the glossary at hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from explorer.state.comparison import BOUND_KS
from explorer.state.registry import ModelEntry
from vae_core import Checkpoint, ModelConfig, build_model

APP = str(Path(__file__).resolve().parents[1] / "app.py")
OVERVIEW = "explorer/pages/overview.py"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def iwae_entry() -> ModelEntry:
    """A small model as if trained with IWAE (k=5) here: its curve's "elbo" field is the 5-sample bound."""
    torch.manual_seed(0)
    config = ModelConfig(latent_dim=2, hidden=(32,))
    model = build_model(config).eval().requires_grad_(False)
    curve = [{"kind": "step", "step": s, "epoch": s / 10, "elbo": -200.0 + s, "recon": -195.0, "kl": 9.0}
             for s in range(1, 11)]  # fmt: skip
    curve.append({**curve[-1], "kind": "epoch", "validation": {"elbo": -198.0, "recon": -192.0, "kl": 6.0}})
    metrics = {"test": {"elbo": -150.0, "nll": 140.0, "k": 5000, "n": 10}}
    checkpoint = Checkpoint(model, config, {"objective": "iwae", "k": 5}, metrics, curve)
    entry = ModelEntry("trained:tinyiwae", checkpoint, "trained", "tinyiwae")
    # the IWAE curve as the page keeps it once computed (its numbers matter not here, its words do)
    entry.cache["iwae_curve"] = {k: -150.0 + 2 * math.log(k) for k in BOUND_KS}
    return entry


@pytest.fixture
def overview(monkeypatch, iwae_entry):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("VAE_OFFLINE", "1")
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["user_models"] = {iwae_entry.key: iwae_entry}
    at.switch_page(OVERVIEW).run()
    picker = at.sidebar.selectbox(key="model_picker")
    picker.select_index(next(i for i, o in enumerate(picker.options) if o.startswith("tinyiwae "))).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_an_iwae_models_overview_explains_iwae_and_names_its_training_curve(overview):
    text = "\n".join(m.value for m in overview.markdown)
    assert (
        "**KL**(*q(z|x)* ‖ *p(z)*), the KL divergence of\n*q(z|x)* from the prior" in text
    )  # KL(q‖p), read right
    assert "KL divergence from *q(z|x)* to the prior" not in text
    assert "- **Objective:** IWAE, k=5" in text
    captions = [c.value for c in overview.caption]
    assert any(c.startswith("Trained on the IWAE bound") and "amortisation gap on the Posterior page" in c
               for c in captions)  # fmt: skip
    curve = json.loads(
        next(c.proto.spec for c in overview.get("plotly_chart") if c.proto.id.endswith("overview_curve"))
    )
    assert [trace["name"] for trace in curve["data"]] == [
        "train IWAE bound (k=5)", "train IWAE bound (k=5) (epoch)", "validation ELBO",
    ]  # fmt: skip
    (glossary,) = [e for e in overview.expander if e.label.startswith("📖 Glossary")]
    for term in ("ELBO", "IWAE", "KL", "nats", "bits/dim", "active units"):
        assert term in glossary.label and f"**{term}**:" in "\n".join(m.value for m in glossary.markdown)


def test_bits_per_dim_are_captions_and_the_bound_gap_is_a_lower_bound_on_the_kl(overview, iwae_entry):
    assert all(not m.delta for m in overview.metric)  # a delta badge drew an arrow: it read as a gain
    captions = [c.value for c in overview.caption]
    assert f"{150.0 / (784 * math.log(2)):.4f} bits/dim" in captions
    assert f"{140.0 / (784 * math.log(2)):.4f} bits/dim" in captions
    bounds = iwae_entry.cache["iwae_curve"]
    (gap,) = [c for c in captions if c.startswith("ELBO (k=1)")]
    assert "the k = 5000 bound is itself below log p(x)" in gap
    assert f"the gap of {bounds[5000] - bounds[1]:.2f} nats is a lower bound on that KL" in gap
    assert "is what the ELBO leaves out" not in gap
