"""Every page passes axe-core's automated accessibility check with no serious or critical violation,
and Enter in a Train form field does not start a run.

axe-core is vendored as a test-only file (tests/browser/vendor/axe-core, from npm; never a CDN, never
served by the app) and injected into each page once its script run has finished and no element is
stale (Streamlit fades stale elements, which would fail colour contrast for a moment).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import open_page, wait_for_app_idle

pytestmark = pytest.mark.browser

AXE_JS = (Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js").read_text(encoding="utf-8")
PAGES = {
    "Overview": "",
    "Train": "train",
    "Latent map": "latent_map",
    "Interpolate": "interpolate",
    "Samples": "samples",
    "Complete": "complete",
    "Posterior": "posterior",
    "How it works": "how_it_works",
}
RUN_AXE_JS = """async () => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
    .map(v => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 3).map(n => n.target.join(' >> ') + ' :: ' + n.html.slice(0, 120))}));
}"""


def settled(page) -> None:
    wait_for_app_idle(page)
    page.wait_for_function("() => !document.querySelector('[data-stale=\"true\"]')")


def test_every_page_has_no_serious_or_critical_axe_violation(page, app_server):
    found = {}
    for name, path in PAGES.items():
        open_page(page, app_server, path)
        settled(page)
        assert page.locator('[data-testid="stException"]').count() == 0, name
        page.add_script_tag(content=AXE_JS)
        violations = page.evaluate(RUN_AXE_JS)
        if violations:
            found[name] = violations
    assert page.evaluate("document.documentElement.lang") == "en"
    assert not found, found


def test_enter_in_a_train_form_field_starts_no_run(page, app_server):
    open_page(page, app_server, "train")
    seed = page.get_by_label("Seed", exact=True)
    seed.fill("7")
    # Streamlit offers "Press Enter to submit form" under a form's fields only when Enter submits
    assert page.get_by_text("Press Enter to submit").count() == 0
    seed.press("Enter")
    settled(page)
    assert page.locator('[data-testid="stProgress"]').count() == 0, "Enter started a training run"
    assert page.get_by_role("button", name="Start training").is_enabled()
