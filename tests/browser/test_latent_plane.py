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


def open_interpolation_path(page, plane_server, served):
    """Interpolate on mlp2d (digits 3 to 2, 6 steps) once the plane holds its path:
    (the model's entry, the plane's key, the path as the browser has it)."""
    _, url, _ = plane_server
    entry = next(e for e in served.values() if e.name == "mlp2d")
    open_page(page, url, "interpolate?model=mlp2d&a=3&b=2&steps=6")
    key = f"interp_plane:{entry.key}"
    page.wait_for_function(f"({PATH_JS})({key!r}) !== null")
    return entry, key, page.evaluate(PATH_JS, key)


def test_interpolate_drags_the_walk_point_and_an_end_in_the_browser(
    page, plane_server, served, console, tmp_path
):
    from vae_core import interpolate

    entry, key, path = open_interpolation_path(page, plane_server, served)
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
        """() => [...document.querySelectorAll('[data-testid="stCaptionContainer"]')]
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


# --- everyone: the keyboard, a phone, colour ------------------------------------------------------
PROBE_JS = """(key) => { const v = window.__latentPlane.views[key], last = v.lastDecoded;
  return {probe: v.probe && {...v.probe}, step: v.keyStep(), x: last && last.x, y: last && last.y,
          probs: last ? Array.from(last.probs) : null, live: v.live.textContent, readout: v.readout.textContent,
          imageName: v.big.getAttribute('aria-label'), glyphs: v.glyphs || 0, focused: v.canvas.matches(':focus'),
          sent: window.__latentPlane.sent.slice(), ppu: v.view.ppu, fitPpu: v.fit().ppu,
          pending: v.pending || null}; }"""
ALL_IN_VIEW_JS = """(key) => { const v = window.__latentPlane.views[key], box = v.plotBox();
  return v.digitsOnScreen().filter(([x, y]) => x < box.left || x > box.left + box.width
                                            || y < box.top || y > box.top + box.height).length; }"""


def js_round(value: float) -> float:
    return float(np.floor(value + 0.5))  # Math.round: halves go up


def test_the_keyboard_reaches_the_plane_and_decodes_with_the_server_stopped(
    page, plane_server, served, console
):
    from explorer.figures.plots import DIGIT_COLOURS

    process, url, _ = plane_server
    geometry = open_model(page, url, "mlp2d")
    key = geometry["key"]
    entry = next(e for e in served.values() if e.name == "mlp2d")
    projection = plane_projection(page, key)
    assert page.evaluate(ALL_IN_VIEW_JS, key) == 0, "the default view cuts points off"
    # the legend: Python's colours, a pressed state per class, and one action to show only one class
    swatches = page.locator(f"{GRAPH} .vlp-legend .vlp-swatch").evaluate_all(
        "spans => spans.map(s => getComputedStyle(s).backgroundColor)"
    )
    assert swatches == [
        f"rgb({int(c[1:3], 16)}, {int(c[3:5], 16)}, {int(c[5:7], 16)})" for c in DIGIT_COLOURS
    ]
    legend = page.locator(f"{GRAPH} .vlp-legend button")
    assert legend.evaluate_all("bs => bs.map(b => b.getAttribute('aria-pressed'))") == ["true"] * 10
    page.locator(f"{GRAPH} .vlp-only select").first.select_option("7")
    assert legend.evaluate_all("bs => bs.map(b => b.getAttribute('aria-pressed'))") == [
        str(d == 7).lower() for d in range(10)
    ]
    page.locator(f"{GRAPH} .vlp-only select").first.select_option("all")

    # Tab from the page's title reaches the plane, which shows a focus ring
    page.locator("h1").first.click()
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate(PROBE_JS, key)["focused"]:
            break
    assert page.evaluate(PROBE_JS, key)["focused"], "Tab never reached the latent plane"
    ring = page.evaluate(
        "(key) => { const s = getComputedStyle(window.__latentPlane.views[key].canvas);"
        " return [s.outlineStyle, parseFloat(s.outlineWidth)]; }",
        key,
    )
    assert ring[0] != "none" and ring[1] >= 2, ring

    frames = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda frame: frames.append(frame)))
    os.kill(process.pid, signal.SIGSTOP)
    try:
        start = page.evaluate(PROBE_JS, key)
        step = start["step"]
        for name in ("ArrowRight", "ArrowRight", "ArrowUp", "Shift+ArrowDown"):
            page.keyboard.press(name)
        moved = page.evaluate(PROBE_JS, key)
        expected = (
            (js_round(start["probe"]["x"] / step) + 2) * step,
            (js_round(start["probe"]["y"] / step) - 4) * step,
        )
        np.testing.assert_allclose([moved["x"], moved["y"]], expected, atol=1e-9)
        decoded = decode_plane_points(entry, projection, [[moved["x"], moved["y"]]], 0)[0]
        np.testing.assert_allclose(moved["probs"], decoded, atol=TOLERANCE)  # as a hover decodes
        assert "step" in moved["readout"] and "Shift" in moved["readout"]
        assert moved["live"].startswith("z = (") and "nearest digits" in moved["live"], moved["live"]
        assert "The digit the decoder draws at z = (" in moved["imageName"]

        # N: the nearest digit, its label said in words
        points = np.array(
            page.evaluate("(key) => Array.from(window.__latentPlane.views[key].model.points)", key)
        )
        labels = page.evaluate("(key) => Array.from(window.__latentPlane.views[key].model.labels)", key)
        nearest = int(np.argmin(np.hypot(*(points.reshape(-1, 2) - expected).T)))
        page.keyboard.press("n")
        jumped = page.evaluate(PROBE_JS, key)
        np.testing.assert_allclose([jumped["x"], jumped["y"]], points.reshape(-1, 2)[nearest], atol=1e-6)
        assert f"digit #{nearest} (a {labels[nearest]})" in jumped["readout"]
        assert f"digit #{nearest} (a {labels[nearest]})" in jumped["live"]

        # + zooms in around the probe, until the digits are drawn as their glyphs (a non-colour cue)
        for _ in range(15):
            page.keyboard.press("+")
            if page.evaluate(PROBE_JS, key)["glyphs"]:
                break
        zoomed = page.evaluate(PROBE_JS, key)
        assert zoomed["glyphs"] > 0 and zoomed["ppu"] > geometry["ppu"]
        assert frames == [], "moving the probe talked to the server"
        page.keyboard.press("Enter")  # chooses the digit under the probe, as a click does
        page.wait_for_function("() => window.__latentPlane.sent.length > 0")
        assert page.evaluate(PROBE_JS, key)["sent"][-1] == ["click", {"digit": nearest}]
    finally:
        os.kill(process.pid, signal.SIGCONT)
    page.wait_for_function(f"() => ({VIEW_JS})().clickedDigit === {nearest}")
    wait_for_app_idle(page)
    page.locator(f"{GRAPH} canvas.vlp-canvas").first.focus()
    page.keyboard.press("0")  # refits: every point back in view
    page.wait_for_function(
        "(key) => { const v = window.__latentPlane.views[key]; return Math.abs(v.view.ppu - v.fit().ppu) < 1e-9; }",
        arg=key,
    )
    assert page.evaluate(ALL_IN_VIEW_JS, key) == 0
    assert_no_errors(page, console)


def test_a_double_click_chooses_the_digit_and_keeps_the_zoom_fit_refits(page, plane_server, console):
    """A double-click used to refit the map after its first click had chosen: now it is a click, and
    the Fit button refits without choosing anything."""
    _, url, _ = plane_server
    geometry = open_model(page, url, "mlp2d")
    key, area = geometry["key"], geometry["area"]
    page.mouse.move(area["left"] + area["width"] / 2, area["top"] + area["height"] / 2)
    page.mouse.wheel(0, -500)
    page.wait_for_function(
        f"(key) => window.__latentPlane.views[key].view.ppu > {geometry['ppu'] * 1.5}", arg=key
    )
    zoomed = page.evaluate(PROBE_JS, key)["ppu"]
    digit = isolated_digit(map_geometry(page))
    page.mouse.dblclick(digit["sx"], digit["sy"])
    page.wait_for_function(f"() => ({VIEW_JS})().clickedDigit === {digit['index']}")
    wait_for_app_idle(page)
    state = page.evaluate(PROBE_JS, key)
    assert state["ppu"] == zoomed, "a double-click changed the zoom"
    assert state["sent"] and all(value == ["click", {"digit": digit["index"]}] for value in state["sent"])
    page.locator(f"{GRAPH} .vlp-tools button[data-act=fit]").first.click()
    page.wait_for_function(
        "(key) => { const v = window.__latentPlane.views[key]; return Math.abs(v.view.ppu - v.fit().ppu) < 1e-9; }",
        arg=key,
    )
    assert page.evaluate(PROBE_JS, key)["sent"] == state["sent"], "Fit chose something"
    assert page.evaluate(ALL_IN_VIEW_JS, key) == 0
    assert_no_errors(page, console)


def test_on_a_phone_a_tap_decodes_one_finger_scrolls_and_nothing_sticks_out(browser, plane_server, served):
    _, url, _ = plane_server
    entry = next(e for e in served.values() if e.name == "mlp2d")
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True, device_scale_factor=2
    )
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    try:
        geometry = open_model(tab, url, "mlp2d")
        key = geometry["key"]
        assert tab.evaluate("() => document.documentElement.scrollWidth") <= 390
        for part in ("canvas.vlp-canvas", ".vlp-big", ".vlp-readout", ".vlp-legend", ".vlp-help"):
            box = tab.locator(f"{GRAPH} {part}").first.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390.5, (part, box)
        assert tab.evaluate(ALL_IN_VIEW_JS, key) == 0, "the default view cuts points off"
        help_text = tab.locator(f"{GRAPH} .vlp-help").first.inner_text()
        assert "tap to decode" in help_text and not any(
            w in help_text.lower() for w in ("hover", "wheel", "double-click")
        )

        tab.locator(f"{GRAPH} canvas.vlp-canvas").first.scroll_into_view_if_needed()
        cdp = context.new_cdp_session(tab)

        def touch(kind: str, *points) -> None:
            cdp.send(
                "Input.dispatchTouchEvent",
                {"type": kind, "touchPoints": [{"x": x, "y": y} for x, y in points]},
            )

        # a tap on a digit: chosen, and the preview shows that digit's decode at once
        digit = isolated_digit(map_geometry(tab))
        touch("touchStart", (digit["sx"], digit["sy"]))
        touch("touchEnd")
        tab.wait_for_function("() => window.__latentPlane.sent.length > 0")
        state = tab.evaluate(PROBE_JS, key)
        assert state["sent"][-1] == ["click", {"digit": digit["index"]}]
        np.testing.assert_allclose([state["x"], state["y"]], [digit["x"], digit["y"]], atol=1e-6)
        projection = plane_projection(tab, key)
        decoded = decode_plane_points(entry, projection, [[digit["x"], digit["y"]]], 0)[0]
        np.testing.assert_allclose(state["probs"], decoded, atol=TOLERANCE)
        tab.wait_for_function(f"() => ({VIEW_JS})().clickedDigit === {digit['index']}")
        wait_for_app_idle(tab)

        scrolled = (
            "() => window.scrollY + [...document.querySelectorAll('*')].reduce((s, e) => s + e.scrollTop, 0)"
        )
        before, view_before = (
            tab.evaluate(scrolled),
            tab.evaluate("(k) => ({...window.__latentPlane.views[k].view})", key),
        )
        box = tab.locator(f"{GRAPH} canvas.vlp-canvas").first.bounding_box()

        # a finger held still, then dragged, probes: the point under it is decoded, the page stays put
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        touch("touchStart", (x, y))
        tab.wait_for_timeout(700)  # the gesture itself: a hold longer than LONG_PRESS_MS (350 ms)
        for dy in range(10, 70, 10):
            touch("touchMove", (x, y - dy))
        tab.wait_for_function(
            """([key, sx, sy]) => { const v = window.__latentPlane.views[key], last = v.lastDecoded;
                 if (!last) return false; const [px, py] = v.planeOf(sx, sy), near = 1 / v.view.ppu;
                 return Math.abs(last.x - px) <= near && Math.abs(last.y - py) <= near; }""",
            arg=[key, round(x), round(y - 60)],
        )
        touch("touchEnd")
        assert tab.evaluate(scrolled) == before, "a hold-and-drag scrolled the page"
        assert tab.evaluate("(k) => ({...window.__latentPlane.views[k].view})", key) == view_before

        # one finger swiping up on the plane scrolls the page and leaves the map where it was
        x, y = box["x"] + box["width"] / 2, min(box["y"] + box["height"] * 0.8, 800)
        touch("touchStart", (x, y))
        for dy in np.linspace(0, 300, 11)[1:]:
            touch("touchMove", (x, y - dy))
        touch("touchEnd")
        tab.wait_for_function(f"() => ({scrolled})() > {before + 100}")
        assert tab.evaluate("(k) => ({...window.__latentPlane.views[k].view})", key) == view_before
        assert tab.evaluate("() => window.__latentPlane.errors") == []
    finally:
        context.close()


def test_the_keyboard_walks_and_moves_the_interpolation_path(page, plane_server, served, console):
    entry, key, path = open_interpolation_path(page, plane_server, served)
    page.locator(f"{GRAPH} canvas.vlp-canvas").first.focus()
    page.keyboard.press("w")  # the arrows now walk the path
    for _ in range(2):
        page.keyboard.press("ArrowRight")
    walked = page.evaluate(PATH_JS, key)
    assert walked["walk"] == min(path["walk"] + 2, 5)
    np.testing.assert_allclose(
        np.array(walked["big"]) / 255, walked["images"][walked["walk"]], atol=0.5 / 255 + TOLERANCE
    )
    page.keyboard.press("a")  # now end A
    page.keyboard.press("Shift+ArrowUp")
    step = page.evaluate("(key) => window.__latentPlane.views[key].keyStep()", key)
    moved = page.evaluate(PATH_JS, key)
    np.testing.assert_allclose(
        moved["start"], np.array(path["start"]) + [0, 5 * step], atol=1e-6
    )  # 2-D: z = plane
    assert "End A at z = (" in page.evaluate("(key) => window.__latentPlane.views[key].live.textContent", key)
    page.keyboard.press("Enter")  # keeps the path: Python hears it as it hears a drag's end
    page.get_by_role("button", name="Put the ends back on the digits").wait_for()
    assert page.evaluate("() => window.__latentPlane.sent")[-1][0] == "path"
    wait_for_app_idle(page)
    assert_no_errors(page, console)
