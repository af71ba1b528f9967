"""Every page renders in a real browser without an exception box, reached by URL and by the sidebar."""

from __future__ import annotations

import re

import pytest

from .accessibility import assert_no_serious_violations
from .conftest import PAGES, open_page, wait_for_app_idle

pytestmark = pytest.mark.browser

# What each page's st.title must mention (case-insensitive): the pages' wording may change, the
# subject may not. Overview's title is the app's name.
TITLE_WORDS = {
    "Overview": "VAE Explorer",
    "Train": "train",
    "Latent map": "latent map",
    "Interpolate": "interpolat",
    "Samples": "sample",
    "Complete": "complet",
    "Posterior": "posterior",
}
EXCEPTION = '[data-testid="stException"]'


def page_title(page) -> str:
    return " | ".join(page.locator("h1").all_inner_texts())


def assert_page_ok(page, name: str) -> None:
    exceptions = page.locator(EXCEPTION)
    assert exceptions.count() == 0, f"{name}: exception shown:\n{exceptions.first.inner_text()[:2000]}"
    title = page_title(page)
    assert re.search(re.escape(TITLE_WORDS[name]), title, re.IGNORECASE), f"{name}: title is {title!r}"


@pytest.mark.parametrize("name", list(PAGES))
def test_page_opens_by_url(page, app_server, name):
    open_page(page, app_server, PAGES[name])
    page.wait_for_selector("h1")
    assert_page_ok(page, name)
    assert_no_serious_violations(page, name)  # axe-core


def visit_by_sidebar(page, name: str) -> None:
    page.locator('[data-testid="stSidebarNav"] a', has_text=name).first.click()
    # the previous page's title and "notRunning" state linger until the new run starts
    page.wait_for_url(re.compile(rf"/{re.escape(PAGES[name])}(\?.*)?$"))
    page.wait_for_function(
        """(word) => [...document.querySelectorAll('h1')]
             .some(h => h.innerText.toLowerCase().includes(word.toLowerCase()))""",
        arg=TITLE_WORDS[name],
    )
    wait_for_app_idle(page)


def test_sidebar_navigation_reaches_every_page(page, app_server):
    open_page(page, app_server, "")
    labels = [text.strip() for text in page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()]
    for name in PAGES:
        assert any(label.endswith(name) for label in labels), f"no sidebar link for {name}: {labels}"
    for name in [*list(PAGES)[1:], "Overview"]:
        visit_by_sidebar(page, name)
        assert_page_ok(page, name)


def test_model_choice_survives_page_switches(page, app_server):
    open_page(page, app_server, "")
    picker = page.locator('[data-testid="stSidebar"]').get_by_role("combobox", name="Model", exact=True)
    picker.click()
    options = page.get_by_role("option").all_inner_texts()
    assert len(options) >= 2, "pretrained/ ships five models: the picker should offer more than one"
    page.get_by_role("option").nth(1).click()
    page.wait_for_function(
        "(name) => document.querySelector('h2')?.innerText.includes('Model card · ' + name)",
        arg=options[1].split(" · ")[0],
    )
    wait_for_app_idle(page)
    chosen = picker.input_value()
    assert chosen == options[1]
    for name in [*list(PAGES)[1:], "Overview"]:
        visit_by_sidebar(page, name)
        assert_page_ok(page, name)
        if picker.count():  # the Train page has no model picker; the pages after it must still agree
            assert picker.input_value() == chosen, f"{name}: the sidebar model changed on a page switch"
