"""Is the app ready for Streamlit Community Cloud? Cold first render, memory, import costs.

    python bench/cloud_readiness.py [--json out.json] [--train-seconds 20] [--cold] [--memory-limit-mb 690]

Starts a `streamlit run app.py` (offline; $VAE_DATA_DIR and $VAE_PRETRAINED_DIR pass through,
so with $VAE_DATA_DIR set the pages hold the 10k test digits and train on the 60k, as on Cloud
after its download) and measures against targets:

- first render: from the browser's first request to the Overview page showing its title, the
  model card's metrics and its prior-samples picture (the first script run pays for importing
  torch and loading data and models, unless the page is drawn before them); `--cold` drops the
  kernel's page cache before the server starts (root), so torch's libraries come from disk, as on a
  freshly booted container;
- then `--idle-sessions` more visitors open the Overview one after another (their first render
  each) and stay connected, idle, while the first session opens every page and trains: Cloud's
  smallest container must hold them all (`--memory-limit-mb`: cgroup peak, OOM kills);
- server memory (RSS, the server and its children) after opening every page once in one session;
- peak server memory while one run with the Train page's default settings trains.

Also reports what the app's modules cost to import (`python -X importtime`, and RSS after import).
Prints a table and writes JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script, bench/ is on sys.path but the repository root is not

from tests.harness import (  # noqa: E402
    PAGES,
    MemoryLimit,
    RssSampler,
    ServerError,
    base_url,
    drop_page_cache,
    launch_chromium,
    server_rss_mb,
    start_for_benchmark,
    stop_streamlit,
    wait_for_app_idle,
)

TARGETS = {"first_render_s": 4.0, "rss_after_pages_mb": 600.0, "rss_training_peak_mb": 800.0}
# The Overview is useful when its title is there, the model card's four metrics have values and
# its prior-samples picture has been decoded by the browser.
OVERVIEW_RENDERED_JS = """() => {
  const title = [...document.querySelectorAll('h1')].some(h => h.innerText.includes('VAE Explorer'));
  const values = [...document.querySelectorAll('[data-testid="stMetricValue"]')]
    .filter(v => v.offsetParent !== null && v.innerText.trim() !== '');
  const pictures = [...document.querySelectorAll('[data-testid="stImage"] img')]
    .filter(img => img.complete && img.naturalWidth > 0);
  return title && values.length >= 4 && pictures.length >= 1;
}"""
STEP_TEXT = re.compile(r"step ([\d,]+) / ([\d,]+)")
IMPORT_SETS = {  # what each part of the app pulls in when first imported
    "app.py's imports: sidebar, widgets, resources (the Overview's first paint)": (
        "import explorer.ui.sidebar, explorer.ui.widgets, explorer.ui.resources"
    ),
    "vae_core + figures (every page after its first paint)": "import explorer.state.registry, explorer.figures.plots",
    "explorer.figures.training (Train)": "import explorer.figures.training",
    "explorer.training.jobs (Train)": "import explorer.training.jobs",
    "pandas (a component's dict data, st.table)": "import pandas",
    "torchvision.datasets (MNIST download only)": "from torchvision.datasets import MNIST",
}
WATCHED_PACKAGES = ("torch", "torchvision", "streamlit", "pandas", "pyarrow", "plotly", "altair", "numpy", "PIL",
                    "safetensors", "mlxtend", "scipy", "sklearn", "matplotlib")  # fmt: skip


CUDA_LIBRARY = re.compile(r"lib(torch|c10)_cuda|libcaffe2_nvrtc|libtorch_nvshmem|libcuda\.so")


def rss_breakdown(pid: int) -> dict[str, float]:
    """The server's resident MiB by kind of mapping: anonymous (heap, tensors, Python objects),
    CUDA libraries (file pages a CPU-only torch would not map at all), other files."""
    kinds = {"anonymous": 0, "cuda_libraries": 0, "other_files": 0}
    current = "anonymous"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            name = fields[5] if len(fields) > 5 else ""
            if not name.startswith("/"):
                current = "anonymous"
            elif "/nvidia/" in name or CUDA_LIBRARY.search(name):
                current = "cuda_libraries"
            else:
                current = "other_files"
        elif fields[0] == "Rss:":
            kinds[current] += int(fields[1])
    return {kind: round(kb / 1024, 1) for kind, kb in kinds.items()}


def torch_library_files(python: str) -> list[Path]:
    """torch's shared libraries and the NVIDIA ones its CUDA wheel brings, found without importing
    torch (which would read them into the page cache)."""
    probe = "import importlib.util as u; print(u.find_spec('torch').submodule_search_locations[0])"
    torch_dir = Path(
        subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    )
    return sorted([*torch_dir.glob("lib/*.so*"), *(torch_dir.parent / "nvidia").glob("**/*.so*")])


def cached_mb(files: list[Path]) -> float | None:
    """How much of `files` is in the page cache (util-linux fincore), MiB; None without fincore.
    A page cache drop keeps pages other processes have mapped: on a shared machine another
    process with torch loaded keeps part of it warm, and this says how much."""
    try:
        out = subprocess.run(
            ["fincore", "--bytes", "--noheadings", "--output", "RES", *map(str, files)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return round(sum(int(line) for line in out.split()) / 2**20, 1)


def visit_by_sidebar(page, name: str, timeout_ms: float) -> float:
    """Click a page in the sidebar (same session) and wait until its run has finished; seconds."""
    previous = " | ".join(page.locator("h1").all_inner_texts())
    started = time.perf_counter()
    page.get_by_test_id("stSidebarNav").locator("a", has_text=name).first.click()
    page.wait_for_function(
        "(previous) => { const t = [...document.querySelectorAll('h1')].map(h => h.innerText).join(' | ');"
        " return t !== '' && t !== previous; }",
        arg=previous,
        timeout=timeout_ms,
    )
    wait_for_app_idle(page, timeout_ms)
    return time.perf_counter() - started


def open_overview(browser, url: str, timeout_ms: float):
    """A new visitor (browser page, so a new session) on the Overview: (page, seconds to useful)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(timeout_ms)
    started = time.perf_counter()
    page.goto(url, wait_until="commit")
    page.wait_for_function(OVERVIEW_RENDERED_JS, polling="raf", timeout=timeout_ms)
    return page, round(time.perf_counter() - started, 2)


