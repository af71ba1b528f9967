"""Small Streamlit widgets every page uses: the model picker, the digit picker, digit pictures."""

from __future__ import annotations

import random

import streamlit as st

from .figures import digit_picture
from .registry import ModelEntry
from .resources import available_models, digits_for, explore_digits

SELECTED_MODEL = "selected_model"


def model_picker(help_text: str | None = None) -> ModelEntry:
    """The sidebar model picker, shared by every page (the choice survives page switches)."""
    models = available_models()
    if not models:
        st.error(
            "No model available: `pretrained/` holds no readable checkpoint. Train one on the Train page "
            "or with `python -m vae_core train … --out pretrained/NAME.safetensors`."
        )
        st.stop()
    keys = list(models)
    wanted = st.session_state.get(SELECTED_MODEL)
    if st.session_state.get("model_picker") not in keys:
        st.session_state["model_picker"] = wanted if wanted in keys else keys[0]
    choice = st.sidebar.selectbox(
        "Model", keys, key="model_picker", format_func=lambda k: models[k].label, help=help_text
    )
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
