"""Posterior: for a 2-D model, the exact p(z|x_obs) on a grid beside the encoder's q and the best Gaussian q*."""

import plotly.graph_objects as go
import streamlit as st
import torch
from torch.distributions import Normal

from explorer.figures.plots import digit_bounds_figure, ellipse_points, posterior_figure
from explorer.state.share_links import DIGIT_PARAM, PART_PARAM, parse_choice
from explorer.state.work_admission import ServerBusy, server_work
from explorer.ui.glossary import glossary
from explorer.ui.resources import digits_for, remember_in_session
from explorer.ui.sidebar import chosen_model
from explorer.ui.widgets import (
    digit_picker,
    restore_from_link,
    share_this_view,
    show_digit,
)
from vae_core import (
    HIDDEN_HALVES,
    best_gaussian_posterior,
    encode,
    exact_posterior_grid,
    importance_log_px,
    inference_gaps,
    observed_elbo,
    observed_mask,
    repeated_bounds_by_k,
)
from vae_core.evaluation import MIN_TRUSTED_ESS_SHARE
from vae_core.limits import MB, estimate_sampling_memory

GRIDS_KEY = "posterior_grids"
DIGIT_BOUNDS_KEY = "posterior_digit_bounds"
Q_STAR_KEY = "posterior_best_gaussians"
IMPORTANCE_K = 1000
ELBO_SAMPLES = 4096
Q_STAR_WIDENING = 1.5  # importance proposal: q* with 1.5x its std, to cover the posterior's tails

PARTS = ("full", *HIDDEN_HALVES)
DIGIT_BOUND_KS = (1, 2, 5, 10, 50, 100, 500, 1000, 5000)
BOUND_REPEATS = 5
GRID_CHUNK = 4096  # latents decoded at once: the grid posterior, the ELBO's samples, importance sampling


def work_cost_mb(config, images: int = 1, samples: int = GRID_CHUNK) -> float:
    """What one of this page's computations asks the server's work admission for (MB)."""
    return estimate_sampling_memory(config, images, samples) / MB


