"""The shared sidebar, built once per run by app.py: checkpoint upload, model picker, data note, share box.

Pages read the model it picked with `chosen_model()`. Building the sidebar imports no torch (the
picker's labels come from the shipped Overview cards, resources.model_labels): the Overview's first
paint comes before torch; `chosen_model()` loads the models and fills in the data note.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from explorer.state.share_links import (
    MODEL_PARAM,
    ShareLinkError,
    find_model,
    model_url_name,
)
from explorer.state.visitor_text import inert, inert_reason
from explorer.ui.resources import (
    available_models,
    explore_digits,
    model_labels,
    session_models,
)
from explorer.ui.widgets import (
    LINK_PARAMS,
    SELECTED_MODEL,
    SHARE_BOX,
    read_link_params,
    take_link_param,
    warn_ignored,
    write_url_params,
)

if TYPE_CHECKING:
    from explorer.state.registry import ModelEntry

DATA_NOTE = "data_note_slot"  # this run's sidebar placeholder for the data note (chosen_model fills it)
MAX_CHECKPOINT_BYTES = 20 * 1024 * 1024  # also .streamlit/config.toml's server.maxUploadSize
# Loading holds the file's bytes (Streamlit's copy), the tensors read from them and their float32
# copies (twice the bytes for a float16 file) at once: the work admission is asked for that.
UPLOAD_LOAD_COPIES = 4
_upload_ids = itertools.count(1)  # server-wide: a key is never reused, even after a model leaves


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
    from vae_core import CheckpointError, load_checkpoint  # here: the sidebar itself needs no torch
    from vae_core.limits import ServerLimits

    if len(data) > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(
            f"{name} is {len(data) / 2**20:.1f} MB; the limit is {MAX_CHECKPOINT_BYTES // 2**20} MB"
        )
    # One rule for the models this server hosts, trained here or uploaded: $VAE_MAX_PARAMETERS.
    checkpoint = load_checkpoint(data, max_parameters=ServerLimits.from_env().max_parameters)
    checkpoint.model.requires_grad_(False)
    return checkpoint


MAX_SHOWN_NAME_CHARS = 80  # an upload's name as messages and the model picker show it


def _shortened(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def model_label_from_file_name(name: str) -> str:
    """The name an uploaded model goes by on every page: the file's stem cut to letters, digits, `-`
    and `_` (pages put model names in Markdown, headings and file names; a visitor chose this one).
    No `.`, `@` or `:`: Markdown makes a live link of `www.evil.example`, `a@evil.example` and
    `https://…` wherever they stand, even inside another word (`x_www.evil.example`)."""
    kept = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(str(name)).stem).strip("_") or "uploaded"
    return _shortened(kept, MAX_SHOWN_NAME_CHARS)


def _register_upload(name: str, data: bytes) -> tuple[bool, str]:
    """Load an upload into this session's models and select it: (True, what was loaded), or
    (False, why not) with nothing registered. The message is Markdown in which the visitor's text
    (the file's name, anything the reason quotes from the file) is inert and shortened."""
    from explorer.state.registry import ModelBudgetError, ModelEntry, SessionModelBudget
    from explorer.state.work_admission import ServerBusy, server_work
    from vae_core import CheckpointError

    shown_name = inert(name, MAX_SHOWN_NAME_CHARS)
    try:
        with server_work().admit(UPLOAD_LOAD_COPIES * len(data) / 2**20, "loading a checkpoint"):
            checkpoint = checkpoint_from_upload(name, data)
    except ServerBusy as exc:  # our own words, no visitor text
        return False, f"{shown_name} was not loaded: {exc}"
    except CheckpointError as exc:
        return False, f"{shown_name} was not loaded: {inert_reason(exc)}"
    except Exception as exc:  # a file the checks did not foresee: refused, never a traceback for all
        return False, f"{shown_name} was not loaded: it is not a readable checkpoint ({type(exc).__name__})"
    budget = SessionModelBudget.from_env()
    entry = ModelEntry(
        f"uploaded:{next(_upload_ids)}", checkpoint, "uploaded", model_label_from_file_name(name)
    )
    try:
        left = budget.add_upload(session_models(), entry)
    except ModelBudgetError as exc:
        return False, f"{shown_name} was not loaded: {exc}"
    st.session_state[SELECTED_MODEL] = entry.key
    st.session_state.pop("model_picker", None)
    message = f"Loaded {shown_name}: {checkpoint.model_config.describe()}. It is now selected."
    if left:
        message += (
            f" A session keeps {budget.uploads_per_session} uploaded models, so "
            f"{', '.join(inert(old.name) for old in left)} left to make room."
        )
    return True, message


def _remember_model() -> None:
    st.session_state[SELECTED_MODEL] = st.session_state["model_picker"]


def _select_linked_model() -> None:
    """A link's model, if it names one, becomes the choice (matched against the loaded models)."""
    linked = take_link_param(MODEL_PARAM)
    if linked is not None:
        try:
            st.session_state[SELECTED_MODEL] = find_model(linked, available_models().values())
        except ShareLinkError as exc:
            warn_ignored(exc)


def model_picker(help_text: str | None = None) -> str:
    """The sidebar model picker, shared by every page (the choice survives page switches); returns
    the chosen model's key."""
    checkpoint_uploader()
    labels = model_labels()
    if not labels:
        st.error(
            "No model available: `pretrained/` holds no readable checkpoint. Train one on the Train page "
            "or with `python -m vae_core train … --out pretrained/NAME.safetensors`."
        )
        st.stop()
    keys = list(labels)
    read_link_params()
    if st.session_state[LINK_PARAMS]:  # only a link needs the models loaded before the picker
        _select_linked_model()
    wanted = st.session_state.get(SELECTED_MODEL)
    # Seeded on every run from the remembered choice (when each page drew its own picker, a page
    # switch left this key holding the previous page's value while the new widget started at its
    # default); the on_change callback (run before the script) records a change.
    st.session_state["model_picker"] = wanted if wanted in keys else keys[0]
    choice = st.sidebar.selectbox(
        "Model", keys, key="model_picker", format_func=labels.__getitem__, help=help_text,
        on_change=_remember_model,
    )  # fmt: skip
    st.session_state[SELECTED_MODEL] = choice
    # Placeholders, emptied now and filled later in the run: Streamlit keeps a previous run's
    # elements on screen until this run replaces them. The data note needs the digits loaded
    # (chosen_model); the share box is filled last (share_this_view), and a box drawn only then named
    # the old model beside the new page for the whole run (seconds under load).
    st.session_state[DATA_NOTE] = st.sidebar.empty()
    st.session_state[SHARE_BOX] = st.sidebar.empty()
    return choice


def build_sidebar() -> None:
    """The sidebar every page shares (app.py calls this once per run, before the page runs)."""
    model_picker()


def chosen_model() -> ModelEntry:
    """The model the sidebar's picker chose this run, loaded with torch and the digits (the first
    call on a fresh server waits for them). Fills in the sidebar's data note and puts the model in
    the URL: every page's URL names its model, also pages that share nothing else (a page's own
    parameters follow in share_this_view)."""
    entry = available_models()[st.session_state[SELECTED_MODEL]]
    note = st.session_state.pop(DATA_NOTE, None)
    if note is not None:
        note.caption(explore_digits().note)
    write_url_params({**st.query_params.to_dict(), MODEL_PARAM: model_url_name(entry)})
    return entry
