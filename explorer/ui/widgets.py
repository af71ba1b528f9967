"""Small Streamlit widgets every page uses: the model picker, the digit picker, digit pictures,
and the glue between them and the address bar (a shared link restores the view; the URL follows it).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path

import streamlit as st

from explorer.figures.plots import digit_picture
from explorer.state.registry import ModelEntry
from explorer.state.share_links import (
    MODEL_PARAM,
    ShareLinkError,
    escape_markdown,
    find_model,
    model_url_name,
    parse_index,
    view_url,
)
from explorer.ui.resources import (
    available_models,
    digits_for,
    explore_digits,
    register_session_model,
    session_models,
)
from vae_core import CheckpointError, load_checkpoint

SELECTED_MODEL = "selected_model"
URL_WRITTEN = "share_url_written"  # the query parameters as this session last set them
LINK_PARAMS = "share_link_params"  # those a link brought this run, not yet applied
SHARE_BOX = "share_box_slot"  # this run's sidebar placeholder for the share box (model_picker)


MAX_CHECKPOINT_BYTES = 20 * 1024 * 1024  # also .streamlit/config.toml's server.maxUploadSize


def checkpoint_uploader() -> None:
    """Sidebar upload of a .safetensors checkpoint: loaded without unpickling, or refused with why."""
    with st.sidebar.expander("Upload a checkpoint"):
        upload = st.file_uploader(
            "A VAE Explorer .safetensors file", type=["safetensors"], key="checkpoint_upload",
            help="Trained with `python -m vae_core train` or downloaded from the Train page.",
        )  # fmt: skip
        if upload is None:
            return
        seen = st.session_state.setdefault("checkpoint_uploads_seen", {})
        if upload.file_id not in seen:
            seen[upload.file_id] = _register_upload(upload.name, upload.getvalue())
        ok, message = seen[upload.file_id]
        (st.success if ok else st.error)(message)


def checkpoint_from_upload(name: str, data: bytes):
    """An uploaded file as a Checkpoint, or CheckpointError saying why not (nothing is unpickled)."""
    if len(data) > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(
            f"{name} is {len(data) / 2**20:.1f} MB; the limit is {MAX_CHECKPOINT_BYTES // 2**20} MB"
        )
    checkpoint = load_checkpoint(data)
    checkpoint.model.requires_grad_(False)
    return checkpoint


MAX_SHOWN_NAME_CHARS = 80  # an upload's name as messages and the model picker show it
MAX_REASON_CHARS = 600


def _shortened(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def model_label_from_file_name(name: str) -> str:
    """The name an uploaded model goes by on every page: the file's stem cut to letters, digits and
    `-_.` (pages put model names in Markdown, headings and file names; a visitor chose this one)."""
    kept = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(name)).stem).strip("._") or "uploaded"
    return _shortened(kept, MAX_SHOWN_NAME_CHARS)


def _register_upload(name: str, data: bytes) -> tuple[bool, str]:
    """Load an upload into this session's models and select it: (True, what was loaded), or
    (False, why not) with nothing registered. The message is Markdown with the visitor's text
    (the file's name, anything the reason quotes from the file) escaped and shortened."""
    shown_name = escape_markdown(_shortened(name, MAX_SHOWN_NAME_CHARS))
    try:
        checkpoint = checkpoint_from_upload(name, data)
    except CheckpointError as exc:
        return (
            False,
            f"{shown_name} was not loaded: {escape_markdown(_shortened(str(exc), MAX_REASON_CHARS))}",
        )
    except Exception as exc:  # a file the checks did not foresee: refused, never a traceback for all
        return False, f"{shown_name} was not loaded: it is not a readable checkpoint ({type(exc).__name__})"
    key = f"uploaded:{name}:{len(session_models())}"
    label = model_label_from_file_name(name)
    register_session_model(ModelEntry(key, checkpoint, "uploaded", label))
    st.session_state[SELECTED_MODEL] = key
    st.session_state.pop("model_picker", None)
    return True, f"Loaded {shown_name}: {checkpoint.model_config.describe()}. It is now selected."


def _remember_model() -> None:
    st.session_state[SELECTED_MODEL] = st.session_state["model_picker"]


def model_picker(help_text: str | None = None) -> ModelEntry:
    """The sidebar model picker, shared by every page (the choice survives page switches)."""
    checkpoint_uploader()
    models = available_models()
    if not models:
        st.error(
            "No model available: `pretrained/` holds no readable checkpoint. Train one on the Train page "
            "or with `python -m vae_core train … --out pretrained/NAME.safetensors`."
        )
        st.stop()
    keys = list(models)
    _read_link_params()
    linked = take_link_param(MODEL_PARAM)
    if linked is not None:
        try:
            st.session_state[SELECTED_MODEL] = find_model(linked, models.values())
        except ShareLinkError as exc:
            warn_ignored(exc)
    wanted = st.session_state.get(SELECTED_MODEL)
    # Each page's picker is a different widget, and after a page switch this key can still hold
    # the previous page's value while the new widget starts at its default: seed it on every run
    # from the remembered choice; the on_change callback (run before the script) records a change.
    st.session_state["model_picker"] = wanted if wanted in keys else keys[0]
    choice = st.sidebar.selectbox(
        "Model", keys, key="model_picker", format_func=lambda k: models[k].label, help=help_text,
        on_change=_remember_model,
    )  # fmt: skip
    st.session_state[SELECTED_MODEL] = choice
    st.sidebar.caption(explore_digits().note)
    # The share box's place, emptied now: Streamlit keeps a previous run's elements on screen until
    # this run replaces them, and the box is filled last (share_this_view), so a box drawn only then
    # named the old model beside the new page for the whole run (seconds under load).
    st.session_state[SHARE_BOX] = st.sidebar.empty()
    # Every page's URL names its model, also pages that share nothing else; a page's own
    # parameters follow in share_this_view.
    write_url_params({**st.query_params.to_dict(), MODEL_PARAM: model_url_name(models[choice])})
    return models[choice]


def labels_for(entry: ModelEntry, labels):
    """The labels to pass a conditional model, None for an unconditional one."""
    return labels if entry.config.conditional else None


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
    target.image(digit_picture(probs, image_size), caption=caption, width=140)


# --- the address bar -----------------------------------------------------------------------------


def _read_link_params() -> None:
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


MAX_WARNING_CHARS = 300  # a message quotes values shortened already; this bounds any other


def warn_ignored(error: ShareLinkError, target=st) -> None:
    """The reason a link's value was ignored, shown literally: it quotes what the visitor sent, and
    st.warning renders Markdown (a value like `[Log in](https://evil)` would be a live link)."""
    text = str(error)
    if len(text) > MAX_WARNING_CHARS:
        text = text[:MAX_WARNING_CHARS] + "…"
    target.warning(f"Ignored from the link: {escape_markdown(text)}.", icon="🔗")


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
