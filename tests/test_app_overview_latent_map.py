"""App tests (streamlit AppTest) for the Overview and Latent map pages, and the map's click handler.

AppTest cannot click a chart, so a click is fed the way the page itself stores one (a MapClick
under `latent_click:<model key>` in session state), and the plotly-selection -> MapClick handler is
tested on its own with selections shaped like the ones the browser sends (tests/browser clicks for
real). Models: whatever the sidebar offers, in its order; no model names are assumed.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from explorer.figures import CLICK_GRID_CURVE, latent_map_figure, plane_bounds
from explorer.registry import load_pretrained_models
from explorer.selection import MapClick, click_from_selection
from vae_core import decode
from vae_core.models import count_parameters

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TIMEOUT_S = 120  # first run loads MNIST and every checkpoint on a busy 2-core box
LATENT_MAP = "explorer/pages/latent_map.py"
OVERVIEW = "explorer/pages/overview.py"


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("VAE_OFFLINE", "1")  # no download attempts: VAE_DATA_DIR or the bundled sample


@pytest.fixture(scope="module")
def entries():
    """The pretrained models as the app lists them (same loader, same order), for expected values."""
    found = load_pretrained_models()
    if not found:
        pytest.fail("no readable checkpoint in pretrained/ (or $VAE_PRETRAINED_DIR)")
    return found


def run_app():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def image_captions(at) -> list[str]:
    return [caption for image in at.image for caption in image.captions]


def assert_card_shows(at, entry) -> None:
    assert [h.value for h in at.header] == [f"Model card · {entry.name}"]
    shown = metrics(at)
    assert shown["Latent size"] == str(entry.config.latent_dim)
    assert shown["Parameters"] == f"{count_parameters(entry.model):,}"
    assert "Test ELBO" in shown
    assert any(label.startswith("Test NLL") for label in shown)
    card = "\n".join(m.value for m in at.markdown)
    assert f"**Architecture:** {entry.config.describe()}" in card


# --- Overview ----------------------------------------------------------------------------------


def test_overview_shows_the_first_models_card(entries):
    at = run_app()
    assert [t.value for t in at.title] == ["VAE Explorer"]
    picker = at.sidebar.selectbox(key="model_picker")
    assert picker.options == [entry.label for entry in entries.values()]
    first = next(iter(entries.values()))
    assert picker.value == first.key
    assert_card_shows(at, first)
    assert "Prior samples" in image_captions(at)


def test_overview_card_follows_the_sidebar_model(entries):
    if len(entries) < 2:
        pytest.skip("only one pretrained model: nothing to switch to")
    at = run_app()
    keys = list(entries)
    at.sidebar.selectbox(key="model_picker").select(keys[1]).run()
    assert not at.exception
    assert_card_shows(at, entries[keys[1]])
    assert at.session_state["selected_model"] == keys[1]
    at.sidebar.selectbox(key="model_picker").select(keys[0]).run()
    assert_card_shows(at, entries[keys[0]])


def test_the_chosen_model_survives_a_page_switch(entries):
    if len(entries) < 2:
        pytest.skip("only one pretrained model")
    at = run_app()
    keys = list(entries)
    at.sidebar.selectbox(key="model_picker").select(keys[1]).run()
    at.switch_page(LATENT_MAP).run()
    assert at.sidebar.selectbox(key="model_picker").value == keys[1]
    at.switch_page(OVERVIEW).run()
    assert_card_shows(at, entries[keys[1]])


# --- Latent map ----------------------------------------------------------------------------------


def open_latent_map():
    at = run_app()
    at.switch_page(LATENT_MAP).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def decoded_panel(at) -> tuple[list[str], str]:
    """Image captions and markdown of the map's right-hand column (the one without the chart)."""
    columns = list(at.columns)
    beside_chart = [i + 1 for i, column in enumerate(columns[:-1]) if column.get("plotly_chart")]
    assert beside_chart, "no column holds the latent map"
    right = columns[beside_chart[0]]
    captions = [caption for image in right.image for caption in image.captions]
    return captions, "\n".join(m.value for m in right.markdown)


def test_latent_map_renders_and_waits_for_a_click(entries):
    at = open_latent_map()
    assert [t.value for t in at.title] == ["Latent map"]
    assert any("test digits placed at their encoder means" in c.value for c in at.caption)
    assert [i.value for i in at.info] == ["Click anywhere on the map."]
    assert any(c.startswith("Decoded 12×12 grid") for c in image_captions(at))
    # the plotly chart has no AppTest element of its own; it is there as an unknown element
    assert len(at.get("plotly_chart")) == 1


