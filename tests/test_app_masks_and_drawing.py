"""App tests (AppTest) for the Complete page's masks, drawn digits and completion download, and for
a digit drawn on the Latent map.

AppTest cannot draw on a canvas: a test puts what the canvas component would report for some strokes
(`explorer.ui.drawing_canvas.canvas_state`) into the component's session-state slot. It cannot read an
image back either, so `show_digit` is wrapped to record the exact pixels behind every picture, and
the media manager to keep the download button's deferred encoder, which a test runs as a click does.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import explorer.ui.sidebar
import explorer.ui.widgets
from explorer.state.registry import ModelEntry
from explorer.ui.drawing_canvas import CANVAS_PX, canvas_state
from vae_core import (
    Checkpoint,
    ModelConfig,
    build_model,
    centre_square_mask,
    elbo_terms,
    encode,
    observed_mask,
    random_pixels_mask,
)
from vae_core.data import scoring_binary
from vae_core.images import mnist_style_pixels, tile_images

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGE = "explorer/pages/complete.py"
TIMEOUT_S = 180


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def small_models() -> dict[str, ModelEntry]:
    torch.manual_seed(0)
    entries = {}
    for name, conditional in (("tiny2d", False), ("tiny2dc", True)):
        config = ModelConfig(latent_dim=2, hidden=(64,), conditional=conditional)
        model = build_model(config).eval().requires_grad_(False)
        entries[f"trained:{name}"] = ModelEntry(f"trained:{name}", Checkpoint(model, config), "trained", name)
    return entries


@pytest.fixture
def shown(monkeypatch) -> dict:
    """Caption -> pixels (D,) of every digit the page's latest run showed."""
    record: dict = {}
    picker, show_digit = explorer.ui.sidebar.model_picker, explorer.ui.widgets.show_digit

    def clearing_model_picker(*args, **kwargs):
        record.clear()  # every run of the page starts with the model picker: keep only the latest run
        return picker(*args, **kwargs)

    def recording_show_digit(probs, caption, *args, **kwargs):
        record[caption] = np.asarray(probs, dtype=np.float32).reshape(-1)
        return show_digit(probs, caption, *args, **kwargs)

    monkeypatch.setattr(explorer.ui.sidebar, "model_picker", clearing_model_picker)
    monkeypatch.setattr(explorer.ui.widgets, "show_digit", recording_show_digit)
    return record


@pytest.fixture
def downloads(monkeypatch) -> dict:
    """File id -> the encoder a download button runs when clicked (pages defer encoding to the click)."""
    from streamlit.runtime.media_file_manager import MediaFileManager

    encoders: dict = {}
    add_deferred = MediaFileManager.add_deferred

    def recording_deferred(self, encode_file, *args, **kwargs):
        file_id = add_deferred(self, encode_file, *args, **kwargs)
        encoders[file_id] = encode_file
        return file_id

    monkeypatch.setattr(MediaFileManager, "add_deferred", recording_deferred)
    return encoders


def open_page(monkeypatch, small_models, page: str, model: str):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("VAE_OFFLINE", "1")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    at.session_state["user_models"] = dict(small_models)
    at.session_state["selected_model"] = model
    at.switch_page(page).run()
    assert not at.exception
    return at


def open_complete(monkeypatch, small_models, model: str = "trained:tiny2d"):
    at = open_page(monkeypatch, small_models, PAGE, model)
    at.slider(key="complete_steps").set_value(20)
    at.slider(key="complete_n").set_value(3).run()
    return at


def drawn_seven() -> np.ndarray:
    """Ink (CANVAS_PX, CANVAS_PX) of a 7 drawn with a brush about 24 canvas pixels wide."""
    ink = np.zeros((CANVAS_PX, CANVAS_PX), dtype=np.float32)
    ink[30:60, 60:220] = 1.0  # the bar ...
    for row in range(60, 250):  # ... and the slanted stem
        col = 220 - (row - 60) * 100 // 190
        ink[row, col - 12 : col + 12] = 1.0
    return ink


