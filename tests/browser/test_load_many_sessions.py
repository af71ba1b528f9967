"""Eight browser sessions against one server inside a Cloud-sized memory ceiling: live training,
isolation, memory, clean-up.

The server runs in a memory cgroup of MEMORY_CEILING_MB (Streamlit Community Cloud's smallest
container is about 690 MB) with the production defaults: at most VAE_MAX_TRAINING_JOBS=2 runs at once.
Eight sessions connect; two train at once, a third is told the server is busy and gets its turn when
a slot frees; the others browse every page meanwhile. Each session's run appears in its own model
picker only and its Latent map renders. After the tabs close no training thread may outlive its
session by more than the idle timeout plus a margin. The kernel must OOM-kill nothing, and the
cgroup's peak (what the kernel charges the container: resident memory plus page cache it could not
yet reclaim) is reported beside the server's resident set. Measurements are printed (`-s`) and saved
as load_report.json in the tmp dir.
"""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from tests.harness import (
    MemoryLimit,
    RssSampler,
    ServerError,
    base_url,
    cpu_usage,
    free_loopback_port,
    healthy,
    start_streamlit,
    stop_streamlit,
    thread_count,
)

from .conftest import wait_for_app_idle
from .test_pages_in_browser import visit_by_sidebar
from .test_train_in_browser import STEP_TEXT, choose, current_step, fill, main

pytestmark = pytest.mark.browser

SESSIONS = 8
MAX_JOBS = 2  # the production default of VAE_MAX_TRAINING_JOBS
MEMORY_CEILING_MB = 690  # Streamlit Community Cloud's smallest container
IDLE_TIMEOUT_S = 10
CLEANUP_MARGIN_S = 25  # stopping finishes a block of steps and a validation pass on a loaded box
RUN_NAME = re.compile(r"run (\d+): 2-D MLP")
BUSY = "Cannot start: this server is already training"
BROWSED = ("Overview", "Samples", "Interpolate", "Posterior", "Complete")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_loopback_port()
    env = {
        **os.environ,
        "VAE_OFFLINE": "1",
        "VAE_MAX_TRAINING_JOBS": str(MAX_JOBS),
        "VAE_TRAIN_IDLE_TIMEOUT_S": str(IDLE_TIMEOUT_S),
    }
    log_path = tmp_path_factory.mktemp("load") / "server.log"
    try:
        ceiling = MemoryLimit(MEMORY_CEILING_MB, f"vae_load_test_{os.getpid()}")
    except ServerError as exc:  # CI runs as root with a cgroup memory controller: missing is a failure
        pytest.fail(f"the load test needs a memory cgroup: {exc}")
    try:
        process = start_streamlit(port, env=env, log_path=log_path, prefix=ceiling.prefix)
    except ServerError as exc:
        ceiling.remove()
        pytest.fail(str(exc))
    yield process, base_url(port), ceiling
    stop_streamlit(process)
    ceiling.remove()


def start_run(tab, seed: int) -> None:
    choose(tab, "Data", "Bundled sample (5,000 digits, fastest)")
    fill(tab, "Hidden sizes (MLP)", "64")
    fill(tab, "Epochs", "300")  # far more than the test waits for: runs end by Stop or idleness
    fill(tab, "Seed", str(seed))
    main(tab).get_by_role("button", name="Start training").click()


def wait_running(tab) -> int:
    """Wait for the run's first progress report; the run's number from its heading."""
    tab.get_by_text(STEP_TEXT).first.wait_for(timeout=90_000)
    heading = main(tab).get_by_role("heading", name=RUN_NAME).first.inner_text()
    return int(RUN_NAME.search(heading)[1])


def wait_step_grows(tab, timeout_s: float = 90) -> tuple[int, int]:
    first = current_step(tab)[0]
    deadline = time.monotonic() + timeout_s
    while (later := current_step(tab)[0]) <= first:
        assert time.monotonic() < deadline, f"the step count stayed at {first}"
        time.sleep(0.3)
    return first, later


def stop_run(tab) -> None:
    main(tab).get_by_role("button", name="Stop", exact=True).click()


def wait_stopped(tab) -> None:
    tab.get_by_text("was stopped after").wait_for(timeout=90_000)
    wait_for_app_idle(tab)


def picker_options(tab) -> tuple[str, list[str]]:
    picker = tab.get_by_test_id("stSidebar").get_by_role("combobox", name="Model", exact=True)
    chosen = picker.input_value()
    picker.click()
    options = tab.get_by_role("option").all_inner_texts()
    tab.keyboard.press("Escape")
    return chosen, options


def no_exception(tab) -> None:
    assert tab.locator('[data-testid="stException"]').count() == 0


def test_eight_sessions_share_a_small_container_and_leave_no_thread_behind(server, browser, tmp_path):
    process, url, ceiling = server
    report: dict = {
        "sessions": SESSIONS, "max_training_jobs": MAX_JOBS, "memory_ceiling_mb": MEMORY_CEILING_MB,
        "idle_timeout_s": IDLE_TIMEOUT_S,
    }  # fmt: skip

    def save() -> None:
        (tmp_path / "load_report.json").write_text(json.dumps(report, indent=2) + "\n")

    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(SESSIONS)]
    sampler = RssSampler(process.pid, every_s=0.5)
    try:
        with sampler:
            try:
                exercise_sessions(url, process.pid, contexts, sampler, report, save)
            finally:
                for context in contexts:
                    context.close()
            closed_at = time.monotonic()
            wait_until_quiet(process.pid, closed_at, report)
            assert healthy(url)
    finally:
        report["rss_peak_mb"] = round(sampler.peak_mb, 1)
        report["rss_end_mb"] = round(sampler.samples[-1], 1) if sampler.samples else None
        report["cgroup_peak_mb"] = round(ceiling.peak_mb(), 1)
        report["oom_kills"] = ceiling.oom_kills()
        save()
        print("\n[load] " + json.dumps(report))
    assert report["oom_kills"] == 0, report
    assert process.poll() is None, "the server died"


