"""A read-only checkout serves every page and gets nothing written into it, as on hosts that mount
the repository read-only (HOME is writable there, so caches go under it).

The copy holds the tracked files only (`git ls-files`), made read-only with `chmod -R a-w`; the
server gets no data folder and no network, so it takes the host's path: cache under HOME, download
attempt, bundled sample. Root ignores file modes, so when the server would run as root it also gets
a private read-only bind mount of the copy (`unshare -m`); where that is not permitted the test
still catches any write, because the file listing before and after must be the same.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.harness import (
    PAGES,
    REPO_ROOT,
    ServerError,
    base_url,
    free_loopback_port,
    open_page,
    start_streamlit,
    stop_streamlit,
)

from .test_offline_start import NO_NETWORK_SITECUSTOMIZE
from .test_train_in_browser import STEP_TEXT, choose, fill, main

pytestmark = pytest.mark.browser

EXCEPTION = '[data-testid="stException"]'
# Keeps the mount private to the server: "$1" is the copy, the rest the server's command.
READ_ONLY_MOUNT = [
    "unshare",
    "-m",
    "--",
    "sh",
    "-c",
    'mount --bind -o ro "$1" "$1" && shift && exec "$@"',
    "sh",
]


def tracked_files() -> list[str]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True, timeout=60
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"`git ls-files` failed in {REPO_ROOT}: {exc}")
    return [name for name in listed.decode().split("\0") if name]


def snapshot(root: Path) -> dict[str, tuple[int, int] | None]:
    """Every path under `root`: a file with its size and modification time, a folder as None
    (its times change with the bytecode caches the interpreter may write, which are not ours)."""
    found = {}
    for path in root.rglob("*"):
        info = path.lstat()
        found[str(path.relative_to(root))] = (
            None if stat.S_ISDIR(info.st_mode) else (info.st_size, info.st_mtime_ns)
        )
    return found


def set_writable(root: Path, writable: bool) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            continue
        path.chmod(mode | stat.S_IWUSR if writable else mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def read_only_mount_works(directory: Path) -> bool:
    try:
        probe = subprocess.run([*READ_ONLY_MOUNT, str(directory), "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


@pytest.fixture(scope="module")
def read_only_server(tmp_path_factory):
    checkout = tmp_path_factory.mktemp("checkout")
    for name in tracked_files():
        target = checkout / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target, follow_symlinks=False)
    home = tmp_path_factory.mktemp("home")
    set_writable(checkout, False)
    prefix = (
        READ_ONLY_MOUNT + [str(checkout)] if os.geteuid() == 0 and read_only_mount_works(checkout) else []
    )
    before = snapshot(checkout)
    # As on a host: no data folder, no cache setting, a writable HOME. The app must pick its cache
    # under HOME and try the download; the network is cut so the test stays hermetic and fast.
    drop = ("VAE_CACHE_DIR", "XDG_CACHE_HOME", "VAE_DATA_DIR", "VAE_OFFLINE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    blocker = tmp_path_factory.mktemp("no_network")
    (blocker / "sitecustomize.py").write_text(NO_NETWORK_SITECUSTOMIZE)
    env.update(
        HOME=str(home), PYTHONPATH=os.pathsep.join(filter(None, [str(blocker), env.get("PYTHONPATH")]))
    )
    port = free_loopback_port()
    log_path = tmp_path_factory.mktemp("read_only_log") / "server.log"
    try:
        process = start_streamlit(port, env=env, cwd=checkout, log_path=log_path, prefix=prefix)
    except ServerError as exc:
        set_writable(checkout, True)
        pytest.fail(str(exc))
    try:
        yield {
            "url": base_url(port),
            "checkout": checkout,
            "home": home,
            "before": before,
            "mounted": bool(prefix),
        }
    finally:
        stop_streamlit(process)
        set_writable(checkout, True)  # so pytest can clean up its tmp dir


def test_a_read_only_checkout_serves_every_page_and_stays_untouched(read_only_server, page):
    url, checkout = read_only_server["url"], read_only_server["checkout"]
    print(f"\n[read-only] bind mount: {read_only_server['mounted']}; checkout {checkout}")
    for name, path in PAGES.items():
        open_page(page, url, path, 90_000)
        page.locator("h1").first.wait_for()
        exceptions = page.locator(EXCEPTION)
        assert exceptions.count() == 0, f"{name}: {exceptions.first.inner_text()[:2000]}"
        assert page.get_by_text("No model available").count() == 0, f"{name}: no pretrained model found"

    # a short run too: a trained model must live in memory, never in the checkout
    open_page(page, url, PAGES["Train"], 90_000)
    choose(page, "Data", "Bundled sample (5,000 digits, fastest)")
    fill(page, "Hidden sizes (MLP)", "32")
    fill(page, "Epochs", "0.3")
    main(page).get_by_role("button", name="Start training").click()
    page.get_by_text(STEP_TEXT).first.wait_for(timeout=90_000)
    page.get_by_text("It is now in the model picker").wait_for(timeout=90_000)
    main(page).get_by_role("button", name="Download checkpoint").wait_for()
    assert page.locator(EXCEPTION).count() == 0

    after = snapshot(checkout)
    # the interpreter's bytecode caches are its own business (it skips them on a read-only tree)
    changed = sorted(
        path
        for path in set(after) | set(read_only_server["before"])
        if after.get(path) != read_only_server["before"].get(path) and "__pycache__" not in path
    )
    assert not changed, f"the app wrote into its checkout: {changed[:20]}"
    assert (read_only_server["home"] / ".cache" / "vae_explorer").is_dir(), "the cache is not under HOME"
