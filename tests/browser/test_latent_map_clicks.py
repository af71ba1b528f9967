"""Click the latent map in a real browser: empty space decodes that point, a marker shows its digit.

Targets are computed from the rendered plotly figure (its axes' pixel mapping and trace data), not
hard-coded, so the test holds for whichever model the sidebar offers first.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from .conftest import open_page, wait_for_app_idle

pytestmark = pytest.mark.browser

GRAPH = '[data-testid="stPlotlyChart"] .js-plotly-plot'
POINT_TEXT = re.compile(r"Point \((-?\d+\.\d+), (-?\d+\.\d+)\)")

# Screen geometry of the map, from plotly's own state: the plot area, the markers of every digit
# trace (any trace after the invisible grid with customdata) and the invisible grid's points.
MAP_GEOMETRY_JS = """(selector) => {
  const gd = document.querySelector(selector);
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  const box = gd.getBoundingClientRect();
  const toScreen = (x, y) => [box.x + xa._offset + xa.l2p(x), box.y + ya._offset + ya.l2p(y)];
  const digits = [];
  gd._fullData.forEach((trace, curve) => {
    if (curve === 0 || !trace.customdata || trace.mode !== 'markers') return;
    for (let i = 0; i < trace.x.length; i++) {
      const [sx, sy] = toScreen(trace.x[i], trace.y[i]);
      digits.push({sx, sy, x: trace.x[i], y: trace.y[i], index: Number(trace.customdata[i])});
    }
  });
  const grid = gd._fullData[0];
  const gridPx = [];
  for (let i = 0; i < grid.x.length; i++) gridPx.push(toScreen(grid.x[i], grid.y[i]));
  return {
    area: {left: box.x + xa._offset, top: box.y + ya._offset, width: xa._length, height: ya._length},
    digits, gridPx,
  };
}"""
SCREEN_TO_DATA_JS = """([selector, sx, sy]) => {
  const gd = document.querySelector(selector);
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  const box = gd.getBoundingClientRect();
  return [xa.p2l(sx - box.x - xa._offset), ya.p2l(sy - box.y - ya._offset)];
}"""


def map_geometry(page) -> dict:
    geometry = page.evaluate(MAP_GEOMETRY_JS, GRAPH)
    geometry["digit_xy"] = np.array([[d["sx"], d["sy"]] for d in geometry["digits"]])
    geometry["grid_xy"] = np.array(geometry["gridPx"])
    return geometry


def empty_spots(
    geometry: dict, clearance_px: float = 25.0, margin_px: float = 12.0
) -> list[tuple[float, float]]:
    """Screen points inside the plot area at least `clearance_px` from every digit marker."""
    area, digits = geometry["area"], geometry["digit_xy"]
    spots = []
    for sy in np.linspace(area["top"] + margin_px, area["top"] + area["height"] - margin_px, 15):
        for sx in np.linspace(area["left"] + margin_px, area["left"] + area["width"] - margin_px, 15):
            if np.hypot(digits[:, 0] - sx, digits[:, 1] - sy).min() >= clearance_px:
                spots.append((float(sx), float(sy)))
    return spots


def isolated_digit(geometry: dict, margin_px: float = 15.0) -> dict:
    """A digit marker no other marker crowds (so the click cannot land on a neighbour).

    Plotly's hover picks the nearest point of any trace, the invisible grid included, so the marker's
    centre must also sit a little off the nearest grid point.
    """
    area, digits, grid = geometry["area"], geometry["digit_xy"], geometry["grid_xy"]
    best, best_gap = None, 0.0
    for i, (sx, sy) in enumerate(digits):
        inside = (
            area["left"] + margin_px < sx < area["left"] + area["width"] - margin_px
            and area["top"] + margin_px < sy < area["top"] + area["height"] - margin_px
        )
        if not inside or np.hypot(grid[:, 0] - sx, grid[:, 1] - sy).min() < 1.5:
            continue
        others = np.delete(digits, i, axis=0)
        gap = np.hypot(others[:, 0] - sx, others[:, 1] - sy).min()
        if gap > best_gap:
            best, best_gap = geometry["digits"][i], gap
    assert best is not None and best_gap >= 8, (
        f"no isolated digit marker on the map (best gap {best_gap:.1f} px)"
    )
    return best


def decoded_panel(page) -> dict:
    """The right-hand column's image srcs, captions and markdown text."""
    return page.evaluate(
        """() => {
          const block = [...document.querySelectorAll('[data-testid="stHorizontalBlock"]')]
            .find(b => b.querySelector('[data-testid="stPlotlyChart"]'));
          const right = block.querySelectorAll(':scope > [data-testid="stColumn"]')[1];
          return {
            srcs: [...right.querySelectorAll('img')].map(img => img.src),
            captions: [...right.querySelectorAll('[data-testid="stImageCaption"], [data-testid="stCaptionContainer"]')]
              .map(e => e.innerText),
            text: right.innerText,
          };
        }"""
    )


