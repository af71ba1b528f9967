"""Diagnostics in the app: active latent units and bound curve on the card, average gaps on Posterior."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from explorer.state.registry import ModelEntry
from vae_core import Checkpoint, ModelConfig, build_model, load_sample_digits
from vae_core.diagnostics import latent_activity

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def _app_with(entry: ModelEntry, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("VAE_OFFLINE", "1")
    at = AppTest.from_file(APP, default_timeout=300)
    at.session_state["user_models"] = {entry.key: entry}
    at.session_state["selected_model"] = entry.key
    return at


def _collapsed_model() -> ModelEntry:
    """An 6-D model whose encoder ignores the image in dimensions 0-2 (their q is the prior)."""
    torch.manual_seed(0)
    config = ModelConfig(latent_dim=6, hidden=(32,))
    model = build_model(config).eval().requires_grad_(False)
    head = model.encoder.net[-1]
    for dim in (0, 1, 2):
        head.weight[[dim, dim + 6]] = 0.0
        head.bias[[dim, dim + 6]] = 0.0
    head.weight[3:6] *= 20  # the others move a lot with the image
    return ModelEntry("trained:collapsed", Checkpoint(model, config), "trained", "collapsed")


def test_card_counts_active_units_as_an_independent_computation_does(monkeypatch):
    entry = _collapsed_model()
    at = _app_with(entry, monkeypatch).run()
    assert not at.exception
    caption = next(c.value for c in at.caption if "dimensions are active" in c.value)
    shown = int(re.match(r"(\d+) of 6", caption).group(1))
    x = load_sample_digits().subset(slice(0, 2000)).fixed_binary()
    expected = latent_activity(entry.model, x)
    assert shown == expected.active_count
    assert not expected.active[:3].any()  # the three ignored dimensions are the collapsed ones


def test_bound_curve_rises_from_the_elbo_when_asked_for(monkeypatch):
    at = _app_with(_collapsed_model(), monkeypatch).run()
    assert not [c for c in at.caption if "ELBO (k=1)" in c.value]  # nothing until asked: it costs seconds
    at.button(key="overview_bounds").click().run()
    caption = next(c.value for c in at.caption if "ELBO (k=1)" in c.value)
    elbo, iwae, gap = (float(v) for v in re.findall(r"-?\d+\.\d+", caption)[:3])
    assert iwae > elbo and abs((iwae - elbo) - gap) < 0.011


def test_posterior_page_averages_the_amortisation_and_approximation_gaps(monkeypatch):
    torch.manual_seed(0)
    config = ModelConfig(latent_dim=2, hidden=(32,))
    entry = ModelEntry("trained:flat2d", Checkpoint(build_model(config).eval(), config), "trained", "flat2d")
    at = _app_with(entry, monkeypatch)
    at.switch_page("explorer/pages/posterior.py").run()
    at.select_slider(key="posterior_gap_count").set_value(5).run()
    at.button(key="posterior_gap_button").click().run()
    assert not at.exception
    shown = {m.label: float(m.value.split()[0]) for m in at.metric if m.label.startswith("Mean")}
    total = shown["Mean log p(x) − ELBO(q)"]
    parts = shown["Mean amortisation gap"] + shown["Mean approximation gap"]
    assert abs(total - parts) < 0.02 and total > 0


def _digit_bounds_caption(at) -> list[float]:
    caption = next(c.value for c in at.caption if c.value.startswith("Digit #"))
    return [float(v) for v in re.findall(r"-?\d+\.\d+", caption)]


def test_posterior_page_plots_one_digits_bounds_under_its_quadrature_log_px(monkeypatch):
    from vae_core import exact_posterior_grid

    torch.manual_seed(0)
    config = ModelConfig(latent_dim=2, hidden=(32,))
    entry = ModelEntry("trained:flat2d", Checkpoint(build_model(config).eval(), config), "trained", "flat2d")
    at = _app_with(entry, monkeypatch)
    at.switch_page("explorer/pages/posterior.py").run()
    assert not [c for c in at.caption if c.value.startswith("Digit #")]  # nothing until asked
    at.button(key="digit_bounds").click().run()
    assert not at.exception
    elbo, _, best, _, exact, below = _digit_bounds_caption(at)[:6]
    from explorer.ui.resources import explore_digits

    digits = explore_digits().digits  # the pages' digits: the test set with $VAE_DATA_DIR, else the sample
    index = int(
        re.match(r"Digit #(\d+)", next(c.value for c in at.caption if c.value.startswith("Digit #")))[1]
    )
    x = digits.fixed_binary(index=index).reshape(1, -1)  # the binary image the digit is scored on
    assert abs(exact - exact_posterior_grid(entry.model, x).log_px) < 0.01
    assert elbo < best <= exact + 0.1 and abs((exact - elbo) - below) < 0.011
    assert at.get("plotly_chart")  # the curve is drawn


def test_bounds_for_one_digit_also_work_for_a_model_with_more_than_two_dimensions(monkeypatch):
    at = _app_with(_collapsed_model(), monkeypatch)
    at.switch_page("explorer/pages/posterior.py").run()
    at.button(key="digit_bounds").click().run()
    assert not at.exception
    elbo, _, best, _ = _digit_bounds_caption(at)[:4]
    assert elbo < best and "quadrature" not in next(
        c.value for c in at.caption if c.value.startswith("Digit #")
    )
