"""Overview: what a VAE is, in a few lines, and the chosen model's card."""

import streamlit as st
import torch

from explorer.figures import bounds_figure, curve_figure, grid_picture, kl_per_dimension_figure
from explorer.resources import digits_for
from explorer.widgets import labels_for, model_picker
from vae_core import sample_prior
from vae_core.diagnostics import bounds_by_k, latent_activity
from vae_core.models import count_parameters


def _binary_test_digits(entry, n: int):
    digits = digits_for(entry).subset(slice(0, n))
    return digits.fixed_binary(), labels_for(entry, digits.labels)


def _latent_activity(entry):
    x, labels = _binary_test_digits(entry, 2000)
    return latent_activity(entry.model, x, labels)


def _bounds(entry):
    x, labels = _binary_test_digits(entry, 100)
    return bounds_by_k(entry.model, x, labels, ks=(1, 2, 5, 10, 50, 100, 500, 1000, 5000))


entry = model_picker()
config = entry.config
train_config = entry.checkpoint.train_config
metrics = entry.checkpoint.metrics

st.title("VAE Explorer")
st.markdown(
    """
A **variational autoencoder** learns to squeeze each image *x* into a few numbers *z* and back.
The **encoder** maps a digit to a Gaussian *q(z|x)* over a small latent space; the **decoder** maps
any point *z* to pixel probabilities *p(x|z)*. Training maximises the **ELBO** —
*reconstruction* E<sub>q</sub>[log p(x|z)] minus the **KL** divergence from *q(z|x)* to the prior
N(0, I) — a lower bound on log p(x). The first term wants faithful reconstructions, the second
wants every code to look like a sample from the prior, so the latent space stays smooth and full.

Use the pages on the left: **Latent map** (click anywhere to decode that point), **Interpolate**,
**Samples**, **Complete** (fill in a half-hidden digit), **Posterior** (exact vs approximate), and
**Train** your own model live.
""",
    unsafe_allow_html=True,
)

st.header(f"Model card · {entry.name}")
left, right = st.columns([3, 2])
with left:
    test = entry.test_metrics
    cols = st.columns(4)
    cols[0].metric("Latent size", config.latent_dim)
    cols[1].metric("Parameters", f"{count_parameters(entry.model):,}")
    cols[2].metric("Test ELBO", f"{test['elbo']:.2f}" if "elbo" in test else "—", help="nats per image")
    cols[3].metric(
        f"Test NLL (k={test.get('k', '?')})",
        f"{test['nll']:.2f}" if "nll" in test else "—",
        help="−log p(x) estimated by importance sampling, nats per image; lower is better"
        + (". For this conditional model it is −log p(x | label)." if config.conditional else ""),
    )
    rows = {
        "Architecture": config.describe(),
        "Decoder": "Bernoulli logits per pixel",
        "Images": f"{config.image_size}×{config.image_size}",
        "Binarisation": train_config.get("binarization", "—"),
        "Objective": (
            f"IWAE, k={train_config.get('k')}" if train_config.get("objective") == "iwae" else "ELBO"
        )
        + (f", β={train_config.get('beta')}" if train_config.get("beta", 1.0) != 1.0 else ""),
        "Training": (
            f"{metrics.get('epochs', 0):.0f} epochs, batch {train_config.get('batch_size', '—')}, "
            f"lr {train_config.get('lr', '—')}"
            if metrics
            else "—"
        ),
        "Trained on": metrics.get("data", "—"),
        "Training time": (
            f"{metrics['train_seconds'] / 60:.1f} min on {metrics.get('device', '?')}"
            if "train_seconds" in metrics
            else "—"
        ),
        "Command": f"`{metrics['command']}`" if "command" in metrics else "—",
        "Origin": entry.origin,
    }
    st.markdown("\n".join(f"- **{k}:** {v}" for k, v in rows.items()))
    if test:
        st.caption(
            f"Test figures: {test.get('n', '?')} MNIST test digits binarised once (seed "
            f"{test.get('binarization_seed', 0)}); NLL from {test.get('k', '?')} importance samples per digit."
        )
with right:
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(16) % 10 if config.conditional else None
    _, probs = sample_prior(entry.model, 16, 1.0, labels, generator)
    st.image(grid_picture(probs, config.image_size, columns=4, scale=3), caption="Prior samples")

if entry.checkpoint.curve:
    st.subheader("Training curve")
    st.plotly_chart(curve_figure(entry.checkpoint.curve), key="overview_curve")

st.subheader("Which latent dimensions does it use?")
activity = entry.cached("latent_activity", lambda: _latent_activity(entry))
st.caption(
    f"{activity.active_count} of {config.latent_dim} dimensions are active (the encoder's mean moves with "
    "the image: variance over test digits > 0.01, Burda et al. 2015). A collapsed dimension carries ~0 KL: "
    "its q(z|x) equals the prior whatever the digit, so the decoder ignores it."
)
st.plotly_chart(kl_per_dimension_figure(activity.kl_per_dim, activity.active), key="overview_kl_per_dim")

st.subheader("How tight is the ELBO?")
bounds_key = f"bounds:{entry.key}"
if st.button("Compute the IWAE bounds for k = 1 … 5000 on 100 test digits", key="overview_bounds"):
    with st.spinner("Importance sampling…"):
        st.session_state[bounds_key] = entry.cached("bounds_by_k", lambda: _bounds(entry))
if bounds_key in st.session_state:
    bounds = st.session_state[bounds_key]
    st.plotly_chart(bounds_figure(bounds), key="overview_bounds_chart")
    st.caption(
        f"ELBO (k=1) {bounds[1]:.2f} → IWAE k=5000 {bounds[5000]:.2f} nats: the gap of "
        f"{bounds[5000] - bounds[1]:.2f} nats is what the ELBO leaves out (KL from q(z|x) to the true posterior)."
    )
