"""Share links and picture downloads, in the app (AppTest) and in explorer.figures.pictures.

A page opened with query parameters (as from a shared link) must show that model, digit or point;
changing the view must rewrite the URL; bad values warn and fall back. Download buttons must carry
pictures that decode with PIL, sized and animated as the page says. AppTest keeps downloads in a
media store it discards after each run, so a spy on that store keeps the bytes for the test.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
import torch
from markdown_messages import shown
from PIL import Image

from explorer.figures.pictures import PATH_GIF_STEPS, digit_frames, path_gif, there_and_back
from explorer.state.registry import ModelEntry, load_pretrained_models
from vae_core import Checkpoint, ModelConfig, build_model, decode, encode, interpolate, sample_prior
from vae_core.images import tile_images

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TIMEOUT_S = 180
CELL = 28 + 1  # tile_images: one grey pixel of padding between and around the tiles
SCALE = 4  # digit_grid_png's and path_gif's default enlargement


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("VAE_OFFLINE", "1")


@pytest.fixture(scope="module")
def pretrained() -> dict[str, ModelEntry]:
    found = load_pretrained_models()
    if not found:
        pytest.fail("no readable checkpoint in pretrained/ (or $VAE_PRETRAINED_DIR)")
    return found


def first_model(entries, latent_dim: int | None = None, conditional: bool = False) -> ModelEntry:
    for entry in entries.values():
        if entry.config.conditional == conditional and latent_dim in (None, entry.config.latent_dim):
            return entry
    pytest.fail(f"pretrained/ ships no model with latent_dim={latent_dim}, conditional={conditional}")


@pytest.fixture
def media(monkeypatch) -> dict[str, object]:
    """file id -> what the app handed AppTest's media manager for a download button: the bytes, or the
    callable of a deferred download (the pages encode files only when a button is clicked)."""
    from streamlit.runtime.media_file_manager import MediaFileManager
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    stored = {}
    load_and_get_id, add_deferred = MemoryMediaFileStorage.load_and_get_id, MediaFileManager.add_deferred

    def recording_load(self, path_or_data, mimetype, kind, filename=None):
        file_id = load_and_get_id(self, path_or_data, mimetype, kind, filename)
        stored[file_id] = (path_or_data, mimetype, filename)
        return file_id

    def recording_deferred(self, callable_, mimetype, coordinates, file_name=None, **kwargs):
        file_id = add_deferred(self, callable_, mimetype, coordinates, file_name=file_name, **kwargs)
        stored[file_id] = (callable_, mimetype, file_name)
        return file_id

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", recording_load)
    monkeypatch.setattr(MediaFileManager, "add_deferred", recording_deferred)
    return stored


def downloaded(at, media, key: str) -> tuple[Image.Image, str, str]:
    """The picture a download button delivers (a deferred one's callable is run, as a click does),
    its mimetype and file name."""
    proto = at.download_button(key=key).proto
    file_id = proto.deferred_file_id or Path(proto.url).stem
    data, mimetype, filename = media[file_id]
    if callable(data):
        data = data()
    assert isinstance(data, bytes)
    return Image.open(io.BytesIO(data)), mimetype, filename


def open_link(page: str, params: dict[str, str], session_models: dict | None = None):
    """A new session opening /page?params, as a browser following a shared link does."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    if session_models:
        at.session_state["user_models"] = dict(session_models)
    at.switch_page(f"explorer/pages/{page}.py")
    at.query_params = dict(params)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def warnings(at) -> list[str]:
    """The link warnings as the visitor reads them (each checked to quote the visitor's text only in
    code spans, where no link can form)."""
    prefix = "Ignored from the link: "  # other warnings (e.g. an unreliable estimate) are the page's own
    return [
        shown(w.value.removeprefix(prefix).removesuffix("."))
        for w in at.warning
        if w.value.startswith(prefix)
    ]


def share_box(at) -> str:
    (link,) = [c.value for c in at.code if "?model=" in c.value]
    return link


def link_params(link: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}


def captions(at) -> list[str]:
    """Pictures' captions, then the page's own (the interpolation strip's caption is one of those)."""
    return [caption for image in at.image for caption in image.captions] + [c.value for c in at.caption]


# --- Latent map ----------------------------------------------------------------------------------


def test_a_latent_map_link_decodes_its_point_with_its_model(pretrained):
    entry = first_model(pretrained, latent_dim=2)
    at = open_link("latent_map", {"model": entry.name, "z": "0.51,-1.20"})
    assert not warnings(at)
    assert at.sidebar.selectbox(key="model_picker").value == entry.key
    assert "**Point** (0.510, -1.200)" in [m.value for m in at.markdown]
    # a 2-D model decodes z itself: compare with an independent decode of the linked point
    expected = decode(entry.model, torch.tensor([[0.51, -1.2]]))[0].numpy()
    np.testing.assert_allclose(at.session_state["latent_map_last_decoded"], expected, atol=1e-6)
    # the address bar and the share box say the same (normalised) thing
    assert at.query_params == {"model": entry.name, "z": "0.51,-1.2"}
    assert share_box(at) == f"/latent_map?model={entry.name}&z=0.51,-1.2"


def test_a_latent_map_link_to_a_digit_shows_that_digit(pretrained):
    entry = first_model(pretrained)
    at = open_link("latent_map", {"model": entry.name, "digit": "7"})
    assert not warnings(at)
    assert any(re.fullmatch(r"test digit #7 \(a \d\)", c) for c in captions(at)), captions(at)
    assert at.query_params == {"model": entry.name, "digit": "7"}


def test_a_conditional_latent_map_link_sets_the_decoded_label(pretrained):
    entry = first_model(pretrained, latent_dim=2, conditional=True)
    at = open_link("latent_map", {"model": entry.name, "z": "0,0", "label": "6"})
    assert at.selectbox(key="map_condition").value == 6
    expected = decode(entry.model, torch.zeros(1, 2), torch.tensor([6]))[0].numpy()
    np.testing.assert_allclose(at.session_state["latent_map_last_decoded"], expected, atol=1e-6)
    assert at.query_params == {"model": entry.name, "z": "0,0", "label": "6"}


@pytest.mark.parametrize(
    ("params", "why", "dropped"),
    [
        ({"model": "no-such-model", "z": "0,0"}, "model=no-such-model is no model here", "model"),
        ({"z": "abc"}, "z=abc is not 2 numbers", "z"),
        ({"z": "1,2,3"}, "has 3 numbers", "z"),
        ({"z": "nan,1"}, "not finite", "z"),
        ({"z": "1e6,0"}, "outside ±50", "z"),
        ({"digit": "99999"}, "digit=99999 is out of range", "digit"),
        ({"digit": "-4"}, "not a digit index", "digit"),
        ({"label": "3"}, "is not a conditional model", "label"),
    ],
)
def test_bad_link_values_warn_and_fall_back(pretrained, params, why, dropped):
    default = next(iter(pretrained.values()))
    at = open_link("latent_map", params)
    assert len(warnings(at)) == 1 and why in warnings(at)[0], warnings(at)
    assert at.sidebar.selectbox(key="model_picker").value == default.key
    if dropped != "model":
        assert [i.value for i in at.info] == ["Click anywhere on the map."]  # no point, no digit
    # the URL no longer carries the ignored value; it names the model actually shown
    assert dropped not in at.query_params or at.query_params[dropped] == default.name
    assert at.query_params["model"] == default.name
    at.run()  # an ordinary rerun: the warning was for the link only
    assert not warnings(at)


def test_a_point_and_a_digit_together_keep_the_point(pretrained):
    entry = first_model(pretrained)
    at = open_link("latent_map", {"model": entry.name, "z": "1,1", "digit": "3"})
    assert any("digit=3" in w for w in warnings(at))
    assert "**Point** (1.000, 1.000)" in [m.value for m in at.markdown]


def test_a_new_model_or_click_rewrites_the_url(pretrained):
    assert len(pretrained) >= 2, "pretrained/ ships five models"
    from explorer.state.selection import MapClick

    first, second = list(pretrained.values())[:2]
    at = open_link("latent_map", {"model": first.name, "z": "0.5,0.5"})
    at.sidebar.selectbox(key="model_picker").select(second.key).run()
    assert at.query_params["model"] == second.name and "z" not in at.query_params  # no click on it yet
    at.session_state[f"latent_click:{second.key}"] = MapClick(-0.25, 1.5)
    at.run()
    expected = {"model": second.name, "z": "-0.25,1.5"}
    if second.config.conditional:
        expected["label"] = "0"  # the label it decodes with
    assert at.query_params == expected
    assert link_params(share_box(at)) == expected
    at.sidebar.selectbox(key="model_picker").select(first.key).run()
    assert at.query_params["z"] == "0.5,0.5"  # each model keeps its own point


def test_the_linked_model_survives_a_page_switch(pretrained):
    entry = list(pretrained.values())[-1]
    at = open_link("latent_map", {"model": entry.name})
    at.switch_page("explorer/pages/samples.py").run()
    assert at.sidebar.selectbox(key="model_picker").value == entry.key
    assert at.query_params["model"] == entry.name


def test_a_session_models_link_works_in_that_session_and_says_it_is_private():
    config = ModelConfig(latent_dim=2, hidden=(32,))
    model = build_model(config).eval().requires_grad_(False)
    mine = {"trained:mine": ModelEntry("trained:mine", Checkpoint(model, config), "trained", "mine")}
    at = open_link("samples", {"model": "trained:mine"}, session_models=mine)
    assert at.sidebar.selectbox(key="model_picker").value == "trained:mine"
    assert any("lives only in your session" in c.value for c in at.sidebar.caption)


def test_the_manifold_download_is_the_grid_as_png(pretrained, media):
    entry = first_model(pretrained)
    at = open_link("latent_map", {"model": entry.name})
    at.slider(key="manifold_n").set_value(7).run()
    picture, mimetype, filename = downloaded(at, media, "manifold_png")
    assert mimetype == "image/png" and filename == f"{entry.name}-manifold-7x7.png"
    assert picture.format == "PNG" and picture.size == ((7 * CELL + 1) * SCALE,) * 2


# --- Interpolate ---------------------------------------------------------------------------------


def test_an_interpolate_link_restores_both_ends_and_the_path(pretrained):
    entry = first_model(pretrained)
    link = {"model": entry.name, "a": "17", "b": "42", "path": "spherical", "steps": "7"}
    at = open_link("interpolate", link)
    assert not warnings(at)
    assert at.number_input(key="interp_from_index").value == 17
    assert at.number_input(key="interp_to_index").value == 42
    assert any(c.startswith("All 7 steps, spherical: from #17 (left) to #42 (right)") for c in captions(at))
    assert at.query_params == link

    at.number_input(key="interp_from_index").set_value(5).run()
    assert at.query_params["a"] == "5" and at.query_params["b"] == "42"
    assert any(c.startswith("All 7 steps, spherical: from #5 ") for c in captions(at))
    at.radio(key="interp_method").set_value("linear").run()
    assert at.query_params["path"] == "linear" and at.query_params["a"] == "5"  # the link is not re-applied
    assert link_params(share_box(at)) == at.query_params


def test_picking_a_digit_by_class_puts_its_index_in_the_url(pretrained):
    entry = first_model(pretrained)
    at = open_link("interpolate", {"model": entry.name})
    at.selectbox(key="interp_to_class").set_value(3).run()
    index = int(at.query_params["b"])
    assert any(c.startswith(f"#{index} (a 3)") for c in captions(at)), captions(at)


def test_bad_interpolate_values_warn_each_and_keep_the_defaults(pretrained):
    entry = first_model(pretrained)
    at = open_link(
        "interpolate", {"model": entry.name, "a": "x", "b": "10000000", "path": "curvy", "steps": "99"}
    )
    said = " | ".join(warnings(at))
    for why in ("a=x is not", "b=10000000 is out of", "path=curvy is not", "steps=99 is outside 3 to 25"):
        assert why in said, said
    assert any(c.startswith("All 10 steps, linear") for c in captions(at))
    assert at.query_params["path"] == "linear" and at.query_params["steps"] == "10"


def test_interpolation_downloads_are_the_strip_and_a_round_trip_gif(pretrained, media):
    entry = first_model(pretrained)
    at = open_link("interpolate", {"model": entry.name, "a": "3", "b": "2", "steps": "6"})
    strip, mimetype, _ = downloaded(at, media, "interp_strip_png")
    assert mimetype == "image/png" and strip.size == ((6 * CELL + 1) * SCALE, (CELL + 1) * SCALE)

    gif, mimetype, filename = downloaded(at, media, "interp_gif")
    assert mimetype == "image/gif" and filename.endswith(".gif")
    assert gif.format == "GIF" and gif.size == (28 * SCALE, 28 * SCALE)
    assert gif.n_frames == 2 * PATH_GIF_STEPS - 2
    frames = []
    for i in range(gif.n_frames):
        gif.seek(i)
        frames.append(np.asarray(gif.convert("L"))[::SCALE, ::SCALE])
    # there and back: frame k and frame n - k show the same decode; the ends differ
    n = gif.n_frames
    for k in range(1, n // 2):
        np.testing.assert_array_equal(frames[k], frames[n - k])
    assert np.abs(frames[0].astype(int) - frames[n // 2].astype(int)).mean() > 5
    # the first frame is the decoded start of the path, computed independently here
    from explorer.ui.resources import explore_digits

    digits = explore_digits().digits
    pair = torch.tensor([3, 2])
    mu, _ = encode(entry.model, digits.fixed_binary(index=pair))
    start = decode(entry.model, interpolate(mu[0], mu[1], PATH_GIF_STEPS, "linear")[:1])[0]
    expected = (start.clamp(0, 1).numpy().reshape(28, 28) * 255).round()
    assert np.abs(frames[0] - expected).max() <= 1


# --- Posterior and Samples -----------------------------------------------------------------------


def test_a_posterior_link_restores_the_digit_and_the_hidden_half(pretrained):
    entry = first_model(pretrained, latent_dim=2)
    at = open_link("posterior", {"model": entry.name, "digit": "3", "part": "top"})
    assert not warnings(at)
    assert "#3 (binarised)" in captions(at) and "what the model sees" in captions(at)
    assert at.radio(key="posterior_visible").value == "top"
    at.number_input(key="posterior_digit_index").set_value(11).run()
    assert at.query_params == {"model": entry.name, "digit": "11", "part": "top"}
    assert "#11 (binarised)" in captions(at)


def test_a_samples_link_restores_the_draw(pretrained, media):
    entry = first_model(pretrained, latent_dim=2)
    at = open_link("samples", {"model": entry.name, "seed": "3", "T": "0.5", "n": "16"})
    assert not warnings(at)
    assert any(c.endswith("16 samples at T = 0.50, seed 3") for c in captions(at)), captions(at)
    at.button(key="samples_reseed").click().run()
    assert at.query_params == {"model": entry.name, "seed": "4", "T": "0.5", "n": "16"}


def test_samples_downloads_are_the_grids_shown(pretrained, media):
    entry = first_model(pretrained, latent_dim=2)
    at = open_link("samples", {"model": entry.name, "seed": "5"})
    means, mimetype, filename = downloaded(at, media, "samples_means_png")
    binary, _, _ = downloaded(at, media, "samples_binary_png")
    assert mimetype == "image/png" and filename == f"{entry.name}-samples-T1.00-seed5-means.png"
    side = (6 * CELL + 1) * SCALE  # 36 samples in 6 columns
    assert means.size == binary.size == (side, side)
    # the means are the decoded prior draws of seed 5, recomputed here
    generator = torch.Generator().manual_seed(5)
    _, probs = sample_prior(entry.model, 36, 1.0, None, generator)
    expected = tile_images(probs, 28, 6)
    np.testing.assert_array_equal(np.asarray(means.convert("L"))[::SCALE, ::SCALE], expected)
    # binary draws: black or white pixels, grey only in the padding between tiles
    assert set(np.unique(np.asarray(binary.convert("L")))) <= {0, 128, 255}


# --- explorer.figures.pictures ----------------------------------------------------------------------------


def test_there_and_back_repeats_neither_end():
    frames = [np.full((2, 2), i, np.uint8) for i in range(4)]
    assert [int(f[0, 0]) for f in there_and_back(frames)] == [0, 1, 2, 3, 2, 1]
    assert [int(f[0, 0]) for f in there_and_back(frames[:1])] == [0]


def test_a_path_gif_holds_every_decode_in_order():
    ramp = np.linspace(0, 1, 5)[:, None] * np.ones((5, 14 * 14))  # five flat frames, darker to lighter
    frames = digit_frames(ramp, 14)
    assert [int(f[0, 0]) for f in frames] == [0, 64, 128, 191, 255]
    gif = Image.open(io.BytesIO(path_gif(ramp, 14, scale=2)))
    assert gif.size == (28, 28) and gif.n_frames == 8
    levels = []
    for i in range(gif.n_frames):
        gif.seek(i)
        levels.append(int(np.asarray(gif.convert("L"))[0, 0]))
    assert levels == [0, 64, 128, 191, 255, 191, 128, 64]
    one_way = Image.open(io.BytesIO(path_gif(ramp, 14, round_trip=False)))
    assert one_way.n_frames == 5
