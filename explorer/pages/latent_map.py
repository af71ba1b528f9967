"""Latent map: encoded test digits; a click anywhere decodes that exact point."""

from functools import partial

import numpy as np
import streamlit as st
import torch

from explorer.figures.pictures import digit_grid_png
from explorer.figures.plots import grid_picture, plane_bounds
from explorer.state.selection import MapClick, latent_click_key
from explorer.state.share_links import (
    DIGIT_PARAM,
    LABEL_PARAM,
    POINT_PARAM,
    ShareLinkError,
    format_point,
    parse_index,
    parse_label,
    parse_point,
    round_point,
)
from explorer.state.visitor_text import inert, inert_reason
from explorer.ui.drawing_canvas import draw_digit
from explorer.ui.glossary import glossary
from explorer.ui.latent_plane import click_value, latent_plane, plane_codes, posterior_ellipse, server_image
from explorer.ui.resources import digits_for
from explorer.ui.sidebar import chosen_model
from explorer.ui.widgets import (
    share_this_view,
    show_digit,
    take_link_param,
    warn_ignored,
)
from vae_core import (
    decode,
    elbo_terms,
    encode,
    mnist_style_digit,
    mnist_style_pixels,
    reconstruct,
    scoring_binary,
)

entry = chosen_model()
config = entry.config
codes = plane_codes(entry)  # every explored digit: 10,000 on full MNIST
digits = digits_for(entry)
bounds = plane_bounds(codes.plane)
click_key = latent_click_key(entry.key)
own_key = f"own_digit:{entry.key}"

st.title("Latent map")
glossary("ELBO", "nats")
pca_note = (
    f" The model has {config.latent_dim} latent dimensions: the map shows the plane of their first two "
    "principal components, and a click decodes the point of that plane (other directions at their mean)."
    if codes.projection.is_pca
    else ""
)
st.caption(
    f"{len(codes.plane):,} test digits placed at their encoder means, coloured by label (the legend "
    "shows or hides classes; the map's own help line says how to zoom and pan with a mouse, a finger or "
    "the keys). Point at the map to decode any point in your browser; choose empty space to decode that "
    "point here, or a digit to see it, its reconstruction and its posterior." + pca_note
)


def _restore_from_link() -> None:
    """A shared link's point (z=x,y) or mapped digit (digit=INDEX), and a conditional model's label."""
    point, digit, label = (take_link_param(name) for name in (POINT_PARAM, DIGIT_PARAM, LABEL_PARAM))
    if point is not None and digit is not None:
        warn_ignored(
            ShareLinkError(f"{DIGIT_PARAM}={inert(digit)}, since the link also gives a point {POINT_PARAM}")
        )
    try:
        if point is not None:
            st.session_state[click_key] = MapClick(*parse_point(point))
        elif digit is not None:
            i = parse_index(digit, len(codes.plane), DIGIT_PARAM)  # only the mapped digits can be shown
            st.session_state[click_key] = MapClick(float(codes.plane[i, 0]), float(codes.plane[i, 1]), i)
    except ShareLinkError as exc:
        warn_ignored(exc)
    if label is not None:
        try:
            st.session_state["map_condition"] = parse_label(label, config.conditional, entry.name)
        except ShareLinkError as exc:
            warn_ignored(exc)


_restore_from_link()
condition = None
if config.conditional:
    condition = st.selectbox(
        "Decode as digit (a conditional model also needs the label)", list(range(10)), key="map_condition"
    )


@torch.no_grad()
def _test_elbos(entry) -> torch.Tensor:
    """ELBOs of the mapped test digits: the yardstick for an uploaded digit's typicality."""
    n = len(codes.plane)
    labels = codes.labels
    generator = torch.Generator(device=entry.model.device).manual_seed(0)  # never the global RNG
    return elbo_terms(entry.model, digits.subset(slice(0, n)).fixed_binary(), labels, generator).elbo


def _remember_click(value) -> None:
    """The component's click: a point of the plane (rounded as a link keeps it) or a digit's index."""
    click = click_value(value)
    if click is None or (click[2] is not None and click[2] >= len(codes.plane)):
        return
    x, y, digit = click
    if digit is None:
        st.session_state[click_key] = MapClick(*round_point((x, y)))
    else:
        st.session_state[click_key] = MapClick(
            float(codes.plane[digit, 0]), float(codes.plane[digit, 1]), digit
        )


