"""What a visitor's browser may send the server, checked before Streamlit acts on it.

Every message on the websocket comes from the visitor's machine, which can send anything, not only
what Streamlit's frontend would. Three layers bound it:

1. Size, in .streamlit/config.toml: `server.maxMessageSize` (16 MB) is the frame limit uvicorn
   enforces from the frame's header, before reading it, and the limit on what the server sends
   (the largest shipped model's latent plane payload is 2.9 MB; a plane of the largest model the
   Train page accepts, 5 M parameters, about 10 MB). `server.maxWidgetStateSize` (2 MB) is what
   Streamlit accepts from a client before parsing the protobuf: a drawing on the canvas is a few
   hundred kB.
2. Shape, here (`screen`): a widget value that Streamlit would turn into an exception box or into
   unbounded work is taken out of the rerun request, and logged, before Streamlit sees it; the
   rerun goes on as if that widget had not changed. Refused: empty, over-long or repeated widget
   ids; JSON values (components' states and trigger values) that are not strict JSON, nest deeper
   than MAX_JSON_DEPTH (json.loads recursed into a RecursionError at 100,000), hold an integer of
   more than MAX_INT_DIGITS digits (Python refuses 4,300 with a ValueError) or a non-finite number.
   A component's list of trigger events keeps the last event of each name: Streamlit runs the
   callback once per event and rebuilds the component's state view each time (10,000 click events
   in one message cost 26 s of CPU), and the app's callbacks read only the last value anyway.
3. Meaning, in the parse functions of the pages' widgets (e.g. `latent_plane.click_value`):
   types, ranges, indices.

`clear_cache` empties st.cache_data and st.cache_resource for every session of the process: on a
public server one visitor must not make everyone's models and plane payloads load again (the
frontend only offers it in development mode). It is ignored and logged, as is `set_run_on_save`.

The guard wraps one method, `AppSession.handle_backmsg`, the single entry of every client message
into the runtime (Streamlit 1.67: the websocket handler calls `Runtime.handle_backmsg`, which
hands it to the session). `install` is called by app.py on every run and patches once per process;
the few sessions whose first message arrived before that have their received values screened by
the same rules in their first run, before any widget reads them.
It was written against EXPECTED_STREAMLIT; a test fails when the installed version differs, so the
wrapped method is re-read before the pin moves.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from typing import Any

import streamlit
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

EXPECTED_STREAMLIT = "1.67.0"
MAX_WIDGETS = 1_000  # widget states in one message; a page of this app has a few dozen
MAX_ID_CHARS = 1_000  # Streamlit's ids are a prefix, an md5 and the key: under 200 here
MAX_JSON_CHARS = 1_000_000  # one JSON value; a canvas drawing's strokes are a few hundred kB
MAX_JSON_DEPTH = 32  # a canvas drawing nests 5 deep, a trigger value 3
MAX_INT_DIGITS = 18  # an index or a count, never a 4,300-digit number
MAX_EVENT_NAMES = 16  # distinct trigger event names one component sends at once (ours: 1 or 2)
IGNORED_MESSAGES = frozenset({"clear_cache", "set_run_on_save"})
JSON_FIELDS = ("json_value", "json_trigger_value")

_LOGGER = logging.getLogger(__name__)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')  # a JSON string literal, escapes included
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_install_lock = threading.Lock()
_installed = False


class Refused(ValueError):
    """A value from a client that is not passed on; the text says why (for the server's log)."""


# --- JSON values ------------------------------------------------------------------------------------
def json_depth(text: str, limit: int = MAX_JSON_DEPTH) -> int:
    """How deep the brackets of `text` nest, counted up to `limit` + 1 (then it stops looking).

    Strings are removed first, so brackets inside them do not count. Linear in the text, with no
    recursion, so it can run before json.loads does.
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    depth = deepest = 0
    for char in brackets:
        depth += 1 if char in "[{" else -1
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                break
    return deepest


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise Refused(f"an integer of {len(digits)} digits")
    return int(digits)


def _finite_float(text: str) -> float:
    number = float(text)
    if number in (float("inf"), float("-inf")):  # 1e999 parses to inf
        raise Refused(f"a number out of float range ({text[:20]}…)")
    return number


def _no_constant(name: str) -> Any:
    raise Refused(f"{name} is not strict JSON")


def strict_json(text: str) -> Any:
    """`text` parsed as strict JSON, within the bounds above; Refused otherwise."""
    if len(text) > MAX_JSON_CHARS:
        raise Refused(f"a JSON value of {len(text):,} characters (limit {MAX_JSON_CHARS:,})")
    if json_depth(text) > MAX_JSON_DEPTH:
        raise Refused(f"JSON nested deeper than {MAX_JSON_DEPTH}")
    try:
        return json.loads(
            text, parse_int=_bounded_int, parse_float=_finite_float, parse_constant=_no_constant
        )
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError; Refused too
        raise Refused(f"not a JSON value: {exc}") from None


def last_event_of_each_name(events: list) -> list:
    """A component's trigger events, keeping each name's last (order of those kept preserved).

    Streamlit's presenter shows a component's state with each event name's last value, so this is
    what callbacks would read anyway; it only removes the repeated callback runs.
    """
    last: dict[Any, int] = {}
    for position, event in enumerate(events):
        name = event.get("event") if isinstance(event, dict) else None
        if not isinstance(name, str):
            raise Refused("a trigger event without a name")
        last[name] = position
        if len(last) > MAX_EVENT_NAMES:
            raise Refused(f"more than {MAX_EVENT_NAMES} trigger event names in one message")
    return [events[position] for position in sorted(last.values())]


# --- messages ---------------------------------------------------------------------------------------
def check_widget_state(state: WidgetState) -> None:
    """Refused unless `state` is a widget state the frontend could have sent; a trigger list is cut
    to one event per name, in place."""
    if not state.id or len(state.id) > MAX_ID_CHARS:
        raise Refused(f"a widget id of {len(state.id)} characters")
    field = state.WhichOneof("value")
    if field not in JSON_FIELDS:
        return
    value = strict_json(getattr(state, field))
    if field == "json_trigger_value" and isinstance(value, list):
        kept = last_event_of_each_name(value)
        if len(kept) < len(value):
            state.json_trigger_value = json.dumps(kept)


def screen(msg: BackMsg) -> list[str]:
    """Make a rerun request safe to hand to Streamlit, in place; returns what was taken out and why.

    A widget state `check_widget_state` refuses is removed, so the rerun happens as if that widget
    had not changed: the visitor's page stays as it was, with no exception box. A message with more
    than MAX_WIDGETS states or a repeated id (the frontend sends each widget once) loses them all.
    """
    if msg.WhichOneof("type") != "rerun_script":
        return []
    states = msg.rerun_script.widget_states.widgets
    if len(states) > MAX_WIDGETS or len({state.id for state in states}) < len(states):
        distinct = len({state.id for state in states})
        note = f"{len(states):,} widget states with {distinct:,} distinct ids (at most {MAX_WIDGETS:,}, each once)"
        del states[:]
        return [note]
    notes = []
    for index in reversed(range(len(states))):  # from the end, so deleting keeps the indices valid
        try:
            check_widget_state(states[index])
        except Refused as exc:
            notes.append(f"widget {states[index].id[:80]!r}: {exc}")
            del states[index]
    return notes


def sanitise_received_widget_states(session_state) -> int:
    """Drop widget values that a session received before the guard was installed and that
    `check_widget_state` refuses; returns how many. `session_state` is Streamlit's SessionState."""
    states = session_state._new_widget_state.states
    dropped = 0
    for widget_id, held in list(states.items()):
        proto = getattr(held, "value", None)
        if not isinstance(proto, WidgetState):  # a deserialised Value was accepted by the widget
            continue
        try:
            check_widget_state(proto)
        except Refused:
            del states[widget_id]
            dropped += 1
    return dropped


# --- installation -----------------------------------------------------------------------------------
_sessions_before_install: set[str] = set()


def install() -> None:
    """Wrap AppSession.handle_backmsg once per process; on each call, clean the widget values of a
    session whose first messages arrived before the wrap (the process's first visitors)."""
    global _installed  # noqa: PLW0603 (once per process, by design)
    from streamlit.runtime import Runtime
    from streamlit.runtime.app_session import AppSession
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    with _install_lock:
        if not _installed:
            if streamlit.__version__ != EXPECTED_STREAMLIT:
                _LOGGER.warning(
                    "server_guard was written for Streamlit %s, this is %s: re-read it",
                    EXPECTED_STREAMLIT, streamlit.__version__,
                )  # fmt: skip
            unguarded = AppSession.handle_backmsg

            def handle_backmsg(session: AppSession, msg: BackMsg) -> None:
                kind = msg.WhichOneof("type")
                if kind in IGNORED_MESSAGES:
                    _LOGGER.warning("Ignored %s from session %s: not taken from visitors", kind, session.id)
                    return
                for note in screen(msg):
                    _LOGGER.warning("Dropped from session %s's rerun: %s", session.id, note)
                unguarded(session, msg)

            handle_backmsg.unguarded = unguarded  # type: ignore[attr-defined]
            AppSession.handle_backmsg = handle_backmsg  # type: ignore[method-assign]
            runtime = Runtime.instance() if Runtime.exists() else None
            if type(runtime) is Runtime:  # not under AppTest, whose Runtime is a mock with no sessions
                _sessions_before_install.update(
                    info.session.id for info in runtime._session_mgr.list_sessions()
                )
            _installed = True
        ctx = get_script_run_ctx()
        if ctx is None or ctx.session_id not in _sessions_before_install:
            return
        _sessions_before_install.discard(ctx.session_id)
    dropped = sanitise_received_widget_states(ctx.session_state._state)
    if dropped:
        _LOGGER.warning("Dropped %d widget values session %s sent before the guard", dropped, ctx.session_id)
