"""The app's process-wide settings, each with its reason; app.py applies them with `apply()`.

vae_core sets nothing process-wide (it is a library); these are the app's choices for a small
server shared by every session. This module imports no torch: app.py runs it before the first paint.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import sys
import time

# Torch releases the GIL inside every op. While another thread of the server runs Python (a page
# building its views, the websocket), the training thread, back from an op, waits for the GIL until
# that thread's switch interval is over: with CPython's default 5 ms, a thread busy 10-20% of the
# time cost training 12-27% (measured, one torch thread); at 0.2 ms the loss was within noise.
# It only matters while threads contend, so it is set once for the server's whole life.
GIL_SWITCH_INTERVAL_S = 0.0002

# Seconds the Overview waits after its first paint before it imports torch (see wait_for_first_paint).
FIRST_PAINT_HEAD_START_S = 0.3

MALLOC_ARENAS = 2  # glibc's M_ARENA_MAX (see share_malloc_arenas)

APP_THREADS_ENV = "VAE_APP_THREADS"  # torch intra-op threads per request; 1 unless set
TRAIN_POLL_ENV, TRAIN_POLL_DEFAULT_S = "VAE_TRAIN_POLL_S", 1.0


def apply() -> None:
    """The settings that hold from the server's start (cheap and idempotent: app.py calls it on
    every rerun). Only ever lowers the switch interval, so a server started with a lower one keeps it."""
    if sys.getswitchinterval() > GIL_SWITCH_INTERVAL_S:
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    share_malloc_arenas()


@functools.cache
def share_malloc_arenas() -> None:
    """Let all threads share MALLOC_ARENAS glibc heaps (elsewhere nothing happens); once per process.

    Streamlit runs each session's script in its own thread, and glibc gives a thread that finds the
    heap busy an arena of its own (up to 8 per core), whose freed memory no other thread reuses:
    measured, sixty visitors arriving at once peaked at 665 MB with the default and 523 MB with two
    arenas, at the same speed (bench/classroom_load.py, 2,000 MB cgroup). The capacity's cost per
    visitor (explorer/state/capacity.py) was measured with it. Arenas already made stay.
    """
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, MALLOC_ARENAS)  # -8 is M_ARENA_MAX in malloc.h
    except (OSError, AttributeError):
        pass


@functools.cache
def app_torch():
    """torch, for the app: imported on first use, with one intra-op thread per request ($VAE_APP_THREADS).

    A server's cores are shared by every session, and with torch's default (all cores) a 300-step
    completion took 25 s instead of 2 s beside a training run. Imported here, not at start: on a fresh
    server torch takes seconds to import, and the first paint must not wait for it.
    """
    import torch

    torch.set_num_threads(int(os.environ.get(APP_THREADS_ENV, "1")))
    return torch


def wait_for_first_paint() -> None:
    """Called by a page after its first paint, before it imports torch for the first time.

    torch holds the interpreter lock for long stretches while its libraries load, and Streamlit's
    event loop, which sends the paint to the browser, waits for it. Measured cold
    (bench/cloud_readiness.py --cold, 2 busy cores), the Overview's card reached the browser 1.2-1.3 s
    after it was drawn without this pause and 0.6 s with it. Once torch is loaded, no pause.
    """
    if "torch" not in sys.modules:
        time.sleep(FIRST_PAINT_HEAD_START_S)


def train_poll_interval_s() -> float:
    """Seconds between the Train page's polls while a run trains: $VAE_TRAIN_POLL_S (0.05-5; the load
    test uses 0.1), else 1.

    Each poll redraws the live panel, and the browser's share of that is ~0.1 s of a core (headless
    chromium, measured: 0.40 cores while polling every 0.5 s, 0.29 every 1 s, 0.19 every 2 s). Where
    the browser shares the server's CPU, or the CPU is busy, that time comes out of the run's speed.
    """
    try:
        value = float(os.environ.get(TRAIN_POLL_ENV, str(TRAIN_POLL_DEFAULT_S)))
    except ValueError:
        return TRAIN_POLL_DEFAULT_S
    return min(max(value, 0.05), 5.0) if math.isfinite(value) else TRAIN_POLL_DEFAULT_S
