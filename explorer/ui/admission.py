"""Admission: a server takes as many visitors as its memory holds (explorer.state.capacity), and
no more newcomers at once than it can serve in a few seconds; anyone else gets a light page that
says why and retries by itself. Never an OOM.

app.py calls `admit_or_turn_away()` before anything heavy: the busy page imports no torch, loads
no model and draws no plane. An admitted session stays admitted for all its reruns (and when it
reconnects); a session whose visitor left frees its place.

Measured with bench/classroom_load.py (README *Performance*, "A class at once"): an idle session
costs ~0.1 MB, but sixty first renders at once cost the server hundreds of MB (every script thread
its own malloc arena, every page's messages built at once) and ~0.15 s of the interpreter each, so
a class arriving in the same second needs a queue, not only a memory budget:
  * a session's first render of each page builds FIRST_RENDERS_AT_ONCE at a time
    (`first_render_turn`);
  * a newcomer is admitted only while the first renders queued or building (newly admitted sessions
    count at once) would all be done within ~2 s at the speed first renders have lately had
    (`explorer.state.capacity.renders_allowed_in_queue`): otherwise it waits on the busy page, which
    retries every ARRIVING_RETRY_S seconds. Those already in are so served in a few seconds, on a
    quiet or a loaded machine.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from explorer.state.capacity import Capacity, RenderTimes, renders_allowed_in_queue, server_capacity

log = logging.getLogger(__name__)

ADMITTED_KEY = "admission_admitted"
RENDERED_PAGES_KEY = "admission_rendered_pages"
FULL_RETRY_S = 20  # the class is full: places free when visitors leave, so ask now and then
ARRIVING_RETRY_S = 3  # many arriving at once: the queue clears in seconds
# First renders building at once: each holds its page's messages (the Latent map's plane payload is
# 1.4-2.8 MB, copied into its protobuf and serialised per session) until the websocket takes them.
FIRST_RENDERS_AT_ONCE = 4
FULL_TITLE = "The class is full — try again in a minute"
ARRIVING_TITLE = "Your turn comes in a few seconds"

_places_lock = threading.Lock()
_admitted_sessions: set[str] = set()  # ids of admitted sessions, pruned of those that left
_rendering_sessions: set[str] = set()  # first render queued or building, or admitted and not yet begun
_first_renders = threading.BoundedSemaphore(FIRST_RENDERS_AT_ONCE)
_render_times = RenderTimes()  # updated under _places_lock


def _queue_allowance() -> int:
    return renders_allowed_in_queue(_render_times.mean_s, FIRST_RENDERS_AT_ONCE)


@functools.cache
def capacity() -> Capacity:
    """The server's capacity, computed once per process (the container's memory does not change).
    The measured cost per visitor assumes runtime_settings' shared malloc arenas, which app.py
    applies before it asks."""
    found = server_capacity()
    log.warning("admission: this server %s", found.describe())  # a deployer sees it in the log
    return found


def _connected(session_ids: set[str]) -> set[str]:
    """Those of `session_ids` whose visitor is still connected: the one place that asks Streamlit's
    runtime (a closed tab's session leaves its active sessions at once; one kept for a reconnect
    costs no place until it comes back, and keeps its admission in its session state)."""
    from streamlit.runtime import Runtime

    if not Runtime.exists():
        return session_ids
    runtime = Runtime.instance()
    return {session_id for session_id in session_ids if runtime.is_active_session(session_id)}


def take_place(session_id: str, admitted_before: bool, places: int) -> str:
    """ "admitted" (before, or now that a place is free), "full" (every place is taken) or
    "arriving" (places are free, but the first renders queued or building would not be done soon)."""
    global _admitted_sessions, _rendering_sessions
    with _places_lock:
        if admitted_before or session_id in _admitted_sessions:
            _admitted_sessions.add(session_id)
            return "admitted"
        _admitted_sessions = _connected(_admitted_sessions)
        _rendering_sessions &= _admitted_sessions
        if len(_admitted_sessions) >= places:
            return "full"
        if len(_rendering_sessions) >= _queue_allowance():
            return "arriving"
        _admitted_sessions.add(session_id)
        _rendering_sessions.add(session_id)
        return "admitted"


def place_free(places: int) -> bool:
    """Whether a newcomer would be admitted now (the busy page asks before it reruns the app)."""
    global _admitted_sessions, _rendering_sessions
    with _places_lock:
        _admitted_sessions = _connected(_admitted_sessions)
        _rendering_sessions &= _admitted_sessions
        return len(_admitted_sessions) < places and len(_rendering_sessions) < _queue_allowance()


def _rendering(session_id: str, queued: bool, took_s: float | None = None) -> None:
    with _places_lock:
        if queued:
            _rendering_sessions.add(session_id)
            return
        _rendering_sessions.discard(session_id)
        if took_s is not None:
            _render_times.record(took_s)


def _session_id() -> str | None:
    """This run's session on a real server; None elsewhere (AppTest, a bare `python app.py`), where
    there is no class to admit."""
    from streamlit.runtime import Runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None and Runtime.exists() else None


def admit_or_turn_away() -> None:
    """Return for an admitted visitor; otherwise draw the busy page and stop the run."""
    session_id = _session_id()
    if session_id is None:
        return
    places = capacity().sessions
    verdict = take_place(session_id, bool(st.session_state.get(ADMITTED_KEY)), places)
    if verdict == "admitted":
        st.session_state[ADMITTED_KEY] = True
        return
    if verdict == "full":
        st.title(FULL_TITLE)
        st.write(
            f"This server can show the app to {places} visitors at once, and every place is taken. "
            f"This page asks again every {FULL_RETRY_S} seconds and opens the app as soon as a place "
            "is free: keep it open. (Whoever runs the server can raise the number: see the README's "
            "*Deploy*.)"
        )
        _retry_when_a_place_frees(places, FULL_RETRY_S)
    else:
        st.title(ARRIVING_TITLE)
        st.write(
            "Many visitors opened the app at the same moment, and the server shows it to them a few "
            f"at a time. This page asks again every {ARRIVING_RETRY_S} seconds and opens the app "
            "when it is your turn: keep it open."
        )
        _retry_when_a_place_frees(places, ARRIVING_RETRY_S)
    st.stop()


def _retry_when_a_place_frees(places: int, every_s: int) -> None:
    @st.fragment(run_every=every_s)
    def retry() -> None:
        # A fragment rerun runs only this function: a waiting visitor costs the server almost nothing.
        if place_free(places):
            st.rerun(scope="app")

    retry()


@contextmanager
def first_render_turn(page_name: str) -> Iterator[None]:
    """A session's first render of a page waits for a turn among FIRST_RENDERS_AT_ONCE, and counts
    in the queue that admission watches until it ends; later runs (clicks, widgets) go straight
    through."""
    session_id = _session_id()
    rendered = st.session_state.setdefault(RENDERED_PAGES_KEY, set()) if session_id else set()
    if page_name in rendered or session_id is None:
        yield
        return
    _rendering(session_id, True)
    took_s = None
    try:
        with _first_renders:
            started = time.perf_counter()
            yield
            took_s = time.perf_counter() - started
        rendered.add(page_name)
    finally:
        _rendering(session_id, False, took_s)
