"""App tests (streamlit AppTest) for the Overview and Latent map pages, and the map's click handler.

AppTest cannot run the latent plane component, so a click is fed the way the page itself stores one
(a MapClick under `latent_click:<model key>` in session state); the component's click values and
the bytes it is sent are tested on their own here (tests/browser/test_latent_plane.py drives the
real thing). Models: whatever the sidebar offers, in its order; no model names are assumed.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from explorer.state.registry import load_pretrained_models
from explorer.state.selection import MapClick
from explorer.ui.latent_plane import (
    click_value,
    mlp_decoder_layers,
    model_payload,
    pack_payload,
    payload_id,
    posterior_ellipse,
)
from explorer.ui.resources import LatentCodes
from vae_core import LatentProjection, ModelConfig, build_model, decode
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
    assert len(entries) >= 2, "pretrained/ ships five models: there should be one to switch to"
    at = run_app()
    keys = list(entries)
    at.sidebar.selectbox(key="model_picker").select(keys[1]).run()
    assert not at.exception
    assert_card_shows(at, entries[keys[1]])
    assert at.session_state["selected_model"] == keys[1]
    at.sidebar.selectbox(key="model_picker").select(keys[0]).run()
    assert_card_shows(at, entries[keys[0]])


def test_the_chosen_model_survives_a_page_switch(entries):
    assert len(entries) >= 2, "pretrained/ ships five models"
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


def plane_elements(node) -> list:
    """The latent plane component's view (AppTest shows a v2 component as an unknown element)."""
    return [e for e in node.get("bidi_component") if str(e.key or "").startswith("latent_plane:")]


def decoded_panel(at) -> tuple[list[str], str]:
    """Image captions and markdown of the map's right-hand column (the one without the chart)."""
    columns = list(at.columns)
    beside_chart = [i + 1 for i, column in enumerate(columns[:-1]) if plane_elements(column)]
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
    # the component has no AppTest element of its own; it is there as an unknown element, keyed
    assert len(plane_elements(at)) == 1
    assert not at.get("plotly_chart"), "the invisible-grid plotly map is gone"


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
    assert len(entries) >= 2, "pretrained/ ships five models"
    at = open_latent_map()
    keys = list(entries)
    at.session_state[f"latent_click:{keys[0]}"] = MapClick(0.25, 0.25)
    at.run()
    at.sidebar.selectbox(key="model_picker").select(keys[1]).run()
    assert not at.exception
    assert [i.value for i in at.info] == ["Click anywhere on the map."]
    at.sidebar.selectbox(key="model_picker").select(keys[0]).run()
    assert "**Point** (0.250, 0.250)" in decoded_panel(at)[1]


# --- the click values and the payload ----------------------------------------------------------


def test_click_values_are_points_or_digit_indices():
    assert click_value({"x": 0.25, "y": -1}) == (0.25, -1.0, None)
    assert click_value({"digit": 7}) == (0.0, 0.0, 7)
    for bad in (None, "x", {}, {"x": 1}, {"x": "1", "y": 2}, {"x": float("nan"), "y": 0},
                {"digit": -1}, {"digit": True}, {"digit": "3"}, {"x": True, "y": 0}):  # fmt: skip
        assert click_value(bad) is None, bad


