"""How it works: one digit's forward pass with live values, ε you can resample, the ELBO, traversals."""

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

from explorer.figures.pictures import digit_frames, gif_bytes, labelled_rows_picture
from explorer.figures.plots import digit_picture, ellipse_points, latent_bars_figure
from explorer.state.selection import latent_click_key
from explorer.ui.drawing_canvas import draw_digit
from explorer.ui.glossary import glossary
from explorer.ui.resources import digits_for
from explorer.ui.sidebar import chosen_model
from explorer.ui.widgets import digit_picker, show_digit
from vae_core.data import scoring_binary
from vae_core.images import mnist_style_pixels
from vae_core.objectives import forward_pass
from vae_core.traversals import MAX_STEPS, latent_traversal

EPS_KEY = "how_eps"  # {(model key, latent dim): ε as a list}
DRAWS_KEY = "how_draws"  # how many times ε was resampled: seeds the next draw and the binary sample
EPS_LIMIT = 4.0  # the sliders for a 2-D ε: beyond ±4 a standard normal almost never goes
ELBO_DRAWS = 1000
REFERENCE_DIGITS = 500  # digits that rank the latent dimensions by KL for the traversal

entry = chosen_model()
config, model = entry.config, entry.model
dim = config.latent_dim
st.title("How a VAE computes")
st.caption(
    "One digit goes through the model step by step; every value below is computed live for the "
    f"model picked in the sidebar (**{entry.name}**, {config.describe()})."
)
glossary("ELBO", "KL", "nats", "bits/dim", "active units")

# --- the input x ----------------------------------------------------------------------------------
digits = digits_for(entry)
sources = ["a test digit", "draw one"]
clicked = st.session_state.get(latent_click_key(entry.key))
if clicked is not None and clicked.on_digit:
    sources.append("the digit clicked on the Latent map")
source = st.radio("Digit", sources, horizontal=True, key="how_source")
x, label, digit_name = None, 0, ""
if source == "draw one":
    st.caption("Draw one digit in white; the bin icon clears the canvas.")
    ink = draw_digit("how_canvas")
    if ink is None:
        st.info("Draw a digit to see it go through the model.")
        st.stop()
    x = scoring_binary(
        torch.from_numpy(mnist_style_pixels(ink, config.image_size))[None], digits.binarization
    )
    digit_name = "your digit"
else:
    index = (
        clicked.digit_index
        if source.startswith("the digit clicked")
        else digit_picker(entry, "how_digit", "Test digit", default_class=3)
    )
    index = int(np.clip(index, 0, len(digits) - 1))
    x = digits.fixed_binary(index=slice(index, index + 1))  # the binary image a digit is scored on
    label = max(0, int(digits.labels[index]))
    digit_name = f"test digit #{index}"
if config.conditional:
    label = st.selectbox(
        "Label y fed to encoder and decoder (a conditional VAE models p(x|y))", list(range(10)),
        index=label, key="how_label",
    )  # fmt: skip
labels = torch.tensor([label])


# --- ε: the only randomness -----------------------------------------------------------------------
def _draw_eps() -> list[float]:
    draws = st.session_state.get(DRAWS_KEY, 0)
    generator = torch.Generator().manual_seed(draws)
    return torch.randn(dim, generator=generator).tolist()


def _resample() -> None:
    st.session_state[DRAWS_KEY] = st.session_state.get(DRAWS_KEY, 0) + 1
    eps = _draw_eps()
    st.session_state.setdefault(EPS_KEY, {})[(entry.key, dim)] = eps
    if dim == 2:  # the sliders own a 2-D ε: move them too
        for i in range(2):
            st.session_state[f"how_eps_{i}"] = float(np.clip(round(eps[i], 2), -EPS_LIMIT, EPS_LIMIT))


store = st.session_state.setdefault(EPS_KEY, {})
eps_list = store.setdefault((entry.key, dim), _draw_eps())
buttons = st.columns([1, 2, 2, 1])
buttons[0].button("Resample ε", key="how_resample", on_click=_resample, type="primary")
if dim == 2:
    for i in range(2):
        key = f"how_eps_{i}"
        if key not in st.session_state:
            st.session_state[key] = float(np.clip(round(eps_list[i], 2), -EPS_LIMIT, EPS_LIMIT))
        buttons[i + 1].slider(f"ε{'₁₂'[i]} (drag it)", -EPS_LIMIT, EPS_LIMIT, step=0.01, key=key)
    eps_list = [float(st.session_state[f"how_eps_{i}"]) for i in range(2)]
