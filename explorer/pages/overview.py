"""Overview: what a VAE is, in a few lines, the chosen model's card, and a comparison with a second model.

The title, the text and the model card come first and need no torch (a pretrained model's card is
shipped in pretrained/, see resources.card_for): on a freshly started server the first visitor reads
them while torch and the models load. What follows the card imports them.
"""

import base64

import streamlit as st

from explorer.runtime_settings import wait_for_first_paint
from explorer.ui.glossary import glossary
from explorer.ui.resources import available_models, card_for, digits_for
from explorer.ui.sidebar import chosen_model
from explorer.ui.widgets import SELECTED_MODEL

COMPARE_WITH = "compare_with"
COMPARE_WANTED = "compare_with_wanted"  # the last pick, kept while the card shows it
IWAE_NOTE = (
    "Trained on the IWAE bound: each step maximised the expected log of the mean of k importance weights "
    "p(x, zᵢ)/q(zᵢ|x), zᵢ drawn from q(z|x), a tighter bound on log p(x) than the ELBO. Its encoder's q(z|x) "
    "serves as a proposal for k draws rather than a close fit to the posterior, so it is wider than an "
    "ELBO-trained encoder's: the model's ELBO sits further below its log p(x), and the amortisation gap on "
    "the Posterior page is larger than the same network trained on the ELBO would show."
)


def _bounds_with_progress(entry, name: str, bar, share: tuple[float, float] = (0.0, 1.0)):
    """The model's IWAE curve; a first computation moves `bar` across its `share` of the bar."""
    start, width = share

    def report(fraction: float, k: int) -> None:
        bar.progress(
            start + width * fraction, text=f"{name}: IWAE bound with k = {k} on {BOUND_DIGITS} digits…"
        )

    return bounds_of(entry, digits_for(entry), report)


def _show_comparison(entry, other) -> None:
    """Both models' numbers on the same digits, overlaid KL bars and bound curves, two latent maps."""
    names = distinct_names(entry, other)
    bar = st.empty()  # a progress bar only while something is computed for the first time
    try:
        for i, (model, name) in enumerate(zip((entry, other), names, strict=True)):
            _bounds_with_progress(model, name, bar, (i / 2, 1 / 2))
        summaries = [
            summarise(model, digits_for(model), name)
            for model, name in zip((entry, other), names, strict=True)
        ]
    except ServerBusy as busy:  # the server's budget for heavy work is taken: say so, draw no half
        bar.empty()
        st.warning(str(busy))
        return
    bar.empty()
    first, second = summaries

    if entry.config.image_size != other.config.image_size:
        st.warning(
            f"{first.name} models {first.image_size}×{first.image_size} images and {second.name} "
            f"{second.image_size}×{second.image_size}: their nats are sums over different numbers of pixels, "
            "so likelihoods are not comparable (the digits are the same ones, pooled for the 14×14 model)."
        )
    st.table(comparison_table(first, second))
    notes = [
        f"Both models see the same digits: the first {first.activity_digits:,} explored test digits, binarised "
        f"once (the evaluation seed), for ELBO, KL and active units; the first {first.bound_digits} of them "
        f"for the importance-sampled bounds (k up to {max(BOUND_KS):,} costs seconds per model). Nats per image; "
        "higher ELBO and log-likelihood are better. The card's test figures above use the checkpoint's own "
        "evaluation, which may cover other digits."
    ]
    for summary in summaries:
        if summary.conditional:
            notes.append(
                f"**{summary.name}** is conditional: it is given each digit's label, so its bounds are on "
                "log p(x|y). The label is worth at most log 10 ≈ 2.3 nats (log p(x|y) ≤ log p(x) + log 10 "
                "for its own p(x) = mean over y of p(x|y))."
            )
    st.caption(" ".join(notes))

    st.markdown("**KL per latent dimension** (each model's dimensions ranked by their KL; faded = inactive)")
    st.plotly_chart(kl_overlay_figure(summaries), key="compare_kl_per_dim")
    st.markdown(f"**IWAE bound against k** on the same {first.bound_digits} digits")
    st.plotly_chart(bounds_overlay_figure(summaries), key="compare_bounds")
    st.caption(
        " · ".join(
            f"{s.name}: ELBO (k=1) {s.bounds[1]:.2f} → k={max(s.bounds)} {s.log_px:.2f}, gap {s.bound_gap:.2f} nats"
            for s in summaries
        )
    )

    st.markdown("**Latent maps** of the same test digits, coloured by class")
    for side, (column, model, summary) in enumerate(
        zip(st.columns(2), (entry, other), summaries, strict=True)
    ):
        codes = plane_codes(model)  # hover decodes either model's plane in the browser
        with column:
            how = (
                f"PCA of its {model.config.latent_dim}-D encoder means (LatentProjection)"
                if codes.projection.is_pca
                else "its encoder means"
            )
            st.markdown(f"**{summary.name}** · {len(codes.plane):,} digits at {how}")
            latent_plane(model, codes, key=f"compare_map_{side}:{model.key}", height=380)