def digit_bounds_cost_mb(config) -> float:
    """repeated_bounds_by_k scores up to 200 sets of k samples per k at once (samples_per_k 4000)."""
    return max(work_cost_mb(config, max(1, min(200, 4000 // k)), k) for k in DIGIT_BOUND_KS)


def digit_bounds_section(
    entry, x, labels, digit: int, exact_log_px=None, mask=None, part: str = "full"
) -> None:
    """ELBO and IWAE bounds of one digit for k = 1 … 5000, with their spread over repeats.

    With `mask` (hiding `part`) they are bounds on log p(x_obs), of the pixels the metrics above
    score, from the encoder's q of the visible pixels. `exact_log_px` (2-D models: a function
    returning log p of the same pixels by quadrature) draws the ceiling.
    """
    st.subheader("How tight are the bounds for this digit?")
    key = (entry.key, digit, part)
    button_slot = st.empty()  # the button goes once its result is there, in the same run
    if key not in st.session_state.get(DIGIT_BOUNDS_KEY, {}) and button_slot.button(
        f"Compute the bounds for k = 1 … {max(DIGIT_BOUND_KS):,} ({BOUND_REPEATS} repeats)",
        key="digit_bounds",
    ):
        try:
            with (
                st.spinner(f"Importance sampling digit #{digit} with up to {max(DIGIT_BOUND_KS):,} samples…"),
                server_work().admit(digit_bounds_cost_mb(entry.config), "the bounds of one digit"),
            ):
                remember_in_session(DIGIT_BOUNDS_KEY, key, lambda: (
                    *repeated_bounds_by_k(entry.model, x, labels, DIGIT_BOUND_KS, BOUND_REPEATS, mask=mask),
                    exact_log_px() if exact_log_px is not None else None,
                ))  # fmt: skip
            button_slot.empty()
        except ServerBusy as busy:
            st.warning(str(busy))
    store = st.session_state.get(DIGIT_BOUNDS_KEY, {})
    if key not in store:
        st.caption("The ELBO is the k = 1 bound; more importance samples tighten it towards log p(x).")
        return
    means, stds, exact = store[key]
    st.plotly_chart(digit_bounds_figure(list(DIGIT_BOUND_KS), means, stds, exact), key="digit_bounds_chart")
    pixels = (
        "full image" if part == "full" else f"{part} hidden: bounds on log p(x_obs) of the visible pixels"
    )
    text = (
        f"Digit #{digit}, {pixels}: ELBO {means[0]:.2f} ± {stds[0]:.2f}, k = {DIGIT_BOUND_KS[-1]:,} bound "
        f"{means[-1]:.2f} ± {stds[-1]:.2f} nats (mean ± std of {BOUND_REPEATS} repeated estimates; each "
        "averages up to 200 sets of k samples)."
    )
    if exact is not None:
        seen = "x" if part == "full" else "x_obs"
        text += f" log p({seen}) by quadrature {exact:.2f}: the k = 1 bound is {exact - means[0]:.2f} nats below it."
    st.caption(text)


entry = chosen_model()
config = entry.config

st.title("Exact posterior vs the encoder")
glossary("ELBO", "IWAE", "KL", "nats", "amortisation gap", "approximation gap")
if config.latent_dim != 2:
    share_this_view(entry, "posterior", {})  # a link to this page with this model, still
    st.info(
        f"The exact posterior is computed on a grid over the latent plane, so it needs a model with a "
        f"2-D latent; **{entry.name}** has {config.latent_dim} dimensions. Pick a 2-D model in the sidebar "
        "(e.g. *mlp2d*), or train one on the Train page with latent size 2."
    )
    any_digit = digit_picker(entry, "posterior_digit", "Digit", default_class=4)
    binary = digits_for(entry).fixed_binary(index=any_digit).reshape(1, -1)
    any_labels = digits_for(entry).labels[any_digit : any_digit + 1]
    digit_bounds_section(entry, binary, any_labels, any_digit)
    st.stop()

st.caption(
    "With two latent dimensions the true posterior p(z|x) ∝ p(z)·p(x|z) can be evaluated on a fine grid "
    "and normalised, so log p(x) is exact up to grid error. Compare it with the encoder's Gaussian "
    "q(z|x) (red) and with q*(z), the best Gaussian for this one image (green): the ELBO maximised over the grid, "
    "starting at the posterior's own mean and spread. Hide half the digit to see a wider, sometimes two-peaked "
    "posterior that a single Gaussian cannot follow."
)

digits = digits_for(entry)
controls_column, figure_column = st.columns([1, 2])
with controls_column:
    digit = digit_picker(entry, "posterior_digit", "Digit", default_class=4, share_param=DIGIT_PARAM)
    restore_from_link({PART_PARAM: ("posterior_visible", lambda v: parse_choice(v, PARTS, PART_PARAM))})
    visible = st.radio(
        "Visible part", PARTS, horizontal=True, key="posterior_visible",
        format_func=lambda v: "full image" if v == "full" else f"hide {v}",
    )  # fmt: skip
    fit_q_star = st.toggle("Find the best Gaussian q*(z)", key="posterior_best_gaussian")

share_this_view(entry, "posterior", {DIGIT_PARAM: digit, PART_PARAM: visible})

x = digits.fixed_binary(index=digit).reshape(1, -1)  # the binary image the digit is scored on
mask = torch.ones(config.pixels) if visible == "full" else observed_mask(visible, config.image_size)
labels = digits.labels[digit : digit + 1]


def _exact_and_encoder() -> dict:
    model = entry.model
    with torch.no_grad():
        q = model.posterior(x * mask, labels)
        generator = torch.Generator(device=model.device).manual_seed(0)
        encoder_elbo = observed_elbo(model, x, mask, q, labels, ELBO_SAMPLES, generator).item()
    return {
        "grid": exact_posterior_grid(model, x, mask, labels),
        "importance": importance_log_px(model, x, mask, labels, k=IMPORTANCE_K),  # proposal: the encoder
        "encoder_elbo": encoder_elbo,
        "full_image_mean": encode(model, x, labels)[0][0].cpu().numpy(),
    }


def _best_gaussian() -> dict:
    fit = best_gaussian_posterior(entry.model, x, mask, labels, grid=exact["grid"], samples=ELBO_SAMPLES)
    proposal = Normal(
        torch.as_tensor(fit.mean, dtype=torch.float32, device=entry.model.device)[None],
        torch.as_tensor(Q_STAR_WIDENING * fit.std, dtype=torch.float32, device=entry.model.device)[None],
    )
    return {
        "fit": fit,
        "importance": importance_log_px(entry.model, x, mask, labels, IMPORTANCE_K, 0, proposal),
    }


def _admitted(compute, what: str):
    """`compute` once the server's work admission has room for one grid's worth of decoding."""

    def run():
        with server_work().admit(work_cost_mb(config), what):
            return compute()

    return run


try:
    with st.spinner("Evaluating the posterior on a grid…"):
        exact = remember_in_session(
            GRIDS_KEY, (entry.key, digit, visible), _admitted(_exact_and_encoder, "the exact posterior")
        )
    best = None
    if fit_q_star:
        with st.spinner("Finding the best Gaussian q*(z) on the grid…"):
            best = remember_in_session(
                Q_STAR_KEY, (entry.key, digit, visible), _admitted(_best_gaussian, "the best Gaussian q*")
            )
except ServerBusy as busy:
    st.warning(str(busy))
    st.stop()
q_star = best["fit"] if best is not None else None

with controls_column:
    pictures = st.columns(2)
    show_digit(x, f"#{digit} (binarised)", config.image_size, pictures[0])
    if visible != "full":
        show_digit(x * mask + 0.5 * (1 - mask), "what the model sees", config.image_size, pictures[1])
with figure_column:
    figure = posterior_figure(
        exact["grid"], truth_point=exact["full_image_mean"] if visible != "full" else None
    )
    if q_star is not None:
        sx, sy = ellipse_points(q_star.mean, q_star.std)
        figure.add_trace(go.Scatter(x=sx, y=sy, mode="lines", name="best Gaussian q*(z), 2σ",
                                    line={"color": "#2ca02c", "width": 2, "dash": "dash"}))  # fmt: skip
    st.plotly_chart(figure, key="posterior_figure", config={"displayModeBar": False})

seen = "x" if visible == "full" else "x_obs"
log_px = exact["grid"].log_px
encoder_elbo = exact["encoder_elbo"]
importance = exact["importance"]
values = [*st.columns(2), *st.columns(2)]  # two rows: four columns cut the numbers at 800 px
values[0].metric(f"log p({seen}), quadrature", f"{log_px:.2f}", help="exact up to grid error; nats")


def importance_error(estimate) -> str:
    """The estimate's error as a sentence's end: ± its standard error only where ESS allows one."""
    if estimate.interval_trusted:
        return f"standard error ±{estimate.std_error:.2f} nats"
    return (
        f"too few effective samples for an error bar (under {MIN_TRUSTED_ESS_SHARE:.0%} of the draws), so none "
        "is stated: "
        "the proposal misses much of the posterior and the estimate may be nats off"
    )


values[1].metric(
    f"log p({seen}), importance sampled",
    f"{importance.log_px:.2f}",
    help=f"{IMPORTANCE_K:,} samples from the encoder's q; a stochastic lower bound in expectation. "
    f"Effective sample size {importance.ess:.1f}; {importance_error(importance)}",
)
values[2].metric("ELBO of encoder q", f"{encoder_elbo:.2f}", help=f"{ELBO_SAMPLES:,} samples; nats")
values[3].metric(
    "ELBO of best Gaussian q*",
    f"{q_star.elbo:.2f}" if q_star is not None else "—",
    help=f"{ELBO_SAMPLES:,} samples from q*; nats",
)
caption = (
    f"Importance sampling from the encoder's q: effective sample size {importance.ess:.1f} of {IMPORTANCE_K:,}, "
    f"{importance_error(importance)}."
)
if best is not None:
    covered = best["importance"]
    caption += (
        f" From q* widened {Q_STAR_WIDENING}x, a proposal that covers the posterior: log p({seen}) "
        f"{covered.log_px:.2f}, effective sample size {covered.ess:.0f}, {importance_error(covered)}."
    )
elif not importance.interval_trusted:
    caption += " Turn on **Find the best Gaussian q\\*(z)**: importance sampling from it, widened, covers the posterior."
st.caption(caption)
if importance.disagrees_with(log_px):
    why = (
        f"beyond its error (±{importance.std_error:.2f}, effective sample size {importance.ess:.1f})"
        if importance.interval_trusted
        else f"with {importance.ess:.1f} effective samples"
    )
    st.warning(
        f"Importance sampling from the encoder's q is {abs(importance.log_px - log_px):.2f} nats from the exact "
        f"log p({seen}), {why}: the encoder's q misses where the posterior is, so its estimate is not to be "
        "trusted here."
    )
if q_star is not None and not q_star.converged:
    st.warning(f"q* may not be the best Gaussian: {q_star.message}.")

gaps = [*st.columns(2), *st.columns(2)]  # two rows, as above
gaps[0].metric(
    "Gap of encoder q",
    f"{log_px - encoder_elbo:.2f} nats",
    help="log p − ELBO(q) = KL(q ‖ exact posterior): everything the encoder loses",
)
if q_star is not None:
    gaps[1].metric(
        "Approximation gap (q*)",
        f"{log_px - q_star.elbo:.2f} nats",
        help=f"log p − ELBO(q*) = KL(q* ‖ exact posterior): what even the best Gaussian for this image loses "
        f"(± {q_star.elbo_std_error:.3f} from sampling; {q_star.grid_kl:.2f} by quadrature)",
    )
    gaps[2].metric(
        "Amortisation gap",
        f"{q_star.elbo - encoder_elbo:.2f} nats",
        help="ELBO(q*) − ELBO(q): what sharing one encoder across all images costs here",
    )
    gaps[3].caption(
        f"q* = N(({q_star.mean[0]:.3f}, {q_star.mean[1]:.3f}), diag({q_star.std[0]:.3f}², {q_star.std[1]:.3f}²))"
    )
else:
    gaps[1].caption(
        "Turn on **Find the best Gaussian q\\*(z)** to split the gap into approximation and amortisation."
    )

digit_bounds_section(
    entry, x, labels, digit, lambda: log_px, None if visible == "full" else mask, visible
)  # fmt: skip

st.subheader("Averaged over test digits")
subset_size = st.select_slider("Test digits", (5, 10, 20, 50), value=10, key="posterior_gap_count")
gap_key = (entry.key, subset_size)
if st.button("Compute the average gaps", key="posterior_gap_button"):
    try:
        with server_work().admit(work_cost_mb(config), "the average gaps"):
            bar = st.progress(0.0, text="Best Gaussian per digit…")
            chosen = digits.subset(slice(0, subset_size))
            summary = inference_gaps(
                entry.model, chosen.fixed_binary(), chosen.labels,
                progress=lambda i: bar.progress((i + 1) / subset_size, text=f"Best Gaussian per digit… {i + 1}/{subset_size}"),
            )  # fmt: skip
            bar.empty()
        st.session_state.setdefault("posterior_gap_summaries", {})[gap_key] = summary
    except ServerBusy as busy:
        st.warning(str(busy))
summary = st.session_state.get("posterior_gap_summaries", {}).get(gap_key)
if summary is not None:
    averages = st.columns(3)
    averages[0].metric(
        "Mean log p(x) − ELBO(q)", f"{float((summary.log_px - summary.encoder_elbo).mean()):.2f} nats"
    )
    averages[1].metric("Mean amortisation gap", f"{summary.amortisation_gap:.2f} nats")
    averages[2].metric("Mean approximation gap", f"{summary.approximation_gap:.2f} nats")
    st.caption(
        f"The first {subset_size} test digits, full images; log p(x) by quadrature, q* the best Gaussian per digit "
        "found on the grid. Amortisation gap = ELBO(q*) − ELBO(q); approximation gap = log p(x) − ELBO(q*)."
    )
    unconverged = int((~summary.converged).sum())
    if unconverged:
        st.warning(
            f"For {unconverged} of {subset_size} digits q* did not converge: their gaps are upper estimates."
        )
