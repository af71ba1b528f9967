"""App tests (AppTest) for the Overview's "Compare with" section.

Two small session models (an unconditional 2-D and a conditional 5-D one, untrained: fast to
sample) stand in for trained or uploaded ones; the numbers the page shows are checked against
vae_core called directly on the digits the page says it used (the explored test digits).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from explorer.state.registry import ModelEntry
from vae_core import Checkpoint, ModelConfig, build_model, elbo_terms, log_likelihood_estimate
from vae_core.diagnostics import latent_activity
from vae_core.models import count_parameters

APP = str(Path(__file__).resolve().parents[1] / "app.py")
COMPARE = "compare_with"


def small_entry(name: str, latent_dim: int, conditional: bool = False) -> ModelEntry:
    torch.manual_seed(latent_dim)
    config = ModelConfig(latent_dim=latent_dim, hidden=(32,), conditional=conditional)
    model = build_model(config).eval().requires_grad_(False)
    return ModelEntry(f"trained:{name}", Checkpoint(model, config), "trained", name)


@pytest.fixture
def models():
    return {"flat": small_entry("flat", 2), "labelled": small_entry("labelled", 5, conditional=True)}


@pytest.fixture
def app(models, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("VAE_OFFLINE", "1")
    at = AppTest.from_file(APP, default_timeout=300)
    at.session_state["user_models"] = {entry.key: entry for entry in models.values()}
    at.session_state["selected_model"] = models["flat"].key
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def explored_digits():
    """The digits the app explores (the same cached loader the pages use)."""
    from explorer.ui.resources import explore_digits

    return explore_digits().digits


def comparison_tables(at):
    return [t.value for t in at.table]


def number(text: str) -> float:
    """A table cell ("1,068,820", "-93.28") as a number."""
    return float(text.replace(",", ""))


def test_nothing_is_compared_until_a_second_model_is_picked(app, models):
    assert app.selectbox(key=COMPARE).value is None
    assert comparison_tables(app) == []
    assert any("Pick a model to set beside **flat**" in c.value for c in app.caption)
    assert "iwae_curve" not in models["flat"].cache  # the first render ran no importance sampling


def test_picking_a_second_model_shows_both_side_by_side_with_their_own_numbers(app, models):
    charts_before = len(app.get("plotly_chart"))
    app.selectbox(key=COMPARE).select(models["labelled"].key).run()
    assert not app.exception, [e.value for e in app.exception]
    (table,) = comparison_tables(app)
    assert list(table.columns)[:2] == ["flat", "labelled"]

    digits = explored_digits()
    x = digits.subset(slice(0, 2000)).fixed_binary()
    labels = digits.labels[:2000]
    for entry, given in ((models["flat"], None), (models["labelled"], labels)):
        column = table[entry.name]
        terms = elbo_terms(entry.model, x, given, torch.Generator().manual_seed(0))
        assert number(column["ELBO (nats)"]) == pytest.approx(float(terms.elbo.mean()), abs=0.006)
        assert number(column["KL(q(z|x) ‖ p(z)) (nats)"]) == pytest.approx(float(terms.kl.mean()), abs=0.006)
        assert number(column["Active units"]) == latent_activity(entry.model, x, given).active_count
        assert number(column["Latent size"]) == entry.config.latent_dim
        assert number(column["Parameters"]) == count_parameters(entry.model)
        log_px = log_likelihood_estimate(
            entry.model,
            x[:100],
            None if given is None else given[:100],
            5000,
            torch.Generator().manual_seed(0),
        )
        row = "log p(x) | log p(x|y) estimate, k=5000 (nats)"  # flat is unconditional, labelled is not
        assert number(column[row]) == pytest.approx(float(log_px.mean()), abs=0.006)

    assert len(app.get("plotly_chart")) == charts_before + 2  # KL bars, bound curves
    maps = [e.key for e in app.get("bidi_component") if str(e.key).startswith("compare_map_")]
    assert maps == [f"compare_map_0:{models['flat'].key}", f"compare_map_1:{models['labelled'].key}"]
    shown = "\n".join(m.value for m in app.markdown)
    assert f"**flat** · {len(digits):,} digits at its encoder means" in shown  # every explored digit
    assert f"**labelled** · {len(digits):,} digits at PCA of its 5-D encoder means" in shown
    assert any("**labelled** is conditional" in c.value and "log p(x|y)" in c.value for c in app.caption)
    # the card above was drawn before the comparison ran; from the next run on its own bound curve
    # shows without a click, since the comparison computed it
    assert not any(c.value.startswith("ELBO (k=1)") for c in app.caption)
    app.run()
    assert any(c.value.startswith("ELBO (k=1)") for c in app.caption)


def offered(at, models) -> set[str]:
    """The models the "Compare with" picker offers, by name."""
    labels = {entry.label: entry.name for entry in models.values()}
    return {labels[option] for option in at.selectbox(key=COMPARE).options if option in labels}


def test_the_picker_never_offers_the_model_on_the_card(app, models):
    assert "flat" not in offered(app, models) and "labelled" in offered(app, models)
    app.sidebar.selectbox(key="model_picker").select(models["labelled"].key).run()
    assert "labelled" not in offered(app, models) and "flat" in offered(app, models)


def test_switching_the_card_to_the_compared_model_drops_it_from_the_picker_until_the_card_moves_on(
    app, models
):
    app.selectbox(key=COMPARE).select(models["labelled"].key).run()
    app.sidebar.selectbox(key="model_picker").select(models["labelled"].key).run()
    assert not app.exception, [e.value for e in app.exception]
    assert comparison_tables(app) == []
    assert app.selectbox(key=COMPARE).value is None and "labelled" not in offered(app, models)
    assert any("Pick a model to set beside **labelled**" in c.value for c in app.caption)
    # and back: the remembered comparison returns, from the models' caches
    app.sidebar.selectbox(key="model_picker").select(models["flat"].key).run()
    assert app.selectbox(key=COMPARE).value == models["labelled"].key
    (table,) = comparison_tables(app)
    assert list(table.columns)[:2] == ["flat", "labelled"]


def test_an_uploaded_models_text_fields_show_on_the_card_as_text(monkeypatch):
    """metrics' data, device and command come from whoever made the file: never a live link."""
    from streamlit.testing.v1 import AppTest

    from tests.markdown_messages import shown

    config = ModelConfig(latent_dim=2, hidden=(32,))
    hostile = "[Log in again](https://evil.example/login)"
    metrics = {"data": hostile, "device": hostile, "command": hostile, "train_seconds": 60, "epochs": 1}
    entry = ModelEntry(
        "uploaded:x", Checkpoint(build_model(config).eval(), config, {}, metrics), "uploaded", "x"
    )
    monkeypatch.setenv("VAE_OFFLINE", "1")
    at = AppTest.from_file(APP, default_timeout=300)
    at.session_state["user_models"] = {entry.key: entry}
    at.session_state["selected_model"] = entry.key
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    card = next(m.value for m in at.markdown if "Trained on" in m.value)
    # the visitor's text only inside code spans (Markdown would render it as a live link), shown whole
    assert shown(card).count(hostile) == 3
