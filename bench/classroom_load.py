"""A class opens the link at once: many visitors against one server in a Cloud-sized memory cgroup.

    python bench/classroom_load.py [--visitors 100] [--spread-s 10] [--browsers 3]
                                   [--memory-limit-mb 690] [--json bench/results/classroom_100_10s.json]
    python bench/classroom_load.py --measure-sessions 20 [--json …]   # what one idle session costs

Visitors are websocket clients speaking Streamlit's own protocol (a BackMsg `rerun_script` per page,
ForwardMsgs back until `script_finished`), like the browser's, plus `--browsers` real headless
Chromium tabs among them. Each visitor opens the Overview, then the Latent map, and stays connected
(idle) until the class ends. Arrivals are spread evenly over `--spread-s` seconds (0: the same
instant). Reported: the capacity the server computed, how many visitors were admitted and how many
got the "class is full" page, p50/p95 seconds from arrival to the Latent map for the admitted ones,
the cgroup's peak, OOM kills (memory.oom_control / memory.events) and whether the server survived;
then the class leaves and one fresh visitor must be served (the next class). The machine's load
average is recorded beside the numbers.

`--measure-sessions N` measures instead what a session costs: N visitors one after another on the
Overview, then on the Latent map, the server's resident memory and the cgroup's anonymous memory
after each step (first-render transients are reported separately from what stays).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script, bench/ is on sys.path but the repository root is not

from explorer.ui.admission import ARRIVING_TITLE, FULL_TITLE  # noqa: E402  (the busy page's titles)
from tests.harness import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    MemoryLimit,
    RssSampler,
    ServerError,
    base_url,
    free_loopback_port,
    healthy,
    server_rss_mb,
    start_streamlit,
    stop_streamlit,
)
from tests.streamlit_protocol import LATENT_MAP, PageRun, ProtocolVisitor  # noqa: E402


async def visit(port: int, query: str = "") -> tuple[ProtocolVisitor, PageRun, PageRun | None]:
    """A visitor's arrival: the Overview, then (if admitted) the Latent map; the socket stays open."""
    visitor = ProtocolVisitor(port)
    overview = await visitor.open("", query)
    if overview.busy or not overview.finished:
        return visitor, overview, None
    return visitor, overview, await visitor.open(LATENT_MAP, query)


# ---------------------------------------------------------------------------- what a session costs
def _anon_mb(ceiling: MemoryLimit) -> float:
    return ceiling.charged_mb()["anonymous"]


async def measure_sessions(port: int, pid: int, ceiling: MemoryLimit, sessions: int) -> dict:
    """Resident cost of an idle session on each page, and a first render's transient, in MiB."""
    warm, _, _ = await visit(port)  # the server's shared caches: torch, digits, models, payloads
    await warm.close()
    await asyncio.sleep(2)
    report: dict = {
        "sessions": sessions,
        "after_warm_up": {"anon_mb": _anon_mb(ceiling), "rss_mb": round(server_rss_mb(pid), 1)},
    }
    visitors, transients = [], []
    for page in ("", LATENT_MAP):
        before = {"anon_mb": _anon_mb(ceiling), "rss_mb": server_rss_mb(pid)}
        for i in range(sessions):
            if page == "":
                visitors.append(ProtocolVisitor(port))
            with RssSampler(pid, every_s=0.02) as sampler:
                start_rss = server_rss_mb(pid)
                run = await visitors[i].open(page)
            assert run.finished and not run.busy, (page, run)
            transients.append(sampler.peak_mb - start_rss)
        await asyncio.sleep(1)
        after = {"anon_mb": _anon_mb(ceiling), "rss_mb": server_rss_mb(pid)}
        report[page or "overview"] = {
            "anon_per_session_mb": round((after["anon_mb"] - before["anon_mb"]) / sessions, 2),
            "rss_per_session_mb": round((after["rss_mb"] - before["rss_mb"]) / sessions, 2),
            "anon_after_mb": after["anon_mb"],
        }
    report["first_render_transient_rss_mb"] = {
        "median": round(statistics.median(transients), 1),
        "max": round(max(transients), 1),
    }
    for visitor in visitors:
        await visitor.close()
    await asyncio.sleep(3)
    report["after_all_left"] = {"anon_mb": _anon_mb(ceiling), "rss_mb": round(server_rss_mb(pid), 1)}
    return report


