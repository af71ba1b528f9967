"""Interpolate: encode two digits and decode the latent path between them, linear or spherical."""

import math
from functools import partial

import streamlit as st
import torch

from explorer.figures.pictures import PATH_GIF_STEPS, digit_grid_png, path_gif
from explorer.figures.plots import grid_picture, plane_bounds
from explorer.state.share_links import (
    END_PARAM,
    LABEL_PARAM,
    PATH_PARAM,
    START_PARAM,
    STEPS_PARAM,
    parse_choice,
    parse_int_in,
    parse_label,
)
from explorer.ui.latent_plane import (
    cached_model_payload,
    latent_plane,
    path_value,
    payload_meta,
    plane_codes,
    server_image,
)
from explorer.ui.resources import digits_for
from explorer.ui.sidebar import chosen_model
from explorer.ui.widgets import (
    digit_picker,
    restore_from_link,
    share_this_view,
    show_digit,
)
from vae_core import decode, encode, interpolate

METHODS = ("linear", "spherical")
# From about here the prior's ‖z‖ concentrates (mean √L, spread ≈ 0.7 whatever L): slerp's argument holds
SHELL_DIMS = 8
MIN_STEPS, MAX_STEPS = 3, 25

entry = chosen_model()
config = entry.config
digits = digits_for(entry)
codes = plane_codes(entry)


# A link's values go into the widgets' state before they are drawn; the two ends are the pickers' own.
restore_from_link({
    PATH_PARAM: ("interp_method", lambda v: parse_choice(v, METHODS, PATH_PARAM)),
    STEPS_PARAM: ("interp_steps", lambda v: parse_int_in(v, MIN_STEPS, MAX_STEPS, STEPS_PARAM)),
    LABEL_PARAM: ("interp_condition", lambda v: parse_label(v, config.conditional, entry.name)),
})  # fmt: skip


def paths_note(latent_dim: int) -> str:
    """What the two paths do, said for this model's number of latent dimensions."""
    what = (
        "Both digits are encoded to their posterior means a and b (the centres of q(z|x)), and points on the way "
        "between them are decoded. **Linear** walks the straight line (1 − t)·a + t·b. **Spherical** (slerp) walks "
        "[sin((1 − t)ω)·a + sin(tω)·b] / sin ω, ω the angle between a and b seen from the origin: it turns from "
        "a's direction to b's in the plane through a, b and the origin, bowed away from the origin (at t = ½ it "
        "is the straight line's middle pushed out by 1 / cos(ω/2)). It keeps ‖z‖ constant only when ‖a‖ = ‖b‖; "
        "each step's ‖z‖ is shown under the walk slider. "
    )
    if latent_dim >= SHELL_DIMS:
        return what + (
            f"Why bow: with {latent_dim} latent dimensions, draws from the prior N(0, I) have ‖z‖ close to "
            f"√{latent_dim} ≈ {math.sqrt(latent_dim):.1f}, and the straight line's middle can fall well inside that "
            "shell, where decodes can look washed out."
        )
    return what + (
        f"With {latent_dim} latent dimension{'s' if latent_dim > 1 else ''} the prior's ‖z‖ has no thin shell to "
        "stay near (its density is highest at the origin), so neither path is the more typical one here: they "
        "are two routes between the same ends."
    )


st.title("Interpolate")
st.caption(paths_note(config.latent_dim))

start_column, end_column = st.columns(2)
with start_column:
    start = digit_picker(entry, "interp_from", "From", default_class=1, share_param=START_PARAM)
    show_digit(digits.grey(start), f"#{start} (a {int(digits.labels[start])})", config.image_size)
with end_column:
    end = digit_picker(entry, "interp_to", "To", default_class=7, share_param=END_PARAM)
    show_digit(digits.grey(end), f"#{end} (a {int(digits.labels[end])})", config.image_size)

controls = st.columns(3)
method = controls[0].radio("Path", METHODS, horizontal=True, key="interp_method")
st.session_state.setdefault("interp_steps", 10)  # the default lives here, so a link may set another
steps = controls[1].slider("Steps", MIN_STEPS, MAX_STEPS, key="interp_steps")
condition = None
if config.conditional:
    # The encoder sees each digit with its own label; the decoder draws every step as one chosen digit,
    # so the path interpolates style (slant, thickness) within a class.
    condition = controls[2].selectbox(
        "Decode every step as digit", list(range(10)), index=max(int(digits.labels[start]), 0),
        key="interp_condition",
    )  # fmt: skip

