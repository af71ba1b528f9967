"""Browser-test fixtures: one `streamlit run` server and one headless Debian chromium per session.

Playwright's own browser download is never used (`playwright install` needs the network and a
different libc story); CI installs Debian's chromium, so a missing binary is a failure, not a skip.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SERVER_START_TIMEOUT_S = 90.0  # a cold import of torch + streamlit on a busy 2-core box is slow
# Page paths as st.navigation derives them from the script names in app.py; "" is the default page.
PAGES = {
    "Overview": "",
    "Train": "train",
    "Latent map": "latent_map",
    "Interpolate": "interpolate",
    "Samples": "samples",
    "Complete": "complete",
    "Posterior": "posterior",
}


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.read().decode().strip() == "ok"
    except OSError:
        return False


@pytest.fixture(scope="session")
def app_server(tmp_path_factory):
    """Base URL of a `streamlit run app.py` on a free loopback port, offline."""
    port = free_loopback_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "VAE_OFFLINE": "1"}  # VAE_DATA_DIR / VAE_PRETRAINED_DIR pass through
    # No file watcher: an edit in the tree mid-run would put a "File change" prompt over the pages,
    # and watching costs CPU the 2-core CI box does not have.
    log_path = tmp_path_factory.mktemp("streamlit") / "server.log"
    log = open(log_path, "wb")  # a file, not a pipe: a full pipe would block the server
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not _healthy(url):
            if process.poll() is not None:
                pytest.fail(f"streamlit exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"streamlit not healthy after {SERVER_START_TIMEOUT_S:.0f} s:\n{log_path.read_text()[-3000:]}"
                )
            time.sleep(0.3)
        yield url
    finally:
        # start_new_session made the server a group leader: this reaches any child it spawned too
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@pytest.fixture(scope="session")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} not found: the browser tests need Debian's chromium (`sudo apt-get install chromium`)."
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
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


def wait_for_app_idle(page, timeout_ms: float = 60_000) -> None:
    """Wait until the script run this page started has finished.

    The app root carries data-test-script-state: "initial" before the first run, then "running" /
    "notRunning" (Streamlit's own e2e tests wait on it). The status widget is no help: it keeps
    its "Stop" button for a while after a run ends.
    """
    page.wait_for_selector(
        '[data-testid="stApp"][data-test-script-state="notRunning"]', state="attached", timeout=timeout_ms
    )
    page.wait_for_selector('[data-testid="stAppSkeleton"]', state="detached", timeout=timeout_ms)


def open_page(page, base_url: str, path: str) -> None:
    page.goto(f"{base_url}/{path}", wait_until="domcontentloaded")
    wait_for_app_idle(page)