def test_latent_map_decodes_a_clicked_point_and_shows_a_clicked_digit(entries):
    at = open_latent_map()
    key = at.session_state["selected_model"]
    entry = entries[key]
    click_key = f"latent_click:{key}"

    at.session_state[click_key] = MapClick(0.5, -0.25)
    at.run()
    assert not at.exception
    captions, text = decoded_panel(at)
    assert captions == ["decoded point"]
    assert "**Point** (0.500, -0.250)" in text
    first = np.array(at.session_state["latent_map_last_decoded"])
    assert first.shape == (entry.config.image_size**2,)
    if entry.config.latent_dim == 2:  # no PCA in between: the page decodes exactly the clicked z
        labels = torch.tensor([0]) if entry.config.conditional else None
        expected = decode(entry.model, torch.tensor([[0.5, -0.25]]), labels)[0].numpy()
        np.testing.assert_allclose(first, expected, atol=1e-6)

    at.session_state[click_key] = MapClick(-1.5, 1.75)
    at.run()
    captions, text = decoded_panel(at)
    assert "**Point** (-1.500, 1.750)" in text
    assert np.abs(np.array(at.session_state["latent_map_last_decoded"]) - first).max() > 1e-3

    at.session_state[click_key] = MapClick(0.1, 0.2, digit_index=7)
    at.run()
    assert not at.exception
    captions, text = decoded_panel(at)
    assert len(captions) == 2
    assert re.fullmatch(r"test digit #7 \(a \d\)", captions[0]), captions
    assert captions[1] == "reconstruction"
    assert "**q(z|x)** μ = (" in text and "σ = (" in text
    assert "Point" not in text


def test_manifold_slider_resizes_the_grid_and_keeps_the_click(entries):
    at = open_latent_map()
    key = at.session_state["selected_model"]
    at.session_state[f"latent_click:{key}"] = MapClick(0.0, 0.0)
    at.run()
    at.slider(key="manifold_n").set_value(7).run()
    assert not at.exception
    assert any(c.startswith("Decoded 7×7 grid") for c in image_captions(at))
    assert not any(c.startswith("Decoded 12×12 grid") for c in image_captions(at))
    captions, text = decoded_panel(at)
    assert captions == ["decoded point"] and "**Point** (0.000, 0.000)" in text


def test_each_model_keeps_its_own_click(entries):
    if len(entries) < 2:
        pytest.skip("only one pretrained model")
    at = open_latent_map()
    keys = list(entries)
    at.session_state[f"latent_click:{keys[0]}"] = MapClick(0.25, 0.25)
    at.run()
    at.sidebar.selectbox(key="model_picker").select(keys[1]).run()
    assert not at.exception
    assert [i.value for i in at.info] == ["Click anywhere on the map."]
    at.sidebar.selectbox(key="model_picker").select(keys[0]).run()
    assert "**Point** (0.250, 0.250)" in decoded_panel(at)[1]


# --- the click handler ---------------------------------------------------------------------------


def selection(*points) -> dict:
    """A plotly chart's selection state as st.plotly_chart(on_select=...) stores it."""
    return {
        "points": list(points),
        "point_indices": [p["point_index"] for p in points],
        "box": [],
        "lasso": [],
    }


@pytest.fixture(scope="module")
def small_map():
    generator = torch.Generator().manual_seed(0)
    plane = torch.randn(60, 2, generator=generator)
    labels = torch.arange(60) % 10
    return latent_map_figure(plane, labels, plane_bounds(plane), grid_size=20)


def grid_point(figure, i: int) -> dict:
    grid = figure.data[CLICK_GRID_CURVE]
    return {"curve_number": CLICK_GRID_CURVE, "point_number": i, "point_index": i,
            "x": float(grid.x[i]), "y": float(grid.y[i])}  # fmt: skip


def digit_point(figure, curve: int, i: int, wrap_customdata: bool = False) -> dict:
    trace = figure.data[curve]
    custom = int(trace.customdata[i])
    return {"curve_number": curve, "point_number": i, "point_index": i, "x": float(trace.x[i]),
            "y": float(trace.y[i]), "customdata": [custom] if wrap_customdata else custom}  # fmt: skip


def test_a_grid_click_decodes_that_point(small_map):
    point = grid_point(small_map, 123)
    click = click_from_selection(selection(point))
    assert click == MapClick(point["x"], point["y"])
    assert not click.on_digit


@pytest.mark.parametrize("wrap_customdata", [False, True])
def test_a_digit_click_names_the_digit(small_map, wrap_customdata):
    curve = 4  # the trace of digit 3 (trace 0 is the grid)
    point = digit_point(small_map, curve, 2, wrap_customdata)
    click = click_from_selection(selection(point))
    index = int(small_map.data[curve].customdata[2])
    assert click == MapClick(point["x"], point["y"], index)
    assert click.on_digit and index % 10 == 3


def test_the_last_point_of_a_multi_point_selection_wins(small_map):
    click = click_from_selection(selection(digit_point(small_map, 2, 0), grid_point(small_map, 5)))
    assert not click.on_digit
    click = click_from_selection(selection(grid_point(small_map, 5), digit_point(small_map, 2, 0)))
    assert click.on_digit


@pytest.mark.parametrize("empty", [None, {}, {"points": []}, selection()])
def test_an_empty_selection_is_no_click(empty):
    # a changed figure resets the chart's selection to empty: that must not erase the last click
    assert click_from_selection(empty) is None


def test_camel_case_keys_and_a_point_without_customdata():
    assert click_from_selection(
        {"points": [{"curveNumber": 3, "x": 1, "y": 2, "customdata": 9}]}
    ) == MapClick(1.0, 2.0, 9)
    # any other curve without customdata (say a future overlay) decodes the point like the grid
    assert click_from_selection({"points": [{"curve_number": 12, "x": 1.5, "y": -2}]}) == MapClick(1.5, -2.0)