# ------------------------------------------------------------------------------------ a whole class
@dataclass
class Arrival:
    """One visitor of the class: what they saw and when (seconds from their own arrival)."""

    index: int
    browser: bool
    outcome: str = "pending"  # latent_map | busy | error | lost
    seconds_to_map: float | None = None
    seconds_to_busy: float | None = None
    busy_title: str | None = None
    seconds_to_map_after_busy: float | None = None  # the busy page let them in by itself


def _outcome(overview: PageRun, latent: PageRun | None) -> str:
    if overview.busy:
        return "busy"
    if latent is not None and latent.shows_latent_map:
        return "latent_map"
    if overview.closed or (latent is not None and latent.closed) or not overview.finished:
        return "lost"
    return "error"


async def protocol_arrival(port: int, arrival: Arrival, leave: asyncio.Event) -> None:
    started = time.perf_counter()
    visitor, overview, latent = await visit(port)
    arrival.outcome = _outcome(overview, latent)
    if arrival.outcome == "latent_map":
        arrival.seconds_to_map = time.perf_counter() - started
    elif arrival.outcome == "busy":
        arrival.seconds_to_busy = time.perf_counter() - started
        arrival.busy_title = next(t for t in overview.texts if t in (FULL_TITLE, ARRIVING_TITLE))
        await wait_on_busy_page(visitor, overview, arrival, started, leave)
    await leave.wait()  # an admitted visitor stays, idle, until the class ends
    await visitor.close()


async def wait_on_busy_page(visitor, busy: PageRun, arrival: Arrival, started: float, leave) -> None:
    """Stay on the busy page as a browser does: its fragment reruns on the server's timer until the
    app opens (then go on to the Latent map), or the class ends."""
    while busy.auto_rerun is not None and not leave.is_set():
        interval, fragment_id = busy.auto_rerun
        await asyncio.sleep(interval)
        if leave.is_set():
            return
        run = await visitor.open("", fragment_id=fragment_id)
        if not run.finished:
            return
        if run.elements and not run.busy:  # the fragment reran the app, which admitted us
            latent = await visitor.open(LATENT_MAP)
            if latent.shows_latent_map:
                arrival.seconds_to_map_after_busy = time.perf_counter() - started
            return
        if run.busy:  # the app reran and still turned us away: its new page has the timer
            busy = run


# A browser sees the Latent map when the plane's canvas is drawn; the busy page by its text.
PLANE_CANVAS = "canvas.vlp-canvas"
_class_started = [0.0]  # when the class's arrivals began (perf_counter)
BROWSER_TIMEOUT_MS = 120_000
BROWSER_LEAD_S = 3.0


async def browser_arrival(browser, url: str, arrival: Arrival, leave: asyncio.Event, delay_s: float) -> None:
    # The tab is open before its visitor arrives: the arrival is typing the address.
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(BROWSER_TIMEOUT_MS)
    await asyncio.sleep(max(0.0, delay_s - (time.perf_counter() - _class_started[0])))
    started = time.perf_counter()
    try:
        await page.goto(url, wait_until="domcontentloaded", timeout=BROWSER_TIMEOUT_MS)
        nav = page.locator('[data-testid="stSidebarNav"] a', has_text="Latent map").first
        busy = page.get_by_role("heading").filter(has_text=re.compile(f"{FULL_TITLE}|{ARRIVING_TITLE}"))
        await nav.or_(busy.first).wait_for(state="visible")
        if await busy.count():
            arrival.outcome, arrival.seconds_to_busy = "busy", time.perf_counter() - started
            arrival.busy_title = (await busy.first.inner_text()).strip()
            await nav.wait_for(state="visible")  # the busy page opens the app by itself
        await nav.click()
        await page.locator(PLANE_CANVAS).first.wait_for(state="visible")
        seconds = time.perf_counter() - started
        if await page.locator('[data-testid="stException"]').count():
            arrival.outcome = "error"
        elif arrival.outcome == "busy":
            if not leave.is_set():  # let in while the class was still there, not after it left
                arrival.seconds_to_map_after_busy = seconds
        else:
            arrival.outcome, arrival.seconds_to_map = "latent_map", seconds
    except Exception as exc:  # a timeout or a dead server: the visitor did not get the page
        print(f"[class] browser visitor {arrival.index}: {type(exc).__name__}: {str(exc)[:200]}")
        arrival.outcome = "lost"
    await leave.wait()
    await context.close()


