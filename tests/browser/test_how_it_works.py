"""How it works in a real browser: clicking Resample ε moves z and changes the decoded image."""

from __future__ import annotations

import re

import pytest

from .conftest import open_page, wait_for_app_idle

pytestmark = pytest.mark.browser


def shown_vectors(page) -> dict[str, str]:
    """μ, σ, ε and z as the page prints them, as text."""
    text = page.locator('[data-testid="stMarkdown"]', has_text="ε = (").first.inner_text()
    return dict(re.findall(r"(μ|σ|ε|z) = \(([^)]*)\)", text))


def decoded_image_src(page) -> str:
    image = page.locator('[data-testid="stImage"]', has_text="p(x|z)").locator("img").first
    return image.get_attribute("src")


def test_resample_moves_z_and_changes_the_decoded_image(page, app_server):
    open_page(page, app_server, "how_it_works")
    assert page.locator('[data-testid="stException"]').count() == 0
    page.wait_for_selector("h1:has-text('How a VAE computes')")
    before, image_before = shown_vectors(page), decoded_image_src(page)
    assert before["ε"] and before["z"]
    page.get_by_role("button", name="Resample ε").click()
    page.wait_for_function(
        "(old) => ![...document.querySelectorAll('[data-testid=\"stMarkdown\"]')]"
        ".some(e => e.innerText.includes('ε = (' + old + ')'))",
        arg=before["ε"],
    )
    wait_for_app_idle(page)
    after = shown_vectors(page)
    assert after["ε"] != before["ε"] and after["z"] != before["z"]
    assert after["μ"] == before["μ"] and after["σ"] == before["σ"]  # the encoder's outputs stay
    assert decoded_image_src(page) != image_before
    assert page.locator('[data-testid="stException"]').count() == 0