def wait_for_panel_change(page, previous_text: str, must_contain: str, timeout_ms: float = 60_000) -> dict:
    """Wait until the panel shows new text holding `must_contain` and its images have loaded.

    Streamlit streams a rerun's elements one by one, so "changed" alone can catch a half-drawn panel.
    """
    page.wait_for_function(
        """([previous, needle]) => {
          const block = [...document.querySelectorAll('[data-testid="stHorizontalBlock"]')]
            .find(b => b.querySelector('[data-testid="stPlotlyChart"]'));
          const right = block && block.querySelectorAll(':scope > [data-testid="stColumn"]')[1];
          if (!right || right.innerText === previous || !right.innerText.includes(needle)) return false;
          const images = [...right.querySelectorAll('img')];
          return images.length > 0 && images.every(img => img.complete && img.naturalWidth > 0);
        }""",
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


# The chart is redrawn with the click marked: the cross of a decoded point at the decoded
# coordinates, or no cross for a digit. Geometry read before that redraw would be stale.
MAP_SHOWS_CLICK_JS = """([selector, point]) => {
  const gd = document.querySelector(selector);
  const cross = gd && gd._fullData && gd._fullData.find(t => t.name === 'decoded point');
  if (point === null) return Boolean(gd && gd._fullData) && !cross;
  return Boolean(cross) && cross.x[0].toFixed(3) === point[0] && cross.y[0].toFixed(3) === point[1];
}"""


def click_and_read(page, sx: float, sy: float, must_contain: str) -> dict:
    before = decoded_panel(page)["text"]
    page.mouse.click(sx, sy)
    panel = wait_for_panel_change(page, before, must_contain)
    match = POINT_TEXT.search(panel["text"])
    page.wait_for_function(MAP_SHOWS_CLICK_JS, arg=[GRAPH, [match[1], match[2]] if match else None])
    wait_for_app_idle(page)
    return decoded_panel(page)


def test_clicks_on_empty_space_and_on_a_digit(page, app_server, tmp_path):
    open_page(page, app_server, "latent_map")
    page.wait_for_selector(f"{GRAPH} .nsewdrag")
    assert "Click anywhere on the map" in decoded_panel(page)["text"]
    geometry = map_geometry(page)
    assert len(geometry["digits"]) > 100, "the map should show the encoded test digits"

    results = []
    for _ in range(2):
        # the legend gains entries after a click and squeezes the plot area: measure afresh each time
        geometry = map_geometry(page)
        spots = empty_spots(geometry)
        assert spots, "no empty space on the latent map to click"
        if results:  # the spot farthest from the first one, so the two decodings surely differ
            data = [page.evaluate(SCREEN_TO_DATA_JS, [GRAPH, sx, sy]) for sx, sy in spots]
            far = int(np.argmax([np.hypot(*(np.array(d) - results[0][0])) for d in data]))
            sx, sy = spots[far]
        else:
            sx, sy = spots[0]
        grid_step_px = max(geometry["area"]["width"], geometry["area"]["height"]) / (80 - 1)
        clicked = np.array(page.evaluate(SCREEN_TO_DATA_JS, [GRAPH, sx, sy]))
        data_per_px = np.abs(np.array(page.evaluate(SCREEN_TO_DATA_JS, [GRAPH, sx + 1, sy + 1])) - clicked)
        panel = click_and_read(page, sx, sy, "Point (")
        page.screenshot(path=str(tmp_path / f"empty_{len(results)}.png"))
        assert "decoded point" in panel["captions"], panel
        match = POINT_TEXT.search(panel["text"])
        assert match, f"no 'Point (x, y)' text in {panel['text']!r}"
        shown = np.array([float(match[1]), float(match[2])])
        # the nearest invisible grid point is decoded: within one grid step of the click
        assert np.all(np.abs(shown - clicked) <= grid_step_px * data_per_px + 1e-3), (shown, clicked)
        assert len(panel["srcs"]) == 1
        pixels = image_pixels(page, panel["srcs"][0])
        assert_looks_like_a_digit(pixels)
        results.append((shown, panel["srcs"][0], pixels))

    (point_a, src_a, pixels_a), (point_b, src_b, pixels_b) = results
    assert not np.allclose(point_a, point_b), "the second click should decode another point"
    assert src_a != src_b
    assert np.abs(pixels_a - pixels_b).mean() > 1.0, "two distant points decoded to the same image"

    # the map moved its "decoded point" cross: recompute targets from the current figure
    digit = isolated_digit(map_geometry(page))
    panel = click_and_read(page, digit["sx"], digit["sy"], "q(z|x)")
    page.screenshot(path=str(tmp_path / "digit.png"))
    captions = " | ".join(panel["captions"])
    assert f"test digit #{digit['index']} " in captions, captions
    assert "reconstruction" in captions, captions
    assert "q(z|x)" in panel["text"]
    assert len(panel["srcs"]) == 2
    original, reconstruction = (image_pixels(page, src) for src in panel["srcs"])
    assert_looks_like_a_digit(original)
    assert_looks_like_a_digit(reconstruction)
    assert page.locator('[data-testid="stException"]').count() == 0
