"""Samples: decode draws from the prior, at a chosen temperature, as probabilities and as binary images."""

import math

import streamlit as st
import torch

from explorer.figures import grid_picture
from explorer.widgets import labels_for, model_picker
from vae_core import sample_prior

SEED_KEY = "samples_seed"
ALL_DIGITS = "all digits"

entry = model_picker()
config = entry.config
st.session_state.setdefault(SEED_KEY, 0)


def _reseed() -> None:
    st.session_state[SEED_KEY] += 1


st.title("Samples from the prior")
st.caption(
    "Each sample is a latent z drawn from N(0, T²·I) and decoded. At temperature T = 1 this is the model's "
    "own generative distribution; T < 1 stays near the prior's centre (cleaner, more alike digits), "
    "T > 1 reaches into regions the decoder rarely saw in training."
)

controls = st.columns([2, 2, 2, 1])
temperature = controls[0].slider("Temperature T", 0.1, 2.0, 1.0, step=0.05, key="samples_temperature")
count = controls[1].select_slider("Samples", (16, 36, 64, 100), value=36, key="samples_count")
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
_, probs = sample_prior(entry.model, count, temperature, labels_for(entry, labels), generator)
binary = torch.bernoulli(probs, generator=generator)

means = grid_picture(probs, config.image_size, columns=columns, scale=2)
means_column, binary_column = st.columns(2)
# Explicit widths: with width="content" a long caption stretches its picture, and the two must match.
means_column.image(
    means,
    caption=f"Bernoulli means p(x|z): {count} samples at T = {temperature:.2f}, seed {seed}",
    width=means.shape[1],
)
binary_column.image(
    grid_picture(binary, config.image_size, columns=columns, scale=2),
    caption="One binary image drawn from each p(x|z): what the model, strictly, generates",
    width=means.shape[1],
)
st.caption(
    "The means are what VAE papers usually show. The binary draws add independent pixel noise, since a "
    "Bernoulli decoder knows nothing of neighbouring pixels: the speckle is the model, not a bug."
)
