"""The latent plane component (explorer/ui/latent_plane) in a real browser.

Hovering decodes in the browser: the painted digit equals vae_core.decode at the exact hovered
coordinates, also while the server process is stopped (SIGSTOP). A click sends Python the clicked
point (within a screen pixel) or the index of the digit under the cursor; a conv decoder decodes on
the server. Targets come from the component's own geometry (window.__latentPlane), not hard-coded.

The helpers at the top (map_geometry, empty_spots, click_and_read, decoded_panel, ...) are shared
with the share-link and load tests.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import time

import numpy as np
import pytest
import torch
from PIL import Image

from explorer.state.registry import PRETRAINED_DIR, load_pretrained_models
from tests.harness import (
    REPO_ROOT,
    ServerError,
    base_url,
    free_loopback_port,
    start_streamlit,
    stop_streamlit,
)
from vae_core import ModelConfig, build_model, decode, save_checkpoint

from .conftest import open_page, wait_for_app_idle

pytestmark = pytest.mark.browser

# The component's host element (its canvas lives in a shadow root, which playwright's CSS pierces).
GRAPH = '[data-testid="stBidiComponentIsolated"]'
PLANE_CANVAS = "canvas.vlp-canvas"
POINT_TEXT = re.compile(r"Point \((-?\d+\.\d+), (-?\d+\.\d+)\)")
TOLERANCE = 1e-3  # browser decode vs vae_core.decode, pixel probabilities

# The first view on the page with its model loaded: plot box, digits on screen, model id.
VIEW_JS = """() => {
  const hooks = window.__latentPlane;
  const view = hooks && Object.values(hooks.views).find(v => v.model && v.view && v.root.isConnected);
  if (!view) return null;
  const digits = view.digitsOnScreen().map(([sx, sy, index]) => ({sx, sy, index,
    x: view.model.points[2 * index], y: view.model.points[2 * index + 1]}));
  return {key: view.key, model: view.model.id, area: view.plotBox(), digits, ppu: view.view.ppu,
          decodable: view.model.meta.decodable, label: view.data.label, clicked: view.data.clicked,
          clickedDigit: view.data.clicked_digit};
}"""
SCREEN_TO_DATA_JS = """([selector, sx, sy]) => {
  const view = Object.values(window.__latentPlane.views).find(v => v.model && v.root.isConnected);
  return view.planeOf(sx, sy);
}"""
# The decoded digit in the component's large panel, as painted: uint8 grey levels, row-major.
PAINTED_JS = """(key) => {
  const view = window.__latentPlane.views[key];
  const canvas = view.big, ctx = canvas.getContext('2d');
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  const grey = [];
  for (let i = 0; i < data.length; i += 4) grey.push(data[i]);
  const last = view.lastDecoded;
  return {grey, size: canvas.width, x: last && last.x, y: last && last.y, label: last && last.label,
          probs: last ? Array.from(last.probs) : null};
}"""


def wait_for_plane(page) -> dict:
    page.wait_for_function(f"({VIEW_JS})() !== null", timeout=60_000)
    return page.evaluate(VIEW_JS)


def map_geometry(page) -> dict:
    geometry = wait_for_plane(page)
    geometry["digit_xy"] = np.array([[d["sx"], d["sy"]] for d in geometry["digits"]]).reshape(-1, 2)
    return geometry


def empty_spots(
    geometry: dict, clearance_px: float = 25.0, margin_px: float = 12.0
) -> list[tuple[float, float]]:
    """Screen points inside the plot area at least `clearance_px` from every digit's dot."""
    area, digits = geometry["area"], geometry["digit_xy"]
    spots = []
    for sy in np.linspace(area["top"] + margin_px, area["top"] + area["height"] - margin_px, 15):
        for sx in np.linspace(area["left"] + margin_px, area["left"] + area["width"] - margin_px, 15):
            if not len(digits) or np.hypot(digits[:, 0] - sx, digits[:, 1] - sy).min() >= clearance_px:
                spots.append((float(sx), float(sy)))
    return spots


