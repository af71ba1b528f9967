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
    # bits/dim is the figure in another unit, not a change: a caption, never st.metric's arrowed delta
    assert all(not m.delta for m in app.metric)
    captions = [c.value for c in app.caption]
    assert f"{-test['elbo'] / (784 * math.log(2)):.4f} bits/dim" in captions
    assert f"{test['nll'] / (784 * math.log(2)):.4f} bits/dim" in captions
    assert any("β=4.0 (the KL term weighted" in str(getattr(e, "value", "")) for e in app.main)


def test_the_latent_plane_of_a_beta_vae_shows_its_two_highest_kl_dimensions_and_kl_lists_say_what_they_are(
    app,
):
    """β = 4 collapses dimensions 1 and 2 (KL ≈ 0): the plane must not show them. Checked against the
    digit's KL per dimension computed here in float64 from the encoder's μ and σ."""
    import json

    import numpy as np

    from explorer.ui.resources import digits_for

    app.switch_page(PAGE).run()
    select_model(app, "beta4_mlp20")
    entry = app.session_state["user_models"].get("pretrained:beta4_mlp20")
    if entry is None:
        from explorer.state.registry import load_pretrained_models

        entry = load_pretrained_models().get("pretrained:beta4_mlp20")
    if entry is None:
        pytest.fail("pretrained/beta4_mlp20.safetensors is not here")
    per_digit = next(c.value for c in app.caption if "per latent dimension u, for test digit #" in c.value)
    index = int(re.search(r"for test digit #(\d+) \(nats\)", per_digit)[1])
    x = digits_for(entry).fixed_binary(index=slice(index, index + 1))
    with torch.no_grad():
        q = entry.model.posterior(x.to(entry.model.device))
    mu, sigma = q.loc[0].double().cpu().numpy(), q.scale[0].double().cpu().numpy()
    kl = 0.5 * (mu**2 + sigma**2 - 1 - 2 * np.log(sigma))  # KL(N(μ, σ²) ‖ N(0, 1)) per dimension
    first, second = sorted(np.argsort(-kl)[:2])
    assert min(kl[first], kl[second]) > 10 * max(kl[0], kl[1])  # the old plane (dims 1, 2) showed ~nothing

    plane = next(
        json.loads(c.proto.spec) for c in app.get("plotly_chart") if c.proto.id.endswith("how_plane")
    )
    assert plane["layout"]["title"]["text"] == f"z on latent dims {first + 1} and {second + 1} (largest KL)"
    subscript = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
    assert plane["layout"]["xaxis"]["title"]["text"] == f"z{str(first + 1).translate(subscript)}"
    assert plane["layout"]["yaxis"]["title"]["text"] == f"z{str(second + 1).translate(subscript)}"
    marker = next(trace for trace in plane["data"] if trace.get("name") == "μ")
    np.testing.assert_allclose([marker["x"][0], marker["y"][0]], mu[[first, second]], atol=1e-5)
    assert any(f"the plane shows dims {first + 1} and {second + 1}" in c.value for c in app.caption)

    # Both KL lists say whose KL they are: this digit's, and the average that orders the traversal rows
    shown = dict(re.findall(r"dim (\d+): (-?\d+\.\d+)", per_digit))
    np.testing.assert_allclose([float(shown[str(d + 1)]) for d in range(len(kl))], kl, atol=0.006)
    assert any(
        re.match(r"Rows \(KL averaged over the first [\d,]+ test digits, nats\): dim", c.value)
        for c in app.caption
    )


def test_latent_bars_have_one_tick_per_dimension_at_its_number(app):
    import json

    app.switch_page(PAGE).run()
    select_model(app, "tinyconv")  # 3 latent dimensions: plotly put ticks at 0.5, 1.5, 2.5 on a numeric axis
    for key in ("how_mu", "how_logvar", "how_eps_bars"):
        spec = json.loads(next(c.proto.spec for c in app.get("plotly_chart") if c.proto.id.endswith(key)))
        axis = spec["layout"]["xaxis"]
        assert axis["type"] == "category" and axis["tickvals"] == axis["ticktext"] == ["1", "2", "3"]
        assert spec["data"][0]["x"] == ["1", "2", "3"]
