"""Samples: decode draws from the prior, at a chosen temperature, as probabilities and as binary images."""

import math
from functools import partial

import streamlit as st
import torch

from explorer.figures.pictures import digit_grid_png
from explorer.figures.plots import grid_picture
from explorer.state.share_links import (
    COUNT_PARAM,
    LABEL_PARAM,
    SEED_PARAM,
    TEMPERATURE_PARAM,
    parse_choice,
    parse_float_in,
    parse_int_in,
    parse_label,
)
from explorer.ui.sidebar import chosen_model
from explorer.ui.widgets import restore_from_link, share_this_view
from vae_core import sample_prior

SEED_KEY = "samples_seed"
ALL_DIGITS = "all digits"
COUNTS = (16, 36, 64, 100)
MIN_T, MAX_T, T_STEP = 0.1, 2.0, 0.05
MAX_SEED = 2**31 - 1

entry = chosen_model()
config = entry.config

# A link's values go into the widgets' state before they are drawn (their defaults follow it).
restore_from_link({
    SEED_PARAM: (SEED_KEY, lambda v: parse_int_in(v, 0, MAX_SEED, SEED_PARAM)),
    # snapped to the slider's step, as the slider itself would leave it
    TEMPERATURE_PARAM: (
        "samples_temperature",
        lambda v: round(round(parse_float_in(v, MIN_T, MAX_T, TEMPERATURE_PARAM) / T_STEP) * T_STEP, 2),
    ),
    COUNT_PARAM: ("samples_count", lambda v: int(parse_choice(v, [str(c) for c in COUNTS], COUNT_PARAM))),
    LABEL_PARAM: ("samples_digit", lambda v: parse_label(v, config.conditional, entry.name)),
})  # fmt: skip
st.session_state.setdefault(SEED_KEY, 0)
st.session_state.setdefault("samples_temperature", 1.0)
st.session_state.setdefault("samples_count", 36)


def _reseed() -> None:
    st.session_state[SEED_KEY] += 1


st.title("Samples from the prior")
st.caption(
    "Each sample is a latent z drawn from N(0, T²·I) and decoded. At temperature T = 1 this is the model's "
    "own generative distribution; T < 1 stays near the prior's centre (cleaner, more alike digits), "
    "T > 1 reaches into regions the decoder rarely saw in training."
)

controls = st.columns(4)  # equal: a narrow fourth column cut 'Reseed' at 800 px
temperature = controls[0].slider("Temperature T", MIN_T, MAX_T, step=T_STEP, key="samples_temperature")
count = controls[1].select_slider("Samples", COUNTS, key="samples_count")
digit = ALL_DIGITS
if config.conditional:
    digit = controls[2].selectbox("Digit", [ALL_DIGITS, *range(10)], key="samples_digit")
controls[3].button("Reseed", on_click=_reseed, key="samples_reseed", help="Draw new latents")
seed = st.session_state[SEED_KEY]

columns = math.isqrt(count)
labels = None
if config.conditional:
    if digit == ALL_DIGITS:
        columns = 10  # one column per digit, 0 to 9
        labels = torch.arange(count) % 10
    else:
        labels = torch.full((count,), digit)
generator = torch.Generator(device=entry.model.device).manual_seed(seed)
_, probs = sample_prior(entry.model, count, temperature, labels, generator)
binary = torch.bernoulli(probs, generator=generator)

means = grid_picture(probs, config.image_size, columns=columns, scale=2)
# Two equal boxes side by side that wrap one under the other when the page is narrow (in two columns
# the fixed-width grids overlapped at 800 px); each grid fills its box, so the two always match.
grids = st.container(horizontal=True, gap="medium")
means_column = grids.container(width=means.shape[1])
binary_column = grids.container(width=means.shape[1])
means_column.image(
    means,
    caption=f"Bernoulli means p(x|z): {count} samples at T = {temperature:.2f}, seed {seed}",
    alt=f"{count} digits sampled from the model, as pixel probabilities",
    width="stretch",
)
binary_column.image(
    grid_picture(binary, config.image_size, columns=columns, scale=2),
    caption="One binary image drawn from each p(x|z): what the model, strictly, generates",
    alt=f"{count} binary digits, one drawn from each sample's pixel probabilities",
    width="stretch",
)
grid_name = f"{entry.name}-samples-T{temperature:.2f}-seed{seed}"
means_column.download_button(
    "Download the means (PNG)", partial(digit_grid_png, probs, config.image_size, columns=columns),
    file_name=f"{grid_name}-means.png", mime="image/png", key="samples_means_png", on_click="ignore",
)  # fmt: skip
binary_column.download_button(
    "Download the binary draws (PNG)", partial(digit_grid_png, binary, config.image_size, columns=columns),
    file_name=f"{grid_name}-binary.png", mime="image/png", key="samples_binary_png", on_click="ignore",
)  # fmt: skip
st.caption(
    "The means are what VAE papers usually show. The binary draws add independent pixel noise, since a "
    "Bernoulli decoder knows nothing of neighbouring pixels: the speckle is the model, not a bug."
)
share_this_view(
    entry, "samples",
    {SEED_PARAM: seed, TEMPERATURE_PARAM: f"{temperature:g}", COUNT_PARAM: count,
     LABEL_PARAM: None if digit == ALL_DIGITS else digit},
)  # fmt: skip
