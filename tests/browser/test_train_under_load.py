"""Train under CPU contention in a real browser: the live view follows the run ("now") while five
busy-looping processes compete with the server, and shows the last step once the run is stopped.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from tests.harness import ServerError, base_url, free_loopback_port, start_streamlit, stop_streamlit

from .conftest import open_page
from .test_train_in_browser import REWOUND, choose, current_step, fill, main, shown_step

pytestmark = pytest.mark.browser

BURNERS = int(os.environ.get("VAE_TEST_BURNERS", "8"))
# Polling five times faster than the page's default made the race show up here every time (the
# frozen view was first seen at the default 0.5 s on a busier machine).
POLL_S = "0.1"
STOPPED_TEXT = re.compile(r"stopped at step ([\d,]+) of ([\d,]+)")


@pytest.fixture(scope="module")
def fast_polling_server(tmp_path_factory):
    """A server of its own whose Train page polls every POLL_S seconds."""
    port = free_loopback_port()
    env = {**os.environ, "VAE_OFFLINE": "1", "VAE_TRAIN_POLL_S": POLL_S}
    log_path = tmp_path_factory.mktemp("streamlit-load") / "server.log"
    try:
        process = start_streamlit(port, env=env, log_path=log_path)
    except ServerError as exc:
        pytest.fail(str(exc))
    try:
        yield base_url(port)
    finally:
        stop_streamlit(process)


@pytest.fixture
def cpu_burners():
    """Five processes spinning at nice 0 beside the server; always killed, even when the test fails."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(BURNERS)]
    try:
        yield procs
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait(timeout=10)


def test_the_live_view_follows_the_run_under_load(fast_polling_server, page, cpu_burners):
    open_page(page, fast_polling_server, "train")
    choose(page, "Data", "Bundled sample (5,000 digits, fastest)")
    fill(page, "Hidden sizes (MLP)", "64")
    fill(page, "Epochs", "300")
    main(page).get_by_role("button", name="Start training").click()
    page.get_by_text("validation digits at step").first.wait_for(timeout=120_000)

    deadline = time.monotonic() + 120
    while (shown := shown_step(page)) < 100:  # the latent map's caption: the snapshot on screen
        running = current_step(page)[0]
        assert time.monotonic() < deadline, (
            f"the view stayed below step 100 while the run reached step {running}"
        )
        time.sleep(0.5)
    assert page.get_by_text(REWOUND).count() == 0
    print(f"under load: the view showed step {shown} while the run was at step {current_step(page)[0]}")

    main(page).get_by_role("button", name="Stop", exact=True).click()
    page.get_by_text("was stopped after").wait_for(timeout=120_000)
    progress = page.locator('[data-testid="stProgress"]').first.inner_text()
    stopped = STOPPED_TEXT.search(progress)
    assert stopped, f"no 'stopped at step N of M' in {progress!r}"
    assert "ETA" not in progress and "images/s" not in progress  # nothing is running any more
    stopped_at = int(stopped[1].replace(",", ""))
    assert shown_step(page) == stopped_at > 0  # the last snapshot is the model as it ended
    assert page.get_by_text(REWOUND).count() == 0
    print(f"after Stop: the view shows step {shown_step(page)}, the run stopped at step {stopped_at}")
