"""The floods that OOM-killed the server in a 690 MB container (issue 21, part 4), rerun against it.

    python bench/memory_floods.py [--memory-limit-mb 690] [--out bench/results/memory_floods_690mb.json]

Each flood gets a fresh server inside its own memory cgroup (bench/app_harness.MemoryLimit: needs
the cgroup memory controller and root) and headless Chromium pages as its visitors (outside the
cgroup, as a visitor's browser is):
  * uploads: 5 sessions at once, each uploading 12 distinct valid checkpoints (copies of the shipped
    `best` with one metadata field changed);
  * float16: one session uploading 4 float16 checkpoints of 9.7 M parameters (18.5 MiB files);
  * bounds: 2, then 6 sessions pressing the Overview's "Compute the IWAE bounds" at once, all on
    `best` (the same work, which the server now computes once), and 6 on five different models
    (different work, which the work admission runs one at a time or turns away).
Reported per flood: the cgroup's peak, OOM kills, whether the server survived, and what each
visitor saw (loaded / refused with the reason's first words; the bounds chart / a "busy" notice).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from playwright.async_api import async_playwright  # noqa: E402

from bench.app_harness import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    REPO_ROOT,
    MemoryLimit,
    base_url,
    free_loopback_port,
    server_rss_mb,
    start_streamlit,
    stop_streamlit,
)

TIMEOUT_MS = 240_000
BOUNDS_DONE = "is what the ELBO leaves out"  # the bounds chart's caption
BUSY = "Try again in a moment"


def distinct_copy(name: str, number: int) -> bytes:
    from safetensors.torch import load, save

    data = (REPO_ROOT / "pretrained" / f"{name}.safetensors").read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    metadata = json.loads(data[8 : 8 + length])["__metadata__"]
    metrics = json.loads(metadata["metrics"])
    metrics["data"] = f"copy {number}"
    return save(load(data), metadata={**metadata, "metrics": json.dumps(metrics)})


def float16_wide() -> tuple[bytes, int]:
    """A valid float16 checkpoint of ~9.7 M parameters (784-2450-1200-2): 18.5 MiB."""
    from safetensors.torch import load, save

    from vae_core import ModelConfig, build_model
    from vae_core.checkpoint import checkpoint_bytes
    from vae_core.config import parameter_count

    config = ModelConfig(latent_dim=2, hidden=(2450, 1200))
    data = checkpoint_bytes(build_model(config))
    (length,) = struct.unpack("<Q", data[:8])
    metadata = json.loads(data[8 : 8 + length])["__metadata__"]
    return save({k: t.half() for k, t in load(data).items()}, metadata=metadata), parameter_count(config)


async def _open(browser, url: str, path: str = ""):
    page = await (await browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
    await page.goto(f"{url}/{path}", wait_until="domcontentloaded", timeout=TIMEOUT_MS)
    await page.wait_for_selector('section[data-testid="stSidebar"] input[type="file"]', state="attached",
                                 timeout=TIMEOUT_MS)  # fmt: skip
    return page


async def _text_appears(page, *texts: str) -> str:
    """The first of `texts` that the page shows (waits for it); "" if the page died first."""
    try:
        await page.wait_for_function(
            "texts => texts.some(t => document.body.textContent.includes(t))",
            arg=list(texts),
            timeout=TIMEOUT_MS,
        )
    except Exception as exc:  # the server died, or nothing came: report it, do not crash the bench
        return f"nothing ({type(exc).__name__})"
    body = await page.text_content("body")  # textContent: the upload's notice sits in a folded expander
    return next(t for t in texts if t in body)


async def upload_session(browser, url: str, files: list[tuple[str, bytes]]) -> list[str]:
    page = await _open(browser, url)
    outcomes = []
    for name, data in files:
        try:
            await page.set_input_files(
                'section[data-testid="stSidebar"] input[type="file"]',
                {"name": name, "mimeType": "application/octet-stream", "buffer": data},
                timeout=TIMEOUT_MS,
            )
        except Exception as exc:  # the server died, or the page never took the file: report it
            outcomes.append(f"upload not sent ({type(exc).__name__})")
            continue
        seen = await _text_appears(page, f"Loaded {name}", f"{name} was not loaded")
        if "not loaded" in seen:
            notices = await page.locator(
                'section[data-testid="stSidebar"] [data-testid="stAlert"]'
            ).all_text_contents()
            reason = next((n for n in notices if name in n), seen)
            seen = "refused: " + reason.split("not loaded: ", 1)[-1][:90]
        outcomes.append("loaded" if seen.startswith("Loaded") else seen)
    return outcomes


async def bounds_session(browser, url: str, model: str):
    page = await _open(browser, url, f"?model={model}")
    button = page.get_by_role("button", name="Compute the IWAE bounds")
    await button.wait_for(timeout=TIMEOUT_MS)
    return page, button


async def bounds_flood(browser, url: str, models: list[str]) -> list[str]:
    sessions = await asyncio.gather(*(bounds_session(browser, url, m) for m in models))
    await asyncio.gather(*(button.click() for _, button in sessions))  # all at once
    seen = await asyncio.gather(*(_text_appears(page, BOUNDS_DONE, BUSY) for page, _ in sessions))
    return ["bounds shown" if s == BOUNDS_DONE else ("busy: try again" if s == BUSY else s) for s in seen]


async def run_flood(name: str, limit_mb: int, flood, app_dir: Path = REPO_ROOT) -> dict:
    limit = MemoryLimit(limit_mb, f"vae_floods_{name}_{os.getpid()}")
    port = free_loopback_port()
    log_path = Path(tempfile.mkdtemp(prefix=f"flood_{name}_")) / "server.log"
    server = start_streamlit(port, cwd=app_dir, log_path=log_path, prefix=limit.prefix)
    url = base_url(port)
    started = time.perf_counter()
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            outcomes = await flood(browser, url)
            await browser.close()
        alive = server.poll() is None
        result = {
            "flood": name,
            "outcomes": outcomes,
            "cgroup_peak_mb": round(limit.peak_mb(), 1),
            "charged_after_mb": limit.charged_mb(),
            "server_rss_after_mb": round(server_rss_mb(server.pid), 1) if alive else None,
            "oom_kills": limit.oom_kills(),
            "server_alive_at_end": alive,
            "seconds": round(time.perf_counter() - started, 1),
        }
    finally:
        stop_streamlit(server)
        limit.remove()
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory-limit-mb", type=int, default=690)
    parser.add_argument("--out", default=str(REPO_ROOT / "bench" / "results" / "memory_floods_690mb.json"))
    parser.add_argument("--only", nargs="*", help="run only these floods (names as in the JSON)")
    parser.add_argument("--app-dir", type=Path, default=REPO_ROOT,
                        help="serve this checkout instead (e.g. an earlier commit, for a before/after)")  # fmt: skip
    args = parser.parse_args()

    copies = [(f"copy{i}.safetensors", distinct_copy("best", i)) for i in range(60)]
    wide, wide_parameters = float16_wide()
    floods = {
        "uploads_5_sessions_x_12": lambda b, u: asyncio.gather(
            *(upload_session(b, u, copies[12 * s : 12 * (s + 1)]) for s in range(5))
        ),
        "float16_9.7M_x_4": lambda b, u: upload_session(
            b, u, [(f"wide{i}.safetensors", wide) for i in range(4)]
        ),
        "bounds_2_sessions_best": lambda b, u: bounds_flood(b, u, ["best"] * 2),
        "bounds_6_sessions_best": lambda b, u: bounds_flood(b, u, ["best"] * 6),
        "bounds_6_sessions_5_models": lambda b, u: bounds_flood(
            b, u, ["best", "mlp2d", "cmlp2d", "mlp20", "beta4_mlp20", "best"]
        ),
    }
    results = []
    for name, flood in floods.items():
        if args.only and name not in args.only:
            continue
        results.append(asyncio.run(run_flood(name, args.memory_limit_mb, flood, args.app_dir)))
    report = {
        "what": "issue 21 part 4 floods, each on a fresh server in a memory cgroup, Chromium visitors outside it",
        "memory_limit_mb": args.memory_limit_mb,
        "app_dir": str(args.app_dir),
        "float16_parameters": wide_parameters,
        "float16_file_mib": round(len(wide) / 2**20, 2),
        "env": {k: v for k, v in os.environ.items() if k.startswith("VAE_") and "DIR" not in k},
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average": os.getloadavg(),
        "floods": results,
        "oom_kills_total": sum(r["oom_kills"] for r in results),
    }
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}: OOM kills {report['oom_kills_total']}")


if __name__ == "__main__":
    main()
