"""Train in a real browser: the polling fragment keeps the step count moving and draws the curves
without any user action; the time-travel slider rewinds the view and stays put while the run goes
on; Stop ends the run and the page says so.
"""

from __future__ import annotations

import io
import re
import time

import pytest
from PIL import Image

from .conftest import open_page

pytestmark = pytest.mark.browser

STEP_TEXT = re.compile(r"step ([\d,]+) (?:/|of) ([\d,]+)")  # "of" once the run has ended
MARK_CHARTS_JS = "() => document.querySelectorAll('.vega-embed').forEach(e => { e.__seen = true; })"
MARKED_CHARTS_JS = "() => Array.from(document.querySelectorAll('.vega-embed')).filter(e => e.__seen).length"
LIVE_CHARTS = 4  # three curves and the KL per latent dimension (the latent map is the latent plane)
# The live latent plane's canvas (marked once) and the points payload it shows.
LIVE_PLANE_JS = """(mark) => {
  const view = Object.values((window.__latentPlane || {views: {}}).views)
    .find(v => v.key.startsWith('train_latents') && v.model && v.root.isConnected);
  if (!view) return null;
  if (mark) view.canvas.__seen = true;
  return {model: view.model.id, seen: Boolean(view.canvas.__seen), points: view.model.labels.length};
}"""
SHOWN_STEP = re.compile(r"validation digits at step ([\d,]+)")
REWOUND = re.compile(r"as it was at step ([\d,]+)")


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


def shown_step(page) -> int:
    """The step of the latent map on screen, from its caption."""
    text = main(page).get_by_text(SHOWN_STEP).first.inner_text()
    return int(SHOWN_STEP.search(text)[1].replace(",", ""))


def time_travel(page):
    """The time-travel slider's block: its label, its value and the steps at its ends."""
    return main(page).locator('[data-testid="stSlider"]').filter(has_text="Time travel")


def rewind_slider(page):
    return time_travel(page).get_by_role("slider")


def download(page, label: str, folder) -> bytes:
    """Click a download button and return the file's bytes (built on click, in the server)."""
    with page.expect_download(timeout=30_000) as started:
        main(page).get_by_role("button", name=label).click()
    path = folder / started.value.suggested_filename
    started.value.save_as(path)
    return path.read_bytes()