def picture(shown: dict, caption_start: str) -> np.ndarray:
    found = [pixels for caption, pixels in shown.items() if caption.startswith(caption_start)]
    assert len(found) == 1, f"one picture captioned {caption_start!r}, got captions {list(shown)}"
    return found[0]


def hidden_pixels(shown: dict) -> np.ndarray:
    """The pixels the page drew grey on its 'model sees' picture: its mask's hidden set, as (D,) bool."""
    return picture(shown, "model sees") == 0.5


def run_completion_and_check(at, shown: dict, downloads: dict, mask: torch.Tensor) -> None:
    at.button(key="complete_run").click().run()
    assert not at.exception
    metric_values = {m.label: float(m.value.split()[0]) for m in at.metric}
    assert set(metric_values) == {"ELBO of q*", "ELBO of encoder q", "Gain of q* over the encoder"}
    (result,) = at.session_state["completion_results"].values()
    seen = mask.bool()
    (truth,) = (torch.from_numpy(pixels) for caption, pixels in shown.items() if "(binarised)" in caption)
    assert torch.equal(result.completions[:, seen], truth[seen].expand(3, -1))  # visible pixels kept
    assert not torch.equal(result.completions[:, ~seen], truth[~seen].expand(3, -1))  # hidden ones filled
    # the download is the completion grid: tiles of the completions, each pixel 4x4 screen pixels
    encode_file = downloads[at.download_button(key="complete_download").proto.deferred_file_id]
    png = np.asarray(Image.open(io.BytesIO(encode_file())))
    np.testing.assert_array_equal(png[::4, ::4], tile_images(result.completions, 28, columns=3))


@pytest.mark.parametrize(
    ("kind", "settings", "expected_mask"),
    [
        ("a half", {"complete_hidden": "left"}, observed_mask("left")),
        ("centre square", {"complete_square": 10}, centre_square_mask(10)),
        (
            "random pixels",
            {"complete_fraction": 0.3, "complete_mask_seed": 5},
            random_pixels_mask(0.3, seed=5),
        ),
    ],
)
def test_each_built_in_mask_hides_its_pixels_and_completes(
    monkeypatch, small_models, shown, kind, settings, expected_mask, downloads
):
    at = open_complete(monkeypatch, small_models)
    at.radio(key="complete_mask_kind").set_value(kind).run()
    for key, value in settings.items():
        widget = next(w for w in (*at.radio, *at.slider, *at.number_input) if w.key == key)
        widget.set_value(value)
    at.run()
    assert not at.exception
    np.testing.assert_array_equal(hidden_pixels(shown), (expected_mask == 0).numpy())
    assert not at.metric and "Run completion" in at.info[0].value
    run_completion_and_check(at, shown, downloads, expected_mask)


def test_another_random_seed_hides_other_pixels_and_needs_its_own_run(monkeypatch, small_models, shown):
    at = open_complete(monkeypatch, small_models)
    at.radio(key="complete_mask_kind").set_value("random pixels").run()
    first = hidden_pixels(shown)
    at.button(key="complete_run").click().run()
    assert at.metric
    at.number_input(key="complete_mask_seed").set_value(1).run()
    assert not np.array_equal(hidden_pixels(shown), first) and hidden_pixels(shown).sum() == first.sum()
    assert not at.metric  # a result belongs to the pixels it was fitted to


