"""axe-core's automated accessibility check, for the browser tests: every page must show no serious
or critical violation. test_pages_in_browser runs it on each page it opens by URL and
test_how_it_works on How it works, so no page is loaded twice for it.

axe-core is vendored as a test-only file (tests/browser/vendor/axe-core, from npm; never a CDN,
never served by the app). It runs once the page's script run has finished and no element is stale:
Streamlit fades stale elements, which would fail colour contrast for a moment.
"""

from __future__ import annotations

from pathlib import Path

from .conftest import wait_for_app_idle

AXE_JS = (Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js").read_text(encoding="utf-8")
RUN_AXE_JS = """async () => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
    .map(v => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 3).map(n => n.target.join(' >> ') + ' :: ' + n.html.slice(0, 120))}));
}"""


def assert_no_serious_violations(page, name: str, tries: int = 5) -> None:
    """A violation must still be there on `tries` checks a second apart: a rerun that starts just
    after the idle wait (a component's first value, a fragment) fades the page for a moment and
    failed colour contrast once in CI, whereas a real violation is on every check."""
    page.add_script_tag(content=AXE_JS)
    for _ in range(tries):
        wait_for_app_idle(page)
        page.wait_for_function("""() => !document.querySelector('[data-stale="true"]')""")
        violations = page.evaluate(RUN_AXE_JS)
        if not violations:
            return
        page.wait_for_timeout(1000)
    assert not violations, f"{name}: axe-core found {violations}"
