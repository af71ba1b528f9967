"""Complete: hide half a digit, fit q*(z) to the visible half by SVI, decode the hidden half."""

import numpy as np
import streamlit as st

from explorer.figures import grid_picture, trace_figure
from explorer.resources import digits_for
from explorer.widgets import digit_picker, labels_for, model_picker, show_digit
from vae_core import complete_masked_image, observed_mask
from vae_core.inference import HIDDEN_HALVES

RESULTS_KEY = "completion_results"
KEPT_RESULTS = 12  # a session keeps its latest completions, not all it ever ran
LIVE_CHART_EVERY = 25  # redrawing the chart every step would cost more than the SVI step itself

entry = model_picker()
config = entry.config
digits = digits_for(entry)

st.title("Complete a half-seen digit")
st.caption(
    "Hide half of a digit. **SVI** fits a fresh Gaussian q*(z) to this one image by maximising the ELBO of "
    "the *visible* pixels, then decodes samples of q* to fill in the hidden half. The **encoder** instead "
    "makes one amortised guess from the masked image, a kind of input it never saw in training. "
    "The ELBO of the visible pixels says which q explains them better."
)

picker_column, settings_column = st.columns(2)
with picker_column:
    digit = digit_picker(entry, "complete_digit", "Digit", default_class=2)
with settings_column:
    hidden = st.radio("Hide the", HIDDEN_HALVES, horizontal=True, key="complete_hidden")
    steps = st.slider("SVI steps", 20, 1000, 300, step=10, key="complete_steps")
    n_completions = st.slider("Completions", 1, 16, 8, key="complete_n")
    if config.conditional:
        st.caption("This model is conditional: it is told the digit's true label.")

x = (digits.grey(digit) > 0.5).float()  # (D,), the binary pixels the model is scored on
mask = observed_mask(hidden, config.image_size)
labels = labels_for(entry, digits.labels[digit : digit + 1])
results = st.session_state.setdefault(RESULTS_KEY, {})
result_key = (entry.key, digit, hidden, steps, n_completions)

if st.button("Run completion", type="primary", key="complete_run"):
    progress = st.progress(0.0, text="Starting SVI…")
    live_chart = st.empty()
    trace: list[float] = []

    def on_step(step: int, elbo: float) -> None:
        trace.append(elbo)
        text = f"SVI step {step + 1} of {steps} · ELBO {elbo:.1f} nats"
        if step + 1 == steps:
            text = "Scoring q* and the encoder with 1,000 samples each…"
        progress.progress((step + 1) / steps, text=text)
        if (step + 1) % LIVE_CHART_EVERY == 0:
            live_chart.line_chart(
                np.array(trace), x_label="SVI step", y_label="visible-pixel ELBO", height=220
            )

    results[result_key] = complete_masked_image(
        entry.model, x, mask, labels, steps=steps, n_completions=n_completions, on_step=on_step
    )
    while len(results) > KEPT_RESULTS:
        results.pop(next(iter(results)))
    progress.empty()  # the final trace is drawn below with the results
    live_chart.empty()

result = results.get(result_key)
masked = x * mask + 0.5 * (1 - mask)  # hidden pixels drawn grey
pictures = st.columns(4)
show_digit(x, f"truth, #{digit} (binarised)", config.image_size, pictures[0])
show_digit(masked, f"model sees: {hidden} hidden", config.image_size, pictures[1])
if result is None:
    st.info(f"Press **Run completion** to fit q*(z) with {steps} SVI steps.")
    st.stop()

show_digit(result.mean_completion, f"mean of {n_completions} SVI completions", config.image_size, pictures[2])
show_digit(result.encoder_completion, "encoder's completion", config.image_size, pictures[3])
completions = grid_picture(result.completions, config.image_size, columns=min(n_completions, 8), scale=3)
st.image(
    completions,
    caption=f"{n_completions} completions: z ~ q*(z) decoded, visible pixels kept",
    width=completions.shape[1],
)

metrics = st.columns(3)
metrics[0].metric(
    "ELBO of SVI q*",
    f"{result.svi_elbo:.2f}",
    help="visible-pixel ELBO, 1,000 samples; nats, higher is better",
)
metrics[1].metric(
    "ELBO of encoder q", f"{result.encoder_elbo:.2f}", help="the encoder applied to the masked image"
)
metrics[2].metric(
    "SVI gain",
    f"{result.svi_elbo - result.encoder_elbo:+.2f} nats",
    help="how much a per-image posterior beats the amortised encoder on this masked digit",
)
st.plotly_chart(trace_figure(result.elbo_trace, "visible-pixel ELBO during SVI"), key="complete_trace")
