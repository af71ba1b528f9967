"""Train in a real browser: the polling fragment keeps the step count moving and draws the curves
without any user action; Stop ends the run and the page says so.
"""

from __future__ import annotations

import re
import time

import pytest

from .conftest import open_page

pytestmark = pytest.mark.browser

STEP_TEXT = re.compile(r"step ([\d,]+) / ([\d,]+)")
MARK_CHARTS_JS = "() => document.querySelectorAll('.vega-embed').forEach(e => { e.__seen = true; })"
MARKED_CHARTS_JS = "() => Array.from(document.querySelectorAll('.vega-embed')).filter(e => e.__seen).length"


def main(page):
    """The page body: the status widget in the header has its own "Stop" button."""
    return page.get_by_test_id("stMainBlockContainer")


def choose(page, label: str, option: str) -> None:
    """Pick an option of a Streamlit selectbox by its label."""
    page.locator('[data-testid="stSelectbox"]').filter(has_text=label).locator('[role="combobox"]').click()
    page.get_by_role("option", name=option).click()


def fill(page, label: str, value: str) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(value)
    field.press("Tab")  # commit without Enter, which would submit the form


def current_step(page) -> tuple[int, int]:
    text = page.locator('[data-testid="stProgress"]').first.inner_text()
    found = STEP_TEXT.search(text)
    assert found, f"no step count in {text!r}"
    return int(found[1].replace(",", "")), int(found[2].replace(",", ""))


def test_a_run_updates_by_itself_and_stops_on_request(app_server, page, tmp_path):
    open_page(page, app_server, "train")
    choose(page, "Data", "Bundled sample (5,000 digits, fastest)")
    fill(page, "Hidden sizes (MLP)", "64")
    fill(page, "Epochs", "300")
    main(page).get_by_role("button", name="Start training").click()

    page.get_by_text(STEP_TEXT).first.wait_for(timeout=60_000)
    page.locator('[data-testid="stVegaLiteChart"] svg.marks').first.wait_for()
    assert page.locator('[data-testid="stVegaLiteChart"]').count() == 4  # three curves and the latent map
    page.evaluate(MARK_CHARTS_JS)
    first, total = current_step(page)
    assert total == 300 * (4500 // 128)
    deadline = time.monotonic() + 30
    while (later := current_step(page)[0]) <= first:  # nothing clicked: the fragment polls by itself
        assert time.monotonic() < deadline, f"the step count stayed at {first}"
        time.sleep(0.5)
    assert later > first
    # the same chart nodes, now showing newer data: updated in place, not remounted on every poll
    assert page.evaluate(MARKED_CHARTS_JS) == 4
    assert page.locator('[data-testid="stImage"] img').count() >= 2
    page.screenshot(path=str(tmp_path / "train-running.png"))

    main(page).get_by_role("button", name="Stop", exact=True).click()
    page.get_by_text("was stopped after").wait_for(timeout=60_000)
    stopped_at, _ = current_step(page)
    assert later <= stopped_at < total
    main(page).get_by_role("button", name="Download checkpoint").wait_for()
    assert main(page).get_by_role("button", name="Start training").is_enabled()
    page.screenshot(path=str(tmp_path / "train-stopped.png"), full_page=True)
