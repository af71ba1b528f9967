"""Train: configure a VAE, train it in a background thread and watch it learn.

The run lives in `st.session_state` (one per session, invisible to other sessions). A fragment
polls it every half second while it trains; once it ends the page reruns once, polling stops, and
the model joins this session's model picker on every page.
"""

import numpy as np
import streamlit as st
import torch
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

from explorer import training_jobs as jobs
from explorer.figures import grid_picture
from explorer.registry import ModelEntry
from explorer.resources import downloads_allowed, register_session_model, session_models
from explorer.train_figures import (
    CURVE_TERMS,
    curve_frame,
    curve_spec,
    format_duration,
    latent_frame,
    latent_spec,
    smooth,
)
from explorer.widgets import SELECTED_MODEL
from vae_core import ConfigError, ModelConfig, TrainConfig, VAEError

JOB_KEY = "train_job"
REGISTERED_KEY = "train_registered"  # job ids this page has already put into the picker
POLL_RUNNING_S, POLL_PAUSED_S = 0.5, 2.0
CURVE_HEIGHT, LATENT_HEIGHT = 280, 400
KINDS = {"MLP": ("mlp", False), "conv": ("conv", False), "conditional MLP": ("mlp", True)}
DATA_CHOICES = {
    jobs.DATA_FULL: "MNIST training set (60,000; the bundled sample if unavailable)",
    jobs.DATA_SAMPLE: "Bundled sample (5,000 digits, fastest)",
}


@st.cache_resource(show_spinner="Loading training digits…")
def training_data(source: str) -> jobs.TrainingData:
    """Loaded once per server and shared read-only by every session's runs (uint8 pixels)."""
    return jobs.load_training_data(source, downloads_allowed())


def session_probe():
    """A check the training thread may call: is this browser session still connected?

    With it a run keeps going while its user looks at other pages (which do not poll it) and still
    stops soon after the tab closes. Under AppTest there is no runtime and only polling counts.
    """
    ctx = get_script_run_ctx()
    if ctx is None or not Runtime.exists():
        return None
    runtime, session_id = Runtime.instance(), ctx.session_id
    return lambda: runtime.is_active_session(session_id)


def parse_hidden(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise ConfigError(
            f"hidden sizes must be comma-separated integers like 256,128, got {text!r}"
        ) from None


def parse_lr(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"learning rate must be a number like 1e-3, got {text!r}") from None


def entry_for(job: jobs.TrainingJob) -> ModelEntry:
    return ModelEntry(key=job.key, checkpoint=job.checkpoint(), origin="trained", name=job.name)


def share_from_thread(models: dict):
    """Called in the training thread when a run ends: put the model into this session's list.

    `models` is the plain dict behind `session_models()`, captured in the script thread; inserting
    into it is one atomic dict operation, so other pages offer the model even if the user never
    comes back here. (Assigning through `st.session_state` from a thread would be lost.)
    """

    def on_end(job: jobs.TrainingJob) -> None:
        models.setdefault(job.key, entry_for(job))

    return on_end


def start_run(settings: dict) -> None:
    kind, conditional = KINDS[settings["kind"]]
    model_config = ModelConfig(
        kind=kind, latent_dim=int(settings["latent"]), hidden=parse_hidden(settings["hidden"]),
        conditional=conditional,
    )  # fmt: skip
    train_config = TrainConfig(
        epochs=float(settings["epochs"]), batch_size=int(settings["batch"]), lr=parse_lr(settings["lr"]),
        beta=float(settings["beta"]), objective=settings["objective"].lower(),
        k=int(settings["k"]) if settings["objective"] == "IWAE" else 1,
        warmup_epochs=float(settings["warmup"]), seed=int(settings["seed"]), device=settings["device"],
        num_threads=1, log_every=jobs.LOG_EVERY,
    )  # fmt: skip
    if jobs.active_job_count() >= jobs.MAX_ACTIVE_JOBS:
        raise ConfigError(
            f"this server is already training {jobs.active_job_count()} models, its limit; "
            "start again when one has finished"
        )
    data = training_data(settings["data"])
    job = jobs.TrainingJob(
        model_config,
        train_config,
        data,
        is_watched=session_probe(),
        on_end=share_from_thread(session_models()),
    )
    st.session_state[JOB_KEY] = job.start(max_active=jobs.MAX_ACTIVE_JOBS)


def settings_form(busy: bool) -> None:
    # Folded while a run trains, so the live charts sit near the top of the page.
    with st.expander("Settings", expanded=not busy), st.form("train_form"):
        left, middle, right = st.columns(3)
        settings = {
            "kind": left.selectbox("Model", list(KINDS), key="train_kind",
                                   help="A conditional MLP also gets the digit label, so z need not encode it."),
            "latent": left.number_input("Latent size", 1, 256, 2, key="train_latent",
                                        help="2 draws the latent plane directly; more is shown through PCA."),
            "hidden": left.text_input("Hidden sizes (MLP)", "256,128", key="train_hidden",
                                      help="Encoder widths; the decoder mirrors them. The conv model ignores this."),
            "data": left.selectbox("Data", list(DATA_CHOICES), format_func=DATA_CHOICES.get, key="train_data"),
            "epochs": middle.number_input("Epochs", 0.05, 500.0, 3.0, step=1.0, key="train_epochs",
                                          help="Fractions are fine: 0.5 stops half way through the data."),
            "batch": middle.number_input("Batch size", 2, 8192, 128, key="train_batch"),
            "lr": middle.text_input("Learning rate", "1e-3", key="train_lr"),
            "seed": middle.number_input("Seed", 0, 2**31 - 1, 0, key="train_seed"),
            "beta": right.number_input("β (KL weight)", 0.0, 100.0, 1.0, step=0.1, key="train_beta"),
            "objective": right.selectbox("Objective", ["ELBO", "IWAE"], key="train_objective"),
            "k": right.number_input("IWAE samples k", 1, 5000, 5, key="train_k", help="Used by IWAE only."),
            "warmup": right.number_input("KL warm-up epochs", 0.0, 100.0, 0.0, step=0.5, key="train_warmup",
                                         help="Ramp β from 0 over this many epochs."),
            "device": right.selectbox("Device", ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else []),
                                      key="train_device"),
        }  # fmt: skip
        submitted = st.form_submit_button("Start training", type="primary", disabled=busy)
    if busy:
        st.caption("One run at a time per session: pause or stop the current run to change settings.")
    if submitted:
        try:
            start_run(settings)
        except (VAEError, ValueError) as exc:  # ConfigError and DataError: the user can fix these
            st.error(f"Cannot start: {exc}")
            return
        st.rerun()  # redraw with the controls and the polling fragment


