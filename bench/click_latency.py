"""Click -> decoded image latency on the Latent map, in a real browser, and the server's memory.

    python bench/click_latency.py --clicks 30 --json out.json

Starts `streamlit run app.py` on a free loopback port (offline, $VAE_DATA_DIR and
$VAE_PRETRAINED_DIR passed through), opens every page once in Debian's headless chromium and reads
the server's resident memory, then clicks N different empty spots of the latent map. A click's
latency runs from the browser's pointerdown to the first animation frame in which the decoded
panel shows the new point's "Point (x, y)" text and a new, fully loaded image: what the user sees,
server round trip and redraw included. Server and browser start through bench/app_harness.py, as the
browser tests' do.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script, bench/ is on sys.path but the repository root is not

from bench.app_harness import (  # noqa: E402
    PAGES,
    base_url,
    launch_chromium,
    start_for_benchmark,
    stop_streamlit,
)
from bench.app_harness import server_rss_mb as rss_mb  # noqa: E402

PAGE_PATHS = list(PAGES.values())
GRAPH = '[data-testid="stPlotlyChart"] .js-plotly-plot'

# Plot area and digit markers in screen pixels, from plotly's own axes (trace 0 is the click grid).
GEOMETRY_JS = """(selector) => {
  const gd = document.querySelector(selector);
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, box = gd.getBoundingClientRect();
  const digits = [];
  gd._fullData.forEach((trace, curve) => {
    if (curve === 0 || !trace.customdata || trace.mode !== 'markers') return;
    for (let i = 0; i < trace.x.length; i++)
      digits.push([box.x + xa._offset + xa.l2p(trace.x[i]), box.y + ya._offset + ya.l2p(trace.y[i])]);
  });
  return {left: box.x + xa._offset, top: box.y + ya._offset, width: xa._length, height: ya._length, digits};
}"""
# The decoded panel is the column beside the chart.
PANEL_JS = """() => {
  const block = [...document.querySelectorAll('[data-testid="stHorizontalBlock"]')]
    .find(b => b.querySelector('[data-testid="stPlotlyChart"]'));
  const right = block && block.querySelectorAll(':scope > [data-testid="stColumn"]')[1];
  if (!right) return null;
  const img = right.querySelector('img');
  return {text: right.innerText, src: img ? img.src : null, loaded: Boolean(img && img.complete && img.naturalWidth)};
}"""
UPDATED_JS = (
    "([oldText, oldSrc]) => {\n  const panel = ("
    + PANEL_JS
    + """)();
  if (!panel || !panel.loaded || panel.text === oldText || panel.src === oldSrc) return false;
  if (!/Point \\(/.test(panel.text)) return false;
  return performance.now();
}"""
)

CROSS_AT_POINT_JS = (
    "(selector) => {\n  const panel = ("
    + PANEL_JS
    + """)();
  const match = panel && /Point \\((-?[0-9.]+), (-?[0-9.]+)\\)/.exec(panel.text);
  const gd = document.querySelector(selector);
  const cross = gd && gd._fullData && gd._fullData.find(t => t.name === 'decoded point');
  const drawn = Boolean(match && cross) && cross.x[0].toFixed(3) === match[1] && cross.y[0].toFixed(3) === match[2];
  return drawn && performance.now();
}"""
)


def wait_for_run(page, timeout_ms: float) -> None:
    # Streamlit marks the app root with the script's run state ("initial" before the first run)
    page.wait_for_selector(
        '[data-testid="stApp"][data-test-script-state="notRunning"]', state="attached", timeout=timeout_ms
    )


def empty_spots(geometry: dict, clearance_px: float, per_side: int = 20, margin_px: float = 12) -> list:
    import numpy as np

    digits = np.array(geometry["digits"])
    spots = []
    for sy in np.linspace(
        geometry["top"] + margin_px, geometry["top"] + geometry["height"] - margin_px, per_side
    ):
        for sx in np.linspace(
            geometry["left"] + margin_px, geometry["left"] + geometry["width"] - margin_px, per_side
        ):
            if np.hypot(digits[:, 0] - sx, digits[:, 1] - sy).min() >= clearance_px:
                spots.append((float(sx), float(sy)))
    return spots


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def measure(url: str, server: subprocess.Popen, clicks: int, timeout_ms: float, seed: int) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(timeout_ms)
        page_seconds = {}
        for path in PAGE_PATHS:  # once each: warms every cache the pages fill, so RSS is the steady state
            start = time.perf_counter()
            page.goto(f"{url}/{path}", wait_until="domcontentloaded")
            wait_for_run(page, timeout_ms)
            page_seconds[path or "overview"] = round(time.perf_counter() - start, 2)
        rss_after_pages = rss_mb(server.pid)

        page.goto(f"{url}/latent_map", wait_until="domcontentloaded")
        wait_for_run(page, timeout_ms)
        page.wait_for_selector(f"{GRAPH} .nsewdrag")
        model = page.locator('[data-testid="stSidebar"]').get_by_role("combobox", name="Model", exact=True)
        model_label = model.input_value() if model.count() else "?"
        page.evaluate(
            "() => document.addEventListener('pointerdown', () => { window.__clickT0 = performance.now(); }, true)"
        )

        rng = random.Random(seed)
        latencies_ms, wall_ms, chart_ms, previous = [], [], [], None
        for n in range(clicks + 1):  # click 0 warms up: its redraw also re-lays out the legend
            geometry = page.evaluate(GEOMETRY_JS, GRAPH)
            spots = empty_spots(geometry, clearance_px=15)
            step = max(geometry["width"], geometry["height"]) / 79  # the grid's pitch: 80 points a side
            if previous is not None:  # a spot that maps to another grid point than the last click's
                spots = [s for s in spots if max(abs(s[0] - previous[0]), abs(s[1] - previous[1])) > 2 * step]
            if not spots:
                sys.exit("no empty spot on the latent map to click")
            spot = rng.choice(spots)
            before = page.evaluate(PANEL_JS)
            start = time.perf_counter()
            page.mouse.click(*spot)
            done_at = page.wait_for_function(
                UPDATED_JS, arg=[before["text"], before["src"]], polling="raf", timeout=timeout_ms
            ).json_value()
            wall = (time.perf_counter() - start) * 1000
            click_at = page.evaluate("() => window.__clickT0")
            if n > 0:
                latencies_ms.append(done_at - click_at)
                wall_ms.append(wall)
            previous = spot
            # the next click's targets come from the redrawn chart: wait for its cross at the new point
            chart_at = page.wait_for_function(CROSS_AT_POINT_JS, arg=GRAPH, polling="raf", timeout=timeout_ms)
            if n > 0:  # an upper bound: polling starts only once the image has been seen
                chart_ms.append(chart_at.json_value() - click_at)
            wait_for_run(page, timeout_ms)
        rss_after_clicks = rss_mb(server.pid)
        browser.close()
    return {
        "model": model_label,
        "page_first_visit_s": page_seconds,
        "rss_after_pages_mb": round(rss_after_pages, 1),
        "rss_after_clicks_mb": round(rss_after_clicks, 1),
        "latencies_ms": [round(v, 1) for v in latencies_ms],
        "wall_ms": [round(v, 1) for v in wall_ms],
        "chart_ms": [round(v, 1) for v in chart_ms],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=30)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--timeout", type=float, default=90, help="seconds for a page run or a click")
    parser.add_argument("--seed", type=int, default=0, help="which empty spots get clicked")
    args = parser.parse_args()
    server, port, startup_s = start_for_benchmark("click_latency", args.timeout)
    try:
        rss_idle = rss_mb(server.pid)
        result = measure(base_url(port), server, args.clicks, args.timeout * 1000, args.seed)
    finally:
        stop_streamlit(server)

    latencies = result["latencies_ms"]
    report = {
        "clicks": len(latencies),
        "p50_ms": round(percentile(latencies, 0.5), 1),
        "p95_ms": round(percentile(latencies, 0.95), 1),
        "mean_ms": round(statistics.fmean(latencies), 1),
        "min_ms": round(min(latencies), 1),
        "max_ms": round(max(latencies), 1),
        "wall_p50_ms": round(percentile(result["wall_ms"], 0.5), 1),
        "chart_redrawn_p50_ms": round(percentile(result["chart_ms"], 0.5), 1),
        "chart_redrawn_p95_ms": round(percentile(result["chart_ms"], 0.95), 1),
        "server_startup_s": round(startup_s, 2),
        "server_rss_idle_mb": round(rss_idle, 1),
        "server_rss_mb": result["rss_after_pages_mb"],
        "server_rss_after_clicks_mb": result["rss_after_clicks_mb"],
        "model": result["model"],
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "platform": platform.platform(),
        "page_first_visit_s": result["page_first_visit_s"],
        "latencies_ms": latencies,
    }
    rows = [
        ("clicks", report["clicks"]),
        ("click -> image p50 (ms)", report["p50_ms"]),
        ("click -> image p95 (ms)", report["p95_ms"]),
        ("click -> image mean (ms)", report["mean_ms"]),
        ("min / max (ms)", f"{report['min_ms']} / {report['max_ms']}"),
        (
            "click -> chart redrawn p50 / p95 (ms)",
            f"{report['chart_redrawn_p50_ms']} / {report['chart_redrawn_p95_ms']}",
        ),
        ("server RSS idle (MiB)", report["server_rss_idle_mb"]),
        ("server RSS after every page (MiB)", report["server_rss_mb"]),
        ("server RSS after the clicks (MiB)", report["server_rss_after_clicks_mb"]),
        ("model", report["model"]),
        ("load average (1 min)", report["load_average_1m"]),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"| {'measure'.ljust(width)} | value |\n|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