async def run_class(
    port: int, visitors: int, spread_s: float, browsers: int, busy_wait_s: float = 0.0
) -> list[Arrival]:
    """`visitors` arrive evenly over `spread_s` seconds (0: all at once), `browsers` of them in
    Chromium, spread through the class. Once everyone has an outcome, visitors on a busy page keep
    waiting for it to let them in, up to `busy_wait_s`; then everyone leaves and this returns."""
    from playwright.async_api import async_playwright

    # Browsers open the link BROWSER_LEAD_S before the class: on this machine Chromium needs seconds
    # to load Streamlit's scripts, by which time websocket visitors would have taken every place.
    browser_slots = set(range(min(browsers, visitors)))
    arrivals = [Arrival(i, i in browser_slots) for i in range(visitors)]
    leave = asyncio.Event()
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        url = base_url(port)

        lead_s = BROWSER_LEAD_S if browser_slots else 0.0

        async def arrive(arrival: Arrival) -> None:
            delay_s = spread_s * arrival.index / max(visitors, 1)
            if arrival.browser:
                await browser_arrival(chromium, url, arrival, leave, delay_s)
            else:
                await asyncio.sleep(lead_s + delay_s)
                await protocol_arrival(port, arrival, leave)

        _class_started[0] = time.perf_counter()
        tasks = [asyncio.create_task(arrive(a)) for a in arrivals]
        while any(a.outcome == "pending" for a in arrivals) and not all(t.done() for t in tasks):
            await asyncio.sleep(0.2)
        deadline = time.perf_counter() + busy_wait_s
        while time.perf_counter() < deadline and any(
            a.outcome == "busy" and a.seconds_to_map_after_busy is None for a in arrivals
        ):
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)  # the class sits on the Latent map a moment, all connected
        leave.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await chromium.close()
    return arrivals


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q  # linear interpolation between closest ranks
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarise(arrivals: list[Arrival]) -> dict:
    times = [a.seconds_to_map for a in arrivals if a.seconds_to_map is not None]
    busy_times = [a.seconds_to_busy for a in arrivals if a.seconds_to_busy is not None]
    later = [a.seconds_to_map_after_busy for a in arrivals if a.seconds_to_map_after_busy is not None]
    websocket_times = [a.seconds_to_map for a in arrivals if a.seconds_to_map is not None and not a.browser]
    counts = {
        kind: sum(a.outcome == kind for a in arrivals)
        for kind in ("latent_map", "busy", "error", "lost", "pending")
    }
    return {
        "outcomes": counts,
        "browsers": {
            kind: sum(a.outcome == kind for a in arrivals if a.browser) for kind in counts if counts[kind]
        },
        "latent_map_s": {
            "p50": _round(percentile(times, 0.5)),
            "p95": _round(percentile(times, 0.95)),
            "max": _round(max(times, default=None)),
        },
        "latent_map_s_by_kind": {
            kind: [
                _round(a.seconds_to_map)
                for a in arrivals
                if a.seconds_to_map is not None and a.browser == browser
            ]
            if browser
            else {
                "p50": _round(percentile(websocket_times, 0.5)),
                "p95": _round(percentile(websocket_times, 0.95)),
            }
            for kind, browser in (("websocket", False), ("chromium", True))
        },
        "busy_page_s": {
            "p50": _round(percentile(busy_times, 0.5)),
            "max": _round(max(busy_times, default=None)),
        },
        "busy_titles": {
            title: sum(a.busy_title == title for a in arrivals) for title in (FULL_TITLE, ARRIVING_TITLE)
        },
        # visitors whose busy page let them in by itself before the class ended: seconds from arrival
        "busy_then_latent_map": len(later),
        "busy_then_latent_map_s": {
            "p50": _round(percentile(later, 0.5)),
            "p95": _round(percentile(later, 0.95)),
        },
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


class ChargeSampler:
    """The cgroup's anonymous memory (what only an OOM kill frees) sampled in a thread; peak in MiB."""

    def __init__(self, ceiling: MemoryLimit, every_s: float = 0.1):
        import threading

        self.ceiling, self.every_s, self.peak_anon_mb = ceiling, every_s, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="charge-sampler", daemon=True)

    def _sample(self) -> None:
        while True:
            try:
                self.peak_anon_mb = max(self.peak_anon_mb, _anon_mb(self.ceiling))
            except (OSError, KeyError):
                pass
            if self._stop.wait(self.every_s):
                return

    def __enter__(self) -> ChargeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