st.title("VAE Explorer")
st.markdown(
    """
A **variational autoencoder** learns to squeeze each image *x* into a few numbers *z* and back.
The **encoder** maps a digit to a Gaussian *q(z|x)* over a small latent space; the **decoder** maps
any point *z* to pixel probabilities *p(x|z)*. Training maximises the **ELBO** —
*reconstruction* E<sub>q</sub>[log p(x|z)] minus **KL**(*q(z|x)* ‖ *p(z)*), the KL divergence of
*q(z|x)* from the prior N(0, I) — a lower bound on log p(x). The first term wants faithful
reconstructions, the second wants every code to look like a sample from the prior, so the latent
space stays smooth and full. Some models here are trained instead on the tighter **IWAE** bound, an
average over *k* draws from *q(z|x)* (the card's *Objective* says which; the glossary below explains it).

Use the pages on the left: **Latent map** (click anywhere to decode that point), **Interpolate**,
**Samples**, **Complete** (fill in a half-hidden digit), **Posterior** (exact vs approximate), and
**Train** your own model live.
""",
    unsafe_allow_html=True,
)
glossary("ELBO", "KL", "IWAE", "nats", "bits/dim", "active units", "amortisation gap")

card = card_for(st.session_state[SELECTED_MODEL])
st.header(f"Model card · {card['name']}")
left, right = st.columns([3, 2])
with left:
    # A wrapping row of content-wide metrics: in fixed columns the numbers were cut ('1,06…') at 1280 px
    cells = st.container(horizontal=True, gap="medium")
    for label, value, in_bits, help_text in card["metrics"]:
        # The bits/dim figure is the same number in another unit: a caption, not st.metric's delta
        # badge, which draws an arrow and reads as a change.
        cell = cells.container(width="content", gap=None)
        cell.metric(label, value, help=help_text, width="content")
        if in_bits:
            cell.caption(in_bits)
    st.markdown("\n".join(f"- **{k}:** {v}" for k, v in card["rows"].items()))
    if card["test_caption"]:
        st.caption(card["test_caption"])
    if card["rows"]["Objective"].startswith("IWAE"):
        st.caption(IWAE_NOTE)
with right:
    st.image(
        base64.b64decode(card["prior_samples_png"]),
        caption="Prior samples",
        alt="Digits the model generates from random draws of the prior",
    )

# The first paint ends here. These imports bring in torch (seconds on a fresh server), so they
# come after it, and on a fresh server after a pause that lets the card out first.
wait_for_first_paint()
from explorer.figures.comparison import bounds_overlay_figure, kl_overlay_figure  # noqa: E402
from explorer.figures.plots import bounds_figure, curve_figure, kl_per_dimension_figure  # noqa: E402
from explorer.figures.training import train_bound_name  # noqa: E402
from explorer.state.comparison import (  # noqa: E402
    ACTIVITY_DIGITS,
    BOUND_DIGITS,
    BOUND_KS,
    activity_of,
    bounds_of,
    comparison_choices,
    comparison_table,
    distinct_names,
    summarise,
)
from explorer.state.work_admission import ServerBusy  # noqa: E402
from explorer.ui.latent_plane import latent_plane, plane_codes  # noqa: E402

