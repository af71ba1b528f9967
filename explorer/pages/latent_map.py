"""Latent map: encoded test digits; a click anywhere decodes that exact point."""

import numpy as np
import streamlit as st
import torch

from explorer.figures import grid_picture, latent_map_figure, plane_bounds
from explorer.resources import digits_for, latent_codes
from explorer.selection import click_from_selection
from explorer.widgets import labels_for, model_picker, show_digit
from vae_core import decode, reconstruct

entry = model_picker()
config = entry.config
codes = latent_codes(entry)
digits = digits_for(entry)
bounds = plane_bounds(codes.plane)
click_key = f"latent_click:{entry.key}"

st.title("Latent map")
pca_note = (
    f" The model has {config.latent_dim} latent dimensions: the map shows the plane of their first two "
    "principal components, and a click decodes the point of that plane (other directions at their mean)."
    if codes.projection.is_pca
    else ""
)
st.caption(
    f"{len(codes.plane):,} test digits placed at their encoder means, coloured by label. Click empty "
    "space to decode that point; click a digit to see it, its reconstruction and its posterior." + pca_note
)

condition = None
if config.conditional:
    condition = st.selectbox(
        "Decode as digit (a conditional model also needs the label)", list(range(10)), key="map_condition"
    )


def _remember_click(chart_key: str) -> None:
    click = click_from_selection(st.session_state[chart_key].get("selection"))
    if click is not None:  # a changed figure resets the selection: keep the last real click
        st.session_state[click_key] = click


@st.fragment
def map_and_decoded() -> None:
    click = st.session_state.get(click_key)
    chart_key = f"latent_map_chart:{entry.key}"
    posterior = None
    if click is not None and click.on_digit and not codes.projection.is_pca and config.latent_dim == 2:
        posterior = (codes.mu[click.digit_index], codes.sigma[click.digit_index])
    clicked_point = (click.x, click.y) if click is not None and not click.on_digit else None
    figure = latent_map_figure(
        codes.plane, codes.labels, bounds, codes.projection.axis_labels(), clicked_point=clicked_point,
        posterior=posterior,
    )  # fmt: skip
    left, right = st.columns([3, 1])
    with left:
        st.plotly_chart(
            figure, key=chart_key, on_select=lambda: _remember_click(chart_key), selection_mode="points",
            config={"displayModeBar": False, "scrollZoom": False},
        )  # fmt: skip
    with right:
        if click is None:
            st.info("Click anywhere on the map.")
        elif not click.on_digit:
            z = codes.projection.from_plane(torch.tensor([[click.x, click.y]]))
            probs = decode(entry.model, z, labels_for(entry, torch.tensor([condition or 0])))[0]
            show_digit(probs, "decoded point", config.image_size, right)
            st.markdown(f"**Point** ({click.x:.3f}, {click.y:.3f})")
            if codes.projection.is_pca:
                st.caption(f"latent ‖z‖ = {z.norm():.2f}")
            st.session_state["latent_map_last_decoded"] = probs.numpy()
        else:
            i = click.digit_index
            label = int(codes.labels[i])
            show_digit(digits.grey(i), f"test digit #{i} (a {label})", config.image_size, right)
            recon = reconstruct(
                entry.model, digits.grey(i)[None], labels_for(entry, codes.labels[i : i + 1])
            )[0]
            show_digit(recon, "reconstruction", config.image_size, right)
            mu, sigma = codes.mu[i], codes.sigma[i]
            shown = min(4, config.latent_dim)
            st.markdown(
                "**q(z|x)** μ = (" + ", ".join(f"{v:.2f}" for v in mu[:shown].tolist())
                + (", …" if config.latent_dim > shown else "") + ")  \nσ = ("
                + ", ".join(f"{v:.3f}" for v in sigma[:shown].tolist()) + (", …" if config.latent_dim > shown else "")
                + ")"
            )  # fmt: skip
            st.session_state["latent_map_last_decoded"] = recon.numpy()


map_and_decoded()

st.subheader("Manifold over the visible region")
n = st.slider("Images per side", 5, 25, 12, key="manifold_n")
x0, x1, y0, y1 = bounds
xs, ys = np.linspace(x0, x1, n), np.linspace(y1, y0, n)  # top row = largest y, as on the map
plane_points = torch.tensor([[x, y] for y in ys for x in xs], dtype=torch.float32)
latents = codes.projection.from_plane(plane_points)
grid = decode(entry.model, latents, labels_for(entry, torch.full((len(latents),), condition or 0)))
st.image(
    grid_picture(grid, config.image_size, columns=n, scale=2),
    caption=f"Decoded {n}×{n} grid spanning the map's axes (rows from top to bottom = high to low y).",
)
