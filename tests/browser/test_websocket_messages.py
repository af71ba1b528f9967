"""Forged websocket messages against a real `streamlit run app.py`: what a visitor's machine can send
without the app's frontend, speaking Streamlit's protocol (BackMsg protobufs in, ForwardMsg out).

Each case sends its message, then an ordinary rerun of the same page, and reads everything the
server answers until that rerun finishes: no exception element may reach the visitor, the page must
render, and the server must keep serving others. No Chromium here, only the shared server.
"""

from __future__ import annotations

import json
from contextlib import ExitStack

import pytest
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.harness import healthy

pytestmark = pytest.mark.browser

ANSWER_TIMEOUT_S = 180.0  # a cold first render of the Latent map on a loaded 2-core CI box


class Visitor:
    """One session on the Latent map, driven through the websocket."""

    def __init__(self, url: str):
        self._closing = ExitStack()
        self.ws: ClientConnection = self._closing.enter_context(connect(
            url.replace("http://", "ws://") + "/_stcore/stream", subprotocols=["streamlit"],
            max_size=None, open_timeout=60,
        ))  # fmt: skip
        self.plane_id = None
        self.plane_id = self.rerun().plane_id

    def send(self, msg: BackMsg) -> None:
        self.ws.send(msg.SerializeToString())

    def rerun(self, *widgets: WidgetState, plane_state: str = "{}") -> Answer:
        """Rerun the Latent map with `widgets` (plus the plane's own state, as the frontend sends
        it) and return what the server answered up to the end of that run."""
        msg = BackMsg()
        msg.rerun_script.page_name = "latent_map"
        if self.plane_id is not None:
            msg.rerun_script.widget_states.widgets.append(
                WidgetState(id=self.plane_id, json_value=plane_state)
            )
        msg.rerun_script.widget_states.widgets.extend(widgets)
        self.send(msg)
        return self.answer()

    def answer(self) -> Answer:
        messages = []
        while True:
            forward = ForwardMsg()
            forward.ParseFromString(self.ws.recv(timeout=ANSWER_TIMEOUT_S))
            messages.append(forward)
            if forward.WhichOneof("type") == "script_finished":
                return Answer(messages)

    def click_events(self, text: str) -> WidgetState:
        """The plane's trigger widget (Streamlit's aggregator of a component's events) holding `text`."""
        return WidgetState(id=f"$$STREAMLIT_INTERNAL_KEY_{self.plane_id}__events", json_trigger_value=text)

    def close(self) -> None:
        self._closing.close()


class Answer:
    def __init__(self, messages: list[ForwardMsg]):
        self.elements = [
            m.delta.new_element for m in messages
            if m.WhichOneof("type") == "delta" and m.delta.WhichOneof("type") == "new_element"
        ]  # fmt: skip

    @property
    def exceptions(self) -> list[str]:
        return [
            f"{e.exception.type}: {e.exception.message[:200]}"
            for e in self.elements
            if e.HasField("exception")
        ]

    @property
    def plane_id(self) -> str | None:
        ids = [e.bidi_component.id for e in self.elements if e.HasField("bidi_component")]
        return next((i for i in ids if "latent_plane:" in i), None)

    @property
    def view(self) -> dict:
        """The plane's view as the browser parses it: strict JSON (JSON.parse has no NaN or Infinity)."""
        (text,) = [e.bidi_component.json for e in self.elements if e.bidi_component.id == self.plane_id]

        def refuse(constant):
            raise AssertionError(f"{constant} in the view sent to the browser")

        return json.loads(json.loads(text), parse_constant=refuse)

    @property
    def markdown(self) -> str:
        return "\n".join(e.markdown.body for e in self.elements if e.HasField("markdown"))


def assert_renders(answer: Answer) -> None:
    assert answer.exceptions == []
    assert answer.plane_id is not None, "the Latent map did not render"


@pytest.fixture
def visitor(app_server):
    session = Visitor(app_server)
    yield session
    session.close()


def clicks(*points) -> str:
    return json.dumps([{"event": "click", "value": {"x": x, "y": y}} for x, y in points])


