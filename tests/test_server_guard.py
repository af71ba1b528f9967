"""The server guard and the latent plane's parse functions against values a visitor can forge.

What a real server does with these messages is tested in tests/browser/test_websocket_messages.py;
here each rule is checked on its own, without a server.
"""

from __future__ import annotations

import json

import pytest
import streamlit
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

from explorer import server_guard
from explorer.server_guard import (
    MAX_EVENT_NAMES,
    MAX_JSON_CHARS,
    MAX_JSON_DEPTH,
    Refused,
    json_depth,
    last_event_of_each_name,
    screen,
    strict_json,
)
from explorer.state.share_links import MAX_ABS_COORDINATE
from explorer.ui.latent_plane import click_value, path_value


def rerun_with(*states: WidgetState) -> BackMsg:
    msg = BackMsg()
    msg.rerun_script.page_name = "latent_map"
    msg.rerun_script.widget_states.widgets.extend(states)
    return msg


def trigger(text: str, widget_id: str = "$$STREAMLIT_INTERNAL_KEY_plane__events") -> WidgetState:
    return WidgetState(id=widget_id, json_trigger_value=text)


def clicks(*points) -> str:
    return json.dumps([{"event": "click", "value": {"x": x, "y": y}} for x, y in points])


def test_the_guard_was_written_for_the_installed_streamlit():
    # The guard wraps AppSession.handle_backmsg and relies on how 1.67 parses widget values: a new
    # Streamlit must be read again (see the module docstring) before this pin moves.
    assert streamlit.__version__ == server_guard.EXPECTED_STREAMLIT
    from streamlit.runtime.app_session import AppSession

    assert callable(AppSession.handle_backmsg)


def test_json_depth_counts_brackets_outside_strings():
    assert json_depth("[]") == 1
    assert json_depth('{"a": [[1], {"b": []}]}') == 4
    assert json_depth('["[[[[", "\\"[[[["]') == 1  # brackets in strings, escaped quotes included
    assert json_depth("[" * 100_000 + "]" * 100_000) == MAX_JSON_DEPTH + 1  # stops looking there
    assert json_depth("[" * 40 + "]" * 40, limit=100) == 40


def test_strict_json_takes_what_a_browser_sends():
    assert strict_json(clicks((0.25, -1))) == [{"event": "click", "value": {"x": 0.25, "y": -1}}]
    nested = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert json.dumps(strict_json(nested)) == nested
    assert strict_json('{"n": 123456789012345678}') == {"n": 123456789012345678}


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,  # json.loads: RecursionError
        "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1),
        '{"x": ' + "9" * 4400 + "}",  # int(): ValueError past 4,300 digits
        '{"x": -' + "9" * 19 + "}",
        '{"x": NaN}',
        '{"x": Infinity}',
        '{"x": -Infinity}',
        '{"x": 1e999}',  # parses to inf
        '{"x": 1',
        "",
        '"' + "a" * MAX_JSON_CHARS + '"',
    ],
    ids=lambda text: text[:24],
)
def test_strict_json_refuses_what_would_break_or_cost(text):
    with pytest.raises(Refused):
        strict_json(text)


def test_trigger_events_keep_the_last_of_each_name():
    events = [{"event": "click", "value": i} for i in range(10_000)] + [{"event": "path", "value": 1}]
    assert last_event_of_each_name(events) == [
        {"event": "click", "value": 9_999},
        {"event": "path", "value": 1},
    ]
    with pytest.raises(Refused):
        last_event_of_each_name([{"event": f"e{i}"} for i in range(MAX_EVENT_NAMES + 1)])
    with pytest.raises(Refused):
        last_event_of_each_name([{"value": 1}])


def test_ten_thousand_clicks_in_one_message_reach_the_session_as_one():
    msg = rerun_with(trigger(clicks(*[(i / 10_000, 0.0) for i in range(10_000)])))
    assert screen(msg) == []
    (state,) = msg.rerun_script.widget_states.widgets
    assert json.loads(state.json_trigger_value) == [{"event": "click", "value": {"x": 0.9999, "y": 0.0}}]


GOOD = WidgetState(id="$$ID-abc-model_picker", string_value="mlp2d")