def run_benchmark(args: argparse.Namespace) -> dict:
    ceiling = MemoryLimit(args.memory_limit_mb, f"vae_classroom_{os.getpid()}")
    env = {**os.environ, "VAE_OFFLINE": "1"}
    port = free_loopback_port()
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"classroom_{port}.log"
    report: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "visitors": args.visitors, "spread_s": args.spread_s, "browsers": args.browsers, "cold": args.cold,
        "memory_limit_mb": args.memory_limit_mb, "load_average_before": load_average(),
        "app_dir": str(args.app_dir),
        "env": {k: v for k, v in env.items() if k.startswith("VAE_MAX_SESSIONS") or k == "VAE_FIRST_RENDERS"},
    }  # fmt: skip
    try:
        server = start_streamlit(port, env=env, log_path=log_path, prefix=ceiling.prefix, cwd=args.app_dir)
    except ServerError as exc:
        ceiling.remove()
        sys.exit(f"streamlit did not come up: {exc}")
    try:
        report["anon_at_start_mb"] = _anon_mb(ceiling)
        if not args.cold:  # the teacher opened the app before the class: torch, models, planes loaded
            teacher = asyncio.run(run_class(port, 1, 0, 0))[0]
            report["teacher"] = {"outcome": teacher.outcome, "seconds_to_map": _round(teacher.seconds_to_map)}
            time.sleep(2)
            report["anon_before_class_mb"] = _anon_mb(ceiling)
        with ChargeSampler(ceiling) as charges, RssSampler(server.pid, every_s=0.25) as rss:
            started = time.perf_counter()
            arrivals = asyncio.run(
                run_class(port, args.visitors, args.spread_s, args.browsers, args.busy_wait_s)
            )
            report["class_s"] = round(time.perf_counter() - started, 1)
            report["load_average_after_class"] = load_average()
            report.update(summarise(arrivals))
            report["server_alive_after_class"] = server.poll() is None
            time.sleep(3)  # the class has left: their sessions disconnect
            fresh = (
                asyncio.run(run_class(port, 1, 0, 0))
                if server.poll() is None
                else [Arrival(-1, False, "lost")]
            )
            report["next_visitor"] = {
                "outcome": fresh[0].outcome,
                "seconds_to_map": _round(fresh[0].seconds_to_map),
            }
        report["cgroup_peak_mb"] = round(ceiling.peak_mb(), 1)
        report["anon_peak_mb"] = round(charges.peak_anon_mb, 1)
        report["rss_peak_mb"] = round(rss.peak_mb, 1)
        report["oom_kills"] = ceiling.oom_kills()
        admitted = report["outcomes"]["latent_map"] + report["busy_then_latent_map"]
        if admitted and "anon_before_class_mb" in report:  # what each admitted visitor cost at the peak
            growth = report["anon_peak_mb"] - report["anon_before_class_mb"]
            report["anon_peak_growth_per_admitted_mb"] = round(growth / admitted, 2)
        report["server_alive"] = server.poll() is None and healthy(base_url(port))
        report["admission"] = admission_from_log(log_path)
        report["load_average_after"] = load_average()
    finally:
        stop_streamlit(server)
        ceiling.remove()
    return report


def admission_from_log(log_path: Path) -> str | None:
    """The capacity line explorer.ui.admission logs when it first computes the server's capacity."""
    try:
        lines = [
            line for line in log_path.read_text(errors="replace").splitlines() if "admits at most" in line
        ]
    except OSError:
        return None
    return lines[-1].split("admission:", 1)[-1].strip() if lines else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visitors", type=int, default=100)
    parser.add_argument(
        "--spread-s", type=float, default=10.0, help="arrivals spread over this (0: same instant)"
    )
    parser.add_argument("--browsers", type=int, default=3, help="visitors that are real Chromium tabs")
    parser.add_argument("--memory-limit-mb", type=int, default=690)
    parser.add_argument(
        "--busy-wait-s",
        type=float,
        default=60.0,
        help="how long turned-away visitors keep their busy page open",
    )
    parser.add_argument(
        "--app-dir", type=Path, default=REPO, help="serve this checkout (e.g. an older commit's)"
    )
    parser.add_argument("--cold", action="store_true", help="the class is the server's first visitors")
    parser.add_argument("--measure-sessions", type=int, default=0, help="measure per-session cost instead")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args()
    if args.measure_sessions:
        ceiling = MemoryLimit(args.memory_limit_mb, f"vae_classroom_measure_{os.getpid()}")
        port = free_loopback_port()
        server = start_streamlit(port, log_path=f"/tmp/classroom_measure_{port}.log", prefix=ceiling.prefix)
        try:
            report = asyncio.run(measure_sessions(port, server.pid, ceiling, args.measure_sessions))
            report["load_average"] = load_average()
        finally:
            stop_streamlit(server)
            ceiling.remove()
    else:
        report = run_benchmark(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
