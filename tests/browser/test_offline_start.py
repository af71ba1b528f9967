"""With no network at all the app starts, says it uses the bundled sample, and the Latent map works.

Preferred: a fresh network namespace (`unshare -n`) holding only a loopback interface, with both
the server and chromium inside it, so nothing can reach the outside whatever the app tries. Where
namespaces are not permitted, the server instead gets a sitecustomize.py that makes every
non-loopback connection and name lookup fail. Either way the app is NOT told it is offline
(no VAE_OFFLINE, no VAE_DATA_DIR, an empty VAE_CACHE_DIR): it has to find out by itself.

The part that runs inside the namespace is this module's __main__ (`python -m
tests.browser.test_offline_start OUT.json`); it writes what it saw to OUT.json.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.harness import (
    REPO_ROOT,
    base_url,
    chromium_missing_message,
    free_loopback_port,
    launch_chromium,
    log_tail,
    start_streamlit,
    stop_streamlit,
)

pytestmark = pytest.mark.browser

SAMPLE_NOTE = "5,000 MNIST test digits shipped with the app"
MNIST_HOST = ("ossci-datasets.s3.amazonaws.com", 443)  # where torchvision downloads MNIST from
NO_NETWORK_SITECUSTOMIZE = '''
"""Loaded by the offline test's server: only loopback connections and lookups succeed."""
import socket

_LOOPBACK = ("localhost", "127.0.0.1", "::1")
_getaddrinfo, _create_connection = socket.getaddrinfo, socket.create_connection


def getaddrinfo(host, *args, **kwargs):
    if host not in _LOOPBACK and host is not None:
        raise socket.gaierror(socket.EAI_NONAME, f"offline test: no name lookup for {host}")
    return _getaddrinfo(host, *args, **kwargs)


def create_connection(address, *args, **kwargs):
    if address[0] not in _LOOPBACK:
        raise OSError(101, f"offline test: network is unreachable ({address[0]})")
    return _create_connection(address, *args, **kwargs)


socket.getaddrinfo, socket.create_connection = getaddrinfo, create_connection
'''


def namespaces_work() -> bool:
    try:
        return subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_the_app_starts_and_works_without_any_network(tmp_path):
    missing = chromium_missing_message()
    if missing:
        pytest.fail(missing)
    out = tmp_path / "offline.json"
    env = {k: v for k, v in os.environ.items() if k not in ("VAE_OFFLINE", "VAE_DATA_DIR")}
    env["VAE_CACHE_DIR"] = str(tmp_path / "cache")  # empty: nothing downloaded before
    command = [sys.executable, "-m", "tests.browser.test_offline_start", str(out)]
    if namespaces_work():
        command = ["unshare", "-n", "--", *command]
        env["OFFLINE_MODE"] = "network namespace (unshare -n), loopback only"
    else:
        (tmp_path / "blocker").mkdir()
        (tmp_path / "blocker" / "sitecustomize.py").write_text(NO_NETWORK_SITECUSTOMIZE)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path / "blocker"), env.get("PYTHONPATH")]))
        env["OFFLINE_MODE"] = "sitecustomize blocking non-loopback sockets"
    run = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"the offline run failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    seen = json.loads(out.read_text())
    print("\n[offline] " + json.dumps(seen))

    assert seen["outside_reachable"] is False, seen["probe"]
    assert SAMPLE_NOTE in seen["sidebar_note"], seen["sidebar_note"]
    assert seen["overview_exceptions"] == 0 and seen["latent_map_exceptions"] == 0
    assert seen["decoded_caption"] and seen["decoded_point"].startswith("Point (")
    assert seen["map_digits"] == 5000  # every digit of the bundled sample, as all 10,000 with full MNIST


# ------------------------------------------------------------------- inside the offline world
def _loopback_up() -> None:
    """A new network namespace starts with `lo` down; bring it up (what `ip link set lo up` does)."""
    import fcntl
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(sock, siocgifflags, request))[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sH14s", b"lo", flags | iff_up, b""))


def _probe_outside(env: dict) -> tuple[bool, str]:
    """Can the server's Python reach the MNIST mirror? Asked in a process with the server's env."""
    code = (
        "import socket\n"
        f"try: socket.create_connection({MNIST_HOST!r}, timeout=5).close(); print('reachable')\n"
        "except OSError as exc: print(f'{type(exc).__name__}: {exc}')"
    )
    answer = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    text = answer.stdout.strip() or answer.stderr.strip()
    return text == "reachable", text


def _inside(out: Path) -> None:
    from playwright.sync_api import sync_playwright

    from .conftest import open_page, wait_for_app_idle
    from .test_latent_plane import GRAPH, decoded_panel, empty_spots, map_geometry, wait_for_panel_change

    seen: dict = {"mode": os.environ.get("OFFLINE_MODE", "?")}
    if "namespace" in seen["mode"]:
        _loopback_up()
    seen["outside_reachable"], seen["probe"] = _probe_outside(dict(os.environ))
    port = free_loopback_port()
    log_path = Path(tempfile.mkdtemp(prefix="offline_")) / "server.log"
    started = time.monotonic()
    server = start_streamlit(port, env=dict(os.environ), log_path=log_path)
    seen["server_start_s"] = round(time.monotonic() - started, 1)
    url = base_url(port)
    try:
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(90_000)
            started = time.monotonic()
            open_page(page, url, "", 90_000)
            page.get_by_role("heading", name="VAE Explorer").wait_for()
            seen["overview_s"] = round(time.monotonic() - started, 1)
            seen["sidebar_note"] = page.get_by_test_id("stSidebar").get_by_text("Digits:").inner_text()
            seen["overview_exceptions"] = page.locator('[data-testid="stException"]').count()

            page.get_by_test_id("stSidebarNav").locator("a", has_text="Latent map").first.click()
            # the Overview's own plotly charts linger until the new page replaces them
            page.get_by_role("heading", name="Latent map").wait_for()
            wait_for_app_idle(page, 90_000)
            page.locator(f"{GRAPH} canvas.vlp-canvas").first.wait_for()
            geometry = map_geometry(page)
            seen["map_digits"] = len(geometry["digits"])
            spots = empty_spots(geometry)
            before = decoded_panel(page)["text"]
            page.mouse.click(*spots[len(spots) // 2])
            panel = wait_for_panel_change(page, before, "Point (")
            seen["decoded_caption"] = "decoded point" in panel["captions"]
            seen["decoded_point"] = next(line for line in panel["text"].splitlines() if "Point (" in line)
            seen["latent_map_exceptions"] = page.locator('[data-testid="stException"]').count()
            browser.close()
    finally:
        stop_streamlit(server)
        seen["cache_dir_contents"] = sorted(
            str(p.relative_to(os.environ["VAE_CACHE_DIR"]))
            for p in Path(os.environ["VAE_CACHE_DIR"]).rglob("*")
        )
        seen["server_log_tail"] = log_tail(log_path, 1500)
        out.write_text(json.dumps(seen, indent=2) + "\n")


if __name__ == "__main__":
    _inside(Path(sys.argv[1]))