def test_a_painted_region_is_hidden_and_completed(monkeypatch, small_models, shown, downloads):
    at = open_complete(monkeypatch, small_models)
    at.radio(key="complete_mask_kind").set_value("painted region").run()
    assert "Paint over the digit" in at.info[0].value and not at.metric

    coverage = np.zeros((CANVAS_PX, CANVAS_PX), dtype=np.float32)
    coverage[0:140, 140:280] = 1.0  # the top-right quarter: image rows 0..13, columns 14..27
    at.session_state["complete_paint_canvas"] = canvas_state(coverage)
    at.run()
    assert not at.exception
    expected = np.zeros((28, 28), dtype=bool)
    expected[:14, 14:] = True
    np.testing.assert_array_equal(hidden_pixels(shown), expected.reshape(-1))
    assert picture(shown, "model sees") is not None and any("196 painted pixels hidden" in c for c in shown)
    mask = torch.from_numpy((~expected).reshape(-1).astype(np.float32))
    run_completion_and_check(at, shown, downloads, mask)

    at.session_state["complete_paint_canvas"] = canvas_state(np.ones((CANVAS_PX, CANVAS_PX), np.float32))
    at.run()
    assert "leave some pixels visible" in at.warning[0].value


def test_a_drawn_digit_is_prepared_like_mnist_then_completed(monkeypatch, small_models, shown, downloads):
    at = open_complete(monkeypatch, small_models, model="trained:tiny2dc")
    at.radio(key="complete_source").set_value("your drawing").run()
    assert "Draw a digit" in at.info[0].value and not at.metric
    assert at.selectbox(key="complete_drawn_label").options  # a conditional model is told the label

    ink = drawn_seven()
    at.session_state["complete_draw_canvas"] = canvas_state(ink)
    at.selectbox(key="complete_drawn_label").set_value(7)
    at.radio(key="complete_mask_kind").set_value("centre square").run()
    assert not at.exception
    expected_digit = scoring_binary(torch.from_numpy(mnist_style_pixels(ink))).numpy()  # the one rule
    np.testing.assert_array_equal(picture(shown, "your digit"), expected_digit)
    run_completion_and_check(at, shown, downloads, centre_square_mask(14))


# The same canvas on the Latent map


def test_a_digit_drawn_on_the_latent_map_is_placed_and_scored(monkeypatch, small_models, shown):
    at = open_page(monkeypatch, small_models, "explorer/pages/latent_map.py", "trained:tiny2d")
    own_key = "own_digit:trained:tiny2d"
    at.radio(key="own_digit_source").set_value("draw it here").run()
    assert not at.exception and own_key not in at.session_state and "ELBO (nats)" not in labels(at)

    ink = drawn_seven()
    at.session_state["own_digit_canvas"] = canvas_state(ink)
    at.run()
    assert not at.exception
    expected = mnist_style_pixels(ink)
    np.testing.assert_array_equal(picture(shown, "your digit, MNIST-style 28×28"), expected)
    # placed at its encoder mean (a 2-D model's map is the latent plane itself) ...
    model = small_models["trained:tiny2d"].model
    binary = scoring_binary(torch.from_numpy(expected))[None]  # scored like a test digit
    mu, _ = encode(model, binary)
    placed = at.session_state[own_key]
    np.testing.assert_allclose(placed["plane"], mu[0].numpy(), atol=1e-5)
    # ... and scored by its ELBO, the mean of 64 one-sample draws: within 4 standard errors of the mean
    # of 2,000 independent draws
    with torch.no_grad():
        draws = torch.cat([elbo_terms(model, binary).elbo for _ in range(2000)])
    standard_error = float(draws.std()) / 64**0.5
    shown_elbo = float(next(m.value for m in at.metric if m.label == "ELBO (nats)"))
    assert shown_elbo == pytest.approx(placed["elbo"], abs=0.05)
    assert placed["elbo"] == pytest.approx(float(draws.mean()), abs=4 * standard_error)
    assert any("of test digits have a lower ELBO" in c.value for c in at.caption)

    at.session_state["own_digit_canvas"] = canvas_state(np.zeros((CANVAS_PX, CANVAS_PX), np.float32))
    at.run()  # the bin icon cleared the canvas: the star leaves the map
    assert own_key not in at.session_state and "ELBO (nats)" not in labels(at)


def labels(at) -> set[str]:
    return {m.label for m in at.metric}
