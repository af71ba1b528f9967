"""Visitor text in a real browser: every place the app repeats what a visitor sent (a share link's
values on every page and parameter, an uploaded checkpoint's name, valid or refused, and its model
card's text fields, an own-digit upload's name, the Train form's refusals) still says it, and
Chromium renders no `<a href>` or `<img src>` to another host from it.

Streamlit's Markdown autolinks bare URLs, `www.` hosts and e-mail addresses, escaped or not; the
app quotes visitor text only in code spans (explorer.state.visitor_text). Lean for CI: one server,
one session per test, a page's link parameters set all at once.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from vae_core import ModelConfig, build_model
from vae_core.checkpoint import checkpoint_bytes

from .conftest import open_page, wait_for_app_idle

pytestmark = pytest.mark.browser

PAYLOADS = [
    "https://evil.example/login",
    "www.evil.example",
    "admin@evil.example",
    "[Log in](https://evil.example/login)",
    "![x](https://evil.example/pixel.png)",
    '<a href="https://evil.example/h">h</a><img src="https://evil.example/i.png">',
    "http://evil.example/long/" + "x" * 10_000,
]
SHOWN_PREFIX = 16  # every message shows this much of the value as sent (and no two values start alike)

# Each page's link parameters (explorer/state/share_links.py); the model one is read by the sidebar.
LINK_PARAMS = {
    "latent_map": ("model", "z", "digit", "label"),
    "interpolate": ("model", "a", "b", "path", "steps", "label"),
    "samples": ("model", "seed", "T", "n", "label"),
    "posterior": ("model", "digit", "part"),
}

ALERT = "[data-testid='stAlert']"
SIDEBAR = "[data-testid='stSidebar']"
MAIN = "[data-testid='stMainBlockContainer']"

# Every link or picture on the page whose address is not this app's own (data: and blob: pictures
# are the page's own bytes): mailto: and the like count, having no host of the app's.
FOREIGN_JS = """() => [...document.querySelectorAll('a[href], img[src]')]
  .map(el => el.getAttribute('href') || el.getAttribute('src'))
  .filter(address => {
    const url = new URL(address, location.href);
    return !['data:', 'blob:'].includes(url.protocol) && url.origin !== location.origin;
  })"""


def foreign_links(page) -> list[str]:
    return page.evaluate(FOREIGN_JS)


def assert_none_foreign(found: dict) -> None:
    """`found`: the foreign links after each step; printed (run with -s), then none allowed."""
    count = sum(len(links) for links in found.values())
    print(f"\n[visitor text] {count} foreign links/pictures in {len(found)} steps")
    assert count == 0, {step: links for step, links in found.items() if links}


def alert_saying(page, scope: str, words: str, value: str):
    """The alert in `scope` that says `words` and shows the start of `value`, once the run is over."""
    alert = page.locator(f"{scope} {ALERT}", has_text=words).filter(has_text=value[:SHOWN_PREFIX]).first
    alert.wait_for(timeout=60_000)
    wait_for_app_idle(page)
    return alert


def test_link_values_on_every_page_show_as_text(page, app_server):
    """Each page opened once with all its parameters set to hostile values (dealt in turn over the
    pages' 18 parameters, so every parameter gets one and every value several): a warning for each
    parameter quotes its value, and no foreign link."""
    found, dealt = {}, 0
    for path, params in LINK_PARAMS.items():
        values = {param: PAYLOADS[(dealt + i) % len(PAYLOADS)] for i, param in enumerate(params)}
        dealt += len(params)
        open_page(page, app_server, f"{path}?{urlencode(values)}")
        warnings = page.locator(ALERT, has_text="Ignored from the link").all_inner_texts()
        for param, value in values.items():
            assert any(f"{param}=" in w and value[:SHOWN_PREFIX] in w for w in warnings), (
                path,
                param,
                warnings,
            )
        found[path] = foreign_links(page)
    assert_none_foreign(found)


def _checkpoint_saying(data: str, device: str, command: str) -> bytes:
    """A small valid checkpoint whose card fields (training data, device, command) say these."""
    model = build_model(ModelConfig(latent_dim=2, hidden=(8,)))
    metrics = {"data": data, "device": device, "command": command, "train_seconds": 60.0, "epochs": 1}
    return checkpoint_bytes(model, {}, metrics)


MAX_FILE_NAME = 200  # a 10,000-character file name fails in Streamlit's uploader: the app never gets it


def file_name(value: str, extension: str) -> str:
    return value[:MAX_FILE_NAME] + extension


def as_sent(name: str) -> str:
    """A file's name as Chromium sends it with an upload (its form data writes " as %22)."""
    return name.replace('"', "%22")


def _upload(page, scope: str, name: str, data: bytes, mime: str) -> None:
    page.locator(f"{scope} [data-testid='stFileUploaderDropzoneInput']").set_input_files(
        {"name": name, "mimeType": mime, "buffer": data}
    )


# Two valid checkpoints hold the six shorter values in their cards (the loader rewrites a "(...)"
# after the training data's name, so the Markdown link and image go to device and command).
CARDS = [
    {"Trained on": PAYLOADS[0], "Training time": PAYLOADS[3], "Command": PAYLOADS[4]},
    {"Trained on": PAYLOADS[1], "Training time": PAYLOADS[5], "Command": PAYLOADS[2]},
]


def test_upload_names_and_model_cards_show_as_text(page, app_server):
    """The sidebar's checkpoint upload: every value names a file, two of them valid checkpoints
    whose cards the Overview then shows (their text fields hold the other values), the rest refused
    (one of them valid but for its card text: the longest value, over the loader's limit)."""
    open_page(page, app_server, "")
    box = page.get_by_test_id("stSidebar").get_by_test_id("stExpander").filter(has_text="Upload a checkpoint")
    box.get_by_text("Upload a checkpoint").click()
    box.locator("details[open]").wait_for()
    found = {}
    for i, value in enumerate(PAYLOADS):
        name = file_name(value, ".safetensors")
        if i < len(CARDS):
            rows = CARDS[i]
            data = _checkpoint_saying(rows["Trained on"], rows["Training time"], rows["Command"])
            _upload(page, SIDEBAR, name, data, "application/octet-stream")
            alert_saying(page, SIDEBAR, "Loaded", as_sent(name))
            for row, text in rows.items():
                page.locator(f"{MAIN} li", has_text=f"{row}:").filter(has_text=text[:SHOWN_PREFIX]).wait_for()
        elif len(value) > 2000:
            _upload(page, SIDEBAR, name, _checkpoint_saying(value, "cpu", "-"), "application/octet-stream")
            alert_saying(page, SIDEBAR, "invalid metrics", as_sent(name))
        else:
            _upload(page, SIDEBAR, name, b"\x00" * 64, "application/octet-stream")
            alert_saying(page, SIDEBAR, "was not loaded", as_sent(name))
        found[i] = foreign_links(page)
    assert_none_foreign(found)


def test_own_digit_upload_names_show_as_text(page, app_server):
    open_page(page, app_server, "latent_map")
    page.get_by_text("Your own digit").first.click()
    found = {}
    for i, value in enumerate(PAYLOADS):
        name = file_name(value, ".png")
        _upload(page, MAIN, name, b"not a picture\n" * 20, "image/png")
        alert_saying(page, MAIN, "was not used", as_sent(name))
        found[i] = foreign_links(page)
    assert_none_foreign(found)


def test_train_form_refusals_show_the_value_as_text(page, app_server):
    """Each value in the form's two text fields (hidden sizes, learning rate), in turn."""
    open_page(page, app_server, "train")
    main = page.locator(MAIN)
    found = {}
    for i, value in enumerate(PAYLOADS):
        label, other, valid = (
            ("Hidden sizes (MLP)", "Learning rate", "1e-3") if i % 2 else ("Learning rate", "Hidden sizes (MLP)", "64")
        )  # fmt: skip
        for field, text in ((label, value), (other, valid)):
            page.get_by_label(field, exact=True).fill(text)
        main.get_by_role("button", name="Start training").click()
        alert_saying(page, MAIN, "Cannot start", value)
        found[f"{label} {i}"] = foreign_links(page)
    assert_none_foreign(found)