eps = torch.tensor(eps_list, dtype=torch.float32)[None]  # (1, L)

# --- the forward pass -------------------------------------------------------------------------------
with torch.no_grad():
    # the reparameterisation: z = μ + σ ⊙ ε is a deterministic function of (μ, σ, ε)
    one = forward_pass(model, x.to(model.device), labels, eps=eps.to(model.device))
    mu, sigma = one.q.loc.cpu(), one.q.scale.cpu()
    log_var = 2 * torch.log(sigma)
    z, logits = one.z.cpu(), one.logits.cpu()
    probs = torch.sigmoid(logits)
    sample = torch.bernoulli(
        probs, generator=torch.Generator().manual_seed(st.session_state.get(DRAWS_KEY, 0))
    )
    recon = float(one.recon[0])
    kl_dims = one.kl_per_dim[0].cpu()
    kl = float(kl_dims.sum())
    many_eps = torch.randn(ELBO_DRAWS, dim, generator=torch.Generator().manual_seed(12345))
    many_elbo = (
        forward_pass(model, x.to(model.device), labels, eps=many_eps.to(model.device)).recon.cpu() - kl
    )

node = lambda name, value: f'{name} [label="{value}"];'  # noqa: E731
graph = "\n".join([
    "digraph { rankdir=LR; node [shape=box, style=rounded, fontsize=11];",
    node("x", f"x: {digit_name}\\n{int(x.sum())} of {config.pixels} pixels on"),
    *([node("y", f"label y = {label}")] if config.conditional else []),
    node("enc", f"encoder\\n{config.kind.upper()}"),
    node("mu", f"μ ({dim})\\n|μ| = {float(mu.norm()):.2f}"),
    node("lv", f"log σ² ({dim})\\nmean {float(log_var.mean()):.2f}"),
    node("sigma", f"σ = exp(½ log σ²)\\nmean {float(sigma.mean()):.3f}"),
    node("eps", f"ε ~ N(0, I)\\n|ε| = {float(eps.norm()):.2f}"),
    node("z", f"z = μ + σ ⊙ ε\\n|z| = {float(z.norm()):.2f}"),
    node("dec", "decoder"),
    node("logits", f"Bernoulli logits\\nrange {float(logits.min()):.1f} … {float(logits.max()):.1f}"),
    node("px", f"p(x|z)\\nlog p(x|z) = {recon:.1f}"),
    node("xs", "binary sample\\nx̃ ~ p(x|z)"),
    "x -> enc; enc -> mu; enc -> lv; lv -> sigma; mu -> z; sigma -> z; eps -> z; z -> dec;",
    "dec -> logits; logits -> px; px -> xs;",
    "y -> enc; y -> dec;" if config.conditional else "",
    "}",
])  # fmt: skip
st.graphviz_chart(graph, width="stretch")