def measure_app(
    url: str, pid: int, train_seconds: float, timeout_ms: float, idle_sessions: int = 3, limit=None
) -> dict:
    from playwright.sync_api import sync_playwright

    result: dict = {}
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)  # started before the clock: the browser is not the app
        with RssSampler(pid) as first_render:
            started = time.perf_counter()
            page, result["first_render_s"] = open_overview(browser, url, timeout_ms)
            wait_for_app_idle(page, timeout_ms)
            result["first_run_done_s"] = round(time.perf_counter() - started, 2)
        result["rss_after_first_render_mb"] = round(server_rss_mb(pid), 1)
        result["data_note"] = page.get_by_test_id("stSidebar").get_by_text("Digits:").inner_text()
        result["model"] = (
            page.get_by_test_id("stSidebar").get_by_role("combobox", name="Model", exact=True).input_value()
        )

        idle, renders = [], []  # more visitors, warm; they stay connected (their sessions live on)
        for _ in range(idle_sessions):
            other, seconds = open_overview(browser, url, timeout_ms)
            wait_for_app_idle(other, timeout_ms)
            idle.append(other)
            renders.append(seconds)
        result["session_first_render_s"] = [result["first_render_s"], *renders]
        result["warm_render_s"] = renders[0] if renders else None
        result["rss_with_idle_sessions_mb"] = round(server_rss_mb(pid), 1)

        with RssSampler(pid) as tour:
            result["page_first_visit_s"] = {
                name: round(visit_by_sidebar(page, name, timeout_ms), 2) for name in list(PAGES)[1:]
            }
        time.sleep(1.0)
        result["rss_after_pages_mb"] = round(server_rss_mb(pid), 1)
        result["rss_after_pages_breakdown_mb"] = rss_breakdown(pid)
        result["rss_peak_during_pages_mb"] = round(max(tour.peak_mb, first_render.peak_mb), 1)

        visit_by_sidebar(page, "Train", timeout_ms)
        body = page.get_by_test_id("stMainBlockContainer")
        with RssSampler(pid) as training:
            body.get_by_role("button", name="Start training").click()  # the form's defaults
            page.get_by_text(STEP_TEXT).first.wait_for(timeout=timeout_ms)
            result["training_data"] = body.get_by_text(" on cpu · ").first.inner_text()
            ended = body.get_by_text(re.compile(r"\*?\*?run \d+.*(finished|was stopped) after")).first
            deadline, progress = time.monotonic() + train_seconds, ""
            while time.monotonic() < deadline and ended.count() == 0:
                progress = page.locator('[data-testid="stProgress"]').first.inner_text()
                time.sleep(0.5)
            stop = body.get_by_role("button", name="Stop", exact=True)
            if stop.count():  # the defaults can finish within the window on a fast machine
                stop.click()
            ended.wait_for(timeout=timeout_ms)
        result["training_progress"] = progress
        result["training_end"] = ended.inner_text().split(". It is now")[0]
        result["rss_training_peak_mb"] = round(training.peak_mb, 1)
        if limit is not None:  # every session still open, the run just ended
            result["cgroup_charged_after_training_mb"] = limit.charged_mb()
        wait_for_app_idle(page, timeout_ms)
        time.sleep(1.0)
        result["rss_after_training_mb"] = round(server_rss_mb(pid), 1)
        result["rss_after_training_breakdown_mb"] = rss_breakdown(pid)
        browser.close()
    return result


