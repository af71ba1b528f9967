"""AppTest for the How it works page: every model kind renders; Resample ε moves z, never μ or σ."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from explorer.state.registry import ModelEntry
from vae_core import Checkpoint, ModelConfig, build_model

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGE = "explorer/pages/how_it_works.py"
SESSION_MODELS = {  # name -> config overrides: every kind the library trains
    "tinyconv": {"kind": "conv", "latent_dim": 3, "hidden": (32,)},
    "tinycond": {"latent_dim": 2, "hidden": (32,), "conditional": True},
    "tiny14": {"latent_dim": 4, "hidden": (32,), "image_size": 14},
    "tinyconvcond": {"kind": "conv", "latent_dim": 2, "hidden": (32,), "conditional": True},
}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def session_models() -> dict[str, ModelEntry]:
    torch.manual_seed(0)
    entries = {}
    for name, overrides in SESSION_MODELS.items():
        config = ModelConfig(**overrides)
        model = build_model(config).eval().requires_grad_(False)
        entries[f"trained:{name}"] = ModelEntry(f"trained:{name}", Checkpoint(model, config), "trained", name)
    return entries


@pytest.fixture
def app(monkeypatch, session_models):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("VAE_OFFLINE", "1")
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["user_models"] = dict(session_models)
    return at


def vectors(at) -> dict[str, list[float]]:
    """μ, σ, ε and z as the page prints them."""
    text = next(m.value for m in at.markdown if m.value.startswith("μ = ("))
    found = {}
    for name, values in re.findall(r"(μ|σ|ε|z) = \(([^)]*)\)", text):
        found[name] = [float(v) for v in values.replace("…", "").split(",") if v.strip()]
    return found


def metrics(at) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


def select_model(at, name: str):
    picker = at.sidebar.selectbox(key="model_picker")
    index = next(i for i, label in enumerate(picker.options) if label.startswith(name + " "))
    picker.select_index(index).run()
    assert not at.exception, at.exception


def test_page_renders_for_every_model(app):
    app.switch_page(PAGE).run()
    assert not app.exception
    picker = app.sidebar.selectbox(key="model_picker")
    assert len(picker.options) >= len(SESSION_MODELS)
    for index, label in enumerate(picker.options):
        picker.select_index(index).run()
        assert not app.exception, f"failed for {label}: {app.exception}"
        shown = metrics(app)
        recon, kl, elbo = (float(shown[k]) for k in list(shown)[:3])
        assert recon <= 0 and kl >= 0 and elbo == pytest.approx(recon - kl, abs=0.011)
        if "(conditional)" in label:
            assert app.selectbox(key="how_label")  # a conditional model shows its label input
        assert len(app.image) >= 5  # x, logits, p(x|z), sample, traversal grid
        picker = app.sidebar.selectbox(key="model_picker")


@pytest.mark.parametrize("name", list(SESSION_MODELS))
def test_resample_changes_eps_and_z_but_not_the_encoder_outputs(app, name):
    app.switch_page(PAGE).run()
    select_model(app, name)
    before, images_before = vectors(app), [i.value[0] for i in app.image]
    kl_before = metrics(app)["KL, analytic (nats)"]
    app.button(key="how_resample").click().run()
    assert not app.exception
    after, images_after = vectors(app), [i.value[0] for i in app.image]
    assert after["μ"] == before["μ"] and after["σ"] == before["σ"]
    assert metrics(app)["KL, analytic (nats)"] == kl_before
    assert after["ε"] != before["ε"] and after["z"] != before["z"]
    # z = μ + σ ⊙ ε, checked on the printed (rounded) numbers
    for m, s, e, z in zip(after["μ"], after["σ"], after["ε"], after["z"], strict=True):
        assert z == pytest.approx(m + s * e, abs=0.01)
    assert images_after[2] != images_before[2]  # p(x|z) moved with z


def test_a_2d_model_takes_eps_from_the_sliders(app):
    app.switch_page(PAGE).run()
    select_model(app, "tinycond")
    app.slider(key="how_eps_0").set_value(1.5).run()
    app.slider(key="how_eps_1").set_value(-2.0).run()
    assert not app.exception
    assert vectors(app)["ε"] == [1.5, -2.0]
    app.button(key="how_resample").click().run()
    assert vectors(app)["ε"] != [1.5, -2.0]
    assert vectors(app)["ε"] == [app.slider(key=f"how_eps_{i}").value for i in range(2)]


def test_model_card_gives_bits_per_dim_and_explains_beta(app):
    """The card's bits/dim is nats / (784 · ln 2), from the checkpoint's own test metrics."""
    import math

    from explorer.state.registry import load_pretrained_models

    pretrained = load_pretrained_models()
    if "pretrained:beta4_mlp20" not in pretrained:
        pytest.fail("pretrained/beta4_mlp20.safetensors is not here")
    test = pretrained["pretrained:beta4_mlp20"].test_metrics
    app.switch_page("explorer/pages/overview.py").run()
    select_model(app, "beta4_mlp20")
    shown = {m.label: m for m in app.metric}
    assert shown["Test ELBO"].delta == f"{-test['elbo'] / (784 * math.log(2)):.4f} bits/dim"
    nll = next(m for label, m in shown.items() if label.startswith("Test NLL"))
    assert nll.delta == f"{test['nll'] / (784 * math.log(2)):.4f} bits/dim"
    assert any("β=4.0 (the KL term weighted" in str(getattr(e, "value", "")) for e in app.main)