def _subscript(number: int) -> str:
    return str(number).translate(str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉"))


# The plane's two dimensions: for more than two, the two where this digit's q(z|x) is furthest from
# the prior (largest KL). Dimensions 1 and 2 could be collapsed ones, where q is the prior whatever x.
plane_dims = (
    sorted(torch.argsort(kl_dims, descending=True)[:2].tolist()) if dim > 2 else list(range(min(dim, 2)))
)
PLANE_TITLE = (
    f"z on latent dims {plane_dims[0] + 1} and {plane_dims[1] + 1} (largest KL)"
    if dim > 2
    else "z on the latent plane"
)


def _plane_figure() -> go.Figure:
    """z on the plane of `plane_dims`, with q(z|x)'s 2σ ellipse and the prior's."""
    figure = go.Figure()
    px_, py_ = ellipse_points([0, 0], [1, 1], 2.0)
    figure.add_scatter(x=px_, y=py_, mode="lines", name="prior 2σ", line=dict(color="grey", dash="dot"))
    if dim >= 2:
        mu2, sigma2, z2 = mu[0, plane_dims], sigma[0, plane_dims], z[0, plane_dims]
        ex, ey = ellipse_points(mu2, sigma2, 2.0)
        figure.add_scatter(x=ex, y=ey, mode="lines", name="q(z|x) 2σ", line=dict(color="crimson"))
        figure.add_scatter(x=[float(mu2[0])], y=[float(mu2[1])], mode="markers", name="μ",
                           marker=dict(color="crimson", size=9))  # fmt: skip
        figure.add_scatter(x=[float(z2[0])], y=[float(z2[1])], mode="markers", name="z",
                           marker=dict(color="gold", size=13, symbol="star", line=dict(width=1)))  # fmt: skip
    else:
        figure.add_scatter(x=[float(mu[0, 0])], y=[0], mode="markers", name="μ")
        figure.add_scatter(
            x=[float(z[0, 0])], y=[0], mode="markers", name="z", marker=dict(symbol="star", size=13)
        )
    first, second = (d + 1 for d in plane_dims) if dim >= 2 else (1, 2)
    figure.update_layout(
        height=320, margin=dict(l=10, r=10, t=30, b=10), xaxis_title=f"z{_subscript(first)}",
        yaxis_title=f"z{_subscript(second)}", yaxis=dict(scaleanchor="x", scaleratio=1), title=PLANE_TITLE,
    )  # fmt: skip
    return figure


columns = st.columns(4)
show_digit(x[0], f"x: {digit_name} (binary, as scored)", config.image_size, columns[0])
columns[1].image(
    digit_picture(torch.sigmoid(logits[0] / 4), config.image_size),
    caption="decoder logits (squashed)",
    alt="The decoder's logits as a picture, squashed into grey levels",
    width=140,
)
show_digit(probs[0], "p(x|z): pixel probabilities", config.image_size, columns[2])
show_digit(sample[0], "a binary sample x̃ ~ p(x|z)", config.image_size, columns[3])

left, right = st.columns(2)
with left:
    st.plotly_chart(latent_bars_figure(mu[0], "encoder output μ", "crimson"), key="how_mu")
    st.plotly_chart(latent_bars_figure(log_var[0], "encoder output log σ²", "steelblue"), key="how_logvar")
with right:
    st.plotly_chart(latent_bars_figure(eps[0], "ε ~ N(0, I): this draw", "gold"), key="how_eps_bars")
    st.plotly_chart(_plane_figure(), key="how_plane")
    if dim > 2:
        st.caption(
            f"Of the {dim} latent dimensions the plane shows dims {plane_dims[0] + 1} and {plane_dims[1] + 1}, the "
            f"two where this digit's q(z|x) differs most from the prior (largest KL(q(zᵤ|x) ‖ p(zᵤ)): "
            f"{float(kl_dims[plane_dims[0]]):.2f} and {float(kl_dims[plane_dims[1]]):.2f} nats)."
        )

shown = min(dim, 8)
st.markdown(
    "μ = (" + ", ".join(f"{v:.3f}" for v in mu[0, :shown].tolist()) + (", …" if dim > shown else "") + ")  \n"
    "σ = ("
    + ", ".join(f"{v:.3f}" for v in sigma[0, :shown].tolist())
    + (", …" if dim > shown else "")
    + ")  \n"
    "ε = ("
    + ", ".join(f"{v:.3f}" for v in eps[0, :shown].tolist())
    + (", …" if dim > shown else "")
    + ")  \n"
    "z = (" + ", ".join(f"{v:.3f}" for v in z[0, :shown].tolist()) + (", …" if dim > shown else "") + ")"
)
st.info(
    "**The reparameterisation trick.** All the randomness sits in ε, drawn from a fixed N(0, I); "
    "z = μ + σ ⊙ ε is then a plain differentiable function of the encoder's outputs, so gradients of the "
    "ELBO flow through z back to μ and σ. Press *Resample ε*: z, the decoded image and the reconstruction "
    "term change, while μ, σ and the KL (the encoder's outputs) stay exactly the same."
)

# --- the ELBO with this digit's numbers ----------------------------------------------------------------
st.subheader("The ELBO for this digit")
st.latex(
    rf"\underbrace{{{recon - kl:.2f}}}_{{\text{{ELBO}}}} = "
    rf"\underbrace{{{recon:.2f}}}_{{\log p(x\mid z)\ \text{{this draw}}}} - "
    rf"\underbrace{{{kl:.2f}}}_{{\mathrm{{KL}}(q(z\mid x)\,\|\,p(z))}}"
)
cells = st.columns(4)
cells[0].metric("log p(x|z), this draw (nats)", f"{recon:.2f}")
cells[1].metric("KL, analytic (nats)", f"{kl:.2f}")
cells[2].metric("ELBO, this draw (nats)", f"{recon - kl:.2f}")
cells[3].metric(
    f"ELBO, mean of {ELBO_DRAWS:,} draws", f"{float(many_elbo.mean()):.2f}",
    help=f"The ELBO of each draw varies: its standard deviation over the {ELBO_DRAWS:,} draws is "
    f"{float(many_elbo.std()):.2f} nats.",
)  # fmt: skip
st.caption(
    f"Over the {ELBO_DRAWS:,} draws the ELBO's standard deviation is {float(many_elbo.std()):.2f} nats. "
    f"KL(q(zᵤ|x) ‖ p(zᵤ)) per latent dimension u, for {digit_name} (nats): "
    + ", ".join(f"dim {i + 1}: {v:.2f}" for i, v in enumerate(kl_dims.tolist()))
    + f". As −ELBO in bits per pixel (bits/dim), the mean is "
    f"{-float(many_elbo.mean()) / (config.pixels * np.log(2)):.4f}."
    + f" The mean of {ELBO_DRAWS:,} draws has a Monte Carlo standard error of ±"
    + f"{float(many_elbo.std()) / ELBO_DRAWS**0.5:.2f} nats (std / √{ELBO_DRAWS:,})."
)
if dim == 2:
    st.page_link(
        "explorer/pages/posterior.py",
        label="The exact log p(x) of this 2-D model, by quadrature: Posterior page",
        icon="🎯",
    )
else:
    st.caption(
        "For 2-D models the Posterior page computes log p(x) exactly on a grid; here, the ELBO is a lower bound."
    )

# --- latent traversals ----------------------------------------------------------------------------------
st.subheader("Latent traversals: what each dimension does")
controls = st.columns(3)
steps = int(controls[0].slider("Steps per row", 3, min(MAX_STEPS, 15), 9, key="how_trav_steps"))
base_choice = controls[1].radio(
    "Other dimensions at", ("this digit's μ", "0 (the prior mean)"), key="how_trav_base"
)
base = mu[0] if base_choice.startswith("this") else None
reference = digits.subset(slice(0, min(REFERENCE_DIGITS, len(digits))))
reference_labels = reference.labels.clamp_min(0)
traversal = latent_traversal(
    model, reference.fixed_binary().to(model.device), base, steps, 3.0, labels, reference_labels
)
rows = traversal.probs.reshape(-1, config.pixels)
reference_note = f"KL averaged over the first {len(reference):,} test digits, nats"
st.image(
    labelled_rows_picture(
        rows, config.image_size, steps,
        [f"dim {d + 1} · KL {k:.2f}" for d, k in zip(traversal.order, traversal.kl_per_dim, strict=True)],
        traversal.collapsed,
    ),
    caption=f"one row per latent dimension, swept from −3 to +3 (prior σ); rows by KL, largest first "
    f"({reference_note}); collapsed rows framed in orange",
    alt="Latent traversals: each row decodes one latent dimension swept from −3 to +3",
    output_format="PNG",  # lossless: the pixels are the decoded probabilities, checkable against decode
)  # fmt: skip
st.caption(
    f"Rows ({reference_note}): "
    + "; ".join(
        f"dim {d + 1} (KL {k:.2f}{', collapsed' if c else ''})"
        for d, k, c in zip(traversal.order, traversal.kl_per_dim, traversal.collapsed, strict=True)
    )
    + f". {sum(traversal.collapsed)} of {dim} dimensions are collapsed (their q(z|x) ignores x)."
)
frames = [
    np.concatenate(digit_frames(traversal.probs[:, s], config.image_size), axis=0) for s in range(steps)
]
controls[2].download_button(
    "Traversal GIF", gif_bytes(frames + frames[-2:0:-1], frame_ms=150, scale=3),
    file_name=f"{entry.name}_traversal.gif", mime="image/gif", key="how_trav_gif",
)  # fmt: skip
