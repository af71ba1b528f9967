"""Training speed of the Train page, watched in a real browser, beside the CLI, in one run.

    VAE_DATA_DIR=../shared/data/mnist python bench/app_vs_cli_speed.py --rounds 3 --epochs 5

Both sides train the Train page's default run (MLP, 2-D latent, hidden 256,128, batch 128, lr 1e-3,
seed 0, full MNIST: 50,000 training and 10,000 validation digits) with one torch thread, and both
are timed by the same clock: vae_core's Trainer, which counts only the seconds spent in training
steps (`elapsed_s`; validation and whatever the consumer does between events are left out).
Their speed is images trained / those seconds:

- CLI: `python -m vae_core train … --threads 1` (OMP_NUM_THREADS=1 too), its `images_per_s` from
  the JSON line it prints at the end;
- app: `streamlit run app.py` (one server for all rounds, a fresh browser session per round) and
  Debian's headless chromium, which opens the Train page, sets the same values, presses Start and
  watches the live page to the end (the polling fragment draws the whole time). The run's speed
  comes from its metrics CSV (the page's download; last row: images_seen / elapsed_s), and the
  speeds the progress bar showed while it trained are averaged beside it.

What the app loses is what the steps lose while the server shares the process (the GIL) and the
machine with them: the script thread building the live views, the websocket, the browser. A
control in every round measures what CPU work beside the training thread costs it on this
machine: the CLI again, beside a process that spins Python on the other core. Rounds
alternate CLI and app so both see the same background load; every timed run holds
/tmp/bench.lock (flock), which other benchmarks on this machine take too. Under other load, Linux
(sched_autogroup) shares the CPU between sessions, not threads: the server runs in a session of
its own (tests/harness.py), the CLI in this script's, so the server's other threads take
their CPU out of the training thread's share. The table gives the load average and the cores the
browser (playwright and chromium) and the server used while the app's run trained.
Writes bench/results/app_vs_cli_speed.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import csv
import fcntl
import io
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script: the repository root is not on sys.path

from tests.harness import (  # noqa: E402
    base_url,
    busiest_thread_shares,
    cpu_seconds,
    launch_chromium,
    open_page,
    start_for_benchmark,
    stop_streamlit,
    thread_schedstats,
)

LOCK = "/tmp/bench.lock"
SETTINGS = {"latent": 2, "hidden": "256,128", "batch": 128, "lr": "1e-3", "seed": 0}
PAGE_SPEED = re.compile(r"([\d,]+) images/s")
RESULT = REPO / "bench" / "results" / "app_vs_cli_speed.json"


@contextmanager
def bench_lock():
    """The lock `flock /tmp/bench.lock CMD` takes (flock(2) on the same file)."""
    with open(LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_sampling_threads(command: list[str], env: dict) -> tuple[subprocess.CompletedProcess, dict | None]:
    """Runs the CLI to its end, sampling its threads' schedstats on the way: the busiest one's
    shares of time on a CPU and waiting for one, from the first sample to the last."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=err, text=True)
        first = last = None
        while process.poll() is None:
            sample = thread_schedstats(process.pid), time.monotonic()
            first, last = first or sample, sample
            time.sleep(0.25)
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(command, process.returncode, out.read(), err.read())
    shares = (
        busiest_thread_shares(first[0], last[0], last[1] - first[1]) if first and last is not first else None
    )
    return done, shares


