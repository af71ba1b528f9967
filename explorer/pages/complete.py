"""Complete: hide part of a digit, fit q*(z) to the visible pixels, decode the hidden ones."""

import hashlib
from functools import partial

import numpy as np
import streamlit as st
import torch

from explorer.figures.pictures import digit_grid_png
from explorer.figures.plots import grid_picture, trace_figure
from explorer.state.work_admission import ServerBusy, server_work
from explorer.ui.drawing_canvas import draw_digit, paint_region
from explorer.ui.glossary import glossary
from explorer.ui.resources import digits_for, remember_in_session
from explorer.ui.sidebar import chosen_model
from explorer.ui.widgets import digit_picker, show_digit
from vae_core import (
    HIDDEN_HALVES,
    centre_square_mask,
    complete_masked_image,
    mnist_style_pixels,
    observed_mask,
    painted_region_mask,
    random_pixels_mask,
    scoring_binary,
)
from vae_core.limits import MB, estimate_sampling_memory

RESULTS_KEY = "completion_results"
LIVE_CHART_EVERY = 25  # redrawing the chart every step would cost more than the SVI step itself
SCORING_SAMPLES = 1000  # complete_masked_image scores q* and the encoder with this many samples each
SOURCES = ("a test digit", "your drawing")
MASK_KINDS = ("a half", "centre square", "random pixels", "painted region")

entry = chosen_model()
config = entry.config
size = config.image_size
digits = digits_for(entry)

st.title("Complete a partly hidden digit")
glossary("ELBO", "nats", "amortisation gap")
st.caption(
    "Hide part of a digit: a half, a centre square, random pixels or a region you paint. A fresh Gaussian "
    "q*(z) is fitted to this one image by maximising the ELBO of the *visible* pixels, then samples of q* "
    "are decoded to fill in the hidden ones. **SVI** (stochastic variational inference) climbs to q* from "
    "several starts at once and keeps the best: the posterior of a half-seen digit can have several peaks, "
    "and one start from the prior climbs the nearest. For a 2-D model q* is the best Gaussian found on the "
    "exact posterior (as on the Posterior page), with SVI's result beside it. The **encoder** instead makes "
    "one amortised guess from the masked image, a kind of input it never saw in training. The ELBO of the "
    "visible pixels says which q explains them better; ± is one Monte Carlo standard error."
)

picker_column, settings_column = st.columns(2)
with picker_column:
    source = st.radio("Complete", SOURCES, horizontal=True, key="complete_source")
    if source == SOURCES[0]:
        digit = digit_picker(entry, "complete_digit", "Digit", default_class=2)
        grey = digits.grey(digit)
        label = digits.labels[digit : digit + 1]
        truth_caption = f"truth, #{digit} (binarised)"
    else:
        st.markdown("**Draw a digit** (white ink; the bin icon clears it)")
        ink = draw_digit("complete_draw_canvas")
        # The same preparation as an uploaded picture: crop to the ink, fit 20x20, centre by mass.
        grey = None if ink is None else torch.from_numpy(mnist_style_pixels(ink, size))
        label = torch.tensor([0])
        if config.conditional:
            label = torch.tensor(
                [st.selectbox("Your digit is a", list(range(10)), key="complete_drawn_label")]
            )
        truth_caption = "your digit, MNIST-style (binarised)"
