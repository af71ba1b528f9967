"""Run the app the way a user gets it: `streamlit run app.py` on a free loopback port, Debian's
headless chromium, and the server's memory and threads read from /proc.

Shared by the browser tests (tests/browser/) and the benches (bench/latent_plane_latency.py,
bench/cloud_readiness.py), so a test and a bench always measure the same server. Playwright's own
browser download is never used (`playwright install` needs the network); CI installs Debian's
chromium.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SERVER_START_TIMEOUT_S = 90.0  # a cold import of torch + streamlit on a busy 2-core box is slow
# Page paths as st.navigation derives them from the script names in app.py; "" is the default page.
PAGES = {
    "Overview": "",
    "Train": "train",
    "Latent map": "latent_map",
    "Interpolate": "interpolate",
    "Samples": "samples",
    "Complete": "complete",
    "Posterior": "posterior",
}


class ServerError(RuntimeError):
    """The server exited or never answered its health check; the message ends with its log."""


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.read().decode().strip() == "ok"
    except OSError:
        return False


def streamlit_command(port: int, python: str | None = None) -> list[str]:
    # No file watcher: an edit in the tree mid-run would put a "File change" prompt over the pages,
    # and watching costs CPU the 2-core CI box does not have.
    return [
        python or sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
        "--server.address", "127.0.0.1", "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
    ]  # fmt: skip


def start_streamlit(
    port: int,
    env: Mapping[str, str] | None = None,
    cwd: Path | str = REPO_ROOT,
    log_path: Path | str | None = None,
    timeout_s: float = SERVER_START_TIMEOUT_S,
    prefix: Sequence[str] = (),
    python: str | None = None,
) -> subprocess.Popen:
    """Start the app and return once its health endpoint answers; ServerError if it never does.

    `env` defaults to this process's environment with VAE_OFFLINE=1 (VAE_DATA_DIR and
    VAE_PRETRAINED_DIR pass through). `prefix` goes before the command (e.g. `unshare …`); it must
    exec the server so that the returned process is the server itself. `python` is the
    interpreter that serves (default: this one), e.g. a virtual environment with another torch.
    """
    if env is None:
        env = {**os.environ, "VAE_OFFLINE": "1"}
    if log_path is None:
        log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"streamlit-{port}.log"
    log_path = Path(log_path)
    with open(log_path, "wb") as log:  # a file, not a pipe: an unread pipe would block the server
        process = subprocess.Popen(
            [*prefix, *streamlit_command(port, python)], cwd=cwd, env=dict(env), stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = base_url(port)
    deadline = time.monotonic() + timeout_s
    while not healthy(url):
        if process.poll() is not None:
            raise ServerError(f"streamlit exited with {process.returncode}:\n{log_tail(log_path)}")
        if time.monotonic() > deadline:
            stop_streamlit(process)
            raise ServerError(f"streamlit not healthy after {timeout_s:.0f} s:\n{log_tail(log_path)}")
        time.sleep(0.3)
    return process


def log_tail(log_path: Path | str, chars: int = 3000) -> str:
    try:
        return Path(log_path).read_text(errors="replace")[-chars:]
    except OSError as exc:
        return f"(no log: {exc})"


def stop_streamlit(process: subprocess.Popen) -> None:
    # start_new_session made the server a group leader: this reaches any child it spawned too
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# ------------------------------------------------------------------------- the server from /proc
def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def _process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (those alive while we look)."""
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack += _children(current)
    return found


