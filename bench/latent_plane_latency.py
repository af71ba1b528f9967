"""The latent plane in a real browser, beside the plotly map it replaced, in one run.

    python bench/latent_plane_latency.py --hovers 100 --clicks 20 --json out.json

Starts two servers on free loopback ports: this checkout (the latent plane component) and the
last commit with the plotly map over an invisible 80x80 grid (`git archive` of --plotly-commit into
a temporary folder), both offline with the same $VAE_DATA_DIR and pretrained models, and drives
Debian's headless chromium (tests/harness.py) against each:

- hover -> decoded digit painted: from the pointer event (playwright's real mouse) to a message
  posted from the next animation frame, handled once that frame is rendered (p50, p95);
- requests the server receives per 100 hovers (websocket frames + HTTP requests the page sends);
- frames per second while a synthetic pointer sweeps the 10,000 digits, one move per frame;
- click -> Python-side panel updated: pointerdown to the frame in which the panel beside the map
  shows the new point's text and its image has loaded;
- bytes: the payload per model (points, labels, decoder weights, plane map) and the websocket bytes
  a page load and a click receive;
- browser memory: JS heap (CDP Performance.getMetrics) after the run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script: the repository root is not on sys.path

from tests.harness import (  # noqa: E402
    ServerError,
    base_url,
    free_loopback_port,
    launch_chromium,
    start_for_benchmark,
    start_streamlit,
    stop_streamlit,
)
from tests.harness import server_rss_mb as rss_mb  # noqa: E402

PLOTLY_COMMIT = "8f520e8"  # the last commit whose Latent map was the plotly figure over a grid
MODELS = ("mlp2d", "cmlp2d", "mlp20", "best")
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'

# --- the latent plane ----------------------------------------------------------------------------
VIEW_JS = """() => {
  const hooks = window.__latentPlane;
  const v = hooks && Object.values(hooks.views).find(v => v.model && v.view && v.root.isConnected);
  if (!v) return null;
  return {key: v.key, model: v.model.id, area: v.plotBox(), count: v.model.labels.length,
          digits: v.digitsOnScreen().map(([sx, sy]) => [sx, sy]), bytes: hooks.payloadBytes[v.model.id]};
}"""
PLANE_PANEL_JS = """() => {
  const block = [...document.querySelectorAll('[data-testid="stHorizontalBlock"]')]
    .find(b => b.querySelector('[data-testid="stBidiComponentIsolated"]'));
  const right = block && block.querySelectorAll(':scope > [data-testid="stColumn"]')[1];
  if (!right) return null;
  const img = right.querySelector('img');
  return {text: right.innerText, src: img ? img.src : null, loaded: Boolean(img && img.complete && img.naturalWidth)};
}"""
# One synthetic pointer move per animation frame along a Lissajous sweep of the plot area.
SWEEP_JS = """([key, frames]) => new Promise((resolve) => {
  const view = window.__latentPlane.views[key], box = view.plotBox(), canvas = view.canvas;
  const drawnBefore = view.frames, times = [];
  let n = 0;
  const step = (t) => {
    times.push(t);
    if (n === frames) {
      const gaps = times.slice(1).map((t, i) => t - times[i]).sort((a, b) => a - b);
      resolve({fps: 1000 * (times.length - 1) / (times[times.length - 1] - times[0]),
               drawn: view.frames - drawnBefore, worst_frame_ms: gaps[gaps.length - 1],
               p95_frame_ms: gaps[Math.floor(0.95 * (gaps.length - 1))]});
      return;
    }
    const a = n / frames * 2 * Math.PI;
    const x = box.left + box.width * (0.5 + 0.45 * Math.sin(3 * a)), y = box.top + box.height * (0.5 + 0.45 * Math.sin(2 * a));
    canvas.dispatchEvent(new PointerEvent('pointermove', {clientX: x, clientY: y, bubbles: true}));
    n += 1;
    requestAnimationFrame(step);
  };
  requestAnimationFrame(step);
})"""
DECODE_COST_JS = """([id, n]) => {
  const started = performance.now();
  for (let i = 0; i < n; i++) window.__latentPlane.decode(id, Math.sin(i) * 3, Math.cos(i) * 3, 0);
  return (performance.now() - started) / n;
}"""

# --- the plotly map (same geometry code as the old bench/click_latency.py) ------------------------
GRAPH = '[data-testid="stPlotlyChart"] .js-plotly-plot'
PLOTLY_GEOMETRY_JS = """(selector) => {
  const gd = document.querySelector(selector);
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, box = gd.getBoundingClientRect();
  const digits = [];
  gd._fullData.forEach((trace, curve) => {
    if (curve === 0 || !trace.customdata || trace.mode !== 'markers') return;
    for (let i = 0; i < trace.x.length; i++)
      digits.push([box.x + xa._offset + xa.l2p(trace.x[i]), box.y + ya._offset + ya.l2p(trace.y[i])]);
  });
  return {area: {left: box.x + xa._offset, top: box.y + ya._offset, width: xa._length, height: ya._length}, digits};
}"""
PLOTLY_PANEL_JS = PLANE_PANEL_JS.replace("stBidiComponentIsolated", "stPlotlyChart")
PLOTLY_SWEEP_JS = """([selector, frames]) => new Promise((resolve) => {
  const gd = document.querySelector(selector), drag = gd.querySelector('.nsewdrag');
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, box = gd.getBoundingClientRect();
  const times = [];
  let n = 0;
  const step = (t) => {
    times.push(t);
    if (n === frames) {
      const gaps = times.slice(1).map((t, i) => t - times[i]).sort((a, b) => a - b);
      resolve({fps: 1000 * (times.length - 1) / (times[times.length - 1] - times[0]), drawn: null,
               worst_frame_ms: gaps[gaps.length - 1], p95_frame_ms: gaps[Math.floor(0.95 * (gaps.length - 1))]});
      return;
    }
    const a = n / frames * 2 * Math.PI;
    const x = box.x + xa._offset + xa._length * (0.5 + 0.45 * Math.sin(3 * a));
    const y = box.y + ya._offset + ya._length * (0.5 + 0.45 * Math.sin(2 * a));
    drag.dispatchEvent(new MouseEvent('mousemove', {clientX: x, clientY: y, bubbles: true}));
    n += 1;
    requestAnimationFrame(step);
  };
  requestAnimationFrame(step);
})"""


def updated_js(panel_js: str) -> str:
    return (
        "([oldText, oldSrc]) => {\n  const panel = ("
        + panel_js
        + """)();
  if (!panel || !panel.loaded || panel.text === oldText || panel.src === oldSrc) return false;
  return /Point \\(/.test(panel.text) && performance.now();
}"""
    )


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def empty_spots(
    area: dict, digits: list, clearance_px: float, per_side: int = 20, margin_px: float = 12
) -> list:
    import numpy as np

    digits = np.array(digits).reshape(-1, 2)
    spots = []
    for sy in np.linspace(area["top"] + margin_px, area["top"] + area["height"] - margin_px, per_side):
        for sx in np.linspace(area["left"] + margin_px, area["left"] + area["width"] - margin_px, per_side):
            if not len(digits) or np.hypot(digits[:, 0] - sx, digits[:, 1] - sy).min() >= clearance_px:
                spots.append((round(float(sx)), round(float(sy))))
    return spots


class Traffic:
    """Websocket bytes received and messages/requests sent by one page, from playwright's events."""

    def __init__(self, page):
        self.received = 0
        self.what_was_sent: list[str] = []
        page.on("websocket", self._socket)
        page.on("request", lambda request: self.what_was_sent.append(f"GET {request.url}"))

    @property
    def sent(self) -> int:
        return len(self.what_was_sent)

    def _socket(self, ws) -> None:
        ws.on("framereceived", lambda payload: setattr(self, "received", self.received + len(payload)))
        ws.on(
            "framesent", lambda payload: self.what_was_sent.append(f"websocket message, {len(payload)} bytes")
        )

    def settle(self, quiet_s: float = 2.0, limit_s: float = 30.0) -> None:
        """Wait until the page has sent nothing for `quiet_s` (lazy images, late widget messages)."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            before = self.sent
            time.sleep(quiet_s)
            if self.sent == before:
                return


def js_heap_mb(page) -> float:
    session = page.context.new_cdp_session(page)
    session.send("Performance.enable")
    metrics = {m["name"]: m["value"] for m in session.send("Performance.getMetrics")["metrics"]}
    session.detach()
    return round(metrics["JSHeapUsedSize"] / 2**20, 1)


def load(page, url: str, path: str, timeout_ms: float) -> None:
    page.goto(f"{url}/{path}", wait_until="domcontentloaded")
    page.wait_for_selector(IDLE, state="attached", timeout=timeout_ms)


def measure_clicks(page, find_spots, clicks: int, panel_js: str, traffic: Traffic, rng, timeout_ms) -> dict:
    """`find_spots()` gives empty screen spots, measured afresh before each click (a plotly click
    adds a legend entry and moves the plot area)."""
    page.evaluate(
        "() => document.addEventListener('pointerdown', () => { window.__clickT0 = performance.now(); }, true)"
    )
    latencies, received, previous = [], [], None
    for n in range(clicks + 1):  # click 0 warms up
        # far from the last click, so the plotly map's nearest grid point (and its image) changes too
        far = [
            s
            for s in find_spots()
            if previous is None or max(abs(s[0] - previous[0]), abs(s[1] - previous[1])) > 30
        ]
        spot = previous = rng.choice(far)
        before = page.evaluate(panel_js) or {"text": None, "src": None}
        bytes_before = traffic.received
        page.mouse.click(*spot)
        done_at = page.wait_for_function(
            updated_js(panel_js), arg=[before["text"], before["src"]], polling="raf", timeout=timeout_ms
        ).json_value()
        page.wait_for_selector(IDLE, state="attached", timeout=timeout_ms)
        time.sleep(0.3)  # the rest of the rerun's messages
        if n > 0:
            latencies.append(done_at - page.evaluate("() => window.__clickT0"))
            received.append(traffic.received - bytes_before)
    return {
        "click_p50_ms": round(percentile(latencies, 0.5), 1),
        "click_p95_ms": round(percentile(latencies, 0.95), 1),
        "bytes_per_click": round(percentile(received, 0.5)),
    }


def measure_plane(browser, url: str, hovers: int, clicks: int, timeout_ms: float, rng) -> dict:
    result: dict = {"payload_bytes": {}, "page_load_bytes": {}}
    for name in MODELS:  # bytes per model: a fresh page (session) per model
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        traffic = Traffic(page)
        load(page, url, f"latent_map?model={name}", timeout_ms)
        page.wait_for_function(f"({VIEW_JS})() !== null", timeout=timeout_ms)
        view = page.evaluate(VIEW_JS)
        traffic.settle(1.0)
        result["payload_bytes"][name] = view["bytes"]
        result["page_load_bytes"][name] = traffic.received
        page.close()

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(timeout_ms)
    traffic = Traffic(page)
    load(page, url, "latent_map?model=mlp2d", timeout_ms)
    page.wait_for_function(f"({VIEW_JS})() !== null", timeout=timeout_ms)
    view = page.evaluate(VIEW_JS)
    result["digits_drawn"] = view["count"]
    key = view["key"]
    area = view["area"]
    traffic.settle()

    # hover: real mouse moves to random points of the plot area, one at a time
    sent_before = traffic.sent
    latencies, drawn = [], []
    for _ in range(hovers):
        x = round(area["left"] + rng.uniform(0.05, 0.95) * area["width"])
        y = round(area["top"] + rng.uniform(0.05, 0.95) * area["height"])
        count = page.evaluate("(key) => window.__latentPlane.views[key].paints.length", key)
        page.mouse.move(x, y)
        record = page.wait_for_function(
            """([key, count]) => { const p = window.__latentPlane.views[key].paints;
                 return p.length > count && p[p.length - 1][2] !== null && p[p.length - 1]; }""",
            arg=[key, count],
            polling="raf",
        ).json_value()
        latencies.append(record[2] - record[0])
        drawn.append(record[1] - record[0])
    result["hovers"] = hovers
    sent = traffic.what_was_sent[sent_before:]
    # a static asset the page fetches lazily (a font) is no question to the server about the hover
    result["requests_per_100_hovers"] = round(100 * sum("/static/" not in item for item in sent) / hovers, 1)
    result["sent_while_hovering"] = sent
    result["hover_p50_ms"] = round(percentile(latencies, 0.5), 1)
    result["hover_p95_ms"] = round(percentile(latencies, 0.95), 1)
    result["hover_drawn_p50_ms"] = round(percentile(drawn, 0.5), 1)
    result["decode_one_point_js_ms"] = round(page.evaluate(DECODE_COST_JS, [view["model"], 200]), 3)
    result["sweep"] = page.evaluate(SWEEP_JS, [key, 180])

    spots = empty_spots(area, view["digits"], clearance_px=10)
    result.update(measure_clicks(page, lambda: spots, clicks, PLANE_PANEL_JS, traffic, rng, timeout_ms))
    result["js_heap_mb"] = js_heap_mb(page)
    page.close()
    return result


def measure_plotly(browser, url: str, hovers: int, clicks: int, timeout_ms: float, rng) -> dict:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(timeout_ms)
    traffic = Traffic(page)
    load(page, url, "latent_map?model=mlp2d", timeout_ms)
    page.wait_for_selector(f"{GRAPH} .nsewdrag")
    traffic.settle()
    result: dict = {"page_load_bytes": traffic.received}
    geometry = page.evaluate(PLOTLY_GEOMETRY_JS, GRAPH)
    result["digits_drawn"] = len(geometry["digits"])
    area = geometry["area"]
    sent_before = traffic.sent
    for _ in range(hovers):  # plotly's hover is client-side too, but shows no decoded digit
        page.mouse.move(
            round(area["left"] + rng.uniform(0.05, 0.95) * area["width"]),
            round(area["top"] + rng.uniform(0.05, 0.95) * area["height"]),
        )
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => r()))")
    sent = traffic.what_was_sent[sent_before:]
    result["requests_per_100_hovers"] = round(100 * sum("/static/" not in item for item in sent) / hovers, 1)
    result["sweep"] = page.evaluate(PLOTLY_SWEEP_JS, [GRAPH, 180])

    def spots():
        geometry = page.evaluate(PLOTLY_GEOMETRY_JS, GRAPH)
        return empty_spots(geometry["area"], geometry["digits"], clearance_px=15)

    result.update(measure_clicks(page, spots, clicks, PLOTLY_PANEL_JS, traffic, rng, timeout_ms))
    result["js_heap_mb"] = js_heap_mb(page)
    page.close()
    return result


def plotly_checkout(commit: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="plotly_map_"))
    archive = subprocess.run(["git", "archive", commit], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hovers", type=int, default=100)
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--plotly-commit", default=PLOTLY_COMMIT)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--timeout", type=float, default=90, help="seconds for a page run or a click")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    old_tree = plotly_checkout(args.plotly_commit)
    env = {**os.environ, "VAE_OFFLINE": "1", "VAE_PRETRAINED_DIR": str(REPO / "pretrained")}
    server, port, startup_s = start_for_benchmark("latent_plane", args.timeout)
    old_port = free_loopback_port()
    try:
        old_server = start_streamlit(old_port, env=env, cwd=old_tree, log_path=old_tree / "server.log")
    except ServerError as exc:
        stop_streamlit(server)
        sys.exit(f"the plotly map's server did not come up: {exc}")
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            rng = random.Random(args.seed)
            plane = measure_plane(browser, base_url(port), args.hovers, args.clicks, args.timeout * 1000, rng)
            plane["server_rss_mb"] = round(rss_mb(server.pid), 1)
            if args.json:  # the plane's numbers survive a failure of the old map's measurement
                Path(args.json).write_text(json.dumps({"latent_plane": plane}, indent=2) + "\n")
            plotly = measure_plotly(
                browser, base_url(old_port), args.hovers, args.clicks, args.timeout * 1000, rng
            )
            plotly["server_rss_mb"] = round(rss_mb(old_server.pid), 1)
            browser.close()
    finally:
        stop_streamlit(server)
        stop_streamlit(old_server)
    report = {
        "latent_plane": plane,
        "plotly_map": plotly,
        "plotly_commit": args.plotly_commit,
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "platform": platform.platform(),
        "server_startup_s": round(startup_s, 1),
    }
    rows = [
        ("hover → decoded digit painted, p50 / p95", f"{plane['hover_p50_ms']} / {plane['hover_p95_ms']} ms", "no decoded digit"),
        ("requests to the server per 100 hovers", plane["requests_per_100_hovers"], plotly["requests_per_100_hovers"]),
        ("frames/s, pointer sweeping the digits", f"{plane['sweep']['fps']:.0f}", f"{plotly['sweep']['fps']:.0f}"),
        ("worst frame while sweeping", f"{plane['sweep']['worst_frame_ms']:.0f} ms", f"{plotly['sweep']['worst_frame_ms']:.0f} ms"),
        ("click → Python panel updated, p50 / p95", f"{plane['click_p50_ms']} / {plane['click_p95_ms']} ms",
         f"{plotly['click_p50_ms']} / {plotly['click_p95_ms']} ms"),
        ("websocket bytes per click", f"{plane['bytes_per_click']:,}", f"{plotly['bytes_per_click']:,}"),
        ("page load bytes (mlp2d)", f"{plane['page_load_bytes']['mlp2d']:,}", f"{plotly['page_load_bytes']:,}"),
        ("payload per model (points + decoder)", ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in plane["payload_bytes"].items()), "—"),
        ("digits drawn", f"{plane['digits_drawn']:,}", f"{plotly['digits_drawn']:,}"),
        ("browser JS heap", f"{plane['js_heap_mb']} MB", f"{plotly['js_heap_mb']} MB"),
    ]  # fmt: skip
    print("| measure | latent plane | plotly map |\n|---|---|---|")
    for name, new, old in rows:
        print(f"| {name} | {new} | {old} |")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