entry = chosen_model()
config = entry.config

if entry.checkpoint.curve:
    st.subheader("Training curve")
    train_config = entry.checkpoint.train_config
    bound = train_bound_name(train_config.get("objective", "elbo"), train_config.get("k", 1))
    st.plotly_chart(curve_figure(entry.checkpoint.curve, bound), key="overview_curve")

st.subheader("Which latent dimensions does it use?")
try:
    activity = activity_of(entry, digits_for(entry))
except ServerBusy as busy:
    st.warning(str(busy))
else:
    st.caption(
        f"{activity.active_count} of {config.latent_dim} dimensions are active (the encoder's mean moves with "
        f"the image: variance over {ACTIVITY_DIGITS:,} test digits > 0.01, Burda et al. 2015). A collapsed "
        "dimension carries ~0 KL: its q(z|x) equals the prior whatever the digit, so the decoder ignores it."
    )
    st.plotly_chart(kl_per_dimension_figure(activity.kl_per_dim, activity.active), key="overview_kl_per_dim")

st.subheader("How tight is the ELBO?")
# Computed on request (seconds), then kept on the model: shown at once if this model's curve
# exists already (an earlier click, or a comparison, in any session for a pretrained model).
if "iwae_curve" not in entry.cache and st.button(
    f"Compute the IWAE bounds for k = 1 … {max(BOUND_KS)} on {BOUND_DIGITS} test digits",
    key="overview_bounds",
):
    bar = st.empty()
    try:
        _bounds_with_progress(entry, entry.name, bar)
    except ServerBusy as busy:
        st.warning(str(busy))
    bar.empty()
if "iwae_curve" in entry.cache:
    bounds = bounds_of(entry, digits_for(entry))
    st.plotly_chart(bounds_figure(bounds), key="overview_bounds_chart")
    st.caption(
        f"ELBO (k=1) {bounds[1]:.2f} → IWAE k=5000 {bounds[5000]:.2f} nats, averages over {BOUND_DIGITS} test "
        f"digits. The ELBO falls short of log p(x) by exactly KL(q(z|x) ‖ p(z|x)), the KL divergence of the "
        f"encoder's q from the true posterior; the k = 5000 bound is itself below log p(x), so the gap of "
        f"{bounds[5000] - bounds[1]:.2f} nats is a lower bound on that KL (its average over these digits)."
    )

st.subheader("Compare with another model")
models = available_models()
choices = comparison_choices(models, entry.key)
# The pick is remembered apart from the widget: while the card shows the picked model it is not
# offered (nothing to compare), and when the card moves on the comparison comes back.
wanted = st.session_state.get(COMPARE_WANTED)
st.session_state[COMPARE_WITH] = wanted if wanted in choices else None
compare_key = st.selectbox(
    "Compare with", [None, *choices], key=COMPARE_WITH,
    format_func=lambda key: "— pick a second model —" if key is None else models[key].label,
    help="Pretrained, trained on the Train page or uploaded. Computed when picked, then kept.",
    on_change=lambda: st.session_state.update({COMPARE_WANTED: st.session_state[COMPARE_WITH]}),
)  # fmt: skip
if compare_key is None:
    st.caption(
        f"Pick a model to set beside **{entry.name}**: both cards' numbers on the same digits, their KL per "
        "dimension and bound curves overlaid, and their latent maps side by side. A model's first comparison "
        "runs importance sampling for a few seconds; after that it is instant."
    )
else:
    _show_comparison(entry, models[compare_key])
