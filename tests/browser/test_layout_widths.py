"""Every page at 1280 and 800 px: no number, label or button cut short, no picture on top of another.

At 1280 px metric values read '1,06…' and '−142.…', a label 'Test NLL (k=…', download buttons
'Downl…'; at 800 px pictures overlapped on Complete. A text element is cut when its content is
wider than its box (scrollWidth > clientWidth) while its overflow is clipped; two pictures
overlap when their bounding boxes share more than a pixel's sliver.
"""

from __future__ import annotations

import pytest

from .conftest import PAGES, open_page, wait_for_app_idle

pytestmark = pytest.mark.browser

WIDTHS = (1280, 800)
HEIGHT = 900
# Every page as it opens, and the widest grid Samples draws
VIEWS = {**PAGES, "Samples, 100 draws": "samples?n=100"}

# Returns one line per problem: which element, what it shows, and how it is cut or where it overlaps.
PROBLEMS_JS = """() => {
  const main = document.querySelector('[data-testid="stMain"]');
  const problems = [];
  const visible = el => {
    const r = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && style.visibility !== 'hidden' && style.display !== 'none';
  };
  const clipped = el => {
    const style = getComputedStyle(el);
    const clips = style.overflowX !== 'visible' || style.textOverflow === 'ellipsis';
    return clips && el.scrollWidth > el.clientWidth + 1;
  };
  const texts = [
    ['metric value', '[data-testid="stMetricValue"]'],
    ['metric label', '[data-testid="stMetricLabel"]'],
    ['metric delta', '[data-testid="stMetricDelta"]'],
    ['button', '[data-testid="stButton"] button, [data-testid="stDownloadButton"] button, '
               + '[data-testid="stFormSubmitButton"] button'],
  ];
  for (const [kind, selector] of texts) {
    for (const el of main.querySelectorAll(selector)) {
      if (!visible(el)) continue;
      const cut = [el, ...el.querySelectorAll('*')].filter(e => visible(e) && clipped(e));
      if (cut.length) {
        const e = cut[0];
        problems.push(`${kind} '${el.innerText.trim()}' is cut: ${e.scrollWidth}px of text in a `
                      + `${e.clientWidth}px box`);
      }
    }
  }
  const images = [...main.querySelectorAll('img')].filter(visible).map(img => {
    const r = img.getBoundingClientRect();
    return {r, name: img.alt || (img.src || '').slice(-40)};
  });
  for (let i = 0; i < images.length; i++) {
    for (let j = i + 1; j < images.length; j++) {
      const a = images[i].r, b = images[j].r;
      const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
      const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
      if (w > 1 && h > 1) {
        problems.push(`images ${i} (${Math.round(a.left)},${Math.round(a.top)} ${Math.round(a.width)}x`
                      + `${Math.round(a.height)}) and ${j} (${Math.round(b.left)},${Math.round(b.top)} `
                      + `${Math.round(b.width)}x${Math.round(b.height)}) overlap by ${Math.round(w)}x${Math.round(h)}px`);
      }
    }
  }
  return problems;
}"""


@pytest.fixture(scope="module", params=WIDTHS, ids=[f"{w}px" for w in WIDTHS])
def sized_page(request, browser):
    context = browser.new_context(viewport={"width": request.param, "height": HEIGHT})
    tab = context.new_page()
    tab.set_default_timeout(120_000)
    yield tab, request.param
    context.close()


def assert_nothing_cut_or_overlapping(page, what: str) -> None:
    page.wait_for_timeout(500)  # images and fonts settle after the run ends
    problems = page.evaluate(PROBLEMS_JS)
    assert not problems, f"{what}:\n" + "\n".join(problems)


@pytest.mark.parametrize("name", list(VIEWS))
def test_nothing_is_cut_or_overlapping(sized_page, app_server, name):
    page, width = sized_page
    open_page(page, app_server, VIEWS[name], timeout_ms=120_000)
    page.wait_for_selector("h1")
    assert_nothing_cut_or_overlapping(page, f"{name} at {width} px")
    # no picture wider than the page: a fixed-width grid must shrink to fit, not run off the edge
    overflow = page.evaluate("""() => {
      const main = document.querySelector('[data-testid="stMainBlockContainer"]').getBoundingClientRect();
      return [...document.querySelectorAll('[data-testid="stMain"] img')]
        .map(img => img.getBoundingClientRect()).filter(r => r.width > 0 && r.right > main.right + 1)
        .map(r => `${Math.round(r.width)}px picture ends at ${Math.round(r.right)} > ${Math.round(main.right)}`);
    }""")
    assert not overflow, f"{name} at {width} px: " + "; ".join(overflow)


def test_completion_results_are_not_cut(sized_page, app_server):
    page, width = sized_page
    open_page(page, app_server, PAGES["Complete"], timeout_ms=120_000)
    page.get_by_role("button", name="Run completion").click()
    page.wait_for_selector('[data-testid="stMetricValue"]', timeout=180_000)
    wait_for_app_idle(page, 180_000)
    assert_nothing_cut_or_overlapping(page, f"Complete after a run at {width} px")