def exercise_sessions(url, pid, contexts, sampler, report, save) -> None:
    tabs = [context.new_page() for context in contexts]
    for tab in tabs:
        tab.set_default_timeout(120_000)
    for tab in tabs:  # all eight sessions connect before anything trains
        tab.goto(f"{url}/train", wait_until="domcontentloaded")
    for tab in tabs:
        wait_for_app_idle(tab, 120_000)
    report["threads_idle"] = thread_count(pid)
    report["rss_idle_mb"] = round(sampler.peak_mb, 1)

    trainers, waiting, browsers = tabs[:MAX_JOBS], tabs[MAX_JOBS], tabs[MAX_JOBS + 1 :]
    started = time.monotonic()
    for seed, tab in enumerate(trainers, start=1):
        start_run(tab, seed)
    run_ids = {seed: wait_running(tab) for seed, tab in enumerate(trainers, start=1)}
    report["threads_training"] = thread_count(pid)
    cores, report["busy_threads_training"] = cpu_usage(pid)
    report["cores_training"] = round(cores, 2)

    start_run(waiting, MAX_JOBS + 1)  # one too many: the page must say the server is busy
    busy = main(waiting).locator('[data-testid="stAlert"]', has_text=BUSY)
    busy.wait_for(timeout=60_000)
    report["busy_message"] = busy.inner_text().strip()
    save()
    assert f"training {MAX_JOBS} models, its limit" in report["busy_message"]

    # While two models train, the other sessions open every page: the memory the ceiling must hold.
    for page_name in BROWSED:
        for tab in browsers:
            visit_by_sidebar(tab, page_name)
            no_exception(tab)
    report["rss_after_browsing_mb"] = round(sampler.peak_mb, 1)

    report["steps_seen"] = {seed: wait_step_grows(tab) for seed, tab in enumerate(trainers, 1)}
    stop_run(trainers[0])  # frees a slot for the waiting session
    wait_stopped(trainers[0])
    time.sleep(2)  # "stopped" shows just before the thread itself ends and leaves the count
    main(waiting).get_by_role("button", name="Start training").click()
    run_ids[MAX_JOBS + 1] = wait_running(waiting)
    report["steps_seen"][MAX_JOBS + 1] = wait_step_grows(waiting)
    for tab in [*trainers[1:], waiting]:
        stop_run(tab)
    for tab in [*trainers[1:], waiting]:
        wait_stopped(tab)
    report["training_phase_s"] = round(time.monotonic() - started, 1)
    report["run_ids"] = run_ids
    save()
    # Runs are numbered per session: every session's first run is its "run 1", whatever the others did.
    assert set(run_ids.values()) == {1}, run_ids
    assert healthy(url)

    # Each session that trained sees its own run in its picker and no other session's run; the
    # sessions that only browsed see none.
    for number, tab in enumerate(tabs, start=1):
        visit_by_sidebar(tab, "Latent map")  # a reload (goto) would start a new session
        no_exception(tab)
        chosen, options = picker_options(tab)
        runs = [o for o in options if RUN_NAME.match(o)]
        if number <= MAX_JOBS + 1:
            assert len(runs) == 1 and runs[0].startswith("run 1:"), (number, options)
            assert chosen == runs[0], (chosen, options)  # a finished run becomes the session's model
        else:
            assert runs == [], (number, options)

    # Leave runs training, then close every tab: the runs must stop by themselves.
    for seed, tab in enumerate(trainers, start=1):
        visit_by_sidebar(tab, "Train")
        start_run(tab, 100 + seed)
    for tab in trainers:
        wait_running(tab)
    report["threads_before_close"] = thread_count(pid)
    cores, report["busy_threads_before_close"] = cpu_usage(pid)
    report["cores_before_close"] = round(cores, 2)
    report["rss_peak_before_close_mb"] = round(sampler.peak_mb, 1)
    save()


def wait_until_quiet(pid: int, closed_at: float, report: dict) -> None:
    """Wait until no thread of the server burns CPU any more (the training threads have ended)."""
    deadline = closed_at + IDLE_TIMEOUT_S + CLEANUP_MARGIN_S
    quiet_windows = 0
    while True:
        cores, busy = cpu_usage(pid)
        quiet_windows = quiet_windows + 1 if busy == 0 and cores < 0.2 else 0
        if quiet_windows == 2:  # two in a row: a live but starved thread can look idle for a second
            break
        assert time.monotonic() < deadline, (
            f"{busy} threads still busy ({cores:.0%} of a core) {time.monotonic() - closed_at:.0f} s "
            f"after every tab closed; the idle timeout is {IDLE_TIMEOUT_S} s"
        )
    report["quiet_after_close_s"] = round(time.monotonic() - closed_at, 1)
    report["cores_after_close"] = round(cores, 2)
    report["threads_after_close"] = thread_count(pid)