def isolated_digit(geometry: dict, margin_px: float = 15.0) -> dict:
    """A digit whose dot no other dot crowds (so a click cannot pick a neighbour)."""
    area, digits = geometry["area"], geometry["digit_xy"]
    best, best_gap = None, 0.0
    for i, (sx, sy) in enumerate(digits):
        inside = (
            area["left"] + margin_px < sx < area["left"] + area["width"] - margin_px
            and area["top"] + margin_px < sy < area["top"] + area["height"] - margin_px
        )
        if not inside:
            continue
        others = np.delete(digits, i, axis=0)
        gap = np.hypot(others[:, 0] - sx, others[:, 1] - sy).min()
        if gap > best_gap:
            best, best_gap = geometry["digits"][i], gap
    assert best is not None and best_gap >= 8, f"no isolated digit on the map (best gap {best_gap:.1f} px)"
    return best


PANEL_JS = """() => {
  const block = [...document.querySelectorAll('[data-testid="stHorizontalBlock"]')]
    .find(b => b.querySelector('[data-testid="stBidiComponentIsolated"]'));
  const right = block && block.querySelectorAll(':scope > [data-testid="stColumn"]')[1];
  if (!right) return null;
  return {
    srcs: [...right.querySelectorAll('img')].map(img => img.src),
    captions: [...right.querySelectorAll('[data-testid="stImageCaption"], [data-testid="stCaptionContainer"]')]
      .map(e => e.innerText),
    text: right.innerText,
    loaded: [...right.querySelectorAll('img')].every(img => img.complete && img.naturalWidth > 0),
  };
}"""


def decoded_panel(page) -> dict:
    """The right-hand column's image srcs, captions and text."""
    return page.evaluate(PANEL_JS)


def wait_for_panel_change(page, previous_text: str, must_contain: str, timeout_ms: float = 60_000) -> dict:
    """Wait until the panel shows new text holding `must_contain` and its images have loaded."""
    page.wait_for_function(
        f"""([previous, needle]) => {{
          const panel = ({PANEL_JS})();
          return Boolean(panel) && panel.text !== previous && panel.text.includes(needle) && panel.loaded
            && panel.srcs.length > 0;
        }}""",
        arg=[previous_text, must_contain],
        timeout=timeout_ms,
    )
    return decoded_panel(page)


def image_pixels(page, src: str) -> np.ndarray:
    response = page.request.get(src)
    assert response.ok, f"GET {src}: {response.status}"
    return np.asarray(Image.open(io.BytesIO(response.body())).convert("L"), dtype=np.float32)


def assert_looks_like_a_digit(pixels: np.ndarray) -> None:
    """White strokes on black: some bright pixels, mostly dark, not one flat colour."""
    assert pixels.max() > 128, "decoded image has no bright pixels"
    assert (pixels < 64).mean() > 0.4, "decoded image is not mostly dark background"
    assert pixels.std() > 20, "decoded image is flat"


def click_and_read(page, sx: float, sy: float, must_contain: str) -> dict:
    """Click the plane; the panel once it shows the click and the component has the server's answer."""
    before = decoded_panel(page)["text"]
    page.mouse.click(sx, sy)
    panel = wait_for_panel_change(page, before, must_contain)
    match = POINT_TEXT.search(panel["text"])
    if match:  # the component's overlay moved to the point the server decoded
        page.wait_for_function(
            f"""(point) => {{
              const v = ({VIEW_JS})();
              return v && v.clicked && v.clicked[0].toFixed(3) === point[0] && v.clicked[1].toFixed(3) === point[1];
            }}""",
            arg=[match[1], match[2]],
        )
    wait_for_app_idle(page)
    return decoded_panel(page)


