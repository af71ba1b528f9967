"""Keyboard use outside the latent plane: Enter in a Train form field does not start a run.

(axe-core runs on every page from test_pages_in_browser and test_how_it_works, through
tests/browser/accessibility.py; the latent plane's keyboard, touch and colour tests are in
test_latent_plane.)
"""

from __future__ import annotations

import pytest

from .conftest import open_page, wait_for_app_idle

pytestmark = pytest.mark.browser


def test_enter_in_a_train_form_field_starts_no_run(page, app_server):
    open_page(page, app_server, "train")
    assert page.evaluate("document.documentElement.lang") == "en"
    seed = page.get_by_label("Seed", exact=True)
    seed.fill("7")
    # Streamlit offers "Press Enter to submit form" under a form's fields only when Enter submits
    assert page.get_by_text("Press Enter to submit").count() == 0
    seed.press("Enter")
    wait_for_app_idle(page)
    assert page.locator('[data-testid="stProgress"]').count() == 0, "Enter started a training run"
    assert page.get_by_role("button", name="Start training").is_enabled()