def import_costs(python: str) -> list[dict]:
    """Each import set in a fresh interpreter: wall seconds, resident MiB after it, and the
    cumulative import time of the heavy packages it pulled in (from `python -X importtime`)."""
    probe = (
        "import re, sys, time\nstarted = time.perf_counter()\n{code}\nseconds = time.perf_counter() - started\n"
        "rss = int(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read())[1]) / 1024\n"
        "print(round(rss, 1), round(seconds, 2))"
    )
    rows = []
    for label, code in IMPORT_SETS.items():
        run = subprocess.run(
            [python, "-X", "importtime", "-c", probe.format(code=code)],
            cwd=REPO, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if run.returncode != 0:
            rows.append({"imports": label, "error": run.stderr.strip().splitlines()[-1]})
            continue
        cumulative = {}  # a package's own line: each module is imported once, so it appears once
        for line in run.stderr.splitlines():
            found = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)$", line)
            if found and found[2] in WATCHED_PACKAGES:
                cumulative[found[2]] = int(found[1]) / 1e6
        rss, seconds = run.stdout.split()
        heaviest = sorted(((s, p) for p, s in cumulative.items() if s >= 0.05), reverse=True)
        rows.append({
            "imports": label, "rss_mb": float(rss), "seconds": float(seconds),
            "heavy_packages": {p: round(s, 2) for s, p in heaviest},
        })  # fmt: skip
    return rows