def click_empty_spot(page) -> dict:
    """Click an empty spot of the latent map; the decoded panel once its new image has loaded."""
    spots = empty_spots(map_geometry(page))
    assert spots, "no empty space on the latent map to click"
    panel = click_and_read(page, *spots[len(spots) // 2], "Point (")
    assert "decoded point" in panel["captions"] and len(panel["srcs"]) == 1, panel
    return panel


# --- a server of our own: its process can be paused, and it serves a conv model too -------------
@pytest.fixture(scope="module")
def plane_server(tmp_path_factory):
    """(process, url) of the app serving mlp2d, cmlp2d, a PCA model and an untrained conv model."""
    models = tmp_path_factory.mktemp("models")
    for name in ("mlp2d", "cmlp2d", "mlp20"):
        if (PRETRAINED_DIR / f"{name}.safetensors").is_file():
            shutil.copy(PRETRAINED_DIR / f"{name}.safetensors", models)
    torch.manual_seed(0)
    conv = build_model(ModelConfig(kind="conv", latent_dim=2, hidden=(64,), conv_channels=(8, 16)))
    save_checkpoint(models / "conv2d.safetensors", conv)
    env = {**os.environ, "VAE_OFFLINE": "1", "VAE_PRETRAINED_DIR": str(models)}
    port = free_loopback_port()
    try:
        process = start_streamlit(port, env=env, log_path=models / "server.log", cwd=REPO_ROOT)
    except ServerError as exc:
        pytest.fail(str(exc))
    yield process, base_url(port), models
    stop_streamlit(process)


@pytest.fixture(scope="module")
def served(plane_server):
    return load_pretrained_models(plane_server[2])


@pytest.fixture
def console(page):
    """Console errors and uncaught exceptions of the page (404s of Streamlit's own assets aside)."""
    errors = []
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    yield errors


def assert_no_errors(page, console: list[str]) -> None:
    caught = page.evaluate("() => (window.__latentPlane || {errors: []}).errors")
    assert not caught, caught
    assert not [e for e in console if "Failed to load resource" not in e], console
    assert page.locator('[data-testid="stException"]').count() == 0


def decode_plane_points(entry, projection, points, label) -> np.ndarray:
    latents = projection.from_plane(torch.tensor(np.asarray(points), dtype=torch.float32))
    labels = torch.full((len(latents),), label) if entry.config.conditional else None
    return decode(entry.model, latents, labels).numpy()


def plane_projection(page, key: str):
    """The model's plane -> latent map as the page sent it (mean, components)."""
    from vae_core import LatentProjection

    spec = page.evaluate(
        """(key) => { const m = window.__latentPlane.views[key].model;
           return {mean: Array.from(m.mean), components: Array.from(m.components), k: m.meta.plane_dims,
                   L: m.meta.latent_dim}; }""",
        key,
    )
    components = torch.tensor(spec["components"], dtype=torch.float32).reshape(spec["k"], spec["L"])
    return LatentProjection(
        torch.tensor(spec["mean"], dtype=torch.float32), components, (1.0,) * spec["k"], spec["k"] < spec["L"]
    )


def hover_and_read(page, key: str, sx: float, sy: float) -> dict:
    """Move the mouse to (sx, sy) (whole pixels, as events report them); the digit painted there."""
    sx, sy = round(sx), round(sy)
    page.mouse.move(sx, sy)
    page.wait_for_function(  # decoded where the pointer is: within half a screen pixel
        """([key, sx, sy]) => { const v = window.__latentPlane.views[key], last = v.lastDecoded;
             if (!last) return false; const [x, y] = v.planeOf(sx, sy), half = 0.5 / v.view.ppu;
             return Math.abs(last.x - x) <= half && Math.abs(last.y - y) <= half; }""",
        arg=[key, sx, sy],
        timeout=10_000,
    )
    return page.evaluate(PAINTED_JS, key)


def open_model(page, url: str, name: str, extra: str = "") -> dict:
    open_page(page, url, f"latent_map?model={name}{extra}")
    return wait_for_plane(page)


# --- the tests -----------------------------------------------------------------------------------
def test_hovering_paints_vae_core_decode_at_the_exact_point(page, plane_server, served, console, tmp_path):
    _, url, _ = plane_server
    geometry = open_model(page, url, "mlp2d")
    entry = next(e for e in served.values() if e.name == "mlp2d")
    assert geometry["decodable"] and len(geometry["digits"]) >= 5000  # every explored digit is drawn
    projection = plane_projection(page, geometry["key"])
    spots = empty_spots(map_geometry(page), clearance_px=12)
    assert len(spots) >= 5
    chosen = [spots[i] for i in np.linspace(0, len(spots) - 1, 6).astype(int)]
    shown = []
    for sx, sy in chosen:
        painted = hover_and_read(page, geometry["key"], sx, sy)
        expected = decode_plane_points(entry, projection, [[painted["x"], painted["y"]]], 0)[0]
        # the browser decoded exactly the hovered point, within 1e-3 of vae_core.decode ...
        np.testing.assert_allclose(painted["probs"], expected, atol=TOLERANCE)
        # ... and painted it: 8-bit grey levels of those probabilities
        grey = np.array(painted["grey"], dtype=np.float64) / 255
        assert painted["size"] == entry.config.image_size
        np.testing.assert_allclose(grey, expected, atol=0.5 / 255 + TOLERANCE)
        shown.append(grey)
    page.screenshot(path=str(tmp_path / "hover.png"))
    assert min(np.abs(a - b).mean() for a, b in zip(shown, shown[1:], strict=False)) > 1e-3
    assert_no_errors(page, console)


@pytest.mark.parametrize("name", ["mlp2d", "cmlp2d", "mlp20"])
def test_browser_decoding_matches_vae_core_across_the_plane(page, plane_server, served, name):
    _, url, _ = plane_server
    entry = next((e for e in served.values() if e.name == name), None)
    if entry is None:
        pytest.fail(f"{name} is not among the pretrained models")
    label = 7 if entry.config.conditional else 0
    geometry = open_model(page, url, name, f"&label={label}" if entry.config.conditional else "")
    assert geometry["label"] == label
    projection = plane_projection(page, geometry["key"])
    x0, x1 = -4.0, 4.0
    points = [[x, y] for x in np.linspace(x0, x1, 15) for y in np.linspace(x0, x1, 15)]  # 225 points
    decoded = page.evaluate(
        """([id, points, label]) => points.map(([x, y]) => window.__latentPlane.decode(id, x, y, label))""",
        [geometry["model"], points, label],
    )
    expected = decode_plane_points(entry, projection, points, label)
    assert np.abs(np.array(decoded) - expected).max() <= TOLERANCE


def test_hovering_needs_no_server(page, plane_server, served, console):
    process, url, _ = plane_server
    geometry = open_model(page, url, "mlp2d")
    entry = next(e for e in served.values() if e.name == "mlp2d")
    projection = plane_projection(page, geometry["key"])
    spots = empty_spots(map_geometry(page), clearance_px=12)
    sent = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda frame: sent.append(frame)))
    page.on("request", lambda request: sent.append(request.url))
    os.kill(process.pid, signal.SIGSTOP)
    try:
        for sx, sy in spots[:: max(1, len(spots) // 8)]:
            painted = hover_and_read(page, geometry["key"], sx, sy)
            expected = decode_plane_points(entry, projection, [[painted["x"], painted["y"]]], 0)[0]
            np.testing.assert_allclose(painted["probs"], expected, atol=TOLERANCE)
    finally:
        os.kill(process.pid, signal.SIGCONT)
    assert sent == [], f"hovering sent {len(sent)} messages or requests"
    assert_no_errors(page, console)


def test_a_click_sends_the_point_within_a_pixel(page, plane_server, console, tmp_path):
    _, url, _ = plane_server
    open_model(page, url, "mlp2d")
    assert "Click anywhere on the map" in decoded_panel(page)["text"]
    geometry = map_geometry(page)
    spots = empty_spots(geometry)
    for sx, sy in (spots[0], spots[-1]):
        clicked = np.array(page.evaluate(SCREEN_TO_DATA_JS, [GRAPH, sx, sy]))
        panel = click_and_read(page, sx, sy, "Point (")
        match = POINT_TEXT.search(panel["text"])
        shown = np.array([float(match[1]), float(match[2])])
        pixel = 1 / geometry["ppu"]  # plane units per screen pixel (equal on both axes)
        assert np.all(np.abs(shown - clicked) <= pixel), (shown, clicked, pixel)
        assert "decoded point" in panel["captions"] and len(panel["srcs"]) == 1
        assert_looks_like_a_digit(image_pixels(page, panel["srcs"][0]))
        assert wait_for_plane(page)["clicked"] == list(shown)  # the cross is drawn where Python decoded
    page.screenshot(path=str(tmp_path / "clicked.png"))
    assert_no_errors(page, console)


def test_clicking_a_digit_shows_it_with_its_2_sigma_ellipse(page, plane_server, console, tmp_path):
    _, url, _ = plane_server
    open_model(page, url, "mlp2d")
    digit = isolated_digit(map_geometry(page))
    panel = click_and_read(page, digit["sx"], digit["sy"], "q(z|x)")
    captions = " | ".join(panel["captions"])
    assert f"test digit #{digit['index']} " in captions and "reconstruction" in captions, captions
    assert len(panel["srcs"]) == 2
    for src in panel["srcs"]:
        assert_looks_like_a_digit(image_pixels(page, src))
    page.wait_for_function(f"() => ({VIEW_JS})().clickedDigit === {digit['index']}")
    assert page.evaluate("(key) => window.__latentPlane.views[key].data.ellipse", wait_for_plane(page)["key"])
    assert f"digit={digit['index']}" in page.url
    page.screenshot(path=str(tmp_path / "digit.png"))
    assert_no_errors(page, console)


def test_a_link_and_back_restore_the_clicked_point(page, plane_server, console):
    _, url, _ = plane_server
    open_model(page, url, "mlp2d", "&z=0.51,-1.2")
    assert "Point (0.510, -1.200)" in decoded_panel(page)["text"]
    assert wait_for_plane(page)["clicked"] == [0.51, -1.2]
    spots = empty_spots(map_geometry(page))
    click_and_read(page, *spots[0], "Point (")
    page.wait_for_function("() => !location.search.includes('z=0.51,-1.2')")
    before = decoded_panel(page)["text"]
    page.go_back()
    panel = wait_for_panel_change(page, before, "Point (0.510, -1.200)")
    assert "Point (0.510, -1.200)" in panel["text"]
    page.wait_for_function(f"() => JSON.stringify(({VIEW_JS})().clicked) === '[0.51,-1.2]'")
    assert_no_errors(page, console)


def test_a_conv_model_decodes_on_the_server_when_clicked(page, plane_server, console, tmp_path):
    _, url, _ = plane_server
    geometry = open_model(page, url, "conv2d")
    assert not geometry["decodable"]
    note = page.locator(f"{GRAPH} .vlp-note").first.inner_text()
    assert "convolutional" in note and "server" in note
    spots = empty_spots(map_geometry(page))
    sx, sy = spots[len(spots) // 2]
    page.mouse.move(sx, sy)
    time.sleep(0.3)
    assert page.evaluate("(key) => window.__latentPlane.views[key].lastDecoded", geometry["key"]) is None
    panel = click_and_read(page, sx, sy, "Point (")
    assert "decoded point" in panel["captions"]
    shown = page.evaluate("(key) => window.__latentPlane.views[key].readout.textContent", geometry["key"])
    assert "decoded by the server" in shown
    page.screenshot(path=str(tmp_path / "conv.png"))
    assert_no_errors(page, console)


def test_thumbnails_replace_the_dots(page, plane_server, console, tmp_path):
    _, url, _ = plane_server
    geometry = open_model(page, url, "mlp2d")
    page.get_by_text("Thumbnails").click()
    page.wait_for_function(
        "(key) => { const v = window.__latentPlane.views[key]; return v.data.thumbnails && v.model &&"
        " [...Object.keys(window.__latentPlane.payloadBytes)].some(id => id.startsWith('thumbnails-')); }",
        arg=geometry["key"],
    )
    wait_for_app_idle(page)
    page.screenshot(path=str(tmp_path / "thumbnails.png"))
    assert_no_errors(page, console)


PATH_JS = """(key) => { const hooks = window.__latentPlane, v = hooks && hooks.views[key];
  if (!v || !v.view || !v.path || !v.path.plane) return null;  // drawn once: its zoom is set
  return {walk: v.path.walk, steps: v.path.steps, screen: v.path.plane.map(([x, y]) => v.clientOf(x, y)),
          start: Array.from(v.path.start), end: Array.from(v.path.end),
          images: v.path.images.map(im => Array.from(im)),
          big: Array.from(v.big.getContext('2d').getImageData(0, 0, v.big.width, v.big.height).data)
                 .filter((_, i) => i % 4 === 0)}; }"""


def test_interpolate_drags_the_walk_point_and_an_end_in_the_browser(
    page, plane_server, served, console, tmp_path
):
    from vae_core import interpolate

    _, url, _ = plane_server
    entry = next(e for e in served.values() if e.name == "mlp2d")
    open_page(page, url, "interpolate?model=mlp2d&a=3&b=2&steps=6")
    key = f"interp_plane:{entry.key}"
    page.wait_for_function(f"({PATH_JS})({key!r}) !== null")
    path = page.evaluate(PATH_JS, key)
    assert path["steps"] == 6
    latents = interpolate(torch.tensor(path["start"]), torch.tensor(path["end"]), 6, "linear")
    expected = decode(entry.model, latents).numpy()
    assert np.abs(np.array(path["images"]) - expected).max() <= TOLERANCE  # the strip, decoded in JS

    # drag the walk point to the last step: the big image follows in the browser, Python's slider after
    walk = path["walk"]
    page.mouse.move(*path["screen"][walk])
    page.mouse.down()
    sent = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda frame: sent.append(frame)))
    for fraction in np.linspace(0, 1, 8)[1:]:
        target = np.array(path["screen"][walk]) + fraction * (
            np.array(path["screen"][-1]) - path["screen"][walk]
        )
        page.mouse.move(*target)
    page.wait_for_function(f"({PATH_JS})({key!r}).walk === 5")
    moved = page.evaluate(PATH_JS, key)
    np.testing.assert_allclose(np.array(moved["big"]) / 255, expected[5], atol=0.5 / 255 + TOLERANCE)
    assert sent == [], "dragging talked to the server before the release"
    page.mouse.up()
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid="stImageCaption"]')]
                 .some(e => e.innerText.startsWith('Step 6 of 6'))"""
    )
    wait_for_app_idle(page)

    # drag end A somewhere else: the path's first image changes, and Python offers to put it back
    path = page.evaluate(PATH_JS, key)
    page.mouse.move(*path["screen"][0])
    page.mouse.down()
    page.mouse.move(path["screen"][0][0] + 40, path["screen"][0][1] - 30, steps=5)
    dragged = page.evaluate(PATH_JS, key)
    assert np.abs(np.array(dragged["images"][0]) - np.array(path["images"][0])).max() > 1e-2
    page.mouse.up()
    page.get_by_role("button", name="Put the ends back on the digits").wait_for()
    wait_for_app_idle(page)
    page.screenshot(path=str(tmp_path / "interpolate.png"))
    assert_no_errors(page, console)