def cli_run(epochs: float, data_dir: str, folder: Path, busy_neighbour: bool = False) -> dict:
    """The CLI's run; with `busy_neighbour`, beside a process spinning on the other core.

    The spinning run is the control: it measures in the same round what any CPU work beside the
    training thread costs it on this machine (shared caches, memory bandwidth, and on a VM the
    host's SMT siblings), which the browser and the server's page work do to the app's run.
    """
    command = [
        "flock", LOCK, sys.executable, "-m", "vae_core", "train", "--kind", "mlp",
        "--latent-dim", str(SETTINGS["latent"]), "--hidden", SETTINGS["hidden"], "--epochs", f"{epochs:g}",
        "--batch-size", str(SETTINGS["batch"]), "--lr", SETTINGS["lr"], "--seed", str(SETTINGS["seed"]),
        "--device", "cpu", "--threads", "1", "--data-dir", data_dir, "--quiet",
        "--out", str(folder / "cli.safetensors"),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    load = os.getloadavg()[0]
    spinner = None
    if busy_neighbour:  # its own session, as the browser has: Linux shares CPU between sessions
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
        time.sleep(0.2)
        spun_before, started = cpu_of([spinner.pid]), time.monotonic()
    try:
        done, training_thread = run_sampling_threads(command, env)
    finally:
        if spinner is not None:
            spinner_cores = (cpu_of([spinner.pid]) - spun_before) / (time.monotonic() - started)
            spinner.kill()
            spinner.wait()
    if done.returncode != 0:
        sys.exit(f"the CLI failed ({done.returncode}):\n{done.stderr[-2000:]}")
    metrics = json.loads(done.stdout.strip().splitlines()[-1])
    result = {
        "images_per_s": metrics["images_per_s"],
        "train_seconds": metrics["train_seconds"],
        "steps": metrics["steps"],
        "load_average": load,
    }
    if training_thread is not None:
        result["training_thread"] = training_thread
    if spinner is not None:
        result["neighbour_cores"] = spinner_cores
    return result


def browser_pids(server_pid: int) -> list[int]:
    """This script's descendants but the server: playwright's driver and the chromium processes."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, stack = [], [os.getpid()]
    while stack:
        for child in children.get(stack.pop(), []):
            if child != server_pid:
                found.append(child)
                stack.append(child)
    return found


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except (OSError, IndexError, ValueError):  # gone since it was listed
            pass
    return total


def fill(page, label: str, value) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Tab")  # commits the value; Enter would submit the form


def csv_speed(text: str) -> tuple[float, float, int]:
    """(images/s, seconds in training steps, steps) of a run, from the last row of its metrics CSV."""
    last = list(csv.DictReader(io.StringIO(text)))[-1]
    images, seconds = int(last["images_seen"]), float(last["elapsed_s"])
    return images / seconds, seconds, int(last["step"])


def app_run(browser, url: str, server_pid: int, epochs: float, folder: Path, timeout_s: float) -> dict:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        open_page(page, url, "train")
        body = page.get_by_test_id("stMainBlockContainer")
        fill(page, "Latent size", SETTINGS["latent"])
        fill(page, "Hidden sizes (MLP)", SETTINGS["hidden"])
        fill(page, "Epochs", f"{epochs:g}")
        fill(page, "Batch size", SETTINGS["batch"])
        fill(page, "Learning rate", SETTINGS["lr"])
        fill(page, "Seed", SETTINGS["seed"])
        shown: list[float] = []
        with bench_lock():
            load = os.getloadavg()[0]
            watchers = browser_pids(server_pid)
            cpu_before = cpu_of(watchers), cpu_seconds(server_pid), time.monotonic()
            threads_before = thread_schedstats(server_pid)
            body.get_by_role("button", name="Start training").click()
            finished = body.get_by_text(re.compile("finished after|was stopped after|Training failed"))
            deadline = time.monotonic() + timeout_s
            while finished.count() == 0:
                if time.monotonic() > deadline:
                    sys.exit(f"the app's run did not end within {timeout_s:.0f} s")
                bar = page.locator('[data-testid="stProgress"]')
                text = bar.first.inner_text() if bar.count() else ""
                found = PAGE_SPEED.search(text)
                if found:
                    shown.append(float(found[1].replace(",", "")))
                time.sleep(1.0)
            seconds_watched = time.monotonic() - cpu_before[2]
            training_thread = busiest_thread_shares(
                threads_before, thread_schedstats(server_pid), seconds_watched
            )
            browser_cores = (cpu_of(watchers) - cpu_before[0]) / seconds_watched
            server_cores = (cpu_seconds(server_pid) - cpu_before[1]) / seconds_watched
        if "finished after" not in finished.first.inner_text():
            sys.exit(f"the app's run did not finish: {finished.first.inner_text()}")
        with page.expect_download(timeout=60_000) as download:
            body.get_by_role("button", name="Download metrics CSV").click()
        path = folder / "app-metrics.csv"
        download.value.save_as(path)
        images_per_s, seconds, steps = csv_speed(path.read_text())
    finally:
        context.close()
    return {
        "images_per_s": images_per_s,
        "train_seconds": seconds,
        "steps": steps,
        "page_images_per_s": statistics.mean(shown) if shown else None,
        "page_readings": len(shown),
        # cores used from Start to the end of the run, training thread included in the server's
        "browser_cores": browser_cores,
        "server_cores": server_cores,
        # the server's busiest thread (the run's) from Start to the end: shares of that time it
        # ran and waited runnable while the scheduler gave its CPU to something else
        "training_thread": training_thread,
        "load_average": load,
    }


def waiting(side: dict) -> str:
    thread = side.get("training_thread")
    return f"{thread['runqueue_wait']:.1%}" if thread else "–"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=float, default=5.0)
    parser.add_argument("--json", type=Path, default=RESULT)
    args = parser.parse_args()
    data_dir = os.environ.get("VAE_DATA_DIR")
    if not data_dir or not Path(data_dir).is_dir():
        sys.exit("set VAE_DATA_DIR to the folder with MNIST's IDX files: both sides train on full MNIST")
    os.environ["VAE_DATA_DIR"] = data_dir = str(Path(data_dir).resolve())  # the server runs elsewhere

    from playwright.sync_api import sync_playwright

    server, port, start_s = start_for_benchmark("app_vs_cli_speed", timeout_s=120)
    rounds = []
    try:
        with sync_playwright() as playwright, tempfile.TemporaryDirectory() as tmp:
            browser = launch_chromium(playwright)
            folder = Path(tmp)
            for number in range(1, args.rounds + 1):
                # CLI first in odd rounds, app first in even ones: neither always runs last; the
                # control (the CLI beside a busy core) runs between them
                order = (
                    ("cli", "cli_busy_neighbour", "app")
                    if number % 2
                    else ("app", "cli_busy_neighbour", "cli")
                )
                result = {}
                for side in order:
                    if side == "cli":
                        result["cli"] = cli_run(args.epochs, data_dir, folder)
                    elif side == "cli_busy_neighbour":
                        result[side] = cli_run(args.epochs, data_dir, folder, busy_neighbour=True)
                    else:
                        result["app"] = app_run(
                            browser, base_url(port), server.pid, args.epochs, folder, 60 * args.epochs + 120
                        )
                result["ratio"] = result["app"]["images_per_s"] / result["cli"]["images_per_s"]
                result["busy_neighbour_ratio"] = (
                    result["cli_busy_neighbour"]["images_per_s"] / result["cli"]["images_per_s"]
                )
                rounds.append(result)
                print(
                    f"round {number}: CLI {result['cli']['images_per_s']:,.0f}  app "
                    f"{result['app']['images_per_s']:,.0f} images/s  ratio {result['ratio']:.3f}  "
                    f"(CLI beside a busy core: {result['busy_neighbour_ratio']:.3f})",
                    flush=True,
                )
            browser.close()
    finally:
        stop_streamlit(server)

    ratios = [r["ratio"] for r in rounds]
    page_ratios = [
        r["app"]["page_images_per_s"] / r["cli"]["images_per_s"]
        for r in rounds
        if r["app"]["page_images_per_s"]
    ]
    app_waits = [r["app"]["training_thread"]["runqueue_wait"] for r in rounds if r["app"]["training_thread"]]
    summary = {
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        # CLI beside one core of spinning Python / CLI alone: what a busy neighbour core costs
        "busy_neighbour_ratio_median": statistics.median(r["busy_neighbour_ratio"] for r in rounds),
        "browser_cores_median": statistics.median(r["app"]["browser_cores"] for r in rounds),
        "app_training_thread_runqueue_wait_median": statistics.median(app_waits) if app_waits else None,
        "page_ratio_median": statistics.median(page_ratios) if page_ratios else None,
        "cli_images_per_s_median": statistics.median(r["cli"]["images_per_s"] for r in rounds),
        "app_images_per_s_median": statistics.median(r["app"]["images_per_s"] for r in rounds),
    }
    report = {
        "what": "images trained / seconds in training steps (vae_core Trainer's clock) on both sides",
        "settings": {**SETTINGS, "epochs": args.epochs, "data": "full MNIST", "threads": 1},
        "server_start_s": start_s,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "rounds": rounds,
        "summary": summary,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(
        "| round | CLI images/s | app images/s (run) | page showed | app / CLI | "
        "CLI beside a busy core / CLI | browser, server cores | training thread waiting for a CPU (CLI, app) | "
        "load avg (CLI, app) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for number, r in enumerate(rounds, 1):
        cli, app = r["cli"], r["app"]
        page_speed = f"{app['page_images_per_s']:,.0f}" if app["page_images_per_s"] else "–"
        print(
            f"| {number} | {cli['images_per_s']:,.0f} | {app['images_per_s']:,.0f} | {page_speed} | "
            f"{r['ratio']:.3f} | {r['busy_neighbour_ratio']:.3f} | "
            f"{app['browser_cores']:.2f}, {app['server_cores']:.2f} | "
            f"{waiting(cli)}, {waiting(app)} | "
            f"{cli['load_average']:.2f}, {app['load_average']:.2f} |"
        )
    print(
        f"\nmedian app / CLI: {summary['ratio_median']:.3f} (min {summary['ratio_min']:.3f}); CLI beside a "
        f"busy core / CLI: {summary['busy_neighbour_ratio_median']:.3f}; wrote {args.json}"
    )


if __name__ == "__main__":
    main()