@pytest.mark.parametrize(
    "hostile",
    [
        trigger("[" * 100_000 + "]" * 100_000),
        trigger(json.dumps([{"event": "click", "value": {"x": 1, "y": 0}}]).replace("1", "9" * 4400)),
        WidgetState(id="", trigger_value=True),
        WidgetState(id="x" * 1001, bool_value=True),
        WidgetState(id="component", json_value='{"x": NaN}'),
        trigger(json.dumps([{"event": f"e{i}"} for i in range(MAX_EVENT_NAMES + 1)])),
    ],
    ids=["deep", "huge int", "empty id", "long id", "NaN state", "many event names"],
)
def test_widget_values_a_browser_never_sends_are_taken_out_of_the_rerun(hostile):
    msg = rerun_with(GOOD, hostile)
    assert len(screen(msg)) == 1
    assert list(msg.rerun_script.widget_states.widgets) == [GOOD]


@pytest.mark.parametrize(
    "states",
    [
        [GOOD, WidgetState(id=GOOD.id, string_value="best")],
        [GOOD] + [WidgetState(id=f"w{i}", bool_value=True) for i in range(server_guard.MAX_WIDGETS)],
    ],
    ids=["repeated id", "too many widgets"],
)
def test_a_rerun_with_impossible_widget_states_keeps_none(states):
    msg = rerun_with(*states)
    assert screen(msg)
    assert len(msg.rerun_script.widget_states.widgets) == 0


def test_ordinary_messages_pass_untouched():
    msg = rerun_with(
        GOOD,
        WidgetState(id="$$ID-def-latent_plane:pretrained:mlp2d", json_value="{}"),
        trigger(clicks((0.5, -0.5))),
    )
    before = msg.SerializeToString()
    assert screen(msg) == []
    assert msg.SerializeToString() == before
    assert "clear_cache" in server_guard.IGNORED_MESSAGES


# --- the latent plane's values ----------------------------------------------------------------------
def test_click_values_are_checked_for_type_range_and_index():
    assert click_value({"x": MAX_ABS_COORDINATE, "y": -MAX_ABS_COORDINATE}) == (50.0, -50.0, None)
    assert click_value({"digit": 9_999}, count=10_000) == (0.0, 0.0, 9_999)
    for bad in (
        {"x": 1e6, "y": 0}, {"x": 0, "y": 1e308}, {"x": -1e308, "y": 0}, {"x": float("inf"), "y": 0},
        {"x": MAX_ABS_COORDINATE + 0.001, "y": 0}, {"x": [1], "y": 0}, {"x": {"x": 1}, "y": 0},
        {"digit": 10_000}, {"digit": 10**40}, {"digit": -1}, {"digit": 1.0}, ["x", "y"],
    ):  # fmt: skip
        assert click_value(bad, count=10_000) is None, bad


def test_dragged_paths_stay_within_the_coordinate_bound():
    good = {"start": [0.0, 1.0], "end": [MAX_ABS_COORDINATE, -1.5], "walk": 3}
    assert path_value(good, latent_dim=2, steps=10) == ([0.0, 1.0], [50.0, -1.5], 3)
    for bad in (
        {**good, "start": [1e308, 0.0]}, {**good, "end": [0.0, -1e6]}, {**good, "start": [0.0, [1.0]]},
        {**good, "end": [0.0, 1.0, 2.0]}, {**good, "walk": 10**40}, {**good, "start": None},
    ):  # fmt: skip
        assert path_value(bad, latent_dim=2, steps=10) is None, bad


def test_values_received_before_the_guard_are_screened_by_the_same_rules():
    # A process's first visitors send their first message before app.py installs the guard: those
    # values wait, serialised, until a widget reads them, and are screened in the first run.
    from streamlit.runtime.state.session_state import Serialized, SessionState, Value

    from explorer.server_guard import sanitise_received_widget_states

    state = SessionState()
    deep = trigger("[" * 100_000 + "]" * 100_000)
    held = state._new_widget_state.states
    held.update({GOOD.id: Serialized(GOOD), deep.id: Serialized(deep), "read": Value([1, 2])})
    assert sanitise_received_widget_states(state) == 1
    assert set(held) == {GOOD.id, "read"}