def server_rss_mb(pid: int) -> float:
    """Resident memory of `pid` and all its descendants, in MiB."""
    try:
        import psutil

        root = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20
    except ImportError:
        pass
    total_kb = 0
    for current in _process_tree(pid):
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        total_kb += next(
            (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0
        )
    return total_kb / 1024


def thread_count(pid: int) -> int:
    """Threads of the process `pid` (0 once it is gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def _cpu_ticks(stat_path: str) -> int:
    fields = Path(stat_path).read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far, all its threads together."""
    return _cpu_ticks(f"/proc/{pid}/stat") / os.sysconf("SC_CLK_TCK")


def _thread_ticks(pid: int) -> dict[str, int]:
    ticks = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            ticks[task.name] = _cpu_ticks(f"{task}/stat")
        except (OSError, IndexError, ValueError):  # the thread ended while we looked
            pass
    return ticks


def thread_schedstats(pid: int) -> dict[str, tuple[int, int]]:
    """{thread id: (ns on a CPU, ns runnable but waiting for one)} of the threads of `pid` and its
    descendants, from /proc/PID/task/TID/schedstat: the second is time the scheduler gave the
    thread's CPU to others.
    """
    stats = {}
    for current in _process_tree(pid):
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                on_cpu, waiting, _ = (int(v) for v in (task / "schedstat").read_text().split())
            except (OSError, ValueError):  # ended while we looked, or no schedstats in this kernel
                continue
            stats[task.name] = (on_cpu, waiting)
    return stats


def busiest_thread_shares(before: dict, after: dict, seconds: float) -> dict[str, float] | None:
    """The thread that ran most between two `thread_schedstats` samples: the shares of the window
    it spent on a CPU and waiting for one (a training thread is runnable the whole time)."""
    deltas = [  # a thread started since `before` counts from 0
        (after[tid][0] - before.get(tid, (0, 0))[0], after[tid][1] - before.get(tid, (0, 0))[1])
        for tid in after
    ]
    if not deltas or seconds <= 0:
        return None
    on_cpu, waiting = max(deltas)
    return {"on_cpu": on_cpu / 1e9 / seconds, "runqueue_wait": waiting / 1e9 / seconds}


def cpu_usage(pid: int, window_s: float = 1.0, busy_share: float = 0.05) -> tuple[float, int]:
    """(cores used, busy threads) over the next `window_s`: a busy thread used at least
    `busy_share` of a core. Python does not name its threads for the OS, so a training thread is
    told apart from Streamlit's idle pool threads by the CPU it burns.
    """
    before = _thread_ticks(pid)
    time.sleep(window_s)
    after = _thread_ticks(pid)
    per_second = os.sysconf("SC_CLK_TCK") * window_s
    shares = [(after[tid] - before[tid]) / per_second for tid in after if tid in before]
    return sum(shares), sum(1 for share in shares if share >= busy_share)


class RssSampler:
    """Samples a process tree's resident memory in a thread; `peak_mb` is the largest sample.

    Use as a context manager around the work to measure; sampling starts at once.
    """

    def __init__(self, pid: int, every_s: float = 0.5):
        self.pid, self.every_s = pid, every_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)

    def _sample(self) -> None:
        while True:
            self.samples.append(server_rss_mb(self.pid))
            if self._stop.wait(self.every_s):
                return

    @property
    def peak_mb(self) -> float:
        return max(self.samples, default=0.0)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


# ------------------------------------------------------------------------------------ the browser
def chromium_missing_message() -> str | None:
    if os.access(CHROMIUM, os.X_OK):
        return None
    return (
        f"{CHROMIUM} not found: the browser tests need Debian's chromium (`sudo apt-get install chromium`)."
    )


