"""Share links in a real browser: a link opens the view it names, a click rewrites the address bar,
and the rewritten address, opened in a fresh session, shows the same view. Download buttons deliver
their pictures (encoded on click).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from PIL import Image

from explorer.figures.pictures import PATH_GIF_STEPS
from explorer.state.registry import load_pretrained_models
from explorer.state.share_links import format_point, parse_point

from .conftest import open_page, wait_for_app_idle
from .test_latent_plane import (
    GRAPH,
    PANEL_JS,
    POINT_TEXT,
    SCREEN_TO_DATA_JS,
    assert_looks_like_a_digit,
    click_and_read,
    decoded_panel,
    empty_spots,
    image_pixels,
    map_geometry,
    wait_for_panel_change,
)

pytestmark = pytest.mark.browser

LINKED_POINT = (0.51, -1.2)
# The share box of the map's right-hand column (the column beside the chart).
SHARE_BOX_JS = """() => {
  const block = [...document.querySelectorAll('[data-testid="stHorizontalBlock"]')]
    .find(b => b.querySelector('[data-testid="stBidiComponentIsolated"]'));
  const right = block && block.querySelectorAll(':scope > [data-testid="stColumn"]')[1];
  const code = right && right.querySelector('[data-testid="stCode"] code');
  return code ? code.innerText.trim() : null;
}"""


@pytest.fixture(scope="module")
def model_name() -> str:
    """The first pretrained model's link name (any latent size: z is a point of the map's plane)."""
    entries = load_pretrained_models()
    if not entries:
        pytest.fail("no readable checkpoint in pretrained/")
    return next(iter(entries.values())).name


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def address(page) -> str:
    return page.evaluate("() => location.href")


def shown_point(panel: dict) -> tuple[float, float]:
    match = POINT_TEXT.search(panel["text"])
    assert match, f"no 'Point (x, y)' in {panel['text']!r}"
    return float(match[1]), float(match[2])


def open_map_link(page, base: str, link_query: str) -> dict:
    open_page(page, base, f"latent_map?{link_query}")
    page.wait_for_selector(f"{GRAPH} canvas.vlp-canvas")
    # the panel beside the plane shows the linked point's pictures once they have loaded (under
    # load the page can be idle-looking before its right column is drawn: wait for its images)
    page.wait_for_function(
        f"() => {{ const p = ({PANEL_JS})(); return Boolean(p) && p.srcs.length > 0 && p.loaded; }}"
    )
    return decoded_panel(page)


def test_a_link_opens_its_point_and_a_click_rewrites_the_link(
    page, browser, app_server, model_name, tmp_path
):
    x, y = LINKED_POINT
    panel = open_map_link(page, app_server, f"model={model_name}&z={x},{y:.2f}")
    page.screenshot(path=str(tmp_path / "linked.png"))
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator('[data-testid="stAlertContentWarning"]').count() == 0  # nothing was ignored
    assert shown_point(panel) == LINKED_POINT
    assert "decoded point" in panel["captions"]
    assert_looks_like_a_digit(image_pixels(page, panel["srcs"][0]))
    assert query(address(page)) == {"model": model_name, "z": "0.51,-1.2"}
    assert query(page.evaluate(SHARE_BOX_JS)) == query(address(page))
    assert page.evaluate(SHARE_BOX_JS).startswith(f"{app_server}/latent_map?")

    # Click empty space far from the linked point: the address bar follows the click.
    geometry = map_geometry(page)
    spots = empty_spots(geometry)
    assert spots, "no empty space on the latent map to click"
    data = [page.evaluate(SCREEN_TO_DATA_JS, [GRAPH, sx, sy]) for sx, sy in spots]
    far = int(np.argmax([np.hypot(dx - x, dy - y) for dx, dy in data]))
    panel = click_and_read(page, *spots[far], "Point (")
    clicked = shown_point(panel)
    assert clicked != LINKED_POINT
    page.wait_for_function(
        "(z) => new URLSearchParams(location.search).get('z') === z",
        arg=format_point(clicked),
        timeout=30_000,
    )
    now = query(address(page))
    assert now["model"] == model_name
    assert parse_point(now["z"]) == clicked  # the link holds exactly the decoded, printed point
    copied = page.evaluate(SHARE_BOX_JS)
    assert query(copied) == now
    pixels = image_pixels(page, panel["srcs"][0])

    # The copied link in a fresh session (a new browser context): the same view.
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        other = context.new_page()
        other.set_default_timeout(60_000)
        other.goto(copied, wait_until="domcontentloaded")
        wait_for_app_idle(other)
        other.wait_for_selector(f"{GRAPH} canvas.vlp-canvas")
        other_panel = decoded_panel(other)
        other.screenshot(path=str(tmp_path / "reopened.png"))
        assert shown_point(other_panel) == clicked
        assert query(address(other)) == now
        np.testing.assert_array_equal(image_pixels(other, other_panel["srcs"][0]), pixels)
    finally:
        context.close()

    # The browser's Back button returns to the linked point: the URL it restores is applied like a link.
    before = decoded_panel(page)["text"]
    page.go_back()
    panel = wait_for_panel_change(page, before, "Point (")
    assert shown_point(panel) == LINKED_POINT
    assert query(address(page)) == {"model": model_name, "z": "0.51,-1.2"}


def strip_caption(page) -> str:
    # the page streams in element by element: wait for the strip's caption, drawn last (a caption of the
    # strip the plane draws under the map, or the caption of the server's strip for a conv model)
    kinds = '[data-testid="stImageCaption"], [data-testid="stCaptionContainer"]'
    page.locator(kinds, has_text=re.compile(r"^All \d+ steps")).first.wait_for()
    captions = page.locator(kinds).all_inner_texts()
    strips = [c for c in captions if re.match(r"All \d+ steps", c)]
    assert len(strips) == 1, captions
    return strips[0]


def test_an_interpolate_link_opens_both_digits_and_follows_the_picker(page, app_server, model_name):
    open_page(page, app_server, f"interpolate?model={model_name}&a=17&b=42")
    assert "from #17 (left) to #42 (right)" in strip_caption(page)
    assert query(address(page)) == {
        "model": model_name,
        "a": "17",
        "b": "42",
        "path": "linear",
        "steps": "10",
    }

    index = page.get_by_role("spinbutton", name="Index").first  # the "From" picker's index box
    index.fill("5")
    index.press("Enter")
    page.wait_for_function("() => new URLSearchParams(location.search).get('a') === '5'", timeout=60_000)
    wait_for_app_idle(page)
    assert "from #5 (left) to #42 (right)" in strip_caption(page)
    assert query(address(page))["b"] == "42"


def download(page, button_text: str) -> tuple[str, Image.Image]:
    """Click a download button; the file's suggested name and the picture it holds."""
    with page.expect_download(timeout=60_000) as info:
        page.get_by_role("button", name=button_text).click()
    file = info.value
    return file.suggested_filename, Image.open(file.path())


def test_download_buttons_deliver_the_pictures(page, app_server, model_name):
    open_page(page, app_server, f"latent_map?model={model_name}")
    name, grid = download(page, "Download the grid (PNG)")
    assert name == f"{model_name}-manifold-12x12.png"
    assert grid.format == "PNG" and grid.size == ((12 * 29 + 1) * 4,) * 2

    open_page(page, app_server, f"interpolate?model={model_name}&a=3&b=2&steps=6")
    name, strip = download(page, "Download the strip (PNG)")
    assert name.endswith("-6-steps.png") and strip.size == ((6 * 29 + 1) * 4, 30 * 4)
    name, animation = download(page, "Download the animation (GIF)")
    assert name == f"{model_name}-3-to-2-linear.gif"
    assert animation.format == "GIF" and animation.size == (112, 112)
    assert animation.n_frames == 2 * PATH_GIF_STEPS - 2
