"""A visitor as a websocket client speaking Streamlit's protocol, for tests and benchmarks: open a
page (or a fragment's auto-rerun, as the browser's timer does) and read what its script run sent."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from explorer.ui.admission import ARRIVING_TITLE, FULL_TITLE  # the busy page's titles

LATENT_MAP = "latent_map"  # the page's url path (app.py's st.navigation)
PAGE_TIMEOUT_S = 120.0


# ----------------------------------------------------------------- Streamlit's protocol, minimally
@dataclass
class PageRun:
    """What one script run sent a visitor: element kinds, texts, and how the run ended."""

    page: str
    seconds: float = 0.0
    elements: set[str] = field(default_factory=set)
    texts: list[str] = field(default_factory=list)
    finished: bool = False  # a script_finished message arrived
    auto_rerun: tuple[float, str] | None = None  # a fragment's (interval s, id): the busy page's retry
    closed: bool = False  # the server closed the connection (or died)

    @property
    def busy(self) -> bool:
        return any(text in (FULL_TITLE, ARRIVING_TITLE) for text in self.texts)

    @property
    def failed(self) -> bool:
        return "exception" in self.elements or not self.finished

    @property
    def shows_latent_map(self) -> bool:
        # The latent plane is a st.components.v2 component: a bidi_component element.
        return self.finished and "bidi_component" in self.elements and "exception" not in self.elements


class ProtocolVisitor:
    """One visitor as a websocket client: `open(page)` runs a page like the browser's first load or a
    sidebar click, and returns once its script run finished; the connection stays open meanwhile."""

    def __init__(self, port: int):
        self.port = port
        self.socket = None

    async def connect(self) -> None:
        import websockets

        # No Origin header: Streamlit admits non-browser clients (no XSRF cookie to check).
        self.socket = await websockets.connect(
            f"ws://127.0.0.1:{self.port}/_stcore/stream",
            subprotocols=["streamlit"],
            max_size=None,
            open_timeout=PAGE_TIMEOUT_S,
            ping_interval=None,  # a loaded server answers pings late; the test bounds time itself
        )

    async def open(
        self, page: str, query: str = "", timeout_s: float = PAGE_TIMEOUT_S, fragment_id: str = ""
    ) -> PageRun:
        """Run `page` (or, given `fragment_id`, that fragment's auto-rerun, as the browser's timer does)."""
        import websockets
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        if self.socket is None:
            await self.connect()
        started = time.perf_counter()
        request = BackMsg()
        request.rerun_script.query_string = query
        request.rerun_script.page_name = page
        if fragment_id:
            request.rerun_script.fragment_id = fragment_id
            request.rerun_script.is_auto_rerun = True
        run = PageRun(page)
        try:
            await self.socket.send(request.SerializeToString())
            while True:
                raw = await asyncio.wait_for(self.socket.recv(), timeout_s)
                message = ForwardMsg()
                message.ParseFromString(raw)
                kind = message.WhichOneof("type")
                if kind == "delta" and message.delta.WhichOneof("type") == "new_element":
                    element = message.delta.new_element
                    element_kind = element.WhichOneof("type")
                    run.elements.add(element_kind)
                    if element_kind in ("markdown", "heading", "alert"):
                        run.texts.append(getattr(element, element_kind).body)
                elif kind == "auto_rerun":
                    run.auto_rerun = (message.auto_rerun.interval, message.auto_rerun.fragment_id)
                elif kind == "script_finished":
                    if message.script_finished == ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                        continue  # a rerun follows (st.rerun, a widget): its run is the page
                    # st.stop() ends a run "successfully" too: the busy page ends so
                    run.finished = message.script_finished in (
                        ForwardMsg.FINISHED_SUCCESSFULLY,
                        ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY,
                    )
                    break
        except (TimeoutError, asyncio.TimeoutError):
            pass  # not finished within the timeout
        except (OSError, websockets.ConnectionClosed):
            run.closed = True
        run.seconds = time.perf_counter() - started
        return run

    async def close(self) -> None:
        if self.socket is not None:
            await self.socket.close()
            self.socket = None