def serving_torch(python: str) -> str:
    """The torch build the server ran: the CUDA wheel maps about 280 MB more than the CPU one."""
    probe = "import torch; print(torch.__version__, torch.version.cuda or 'none')"
    version, cuda = subprocess.run(
        [python, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    return f"{version} (CUDA {cuda})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the results here")
    parser.add_argument(
        "--train-seconds", type=float, default=20.0, help="how long the training run is sampled"
    )
    parser.add_argument("--timeout", type=float, default=120, help="seconds for a page run")
    parser.add_argument("--skip-imports", action="store_true")
    parser.add_argument(
        "--cold", action="store_true",
        help="drop the kernel's page cache before the server starts (root): torch and the models come from disk",
    )  # fmt: skip
    parser.add_argument(
        "--idle-sessions", type=int, default=3,
        help="visitors who open the Overview after the first and stay connected while it tours and trains",
    )  # fmt: skip
    parser.add_argument(
        "--server-python", default=sys.executable,
        help="the interpreter that serves the app, e.g. a venv with the CPU-only torch wheel Cloud can use",
    )  # fmt: skip
    parser.add_argument(
        "--memory-limit-mb", type=int,
        help="run the server in a cgroup with this memory limit (Cloud's smallest is about 690) and report "
        "whether every page and the training run still work, the cgroup's peak and its OOM kills",
    )  # fmt: skip
    args = parser.parse_args()
    limit = MemoryLimit(args.memory_limit_mb, f"vae_cloud_{os.getpid()}") if args.memory_limit_mb else None
    report: dict = {"cold": args.cold}
    if args.cold:
        libraries = torch_library_files(args.server_python)
        try:
            drop_page_cache()
        except ServerError as exc:
            sys.exit(str(exc))
        report["torch_libraries_mb"] = round(sum(f.stat().st_size for f in libraries) / 2**20, 1)
        report["torch_libraries_cached_after_drop_mb"] = cached_mb(libraries)
    load_at_start = os.getloadavg()
    server, port, startup_s = start_for_benchmark(
        "cloud_readiness", args.timeout, python=args.server_python, prefix=limit.prefix if limit else ()
    )
    report["server_start_s"] = round(startup_s, 2)
    try:
        report["rss_idle_mb"] = round(server_rss_mb(server.pid), 1)
        report.update(
            measure_app(
                base_url(port), server.pid, args.train_seconds, args.timeout * 1000, args.idle_sessions, limit
            )
        )
    except Exception as exc:
        if limit is None:
            raise
        # Under a limit a failure is the finding: say what happened instead of a traceback.
        report["failed"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    finally:
        alive = server.poll() is None
        stop_streamlit(server)
        if limit is not None:
            report["memory_limit"] = {
                "limit_mb": limit.limit_mb, "cgroup_peak_mb": round(limit.peak_mb(), 1),
                "oom_kills": limit.oom_kills(), "server_alive_at_end": alive, "every_step_worked": "failed" not in report,
            }  # fmt: skip
            limit.remove()
    if "failed" in report:
        print(json.dumps(report, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        sys.exit(1)
    report["imports"] = [] if args.skip_imports else import_costs(args.server_python)
    report["targets"] = {
        key: {"target": target, "measured": report[key], "met": report[key] <= target}
        for key, target in TARGETS.items()
    }
    report["machine"] = {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2),
                         "load_average_at_start": [round(x, 2) for x in load_at_start],
                         "platform": platform.platform(), "python": platform.python_version()}  # fmt: skip
    report["machine"]["torch"] = serving_torch(args.server_python)

    rows = [
        ("server start, process -> health (s)", report["server_start_s"], ""),
        (f"first render{', page cache dropped' if args.cold else ''}: request -> title + card + picture (s)",
         report["first_render_s"], "first_render_s"),
        ("first script run finished (s)", report["first_run_done_s"], ""),
        ("first render of each session, first then idle ones (s)", report["session_first_render_s"], ""),
        ("server RSS with every session open (MiB)", report["rss_with_idle_sessions_mb"], ""),
        ("server RSS idle, before any visitor (MiB)", report["rss_idle_mb"], ""),
        ("server RSS after the first render (MiB)", report["rss_after_first_render_mb"], ""),
        ("server RSS after every page once (MiB)", report["rss_after_pages_mb"], "rss_after_pages_mb"),
        ("server RSS peak while training, defaults (MiB)", report["rss_training_peak_mb"], "rss_training_peak_mb"),
        ("server RSS after the run stopped (MiB)", report["rss_after_training_mb"], ""),
        ("training run, last progress seen", report["training_progress"], ""),
        ("training run, end", report["training_end"], ""),
        ("digits", report["data_note"], ""),
        ("machine", f"{report['machine']['cpus']} CPUs, load {report['machine']['load_average_1m']}, "
                    f"torch {report['machine']['torch']}", ""),
    ]  # fmt: skip
    if args.cold:
        rows.insert(1, (
            "torch's libraries still in the page cache after the drop (MiB)",
            f"{report['torch_libraries_cached_after_drop_mb']} of {report['torch_libraries_mb']}", "",
        ))  # fmt: skip
    width = max(len(name) for name, _, _ in rows)
    print(f"| {'measure'.ljust(width)} | value | target |\n|{'-' * (width + 2)}|-------|--------|")
    for name, value, key in rows:
        target = ""
        if key:
            check = report["targets"][key]
            target = f"<= {check['target']:g} {'met' if check['met'] else 'MISSED'}"
        print(f"| {name.ljust(width)} | {value} | {target} |")
    if report["imports"]:
        print(
            "\n| import (fresh interpreter) | RSS MiB | seconds | packages >= 0.05 s (cumulative) |\n|---|---|---|---|"
        )
        for row in report["imports"]:
            if "error" in row:
                print(f"| {row['imports']} | error: {row['error']} | | |")
            else:
                heavy = ", ".join(f"{p} {t:.2f}s" for p, t in row["heavy_packages"].items())
                print(f"| {row['imports']} | {row['rss_mb']} | {row['seconds']} | {heavy} |")
    if "memory_limit" in report:
        print(f"\nunder a {args.memory_limit_mb} MiB memory limit: {report['memory_limit']}")
    print(f"\npage first visits (s): {report['page_first_visit_s']}")
    print(f"RSS by mapping after every page (MiB): {report['rss_after_pages_breakdown_mb']}")
    print(f"RSS by mapping after training (MiB): {report['rss_after_training_breakdown_mb']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
