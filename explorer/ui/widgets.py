"""Small Streamlit widgets pages use: the digit picker, digit pictures, and the glue between them and
the address bar (a shared link restores the view; the URL follows it). The model picker: sidebar.py.

The sidebar imports this module for the Overview's first paint, before torch: what needs torch
(explorer.state, explorer.figures, through vae_core) is imported inside the functions using it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

import streamlit as st

from explorer.state.share_links import (
    MODEL_PARAM,
    ShareLinkError,
    model_url_name,
    parse_index,
    view_url,
)
from explorer.ui.resources import digits_for

if TYPE_CHECKING:
    from explorer.state.registry import ModelEntry

SELECTED_MODEL = "selected_model"
URL_WRITTEN = "share_url_written"  # the query parameters as this session last set them
LINK_PARAMS = "share_link_params"  # those a link brought this run, not yet applied
SHARE_BOX = "share_box_slot"  # this run's sidebar placeholder for the share box (sidebar.py)


def digit_picker(
    entry: ModelEntry, key: str, label: str = "Digit", default_class: int = 0, share_param: str | None = None
) -> int:
    """Pick one explored digit by class, by index or at random; returns its index.

    With `share_param`, a link's `share_param=INDEX` opens the picker on that index (the caller puts
    the returned index back into the URL through share_this_view).
    """
    digits = digits_for(entry)
    linked = take_link_param(share_param) if share_param else None
    if linked is not None:
        try:
            index = parse_index(linked, len(digits), share_param)
        except ShareLinkError as exc:
            warn_ignored(exc)
        else:
            st.session_state[f"{key}_mode"] = "index"
            st.session_state[f"{key}_index"] = index
    st.markdown(f"**{label}**")
    mode = st.radio(
        "Pick by",
        ("class", "index", "random"),
        key=f"{key}_mode",
        horizontal=True,
        label_visibility="collapsed",
    )
    if mode == "class":
        left, right = st.columns(2)
        digit = left.selectbox("Class", list(range(10)), index=default_class, key=f"{key}_class")
        members = (digits.labels == digit).nonzero().flatten().tolist()
        if not members:
            st.warning(f"No {digit} among the explored digits.")
            return 0
        nth = right.number_input(f"Which {digit}", 0, len(members) - 1, 0, key=f"{key}_nth")
        return int(members[int(nth)])
    if mode == "index":
        # no explicit value (the default is the minimum, 0): a link sets this one through session state
        return int(st.number_input("Index", 0, len(digits) - 1, key=f"{key}_index"))
    random_key = f"{key}_random"
    if random_key not in st.session_state or st.button("Another random digit", key=f"{key}_reroll"):
        st.session_state[random_key] = random.randrange(len(digits))
    return int(st.session_state[random_key])


def show_digit(probs, caption: str, image_size: int = 28, target=st) -> None:
    from explorer.figures.plots import digit_picture

    target.image(digit_picture(probs, image_size), caption=caption, alt=f"A digit: {caption}", width=140)


# --- the address bar -----------------------------------------------------------------------------


def read_link_params() -> None:
    """At the start of a full run: keep the URL's parameters to apply if a link brought them.

    The URL holds what this session last wrote unless the user arrived by a link (a new session),
    edited the address or went back in the browser's history: only then is there anything to apply.
    """
    current = st.query_params.to_dict()
    from_link = current != st.session_state.get(URL_WRITTEN)
    st.session_state[LINK_PARAMS] = dict(current) if from_link else {}


def take_link_param(name: str) -> str | None:
    """A parameter the link brought, once: a rerun that follows must not undo the user's changes."""
    return st.session_state.get(LINK_PARAMS, {}).pop(name, None)


def restore_from_link(readers: dict[str, tuple[str, Callable[[str], object]]]) -> None:
    """For each parameter the link brought: `readers[name] = (state key, parse)` sets that widget's
    state to the parsed value, or a warning says why the value was ignored. Call before the widgets.
    """
    for name, (state_key, parse) in readers.items():
        value = take_link_param(name)
        if value is None:
            continue
        try:
            st.session_state[state_key] = parse(value)
        except ShareLinkError as exc:
            warn_ignored(exc)


def warn_ignored(error: ShareLinkError, target=st) -> None:
    """The reason a link's value was ignored. Its text is Markdown made by share_links, which quotes
    the visitor's value only through visitor_text.inert: shown whole (cutting it could open a code
    span that the visitor's text then closes), and bounded because every quoted value is."""
    target.warning(f"Ignored from the link: {error}.", icon="🔗")


def write_url_params(params: dict[str, str]) -> None:
    """Make the address bar show exactly `params`; nothing is sent when it already does.

    Each change is one browser-history entry, so callers write a page's whole set at once.
    """
    params = {name: str(value) for name, value in params.items()}
    if st.query_params.to_dict() != params:
        st.query_params.from_dict(params)
    st.session_state[URL_WRITTEN] = params


def share_this_view(entry: ModelEntry, page: str, params: dict[str, object], target=None) -> str:
    """Put the view (model + a page's `params`; None values left out) in the URL and show its link.

    `page` is the page's URL path, used when the browser's own URL is unknown (AppTest).
    Returns the link.
    """
    shown = {MODEL_PARAM: model_url_name(entry)}
    shown.update({name: str(value) for name, value in params.items() if value is not None})
    write_url_params(shown)
    link = view_url(st.context.url or f"/{page}", shown)
    box = target if target is not None else st.session_state[SHARE_BOX].container()
    box.markdown("**Share this view**")
    box.code(link, language=None, wrap_lines=True)
    if entry.origin != "pretrained":
        box.caption("This model lives only in your session: the link opens with the default model.")
    return link