def controls(job: jobs.TrainingJob, snap: jobs.JobSnapshot) -> None:
    pause_col, stop_col, _ = st.columns([1, 1, 6])
    if snap.status == jobs.PAUSED:
        pause_col.button(
            "Resume", key="train_resume", on_click=job.resume, type="primary", disabled=snap.stop_requested
        )
    else:
        pause_col.button("Pause", key="train_pause", on_click=job.pause, disabled=snap.stop_requested)
    stop_col.button("Stop", key="train_stop", on_click=job.stop, disabled=snap.stop_requested,
                    help="End the run now; the model trained so far is kept.")  # fmt: skip


def draw_progress(snap: jobs.JobSnapshot) -> None:
    last = snap.last
    if last is None:
        st.progress(0.0, text="Starting… (the first progress report comes after a few steps)")
        return
    state = {jobs.PAUSED: " · paused", jobs.RUNNING: ""}.get(snap.status, f" · {snap.status}")
    if snap.stop_requested and snap.status not in jobs.ENDED:
        state = " · stopping…"
    text = (
        f"step {snap.step:,} / {snap.total_steps:,} · epoch {last['epoch']:.2f} · "
        f"{snap.images_per_s:,.0f} images/s · ETA {format_duration(snap.eta_s)}{state}"
    )
    st.progress(snap.progress, text=text)
    steps = [e for e in snap.events if e["kind"] == "step"]
    validation = next((e["validation"] for e in reversed(snap.events) if e.get("validation")), None)
    cols = st.columns(5)
    terms = (("elbo", "ELBO"), ("recon", "Reconstruction"), ("kl", "KL"))
    for col, (name, label) in zip(cols[:3], terms, strict=True):
        value = smooth([e[name] for e in steps])[-1] if steps else last[name]
        col.metric(f"Train {label}", f"{value:.1f}", help="Smoothed over recent steps, nats per image")
    cols[3].metric("Validation ELBO", f"{validation['elbo']:.1f}" if validation else "—",
                   help="After each epoch, fixed noise, nats per image")  # fmt: skip
    cols[4].metric("β now", f"{last['beta']:.2f}")


