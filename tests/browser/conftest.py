"""Browser-test fixtures: one `streamlit run` server and one headless Debian chromium per session.

Starting and stopping the server and the browser lives in tests/harness.py, shared with the
benches. CI installs Debian's chromium, so a missing binary is a failure, not a skip.
"""

from __future__ import annotations

import pytest

from tests.harness import (
    PAGES,
    ServerError,
    base_url,
    chromium_missing_message,
    free_loopback_port,
    launch_chromium,
    open_page,
    start_streamlit,
    stop_streamlit,
    wait_for_app_idle,
)

# Re-exported for the test modules, which import them from here.
__all__ = ["PAGES", "open_page", "wait_for_app_idle"]


@pytest.fixture(scope="session")
def app_server(tmp_path_factory):
    """Base URL of a `streamlit run app.py` on a free loopback port, offline."""
    port = free_loopback_port()
    log_path = tmp_path_factory.mktemp("streamlit") / "server.log"
    try:
        process = start_streamlit(port, log_path=log_path)  # VAE_OFFLINE=1, the rest passes through
    except ServerError as exc:
        pytest.fail(str(exc))
    try:
        yield base_url(port)
    finally:
        stop_streamlit(process)


@pytest.fixture(scope="session")
def browser():
    missing = chromium_missing_message()
    if missing:
        pytest.fail(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)  # lets the page fixture see how its test went
    return report


@pytest.fixture
def page(browser, request, tmp_path):
    """A fresh browser context (its own Streamlit session); a failed test leaves a screenshot."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    yield tab
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        shot = tmp_path / "failure.png"
        tab.screenshot(path=str(shot), full_page=True)
        print(f"screenshot of the failed page: {shot}")
    context.close()