def test_a_click_is_taken_and_shown(visitor):
    answer = visitor.rerun(visitor.click_events(clicks((0.5, -0.25))))
    assert_renders(answer)
    assert answer.view["clicked"] == [0.5, -0.25]
    assert "**Point** (0.500, -0.250)" in answer.markdown


@pytest.mark.parametrize(
    "hostile",
    [
        lambda v: v.rerun(v.click_events("[" * 100_000 + "]" * 100_000)),  # was: a RecursionError box
        lambda v: v.rerun(v.click_events('[{"event": "click", "value": {"x": ' + "9" * 4400 + ', "y": 0}}]')),
        lambda v: v.rerun(WidgetState(id="", trigger_value=True)),  # was: a KeyError box
        lambda v: v.rerun(v.click_events('[{"event": "click", "value": {"x": NaN, "y": 0}}]')),
        lambda v: v.rerun(plane_state="[" * 5_000 + "]" * 5_000),
    ],
    ids=["deep nesting", "4400-digit int", "empty widget id", "NaN", "deep component state"],
)
def test_malformed_values_are_dropped_without_an_exception_box(visitor, hostile):
    assert_renders(hostile(visitor))
    assert_renders(visitor.rerun())  # and the session goes on


@pytest.mark.parametrize("x", [1e6, -1e308])
def test_points_off_the_plane_are_not_taken(visitor, x):
    answer = visitor.rerun(visitor.click_events(clicks((x, 0.0))))
    assert_renders(answer)
    assert answer.view["clicked"] is None  # and the view is strict JSON (Answer.view)
    assert "**Point**" not in answer.markdown


def test_ten_thousand_click_events_in_one_message_count_as_the_last(visitor):
    events = clicks(*[(round(i / 10_000, 4), 0.0) for i in range(10_000)])
    answer = visitor.rerun(visitor.click_events(events))
    assert_renders(answer)
    assert answer.view["clicked"] == [1.0, 0.0]  # the last, 0.9999, rounded to 3 decimals


def test_a_visitors_clear_cache_is_ignored(app_server, visitor):
    other = Visitor(app_server)
    try:
        other.rerun(other.click_events(clicks((1.0, 2.0))))
        visitor.rerun(visitor.click_events(clicks((0.25, 0.25))))
        clear = BackMsg()
        clear.clear_cache = True
        visitor.send(clear)
        # Streamlit's clear_cache handler empties st.cache_data, st.cache_resource (every session's)
        # and the sender's session state in one go: the click kept in that state shows it never ran.
        mine = visitor.rerun()
        assert_renders(mine)
        assert mine.view["clicked"] == [0.25, 0.25]
        theirs = other.rerun()
        assert_renders(theirs)
        assert theirs.view["clicked"] == [1.0, 2.0]
    finally:
        other.close()


@pytest.mark.parametrize("megabytes", [3, 24])
def test_an_oversized_message_closes_only_its_own_connection(app_server, visitor, megabytes):
    # 3 MB: over server.maxWidgetStateSize, refused by Streamlit before parsing; 24 MB: over
    # server.maxMessageSize, refused by uvicorn from the frame's header (the default, 200 MB, let
    # three such clicks OOM-kill a 690 MB container).
    bystander = Visitor(app_server)
    try:
        padding = "a" * (megabytes * 1_000_000)
        msg = BackMsg()
        msg.rerun_script.page_name = "latent_map"
        value = json.dumps([{"event": "click", "value": {"x": 0.5, "y": 0.5, "pad": padding}}])
        msg.rerun_script.widget_states.widgets.append(visitor.click_events(value))
        with pytest.raises(ConnectionClosed) as closed:
            visitor.send(msg)
            visitor.answer()
        # 1009, Message Too Big; uvicorn may drop the TCP connection before its close frame arrives
        assert closed.value.rcvd is None or closed.value.rcvd.code == 1009
        assert healthy(app_server)
        assert_renders(bystander.rerun())
    finally:
        bystander.close()