def unpack(blob: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """An independent reader of the VLP1 format (plane.js's parseBlob, in numpy)."""
    import json
    import struct

    assert blob[:4] == b"VLP1"
    (length,) = struct.unpack("<I", blob[4:8])
    header = json.loads(blob[8 : 8 + length])
    body = 8 + length + (-(8 + length) % 8)
    dtypes = {"f4": np.float32, "i1": np.int8, "u1": np.uint8}
    arrays = {}
    for name, spec in header["arrays"].items():
        dtype = np.dtype(dtypes[spec["dtype"]])
        start = body + spec["offset"]
        assert start % 8 == 0, "typed arrays need aligned offsets"
        count = int(np.prod(spec["shape"]))
        arrays[name] = np.frombuffer(blob, dtype, count, start).reshape(spec["shape"])
    return header, arrays


def test_a_payload_round_trips_and_its_id_follows_its_content():
    arrays = {"a": np.arange(5, dtype=np.float32), "b": np.array([1, -2, 3], dtype=np.int8)}
    blob = pack_payload("model", {"n": 1}, arrays)
    header, read = unpack(blob)
    assert header["id"] == payload_id(blob) and header["meta"] == {"n": 1}
    for name in arrays:
        np.testing.assert_array_equal(read[name], arrays[name])
    assert payload_id(pack_payload("model", {"n": 1}, arrays)) == payload_id(blob)  # stable
    changed = {**arrays, "a": arrays["a"] + 1}
    assert payload_id(pack_payload("model", {"n": 1}, changed)) != payload_id(blob)


def test_the_model_payload_holds_the_decoder_and_the_plane_map(entries):
    entry = next(e for e in entries.values() if e.config.conditional) if any(
        e.config.conditional for e in entries.values()) else next(iter(entries.values()))  # fmt: skip
    generator = torch.Generator().manual_seed(1)
    mu = torch.randn(50, entry.config.latent_dim, generator=generator)
    projection = LatentProjection.fit(mu)
    codes = LatentCodes(mu, mu.abs(), projection.to_plane(mu), torch.arange(50) % 10, projection)
    header, arrays = unpack(model_payload(entry, codes))
    meta = header["meta"]
    assert meta["decodable"] and meta["count"] == 50 and meta["latent_dim"] == entry.config.latent_dim
    np.testing.assert_array_equal(arrays["points"], codes.plane.numpy())
    np.testing.assert_array_equal(arrays["labels"], (torch.arange(50) % 10).numpy())
    # decode a few plane points with numpy from the payload alone: equal to vae_core.decode
    plane = torch.randn(20, 2, generator=generator)
    z = arrays["mean"] + plane.numpy()[:, : meta["plane_dims"]] @ arrays["components"]
    h = z
    if meta["conditional"]:
        h = np.concatenate([z, np.eye(10, dtype=np.float32)[np.arange(20) % 10]], axis=1)
    for i in range(meta["layers"]):
        h = h @ arrays[f"W{i}"].T + arrays[f"b{i}"]
        if i < meta["layers"] - 1:
            h = np.maximum(h, 0)  # the pretrained models use ReLU
    labels = torch.arange(20) % 10 if entry.config.conditional else None
    expected = decode(entry.model, projection.from_plane(plane), labels).numpy()
    np.testing.assert_allclose(1 / (1 + np.exp(-h)), expected, atol=1e-5)


def test_a_conv_decoder_is_not_sent_to_the_browser():
    model = build_model(ModelConfig(kind="conv", latent_dim=2, hidden=(64,), image_size=14))
    assert mlp_decoder_layers(model) is None
    assert mlp_decoder_layers(build_model(ModelConfig(kind="mlp", latent_dim=2, hidden=(16,)))) is not None


def test_the_posterior_ellipse_is_the_projected_gaussians_2_sigma_contour():
    # 2-D: axis-aligned, radii 2σ
    identity = LatentProjection.fit(torch.zeros(3, 2))
    cx, cy, rx, ry, angle = posterior_ellipse(torch.tensor([1.0, -2.0]), torch.tensor([0.3, 0.1]), identity)
    assert (cx, cy) == (1.0, -2.0)
    assert {round(rx, 6), round(ry, 6)} == {0.6, 0.2}
    # PCA: the ellipse's points satisfy the projected covariance's 2σ equation
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(200, 5, generator=generator) * torch.tensor([3.0, 2.0, 1.0, 0.5, 0.2])
    projection = LatentProjection.fit(latents)
    sigma = torch.tensor([0.5, 0.2, 0.9, 0.1, 0.3])
    cx, cy, rx, ry, angle = posterior_ellipse(latents[0], sigma, projection)
    a = projection.components.double()
    cov = (a * sigma.double() ** 2) @ a.T
    t = np.linspace(0, 2 * np.pi, 13)
    local = np.stack([rx * np.cos(t), ry * np.sin(t)])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    offsets = (rotation @ local).T  # (13, 2)
    mahalanobis = np.einsum("ni,ij,nj->n", offsets, np.linalg.inv(cov.numpy()), offsets)
    np.testing.assert_allclose(mahalanobis, 4.0, rtol=1e-6)
    np.testing.assert_allclose([cx, cy], projection.to_plane(latents[:1])[0].numpy(), atol=1e-6)


def test_dragged_path_values_are_checked():
    from explorer.ui.latent_plane import path_value

    good = {"start": [0.0, 1.0], "end": [2, -1.5], "walk": 3}
    assert path_value(good, latent_dim=2, steps=10) == ([0.0, 1.0], [2.0, -1.5], 3)
    for bad in (None, {**good, "walk": 10}, {**good, "walk": -1}, {**good, "walk": True},
                {**good, "start": [0.0]}, {**good, "end": [1.0, float("inf")]}, {**good, "end": "1,2"}):  # fmt: skip
        assert path_value(bad, latent_dim=2, steps=10) is None, bad


def test_a_live_runs_points_payload_carries_no_decoder():
    from explorer.ui.latent_plane import payload_meta, points_payload

    plane = np.array([[0.5, -1.0], [2.0, 3.0]], dtype=np.float16)
    blob = points_payload(plane, np.array([3, 7]), ("PC1", "PC2"))
    header, arrays = unpack(blob)
    assert payload_meta(blob)["decodable"] is False and header["meta"]["layers"] == 0
    np.testing.assert_array_equal(arrays["points"], plane.astype(np.float32))
    assert arrays["labels"].tolist() == [3, 7] and header["meta"]["axis_labels"] == ["PC1", "PC2"]


def test_interpolate_uses_ends_dragged_on_the_plane(entries):
    at = run_app()
    at.switch_page("explorer/pages/interpolate.py").run()
    assert not at.exception, [e.value for e in at.exception]
    key = at.session_state["selected_model"]
    entry = entries[key]
    shown = [re.match(r"#(\d+) \(a", c) for c in image_captions(at)]
    start, end = (int(m[1]) for m in shown if m)  # the From and To digits' captions
    dragged = [[0.25] * entry.config.latent_dim, [-0.5] * entry.config.latent_dim]
    at.session_state[f"interp_ends:{key}:{start}:{end}"] = dragged  # what the drag callback stores
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(b.label == "Put the ends back on the digits" for b in at.button)
    assert [e for e in at.get("bidi_component") if str(e.key).startswith("interp_plane:")]


def test_the_app_finds_every_shipped_checkpoint():
    """The registry's folder is the repository's pretrained/: a wrong path left the app with no model
    (and the tests that pick a second model had nothing to pick)."""
    from explorer.state.registry import PRETRAINED_DIR

    shipped = sorted(
        p.stem for p in (Path(__file__).resolve().parents[1] / "pretrained").glob("*.safetensors")
    )
    assert len(shipped) >= 5 and PRETRAINED_DIR.resolve() == (
        Path(__file__).resolve().parents[1] / "pretrained"
    )
    assert sorted(entry.name for entry in load_pretrained_models().values()) == shipped
