"""The sidebar's share box never names a model other than the one the page is being drawn with.

The box is the last thing a page draws. Streamlit keeps the previous run's elements on screen
(faded) until the new run replaces them, so when the box was drawn only at the end, a model switch
left the old box, naming the old model, beside the newly drawn page for the whole run: seconds under
load, long enough to copy the wrong link. Every DOM change is recorded while the run goes on.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest

from .conftest import open_page, wait_for_app_idle

pytestmark = pytest.mark.browser

# Each DOM change: the picker's model, the sidebar box's link, whether the run is going on, and
# how many main-area elements the current run has drawn already (not stale).
RECORD_JS = """() => {
  window.__shareSeen = [];
  const app = document.querySelector('[data-testid="stApp"]');
  const record = () => {
    const sidebar = document.querySelector('[data-testid="stSidebar"]');
    const picker = sidebar && [...sidebar.querySelectorAll('[data-testid="stSelectbox"]')]
      .find(b => b.innerText.trim().startsWith('Model'));
    const code = sidebar && sidebar.querySelector('[data-testid="stCode"] code');
    const main = document.querySelector('[data-testid="stMain"]');
    const fresh = main ? main.querySelectorAll('[data-testid="stElementContainer"][data-stale="false"]').length : 0;
    window.__shareSeen.push({
      picker: picker ? (picker.querySelector('input') || {}).value || picker.innerText : null,
      link: code ? code.innerText.trim() : null,
      running: app.getAttribute('data-test-script-state') === 'running',
      fresh: fresh,
    });
  };
  new MutationObserver(record).observe(app, {subtree: true, childList: true, characterData: true,
                                             attributes: true});
  record();
}"""


def picked_model(picker_text: str | None) -> str | None:
    """'mlp2d · 784-…' (the picker shows the model's label) -> 'mlp2d'."""
    if not picker_text:
        return None
    value = picker_text.strip().split("\n")[-1]
    return value.split(" · ")[0].strip()


def linked_model(link: str | None) -> str | None:
    if not link:
        return None
    return parse_qs(urlsplit(link).query).get("model", [None])[0]


def test_after_a_model_switch_the_share_box_never_names_the_old_model(page, app_server):
    open_page(page, app_server, "interpolate?model=mlp20&a=17&b=42&steps=12")
    sidebar = page.get_by_test_id("stSidebar")
    assert linked_model(sidebar.locator('[data-testid="stCode"] code').inner_text()) == "mlp20"

    page.evaluate(RECORD_JS)
    sidebar.get_by_role("combobox", name="Model", exact=True).click()
    page.get_by_role("option").filter(has_text=re.compile(r"^mlp2d ·")).click()
    page.wait_for_function(
        "() => window.__shareSeen.some(r => r.running)", timeout=30_000
    )  # the switch's run began
    wait_for_app_idle(page)
    seen = page.evaluate("() => window.__shareSeen")

    assert picked_model(seen[-1]["picker"]) == "mlp2d"
    assert linked_model(seen[-1]["link"]) == "mlp2d"
    drawing = [r for r in seen if r["running"] and r["fresh"] > 0]  # the new page is being drawn
    assert drawing, "no DOM change observed while the run drew the page"
    wrong = [
        r for r in drawing if r["link"] is not None and linked_model(r["link"]) != picked_model(r["picker"])
    ]
    assert not wrong, (
        f"{len(wrong)} of {len(drawing)} states during the run showed a box naming "
        f"{linked_model(wrong[0]['link'])} beside the picker's {picked_model(wrong[0]['picker'])}"
    )