@st.fragment
def map_and_decoded() -> None:
    click = st.session_state.get(click_key)
    on_digit = click is not None and click.on_digit
    own = st.session_state.get(own_key)
    decoded = z = None
    if click is not None and not on_digit:
        z = codes.projection.from_plane(torch.tensor([[click.x, click.y]]))
        decoded = decode(entry.model, z, torch.tensor([condition or 0]))[0]
    left, right = st.columns([3, 1])
    with left:
        latent_plane(
            entry, codes, key=f"latent_plane:{entry.key}", on_click=_remember_click, bounds=bounds,
            label=condition, clicked=(click.x, click.y) if click is not None and not on_digit else None,
            clicked_digit=click.digit_index if on_digit else None,
            ellipse=posterior_ellipse(codes.mu[click.digit_index], codes.sigma[click.digit_index], codes.projection)
            if on_digit else None,
            star=own["plane"] if own else None,
            thumbnails=len(codes.plane) if st.session_state.get("map_thumbnails") else 0,
            decoded_by_server=server_image(decoded, f"decoded by the server at ({click.x:.3f}, {click.y:.3f})")
            if decoded is not None and entry.config.kind != "mlp" else None,
        )  # fmt: skip
    with right:
        if click is None:
            st.info("Click anywhere on the map.")
        elif not click.on_digit:
            probs = decoded
            show_digit(probs, "decoded point", config.image_size, right)
            st.markdown(f"**Point** ({click.x:.3f}, {click.y:.3f})")
            if codes.projection.is_pca:
                st.caption(f"latent ‖z‖ = {z.norm():.2f}")
            st.session_state["latent_map_last_decoded"] = probs.numpy()
        else:
            i = click.digit_index
            label = int(codes.labels[i])
            show_digit(digits.grey(i), f"test digit #{i} (a {label})", config.image_size, right)
            recon = reconstruct(entry.model, digits.fixed_binary(index=i)[None], codes.labels[i : i + 1])[0]
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
        st.toggle(
            "Thumbnails", key="map_thumbnails", help="Draw each test digit as a small image at its place"
        )
        shared = {LABEL_PARAM: condition}
        if click is not None:
            shared.update(
                {DIGIT_PARAM: click.digit_index}
                if click.on_digit
                else {POINT_PARAM: format_point((click.x, click.y))}
            )
        share_this_view(entry, "latent_map", shared, target=right)


with st.expander("Your own digit: draw one, or upload a photo or drawing (PNG or JPEG)"):
    own_source = st.radio(
        "Your digit", ("upload a picture", "draw it here"), horizontal=True, key="own_digit_source",
        label_visibility="collapsed",
    )  # fmt: skip
    own_pixels = None
    if own_source == "upload a picture":
        upload = st.file_uploader(
            "A picture of one digit", type=["png", "jpg", "jpeg"], key="own_digit_upload"
        )
        if upload is not None:
            try:
                own_pixels = mnist_style_digit(upload.getvalue(), config.image_size)
            except ValueError as exc:
                st.error(f"{inert(upload.name)} was not used: {inert_reason(exc)}.")
    else:
        st.caption("Draw one digit in white; the bin icon clears the canvas.")
        own_ink = draw_digit("own_digit_canvas")
        if own_ink is not None:  # prepared exactly like an upload: cropped, fitted to 20x20, centred
            own_pixels = mnist_style_pixels(own_ink, config.image_size)
    if own_pixels is None:
        st.session_state.pop(own_key, None)
    else:
        own_x = torch.from_numpy(own_pixels)[None]
        own_label = torch.tensor([condition or 0])
        own_binary = scoring_binary(own_x, digits.binarization)  # the one rule, as for test digits
        own_mu, _ = encode(entry.model, own_binary, own_label)
        plane = codes.projection.to_plane(own_mu)[0]
        generator = torch.Generator(device=entry.model.device).manual_seed(0)  # never the global RNG
        with torch.no_grad():  # the ELBO's expectation, averaged over 64 draws
            draws = [elbo_terms(entry.model, own_binary, own_label, generator).elbo for _ in range(64)]
        own_elbo = float(torch.stack(draws).mean())
        st.session_state[own_key] = {"plane": (float(plane[0]), float(plane[1])), "elbo": own_elbo}
        typical = entry.cached("test_elbos", lambda: _test_elbos(entry))
        share = float((typical < own_elbo).float().mean())
        cols = st.columns(3)
        show_digit(
            own_pixels,
            f"your digit, MNIST-style {config.image_size}×{config.image_size}",
            config.image_size,
            cols[0],
        )
        show_digit(
            reconstruct(entry.model, own_binary, own_label)[0],
            "reconstruction",
            config.image_size,
            cols[1],
        )
        cols[2].metric("ELBO (nats)", f"{own_elbo:.1f}", help="higher = more typical for this model")
        cols[2].caption(
            f"{100 * share:.0f}% of test digits have a lower ELBO"
            + (" — this looks out of distribution for the model." if share < 0.02 else ".")
        )
        st.caption("Your digit is the gold star on the map.")

map_and_decoded()

st.subheader("Manifold over the visible region")
n = st.slider("Images per side", 5, 25, 12, key="manifold_n")
x0, x1, y0, y1 = bounds
xs, ys = np.linspace(x0, x1, n), np.linspace(y1, y0, n)  # top row = largest y, as on the map
plane_points = torch.tensor([[x, y] for y in ys for x in xs], dtype=torch.float32)
latents = codes.projection.from_plane(plane_points)
grid = decode(entry.model, latents, torch.full((len(latents),), condition or 0))
st.image(
    grid_picture(grid, config.image_size, columns=n, scale=2),
    caption=f"Decoded {n}×{n} grid spanning the map's axes (rows from top to bottom = high to low y).",
    alt=f"A {n} by {n} grid of digits decoded across the latent plane",
)
st.download_button(
    "Download the grid (PNG)", partial(digit_grid_png, grid, config.image_size, columns=n),
    file_name=f"{entry.name}-manifold-{n}x{n}.png", mime="image/png", key="manifold_png", on_click="ignore",
)  # fmt: skip