def draw_views(snap: jobs.JobSnapshot, latent_dim: int) -> None:
    if not snap.events:
        return
    for column, (term, title) in zip(st.columns(len(CURVE_TERMS)), CURVE_TERMS, strict=True):
        column.vega_lite_chart(
            curve_frame(snap.events, term), curve_spec(title), key=f"train_curve_{term}", width="stretch",
            height=CURVE_HEIGHT,
        )  # fmt: skip
    st.caption(
        "Faint blue: training terms every few steps; solid blue: their moving average; blue circles: "
        "training average over each epoch; red: validation after each epoch. "
        "ELBO = reconstruction − KL, in nats per image (higher is better). Early on the KL often jumps "
        "as the encoder starts to use z, then settles while the reconstruction keeps improving; with "
        "KL warm-up, β ramps from 0 and the KL is free to grow first. Validation uses fixed noise, so "
        "its points compare across epochs."
    )
    views = snap.views
    if views is None:
        return
    size = views.image_size
    pictures, scatter = st.columns([2, 3])
    with pictures:
        both = np.concatenate([views.originals, views.reconstructions])
        st.image(grid_picture(both, size, columns=len(views.originals), scale=2),
                 caption="Validation digits (top) and their reconstructions (bottom)")  # fmt: skip
        st.image(grid_picture(views.samples, size, columns=8, scale=2),
                 caption="16 fixed prior samples z ~ N(0, I), decoded by the current model")  # fmt: skip
    with scatter:
        # PCA axis titles carry variance shares that move every snapshot; a changing spec would
        # redraw the chart from scratch, so the shares go into the caption instead.
        titles = ("PC1", "PC2") if latent_dim > 2 else views.axis_titles
        st.vega_lite_chart(
            latent_frame(views.plane, views.labels), latent_spec(titles), key="train_latents", width="stretch",
            height=LATENT_HEIGHT,
        )  # fmt: skip
        pca = f" Axes: {', '.join(views.axis_titles)}." if latent_dim > 2 else ""
        st.caption(f"Encoder means of {len(views.plane):,} validation digits at step {views.step:,}.{pca}")


def live_panel(job: jobs.TrainingJob, status_at_render: str) -> None:
    job.touch()
    snap = job.snapshot()
    if snap.status != status_at_render:
        st.rerun()  # the whole page: buttons change and polling stops (or slows) from here
    draw_progress(snap)
    draw_views(snap, job.model_config.latent_dim)


def ended(job: jobs.TrainingJob, snap: jobs.JobSnapshot) -> None:
    if snap.status == jobs.FAILED:
        st.error(f"Training failed: {snap.error}")
        return
    done = "finished" if snap.status == jobs.FINISHED else "was stopped"
    if snap.stop_reason == "idle":
        done = f"was stopped because nobody watched it for {job.idle_timeout_s:.0f} s"
    registered = st.session_state.setdefault(REGISTERED_KEY, set())
    if job.id not in registered:
        if job.key not in session_models():
            register_session_model(entry_for(job))
        st.session_state[SELECTED_MODEL] = job.key  # the other pages open on the new model
        registered.add(job.id)
    metrics = job.metrics()
    st.success(
        f"**{job.name}** {done} after {metrics.get('steps', 0):,} steps ({metrics.get('epochs', 0):.2f} epochs, "
        f"{format_duration(metrics.get('train_seconds', 0))}). It is now in the model picker of every page."
    )
    if snap.error:
        st.warning(snap.error)
    left, right, _ = st.columns([1, 1, 3])
    left.download_button("Download checkpoint", job.checkpoint_bytes(), file_name=f"vae-run{job.id}.safetensors",
                         mime="application/octet-stream", on_click="ignore", key="train_download_ckpt")  # fmt: skip
    right.download_button("Download metrics CSV", job.metrics_csv(), file_name=f"vae-run{job.id}-metrics.csv",
                          mime="text/csv", on_click="ignore", key="train_download_csv")  # fmt: skip


st.title("Train a VAE")
st.caption(
    "Configure a model, start it, and watch the ELBO's two terms trade off while the reconstructions, "
    "prior samples and latent space take shape. Training runs in the background on this server."
)
job: jobs.TrainingJob | None = st.session_state.get(JOB_KEY)
snap = job.snapshot() if job is not None else None
busy = snap is not None and snap.status not in jobs.ENDED
settings_form(busy)

if job is not None:
    job.touch()
    st.subheader(job.name)
    st.caption(f"{job.model_config.describe()} on {job.device} · {job.data_note}")
    if busy:
        controls(job, snap)
        run_every = POLL_RUNNING_S if snap.status == jobs.RUNNING else POLL_PAUSED_S
        st.fragment(live_panel, run_every=run_every)(job, snap.status)
    else:
        ended(job, snap)
        draw_progress(snap)
        draw_views(snap, job.model_config.latent_dim)
