"""How it works: one digit's forward pass with live values, ε you can resample, the ELBO, traversals."""

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch
from torch.distributions import Normal, kl_divergence

from explorer.figures.pictures import digit_frames, gif_bytes
from explorer.figures.plots import digit_picture, ellipse_points, grid_picture
from explorer.ui.drawing_canvas import draw_digit
from explorer.ui.resources import digits_for
from explorer.ui.sidebar import chosen_model
from explorer.ui.widgets import digit_picker, show_digit
from vae_core.data import scoring_binary
from vae_core.images import mnist_style_pixels
from vae_core.objectives import bernoulli_log_lik
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

# --- the input x ----------------------------------------------------------------------------------
digits = digits_for(entry)
sources = ["a test digit", "draw one"]
clicked = st.session_state.get(f"latent_click:{entry.key}")
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
    q = model.posterior(x.to(model.device), labels)
    mu, sigma = q.loc.cpu(), q.scale.cpu()
    log_var = 2 * torch.log(sigma)
    z = mu + sigma * eps  # the reparameterisation: z is a deterministic function of (μ, σ, ε)
    logits = model.decoder_logits(z.to(model.device), labels).cpu()
    probs = torch.sigmoid(logits)
    sample = torch.bernoulli(
        probs, generator=torch.Generator().manual_seed(st.session_state.get(DRAWS_KEY, 0))
    )
    recon = float(bernoulli_log_lik(logits, x.cpu())[0])
    kl_dims = kl_divergence(Normal(mu, sigma), Normal(torch.zeros_like(mu), torch.ones_like(mu)))[0]
    kl = float(kl_dims.sum())
    many_z = mu + sigma * torch.randn(ELBO_DRAWS, dim, generator=torch.Generator().manual_seed(12345))
    many_recon = bernoulli_log_lik(model.decoder_logits(many_z.to(model.device), labels).cpu(), x.cpu())
    many_elbo = many_recon - kl

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


def _bars(values, title: str, colour: str) -> go.Figure:
    figure = go.Figure(
        go.Bar(x=[f"{i + 1}" for i in range(dim)], y=values.reshape(-1).tolist(), marker_color=colour)
    )
    figure.update_layout(
        title=title, height=220, margin=dict(l=10, r=10, t=40, b=10), xaxis_title="latent dim"
    )
    return figure


def _plane_figure() -> go.Figure:
    """z on the plane of latent dimensions 1 and 2, with q(z|x)'s 2σ ellipse and the prior's."""
    figure = go.Figure()
    px_, py_ = ellipse_points([0, 0], [1, 1], 2.0)
    figure.add_scatter(x=px_, y=py_, mode="lines", name="prior 2σ", line=dict(color="grey", dash="dot"))
    if dim >= 2:
        ex, ey = ellipse_points(mu[0, :2], sigma[0, :2], 2.0)
        figure.add_scatter(x=ex, y=ey, mode="lines", name="q(z|x) 2σ", line=dict(color="crimson"))
        figure.add_scatter(x=[float(mu[0, 0])], y=[float(mu[0, 1])], mode="markers", name="μ",
                           marker=dict(color="crimson", size=9))  # fmt: skip
        figure.add_scatter(x=[float(z[0, 0])], y=[float(z[0, 1])], mode="markers", name="z",
                           marker=dict(color="gold", size=13, symbol="star", line=dict(width=1)))  # fmt: skip
    else:
        figure.add_scatter(x=[float(mu[0, 0])], y=[0], mode="markers", name="μ")
        figure.add_scatter(
            x=[float(z[0, 0])], y=[0], mode="markers", name="z", marker=dict(symbol="star", size=13)
        )
    figure.update_layout(
        height=320, margin=dict(l=10, r=10, t=30, b=10), xaxis_title="z₁", yaxis_title="z₂",
        yaxis=dict(scaleanchor="x", scaleratio=1), title="z on the latent plane" + (" (dims 1, 2)" if dim > 2 else ""),
    )  # fmt: skip
    return figure


columns = st.columns(4)
show_digit(x[0], f"x: {digit_name} (binary, as scored)", config.image_size, columns[0])
columns[1].image(
    digit_picture(torch.sigmoid(logits[0] / 4), config.image_size),
    caption="decoder logits (squashed)",
    width=140,
)
show_digit(probs[0], "p(x|z): pixel probabilities", config.image_size, columns[2])
show_digit(sample[0], "a binary sample x̃ ~ p(x|z)", config.image_size, columns[3])

left, right = st.columns(2)
with left:
    st.plotly_chart(_bars(mu[0], "encoder output μ", "crimson"), key="how_mu")
    st.plotly_chart(_bars(log_var[0], "encoder output log σ²", "steelblue"), key="how_logvar")
with right:
    st.plotly_chart(_bars(eps[0], "ε ~ N(0, I): this draw", "gold"), key="how_eps_bars")
    st.plotly_chart(_plane_figure(), key="how_plane")

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
    f"ELBO, mean of {ELBO_DRAWS:,} draws", f"{float(many_elbo.mean()):.2f}", f"± {float(many_elbo.std()):.2f} (std)",
    delta_color="off",
)  # fmt: skip
st.caption(
    "KL per latent dimension (nats): "
    + ", ".join(f"{i + 1}: {v:.2f}" for i, v in enumerate(kl_dims.tolist()))
    + f". In bits per pixel the mean ELBO is {-float(many_elbo.mean()) / (config.pixels * np.log(2)):.4f}."
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
st.image(
    grid_picture(rows, config.image_size, columns=steps, scale=2),
    caption="one row per latent dimension, swept from −3 to +3 (prior σ); rows by KL, largest first",
    output_format="PNG",  # lossless: the pixels are the decoded probabilities, checkable against decode
)
st.caption(
    "Rows: "
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
