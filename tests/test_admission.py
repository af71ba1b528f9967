"""Admission on a real server, as a class meets it: with room for two visitors (VAE_MAX_SESSIONS=2),
the third gets the light "class is full" page (no model, no plane, no chart); once a visitor leaves,
the waiting one's page lets it in when its retry timer fires, and a later newcomer is turned away
again; an admitted visitor stays admitted on its next pages.

Visitors are websocket clients speaking Streamlit's protocol (bench/classroom_load.py), one after
another, so the test asserts what each sees and never how fast.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from explorer.ui.admission import FULL_TITLE
from tests.harness import ServerError, free_loopback_port, start_streamlit, stop_streamlit
from tests.streamlit_protocol import LATENT_MAP, ProtocolVisitor

pytestmark = pytest.mark.slow
RETRIES = 120  # half a second apart: a minute for the server to notice the first visitor left
HEAVY_ELEMENTS = {"bidi_component", "plotly_chart", "imgs", "metric", "file_uploader"}


@pytest.fixture(scope="module")
def port(tmp_path_factory):
    port = free_loopback_port()
    env = {**os.environ, "VAE_OFFLINE": "1", "VAE_MAX_SESSIONS": "2"}
    log_path = tmp_path_factory.mktemp("admission") / "server.log"
    try:
        process = start_streamlit(port, env=env, log_path=log_path)
    except ServerError as exc:
        pytest.fail(str(exc))
    yield port
    stop_streamlit(process)


async def _class_of_two(port: int) -> dict:
    seen = {}
    first, second, third, fourth = (ProtocolVisitor(port) for _ in range(4))
    seen["first"] = await first.open("")
    seen["second"] = await second.open("")
    seen["third"] = await third.open("")
    seen["second_on_the_map"] = await second.open(LATENT_MAP)  # admitted stays admitted when full
    await first.close()  # a visitor leaves: its place frees once the server sees the socket close
    interval, fragment = seen["third"].auto_rerun
    seen["retry_interval_s"] = interval
    for _ in range(RETRIES):  # the busy page's timer, fired sooner: the test decides when, not how fast
        retried = await third.open("", fragment_id=fragment)
        if retried.elements or not retried.finished:  # the fragment reran the whole app
            break
        await asyncio.sleep(0.5)
    seen["third_retried"] = retried
    seen["fourth"] = await fourth.open("")
    for visitor in (second, third, fourth):
        await visitor.close()
    return seen


def test_past_capacity_a_visitor_gets_the_light_busy_page_and_in_when_a_place_frees(port):
    # In a thread of its own: a browser test's Playwright, earlier in the same pytest run, keeps an
    # event loop running in the main thread, and asyncio.run() refuses to start beside it.
    with ThreadPoolExecutor(1) as pool:
        seen = pool.submit(asyncio.run, _class_of_two(port)).result()
    for name in ("first", "second"):
        assert seen[name].finished and not seen[name].busy, (name, seen[name])
        assert "exception" not in seen[name].elements
    third = seen["third"]
    assert third.finished and third.busy and FULL_TITLE in third.texts
    assert not third.elements & HEAVY_ELEMENTS, third.elements  # the busy page loads nothing heavy
    assert seen["retry_interval_s"] > 0  # it asks again by itself
    assert seen["second_on_the_map"].shows_latent_map
    retried = seen["third_retried"]
    assert retried.finished and not retried.busy and "exception" not in retried.elements, retried
    assert "metric" in retried.elements  # the Overview's model card: the app opened for the third
    fourth = seen["fourth"]
    assert fourth.busy and FULL_TITLE in fourth.texts