def test_a_run_updates_by_itself_and_stops_on_request(app_server, page, tmp_path):
    messages = []  # the console, warnings included: Vega warns of charts it cannot scale
    page.on("console", lambda message: messages.append(message.text))
    open_page(page, app_server, "train")
    choose(page, "Data", "Bundled sample (5,000 digits, fastest)")
    fill(page, "Hidden sizes (MLP)", "64")
    fill(page, "Epochs", "300")
    main(page).get_by_role("button", name="Start training").click()

    page.get_by_text(STEP_TEXT).first.wait_for(timeout=60_000)
    # the charts mount one after another: wait for them all (in CI one of four was there at first)
    page.wait_for_function(
        f"() => document.querySelectorAll('[data-testid=\"stVegaLiteChart\"] svg.marks').length >= {LIVE_CHARTS}"
    )
    assert page.locator('[data-testid="stVegaLiteChart"]').count() == LIVE_CHARTS
    page.evaluate(MARK_CHARTS_JS)
    page.wait_for_function(f"({LIVE_PLANE_JS})(false) !== null")
    plane = page.evaluate(LIVE_PLANE_JS, True)
    first, total = current_step(page)
    assert total == 300 * (4500 // 128)
    deadline = time.monotonic() + 30
    while (later := current_step(page)[0]) <= first:  # nothing clicked: the fragment polls by itself
        assert time.monotonic() < deadline, f"the step count stayed at {first}"
        time.sleep(0.5)
    assert later > first
    # the same chart nodes, now showing newer data: updated in place, not remounted on every poll
    assert page.evaluate(MARKED_CHARTS_JS) == LIVE_CHARTS
    # the latent plane too: the same canvas, new snapshots' points (no figure rebuilt)
    # (null while the component re-renders: keep polling, it is not "a new model")
    page.wait_for_function(
        f"(first) => {{ const now = ({LIVE_PLANE_JS})(false); return now !== null && now.model !== first; }}",
        arg=plane["model"],
    )
    assert page.evaluate(LIVE_PLANE_JS, False)["seen"] and plane["points"] > 0
    assert page.locator('[data-testid="stImage"] img').count() >= 2
    page.screenshot(path=str(tmp_path / "train-running.png"))

    # time travel: the slider's left end is the run's first snapshot; the view stays there while it trains
    first_snapshot = int(re.search(r"step ([\d,]+)", time_travel(page).inner_text())[1].replace(",", ""))
    deadline = time.monotonic() + 30
    while (newest := shown_step(page)) <= first_snapshot:  # a later snapshot to travel back from
        assert time.monotonic() < deadline, "no snapshot after the first one"
        time.sleep(0.5)
    rewind_slider(page).press("Home")
    page.get_by_text(f"as it was at step {first_snapshot:,} ").wait_for(timeout=30_000)
    # Vega warns "Infinite extent" once per layer as a chart mounts (Streamlit embeds it before its data);
    # redraws with data must add none: the warnings counted from here on are the polls' own
    infinite = len([message for message in messages if "Infinite extent" in message])
    deadline = time.monotonic() + 30
    while shown_step(page) != first_snapshot:  # the map's caption follows the notice in the same run
        assert time.monotonic() < deadline, "the latent map did not go back to the first snapshot"
        time.sleep(0.2)
    moving = current_step(page)[0]
    deadline = time.monotonic() + 30
    while current_step(page)[0] <= moving:
        assert time.monotonic() < deadline, "the run stopped moving while rewound"
        time.sleep(0.5)
    time.sleep(1.5)  # a few more polls
    assert shown_step(page) == first_snapshot < newest and page.get_by_text(REWOUND).count() == 1
    # the first snapshot is the untrained model, before any progress report: no values on the tiles and a
    # "no data yet" on each curve's axes (the tiles kept the newest values; empty charts had no axes, and
    # Vega logged "Infinite extent" warnings on every poll, 381 in one session)
    assert first_snapshot == 0
    assert main(page).locator('[data-testid="stMetricValue"]').all_inner_texts()[:5] == ["—"] * 5
    assert page.locator('[data-testid="stVegaLiteChart"]').filter(has_text="no data yet").count() == 3
    assert len([message for message in messages if "Infinite extent" in message]) == infinite
    page.screenshot(path=str(tmp_path / "train-rewound.png"), full_page=True)
    rewind_slider(page).press("End")  # back to "now": following the run
    page.get_by_text(REWOUND).wait_for(state="detached", timeout=30_000)
    deadline = time.monotonic() + 30
    while shown_step(page) <= newest:
        assert time.monotonic() < deadline, "the view did not follow the run again"
        time.sleep(0.5)

    main(page).get_by_role("button", name="Stop", exact=True).click()
    page.get_by_text("was stopped after").wait_for(timeout=60_000)
    stopped_at, _ = current_step(page)
    assert later <= stopped_at < total
    main(page).get_by_role("button", name="Download checkpoint").wait_for()
    gif = Image.open(io.BytesIO(download(page, "Latent map GIF", tmp_path)))
    assert gif.format == "GIF" and gif.n_frames >= 3  # the untrained model, the step travelled to, the end
    digits = Image.open(io.BytesIO(download(page, "Digits PNG", tmp_path)))
    assert digits.format == "PNG" and digits.width > digits.height  # 8 digits a row, 4 rows
    assert main(page).get_by_role("button", name="Start training").is_enabled()
    page.screenshot(path=str(tmp_path / "train-stopped.png"), full_page=True)
