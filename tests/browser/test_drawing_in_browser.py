"""The drawing canvas in a real browser: strokes drawn with the mouse reach the app.

On the Latent map a drawn digit must be prepared, scored (ELBO) and placed on the map as the gold
star; on the Complete page a painted region must become the hidden part of the masked input, and a
drawn digit the digit to complete.
"""

from __future__ import annotations

import re

import pytest

from .conftest import open_page, wait_for_app_idle

pytestmark = pytest.mark.browser

EXCEPTION = '[data-testid="stException"]'
MAIN = '[data-testid="stMainBlockContainer"]'
SEVEN = [(0.25, 0.15), (0.75, 0.15), (0.45, 0.9)]  # a 7 as fractions of the canvas: bar, then stem
SCRIBBLE = [(0.2, 0.2), (0.8, 0.25), (0.2, 0.45), (0.8, 0.5)]  # paint over the upper half


def canvases(page):
    """The drawing surfaces, one per canvas component (Fabric stacks its canvases; the top one
    receives the mouse)."""
    return page.locator(f"{MAIN} canvas.upper-canvas")


def draw(page, canvas, stroke: list[tuple[float, float]], steps_per_segment: int = 12) -> None:
    """Drag the mouse through `stroke` (fractions of the canvas box), as a user draws."""
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    points = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in stroke]
    page.mouse.move(*points[0])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(x, y, steps=steps_per_segment)
    page.mouse.up()


def caption_text(page, pattern: str) -> str:
    """Wait for an image caption matching `pattern` (a regular expression) and return it."""
    caption = page.locator(f"{MAIN} [data-testid='stImageCaption']", has_text=re.compile(pattern)).first
    caption.wait_for(timeout=60_000)
    return caption.inner_text().strip()


def test_a_digit_drawn_on_the_latent_map_is_scored_and_placed(page, app_server):
    open_page(page, app_server, "latent_map")
    page.get_by_text("Your own digit").first.click()
    page.get_by_text("draw it here").click()
    wait_for_app_idle(page)
    canvas = canvases(page).first
    canvas.wait_for(timeout=60_000)
    assert page.get_by_text("your digit, MNIST-style").count() == 0  # nothing drawn yet

    draw(page, canvas, SEVEN)
    page.get_by_text("your digit, MNIST-style").wait_for(timeout=60_000)
    wait_for_app_idle(page)
    value = page.locator('[data-testid="stMetric"]', has_text="ELBO (nats)")
    elbo = float(value.locator('[data-testid="stMetricValue"]').inner_text())
    typicality = page.get_by_text("of test digits have").inner_text()
    print(f"\n[drawn digit] ELBO {elbo:.1f} nats; {typicality}")
    assert elbo < 0 and re.search(r"\d+% of test digits have a lower ELBO", typicality)
    # the latent plane draws the digit as a star at its encoder mean (the view's own overlay data)
    star = page.wait_for_function(
        """() => { const views = Object.values((window.__latentPlane || {views: {}}).views);
                   const view = views.find(v => v.root && v.root.isConnected && v.data && v.data.star);
                   return view ? view.data.star : null; }""",
        timeout=60_000,
    ).json_value()
    assert len(star) == 2 and all(isinstance(v, (int, float)) for v in star), star
    assert page.locator(EXCEPTION).count() == 0


def test_a_painted_region_is_hidden_and_a_drawn_digit_can_be_completed(page, app_server):
    open_page(page, app_server, "complete")
    page.get_by_text("painted region").click()
    wait_for_app_idle(page)
    page.get_by_text("Paint over the digit").wait_for()
    canvas = canvases(page).first
    canvas.wait_for(timeout=60_000)

    draw(page, canvas, SCRIBBLE)
    first = caption_text(page, r"model sees: \d+ painted pixels hidden")
    wait_for_app_idle(page)
    masked = page.locator(f"{MAIN} [data-testid='stImage']", has_text="model sees").locator("img")
    first_picture = masked.get_attribute("src")
    draw(page, canvas, [(0.2, 0.85), (0.8, 0.85)])  # a second stroke, across the bottom
    page.locator(f"{MAIN} [data-testid='stImageCaption']", has_text=first).wait_for(state="detached")
    second = caption_text(page, r"model sees: \d+ painted pixels hidden")
    wait_for_app_idle(page)
    hidden_first, hidden_second = (int(re.search(r"(\d+) painted", c).group(1)) for c in (first, second))
    print(f"\n[painted region] {hidden_first} then {hidden_second} pixels hidden")
    assert 0 < hidden_first < hidden_second < 784
    assert masked.get_attribute("src") != first_picture  # the masked input shows the new region

    page.get_by_text("your drawing").click()
    wait_for_app_idle(page)
    page.get_by_text("Draw a digit on the canvas").wait_for()
    draw(page, canvases(page).first, SEVEN)  # the digit canvas comes first ...
    canvases(page).nth(1).wait_for(timeout=60_000)  # ... and once there is a digit, the paint canvas
    wait_for_app_idle(page)
    draw(page, canvases(page).nth(1), SCRIBBLE)
    caption_text(page, r"your digit, MNIST-style \(binarised\)")
    caption_text(page, r"model sees: \d+ painted pixels hidden")
    wait_for_app_idle(page)
    page.get_by_role("button", name="Run completion").click()
    page.locator('[data-testid="stMetric"]', has_text="ELBO of q*").wait_for(timeout=120_000)
    wait_for_app_idle(page)
    q_star = page.locator('[data-testid="stMetric"]', has_text="ELBO of q*")
    value, error = q_star.locator('[data-testid="stMetricValue"]').inner_text().split(" ± ")
    assert float(value) < 0 and float(error) > 0  # an ELBO, with its Monte Carlo standard error
    page.get_by_role("button", name=re.compile("Download the completions")).wait_for()
    assert page.locator(EXCEPTION).count() == 0