with settings_column:
    kind = st.radio("Hide", MASK_KINDS, horizontal=True, key="complete_mask_kind")
    if kind == "a half":
        hidden = st.radio("Hide the", HIDDEN_HALVES, horizontal=True, key="complete_hidden")
        mask, mask_caption = observed_mask(hidden, size), f"{hidden} hidden"
    elif kind == "centre square":
        side = st.slider("Side of the square (pixels)", 2, size - 2, size // 2, key="complete_square")
        mask, mask_caption = centre_square_mask(side, size), f"centre {side}×{side} hidden"
    elif kind == "random pixels":
        share = st.slider("Share of pixels hidden", 0.05, 0.95, 0.5, step=0.05, key="complete_fraction")
        mask_seed = int(st.number_input("Which pixels (seed)", 0, 10_000, 0, key="complete_mask_seed"))
        mask, mask_caption = random_pixels_mask(share, size, mask_seed), f"{share:.0%} of pixels hidden"
    else:
        mask, mask_caption = None, "painted region hidden"  # painted below, once the digit is known
    steps = st.slider("SVI steps", 20, 1000, 300, step=10, key="complete_steps")
    n_completions = st.slider("Completions", 1, 16, 8, key="complete_n")
    if config.conditional:
        st.caption("This model is conditional: it is told the digit's label.")

if grey is None:
    st.info("Draw a digit on the canvas to complete it.")
    st.stop()
x = scoring_binary(grey, digits.binarization)  # (D,), the binary image a digit (or a drawing) is scored on
if mask is None:
    st.markdown("**Paint over the part to hide** (the bin icon clears the paint)")
    coverage = paint_region("complete_paint_canvas", x, size)
    if coverage is None:
        st.info("Paint over the digit: the painted pixels are hidden from the model.")
        st.stop()
    mask = painted_region_mask(coverage, size)
    if mask.sum() == 0:
        st.warning("Everything is painted: leave some pixels visible for the model to go on.")
        st.stop()
    mask_caption = f"{int((mask == 0).sum())} painted pixels hidden"

# A drawing or a painted region has no short name: the result is keyed by the pixels themselves.
pixels_id = hashlib.sha1(x.numpy().tobytes() + mask.numpy().tobytes() + label.numpy().tobytes()).hexdigest()
result_key = (entry.key, pixels_id, steps, n_completions)


def run_completion() -> None:
    """SVI on this digit with a live trace; the result is kept in the session for the pictures below."""
    progress = st.progress(0.0, text="Starting SVI…")
    live_chart = st.empty()
    trace: list[float] = []

    def on_step(step: int, elbo: float) -> None:
        trace.append(elbo)
        text = f"SVI step {step + 1} of {steps} · best start's ELBO {elbo:.1f} nats"
        if step + 1 == steps:
            text = (
                "Scoring q* and the encoder…"
                if config.latent_dim != 2
                else (
                    "Finding the best Gaussian on the exact posterior grid, then scoring q* and the encoder…"
                )
            )
        progress.progress((step + 1) / steps, text=text)
        if (step + 1) % LIVE_CHART_EVERY == 0:
            live_chart.line_chart(
                np.array(trace), x_label="SVI step", y_label="visible-pixel ELBO", height=220
            )

    remember_in_session(RESULTS_KEY, result_key, lambda: complete_masked_image(
        entry.model, x, mask, label, steps=steps, n_completions=n_completions, on_step=on_step
    ), recompute=True)  # fmt: skip
    progress.empty()  # the final trace is drawn below with the results
    live_chart.empty()


if st.button("Run completion", type="primary", key="complete_run"):
    try:
        with server_work().admit(
            estimate_sampling_memory(config, 1, max(SCORING_SAMPLES, n_completions)) / MB, "a completion"
        ):
            run_completion()
    except ServerBusy as busy:
        st.warning(str(busy))

result = st.session_state.get(RESULTS_KEY, {}).get(result_key)
masked = x * mask + 0.5 * (1 - mask)  # hidden pixels drawn grey
# A wrapping row: four 140-px pictures in four columns overlapped at 800 px
pictures = st.container(horizontal=True, gap="medium")
show_digit(x, truth_caption, size, pictures)
show_digit(masked, f"model sees: {mask_caption}", size, pictures)
if result is None:
    st.info(f"Press **Run completion** to fit q*(z) with {steps} SVI steps.")
    st.stop()

show_digit(result.mean_completion, f"mean of {n_completions} SVI completions", size, pictures)
show_digit(result.encoder_completion, "encoder's completion", size, pictures)
columns = min(n_completions, 8)
completions = grid_picture(result.completions, size, columns=columns, scale=3)
st.image(
    completions,
    caption=f"{n_completions} completions: z ~ q*(z) decoded, visible pixels kept",
    alt=f"{n_completions} completed digits: the visible pixels kept, the hidden ones decoded",
    width=completions.shape[1],
)
st.download_button(
    "Download the completions (PNG)", partial(digit_grid_png, result.completions, size, columns=columns),
    file_name=f"completions-{pixels_id[:8]}.png", mime="image/png", on_click="ignore", key="complete_download",
)  # fmt: skip

st.caption(
    f"q* is {result.method}. ELBOs from {result.q_star_elbo.samples:,} draws each; ± one standard error."
)
if not result.converged:
    st.warning(f"The fit did not converge: {result.message}. Its ELBO is a lower bound on what q* can reach.")
metrics = st.container(horizontal=True, gap="medium")  # content-wide: no number cut
metrics.metric(
    "ELBO of q*",
    f"{result.q_star_elbo.value:.2f} ± {result.q_star_elbo.std_error:.2f}",
    help="visible-pixel ELBO of the fitted q*; nats, higher is better",
    width="content",
)
metrics.metric(
    "ELBO of encoder q",
    f"{result.encoder_elbo.value:.2f} ± {result.encoder_elbo.std_error:.2f}",
    help="the encoder applied to the masked image",
    width="content",
)
metrics.metric(
    "Gain of q* over the encoder",
    f"{result.gain.value:+.2f} ± {result.gain.std_error:.2f} nats",
    help="how much a per-image posterior beats the amortised encoder on this masked digit",
    width="content",
)
if config.latent_dim == 2:
    st.caption(
        f"SVI alone ({steps} steps, the best of its starts) reached {result.svi_elbo.value:.2f} ± "
        f"{result.svi_elbo.std_error:.2f}: {result.q_star_elbo.value - result.svi_elbo.value:.2f} nats "
        "below the best Gaussian."
    )
st.plotly_chart(
    trace_figure(result.elbo_trace, "visible-pixel ELBO during SVI (the best start)"), key="complete_trace"
)