def launch_chromium(playwright, **kwargs):
    """Debian's chromium, headless, through playwright's sync API."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, **kwargs)


def wait_for_app_idle(page, timeout_ms: float = 60_000) -> None:
    """Wait until the script run this page started has finished.

    The app root carries data-test-script-state: "initial" before the first run, then "running" /
    "notRunning" (Streamlit's own e2e tests wait on it). The status widget is no help: it keeps
    its "Stop" button for a while after a run ends.
    """
    page.wait_for_selector(
        '[data-testid="stApp"][data-test-script-state="notRunning"]', state="attached", timeout=timeout_ms
    )
    page.wait_for_selector('[data-testid="stAppSkeleton"]', state="detached", timeout=timeout_ms)


def open_page(page, url: str, path: str, timeout_ms: float = 60_000) -> None:
    page.goto(f"{url}/{path}", wait_until="domcontentloaded")
    wait_for_app_idle(page, timeout_ms)


class MemoryLimit:
    """A cgroup (v1 `memory` or v2) whose memory limit the server runs under, like a Cloud container.

    Counts what the kernel charges the container (anonymous memory plus the page cache it keeps,
    which it reclaims under the limit before killing anything): the peak and the OOM kills.
    """

    def __init__(self, limit_mb: int, name: str):
        v1, v2 = Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup")
        if v1.is_dir():
            self.path = v1 / name
            self._limit, self._peak, self._events = "memory.limit_in_bytes", "memory.max_usage_in_bytes", None
        elif (v2 / "cgroup.controllers").exists():
            self.path = v2 / name
            self._limit, self._peak, self._events = "memory.max", "memory.peak", "memory.events"
        else:
            raise ServerError("no cgroup memory controller here: cannot run under a memory limit")
        try:
            self.path.mkdir(exist_ok=True)
            (self.path / self._limit).write_text(str(limit_mb * 2**20))
            swap = self.path / "memory.memsw.limit_in_bytes"  # v1: no escape into swap either
            if swap.exists():
                swap.write_text(str(limit_mb * 2**20))
        except OSError as exc:
            raise ServerError(f"cannot set up a memory-limited cgroup at {self.path}: {exc}") from exc
        self.limit_mb = limit_mb

    @property
    def prefix(self) -> list[str]:
        """Put the command in the cgroup, then exec it (so the server is the process returned)."""
        procs = self.path / "cgroup.procs"
        return ["sh", "-c", f'echo $$ > {procs} && exec "$@"', "sh"]

    def peak_mb(self) -> float:
        return int((self.path / self._peak).read_text()) / 2**20

    def charged_mb(self) -> dict[str, float]:
        """What the container is charged for now, MiB: anonymous memory (only an OOM kill frees it:
        no swap) and page cache (file pages, which the kernel reclaims under the limit)."""
        stat = dict(line.split() for line in (self.path / "memory.stat").read_text().splitlines())
        anon, cache = ("total_rss", "total_cache") if self._events is None else ("anon", "file")
        return {
            "anonymous": round(int(stat[anon]) / 2**20, 1),
            "page_cache": round(int(stat[cache]) / 2**20, 1),
        }

    def oom_kills(self) -> int:
        text = (self.path / (self._events or "memory.oom_control")).read_text()
        found = re.search(r"oom_kill (\d+)", text)
        return int(found[1]) if found else 0

    def remove(self) -> None:
        try:
            self.path.rmdir()
        except OSError:
            pass


def drop_page_cache() -> None:
    """Empty the kernel's page cache, so the next start reads torch, the models and the data from
    disk, as a freshly booted container does. Needs root (writes /proc/sys/vm/drop_caches)."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as exc:
        raise ServerError(f"cannot drop the page cache (run as root): {exc}") from exc


def start_for_benchmark(
    name: str, timeout_s: float, python: str | None = None, prefix: Sequence[str] = ()
) -> tuple[subprocess.Popen, int, float]:
    """What a benchmark script does first: check chromium, start a server on a free port.

    Returns (server, port, seconds the start took); exits with a message where either fails.
    """
    missing = chromium_missing_message()
    if missing:
        sys.exit(missing)
    port = free_loopback_port()
    log_path = Path(tempfile.mkdtemp(prefix=f"{name}_")) / "server.log"
    started = time.perf_counter()
    try:
        server = start_streamlit(port, log_path=log_path, timeout_s=timeout_s, prefix=prefix, python=python)
    except ServerError as exc:
        sys.exit(f"streamlit did not come up (see {log_path}): {exc}")
    return server, port, time.perf_counter() - started