pair = torch.tensor([start, end])
binary = digits.fixed_binary(index=pair)  # the binary images the digits are scored on
mu, _ = encode(entry.model, binary, digits.labels[pair])
# Ends dragged on the plane (in the browser) replace the encodings until the digits change.
ends_key = f"interp_ends:{entry.key}:{start}:{end}"
if ends_key in st.session_state:
    mu = torch.tensor(st.session_state[ends_key], dtype=torch.float32)
path = interpolate(mu[0], mu[1], steps, method)  # (steps, L)
images = decode(entry.model, path, torch.full((steps,), condition or 0))

if st.session_state.get("interp_walk", 1) > steps:  # fewer steps than before: stay on the path
    st.session_state["interp_walk"] = steps
position = st.slider("Walk along the path", 1, steps, key="interp_walk")
shown = position - 1
step_text = f"Step {position} of {steps}"
st.caption(f"{step_text} · t = {shown / (steps - 1):.2f} · ‖z‖ = {path[shown].norm():.2f}")

# The step and the strip are shown once, by the plane: it decodes MLP models in the browser (and follows
# a drag at once); other decoders run here, the plane shows the step's picture and the strip goes below.
decoded_here = None if payload_meta(cached_model_payload(entry, codes))["decodable"] else images[shown]
plane_column = st.container()
with plane_column:

    def _dragged(value) -> None:
        dragged = path_value(value, config.latent_dim, st.session_state["interp_steps"])
        if dragged is None:
            return
        start_z, end_z, walk = dragged
        st.session_state["interp_walk"] = walk + 1
        if not (torch.allclose(torch.tensor(start_z), mu[0]) and torch.allclose(torch.tensor(end_z), mu[1])):
            st.session_state[ends_key] = [start_z, end_z]

    latent_plane(
        entry, codes, key=f"interp_plane:{entry.key}", bounds=plane_bounds(codes.plane), label=condition,
        path={"start": mu[0].tolist(), "end": mu[1].tolist(), "method": method, "steps": steps, "walk": shown},
        on_path=_dragged, height=380, pick_digits=False,
        decoded_by_server=None if decoded_here is None else server_image(decoded_here, step_text),
        prompt="Drag A, B or the red walk point: the strip and the image follow.",
    )  # fmt: skip
    if ends_key in st.session_state:
        st.button("Put the ends back on the digits", key="interp_reset_ends",
                  on_click=lambda: st.session_state.pop(ends_key, None))  # fmt: skip
    if codes.projection.is_pca:
        st.caption(
            f"The path drawn on the plane of the first two principal components of the {config.latent_dim}-D "
            "codes: a curve here can be a straight line in the full space. Dragging an end moves it within "
            "this plane; its other coordinates stay."
        )

strip_caption = f"All {steps} steps, {method}: from #{start} (left) to #{end} (right)."
if decoded_here is None:  # the plane draws the strip under the map, its walk step framed in red
    st.caption(f"{strip_caption[:-1]}, in the strip under the map (the step on show framed in red).")
else:
    strip = grid_picture(images, config.image_size, columns=steps, scale=2)
    # A box as wide as the strip that shrinks to fit a narrow page (a fixed-width image ran off it at 800 px)
    st.container(width=strip.shape[1]).image(
        strip,
        caption=strip_caption,
        width="stretch",
        alt=f"A strip of the {steps} digits decoded along the path, from digit {start} to digit {end}",
    )

# Take-aways: the strip as shown, and an animation decoded more finely along the same path. The
# files are encoded only when a button is clicked (in a worker thread), not on every rerun.
pair_name = f"{entry.name}-{start}-to-{end}-{method}"
# A wrapping row of content-wide buttons: in [1, 1, 3] columns their labels read 'Downl…'
downloads = st.container(horizontal=True)
downloads.download_button(
    "Download the strip (PNG)", partial(digit_grid_png, images, config.image_size, columns=steps),
    file_name=f"{pair_name}-{steps}-steps.png", mime="image/png", key="interp_strip_png", on_click="ignore",
)  # fmt: skip
gif_path = interpolate(mu[0], mu[1], PATH_GIF_STEPS, method)
gif_frames = decode(entry.model, gif_path, torch.full((PATH_GIF_STEPS,), condition or 0))
downloads.download_button(
    "Download the animation (GIF)", partial(path_gif, gif_frames, config.image_size),
    file_name=f"{pair_name}.gif", mime="image/gif", key="interp_gif", on_click="ignore",
    help=f"{PATH_GIF_STEPS} decodes from #{start} to #{end}, then back again, looping.",
)  # fmt: skip

share_this_view(
    entry, "interpolate",
    {START_PARAM: start, END_PARAM: end, PATH_PARAM: method, STEPS_PARAM: steps, LABEL_PARAM: condition},
)  # fmt: skip
