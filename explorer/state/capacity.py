"""How many visitors one server admits at once: the container's memory, less what the server itself
holds and a reserve for training runs, divided by what one visitor's session costs.

The costs are measured by `python bench/classroom_load.py --measure-sessions N` (README *Deploy*);
a deployer who knows better sets $VAE_MAX_SESSIONS. Pure arithmetic and file reading: no Streamlit,
no torch, so the app can ask before it imports anything heavy.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MAX_SESSIONS_ENV = "VAE_MAX_SESSIONS"
MIB = 2**20
# Measured (bench/classroom_load.py --measure-sessions, 2026-12-07, PyPI's CUDA wheel of torch): the
# server's anonymous memory once torch, the 10,000 test digits, the pretrained models and their
# latent planes are loaded and shared by everyone. The CPU wheel needs less; this is the larger.
SERVER_BASE_MB = 450.0
# Room kept for training runs: two runs at the Train form's defaults (vae_core's estimate, ~72 MB
# each). Larger runs are refused by the training budget, not by this reserve.
TRAINING_RESERVE_MB = 150.0
# One visitor's share of the server's memory while a class arrives: the cgroup's peak anonymous
# memory less the server's before the class, per admitted visitor (bench/classroom_load.py, 690 MB
# cgroup, classes of 60 at once and 100 within 10 s): 2.8-3.5 MB with 45 admitted (four runs),
# 2.6-5.0 MB with 25 (eight runs; the first-render queue's own tens of MB spread over fewer). An
# idle session alone keeps ~0.1 MB (`--measure-sessions`); the rest is first renders' messages and
# allocator slack. With 25 admitted the peak stayed within 450 + 25 x 3.5 MB (+3 MB in the worst run).
SESSION_MB = 3.5
MIN_SESSIONS = 1  # a server too small by this arithmetic still serves one visitor at a time
_UNLIMITED_BYTES = 2**60  # cgroup v1 writes "no limit" as a number near 2**63


@dataclass(frozen=True)
class Capacity:
    """How many sessions to admit, and where the number came from (for the log and the busy page)."""

    sessions: int
    memory_mb: float | None  # the container's memory, None when $VAE_MAX_SESSIONS decided
    source: str

    def describe(self) -> str:
        if self.memory_mb is None:
            return f"admits at most {self.sessions} visitors at once (${MAX_SESSIONS_ENV})"
        return (
            f"admits at most {self.sessions} visitors at once: {self.memory_mb:,.0f} MB ({self.source}) "
            f"less {SERVER_BASE_MB:.0f} MB for the server and {TRAINING_RESERVE_MB:.0f} MB for training, "
            f"at {SESSION_MB:g} MB a visitor"
        )


def sessions_for_memory(
    memory_mb: float,
    server_base_mb: float = SERVER_BASE_MB,
    training_reserve_mb: float = TRAINING_RESERVE_MB,
    session_mb: float = SESSION_MB,
) -> int:
    """Whole sessions that fit in what the server and the training reserve leave; at least one."""
    spare = memory_mb - server_base_mb - training_reserve_mb
    return max(MIN_SESSIONS, math.floor(spare / session_mb))


def _parse_limit(text: str) -> int | None:
    """A cgroup memory limit file's bytes; None for "max" (v2) or v1's near-2**63 "no limit"."""
    text = text.strip()
    if not text.isdigit():
        return None
    value = int(text)
    return value if 0 < value < _UNLIMITED_BYTES else None


def cgroup_memory_limit(proc_self_cgroup: str, cgroup_root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The tightest memory limit, in bytes, on this process's cgroup and its ancestors (limits are
    hierarchical), from the text of /proc/self/cgroup; None where nothing limits it.

    cgroup v1 mounts the memory controller at ROOT/memory and names it in a line
    "ID:memory[,…]:/path"; v2 has one line "0::/path" and the file memory.max. Inside a container the
    path may be the host's, which the container does not see: then the mount's root is the
    container's own cgroup, and its limit file is read.
    """
    candidates: list[tuple[Path, str]] = []
    for line in proc_self_cgroup.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if "memory" in controllers.split(","):
            candidates.append((cgroup_root / "memory", path))
            break
        if controllers == "" and (cgroup_root / "cgroup.controllers").exists():
            candidates.append((cgroup_root, path))
    for mount, path in candidates:
        name = "memory.limit_in_bytes" if mount.name == "memory" else "memory.max"
        directory = mount / path.lstrip("/")
        if not directory.is_dir():
            directory = mount
        limits = []
        while True:
            try:
                limit = _parse_limit((directory / name).read_text())
            except OSError:
                limit = None
            if limit is not None:
                limits.append(limit)
            if directory == mount:
                break
            directory = directory.parent
        if limits:
            return min(limits)
    return None


def physical_memory_bytes() -> int:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def container_memory_mb() -> tuple[float, str]:
    """The memory this server may use, MiB, and where that came from."""
    physical = physical_memory_bytes()
    try:
        limit = cgroup_memory_limit(Path("/proc/self/cgroup").read_text())
    except OSError:
        limit = None
    if limit is not None and limit < physical:
        return limit / MIB, "the container's cgroup memory limit"
    return physical / MIB, "the machine's physical memory"


def max_sessions_from_env(environ: Mapping[str, str] | None = None) -> int | None:
    """$VAE_MAX_SESSIONS as a positive whole number; None when unset, or (with a log warning) when it
    is not one."""
    text = (os.environ if environ is None else environ).get(MAX_SESSIONS_ENV, "").strip()
    if not text:
        return None
    if text.isdigit() and int(text) > 0:
        return int(text)
    log.warning("ignoring $%s=%r: expected a positive whole number", MAX_SESSIONS_ENV, text[:40])
    return None


def server_capacity(
    environ: Mapping[str, str] | None = None, memory: tuple[float, str] | None = None
) -> Capacity:
    """$VAE_MAX_SESSIONS when set, else what the container's memory holds."""
    chosen = max_sessions_from_env(environ)
    if chosen is not None:
        return Capacity(chosen, None, f"${MAX_SESSIONS_ENV}")
    memory_mb, source = memory if memory is not None else container_memory_mb()
    return Capacity(sessions_for_memory(memory_mb), memory_mb, source)


# ------------------------------------------------------------------------- newcomers arriving at once
RENDER_WAIT_TARGET_S = 2.0  # a first page should be drawn within this after admission (two: ~5 s)
MOST_RENDERS_QUEUED = 32
FIRST_RENDER_GUESS_S = 0.3  # before any is measured: a warm one takes 0.07-0.3 s on 2 shared cores


class RenderTimes:
    """Seconds a first render takes once it has its turn, as an exponentially weighted mean (the
    latest ~5 count most): how fast this server, on this machine's current load, serves newcomers."""

    def __init__(self, first_guess_s: float = FIRST_RENDER_GUESS_S, weight: float = 0.3):
        self.mean_s, self.weight = first_guess_s, weight

    def record(self, seconds: float) -> None:
        self.mean_s += self.weight * (max(seconds, 0.0) - self.mean_s)


def renders_allowed_in_queue(
    render_s: float,
    renders_at_once: int,
    wait_target_s: float = RENDER_WAIT_TARGET_S,
    most: int = MOST_RENDERS_QUEUED,
) -> int:
    """How many first renders may be queued or building so that the last one is done within about
    `wait_target_s`: they finish `renders_at_once` per `render_s`. At least one, at most `most`."""
    if render_s <= 0:
        return most
    return max(1, min(most, math.floor(wait_target_s * renders_at_once / render_s)))
