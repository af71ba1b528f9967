"""Small Streamlit widgets every page uses: the model picker, the digit picker, digit pictures."""

from __future__ import annotations

import random
from pathlib import Path

import streamlit as st

from vae_core import CheckpointError, load_checkpoint

from .figures import digit_picture
from .registry import ModelEntry
from .resources import available_models, digits_for, explore_digits, register_session_model, session_models

SELECTED_MODEL = "selected_model"


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


def _register_upload(name: str, data: bytes) -> tuple[bool, str]:
    try:
        checkpoint = checkpoint_from_upload(name, data)
    except CheckpointError as exc:
        return False, f"{name} was not loaded: {exc}"
    key = f"uploaded:{name}:{len(session_models())}"
    register_session_model(ModelEntry(key, checkpoint, "uploaded", Path(name).stem))
    st.session_state[SELECTED_MODEL] = key
    st.session_state.pop("model_picker", None)
    return True, f"Loaded {name}: {checkpoint.model_config.describe()}. It is now selected."


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
    return models[choice]


def labels_for(entry: ModelEntry, labels):
    """The labels to pass a conditional model, None for an unconditional one."""
    return labels if entry.config.conditional else None


def digit_picker(entry: ModelEntry, key: str, label: str = "Digit", default_class: int = 0) -> int:
    """Pick one explored digit by class, by index or at random; returns its index."""
    digits = digits_for(entry)
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
        return int(st.number_input("Index", 0, len(digits) - 1, 0, key=f"{key}_index"))
    random_key = f"{key}_random"
    if random_key not in st.session_state or st.button("Another random digit", key=f"{key}_reroll"):
        st.session_state[random_key] = random.randrange(len(digits))
    return int(st.session_state[random_key])


def show_digit(probs, caption: str, image_size: int = 28, target=st) -> None:
    target.image(digit_picture(probs, image_size), caption=caption, width=140)
