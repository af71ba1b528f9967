"""Train: configure a VAE, train it in a background thread and watch it learn.

The run lives in `st.session_state` (one per session, invisible to other sessions). A fragment
polls it every second while it trains; once it ends the page reruns once, polling stops, and
the model joins this session's model picker on every page.

The form, the live fragment and the finished run's views share the run's session state and read
top to bottom as the screen does; the engine behind them is explorer/training/ (start.py reads the
form and starts a run, jobs.py runs it), the charts explorer/figures/training.py.
"""

import streamlit as st
import torch

from explorer.figures.training import format_duration
from explorer.runtime_settings import train_poll_interval_s
from explorer.state.visitor_text import inert_reason
from explorer.state.work_admission import ServerBusy
from explorer.training import history, jobs
from explorer.training.start import KINDS, OBJECTIVES, model_entry, share_when_done, start_run
from explorer.ui.glossary import glossary
from explorer.ui.resources import downloads_allowed, register_session_model, session_models, session_probe
from explorer.ui.training_run import compare_runs, draw_progress, draw_views, export_buttons
from explorer.ui.widgets import SELECTED_MODEL
from vae_core import VAEError
from vae_core.limits import ServerLimits

JOB_KEY = "train_job"
RUNS_KEY = "train_runs"  # this session's recent runs, oldest first, for the comparison chart
REMEMBERED_RUNS = 6  # older runs leave the comparison (they stay in the model picker)
REGISTERED_KEY = "train_registered"  # job ids this page has already put into the picker
RUN_COUNT_KEY = "train_run_count"  # runs started in this session, for their numbers ("run 1", "run 2")
POLL_PAUSED_S = 2.0
POLL_RUNNING_S = train_poll_interval_s()
DATA_CHOICES = {
    jobs.DATA_FULL: "MNIST training set (60,000; the bundled sample if unavailable)",
    jobs.DATA_SAMPLE: "Bundled sample (5,000 digits, fastest)",
}


@st.cache_resource(show_spinner="Loading training digits…")
def training_data(source: str) -> jobs.TrainingData:
    """Loaded once per server and shared read-only by every session's runs (uint8 pixels)."""
    return jobs.load_training_data(source, downloads_allowed())


def start(form: dict) -> None:
    """Start a run from the form's values (explorer/training/start.py); it becomes this session's run."""
    job = start_run(
        form, training_data, number=st.session_state.get(RUN_COUNT_KEY, 0) + 1,
        is_watched=session_probe(), on_end=share_when_done(session_models()),
    )  # fmt: skip
    st.session_state[JOB_KEY] = job
    st.session_state[RUN_COUNT_KEY] = job.number
    runs = st.session_state.setdefault(RUNS_KEY, [])
    runs.append(job)
    del runs[:-REMEMBERED_RUNS]


def settings_form(busy: bool) -> None:
    limits = ServerLimits.from_env()
    # Folded while a run trains, so the live charts sit near the top of the page.
    with st.expander("Settings", expanded=not busy), st.form("train_form", enter_to_submit=False):
        left, middle, right = st.columns(3)
        settings = {
            "kind": left.selectbox("Model", list(KINDS), key="train_kind",
                                   help="A conditional MLP also gets the digit label, so z need not encode it."),
            "latent": left.number_input("Latent size", value=2, key="train_latent",
                                        help="2 draws the latent plane directly; more is shown through PCA."),
            "hidden": left.text_input("Hidden sizes (MLP)", "256,128", key="train_hidden",
                                      help="Encoder widths; the decoder mirrors them. The conv model uses the first as its dense layer. "
                                      f"Each at most {limits.max_hidden_width:,} on this server."),
            "data": left.selectbox("Data", list(DATA_CHOICES), format_func=DATA_CHOICES.get, key="train_data"),
            "epochs": middle.number_input("Epochs", value=3.0, step=1.0, key="train_epochs",
                                          help="Fractions are fine: 0.5 stops half way through the data. "
                                          f"At most {limits.max_epochs:g} on this server."),
            "batch": middle.number_input("Batch size", value=128, key="train_batch",
                                         help=f"At most {limits.max_batch_size:,} on this server; 64 to 512 works well."),
            "lr": middle.text_input("Learning rate", "1e-3", key="train_lr"),
            "seed": middle.number_input("Seed", value=0, key="train_seed"),
            "beta": right.number_input("β (KL weight)", value=1.0, step=0.1, key="train_beta",
                                       help="The loss is β·KL − reconstruction. β = 1 is the VAE's ELBO; "
                                       "β > 1 (a β-VAE) pushes q(z|x) towards the prior: fewer active units, "
                                       "smoother traversals, blurrier reconstructions; β < 1 the reverse."),
            "objective": right.selectbox("Objective", list(OBJECTIVES), key="train_objective"),
            "k": right.number_input("IWAE samples k", value=5, key="train_k",
                                     help=f"Used by IWAE only; at most {limits.max_k:,} on this server."),
            "warmup": right.number_input("KL warm-up epochs", value=0.0, step=0.5, key="train_warmup",
                                         help="Ramp β from 0 over this many epochs."),
            "device": right.selectbox("Device", ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else []),
                                      key="train_device"),
        }  # fmt: skip
        submitted = st.form_submit_button("Start training", type="primary", disabled=busy)
    if busy:
        st.caption("One run at a time per session: pause or stop the current run to change settings.")
    if submitted:
        try:
            start(settings)
        except (VAEError, ValueError, ServerBusy) as exc:  # the user can fix these, or try again soon
            st.error(f"Cannot start: {inert_reason(exc)}")  # it may quote the visitor's text
            return
        st.rerun()  # redraw with the controls and the polling fragment


def controls(job: jobs.TrainingJob, snap: history.JobSnapshot) -> None:
    pause_col, stop_col, gif_col, png_col, _ = st.columns([1, 1, 1.5, 1.5, 3])
    if snap.status == jobs.PAUSED:
        pause_col.button(
            "Resume", key="train_resume", on_click=job.resume, type="primary", disabled=snap.stop_requested
        )
    else:
        pause_col.button("Pause", key="train_pause", on_click=job.pause, disabled=snap.stop_requested)
    stop_col.button("Stop", key="train_stop", on_click=job.stop, disabled=snap.stop_requested,
                    help="End the run now; the model trained so far is kept.")  # fmt: skip
    export_buttons(job, gif_col, png_col)


def live_panel(job: jobs.TrainingJob, status_at_render: str) -> None:
    job.touch()
    snap = job.snapshot()
    if snap.status != status_at_render:
        st.rerun()  # the whole page: buttons change and polling stops (or slows) from here
    draw_progress(job, snap)
    draw_views(job, snap)
    compare_runs(st.session_state.get(RUNS_KEY, []))


def ended(job: jobs.TrainingJob, snap: history.JobSnapshot) -> None:
    if snap.status == jobs.FAILED:
        st.error(f"Training failed: {snap.error}")
        return
    done = "finished" if snap.status == jobs.FINISHED else "was stopped"
    if snap.stop_reason == "idle":
        done = f"was stopped because nobody watched it for {job.idle_timeout_s:.0f} s"
    registered = st.session_state.setdefault(REGISTERED_KEY, set())
    if job.id not in registered:
        if job.key not in session_models():
            register_session_model(model_entry(job))
        st.session_state[SELECTED_MODEL] = job.key  # the other pages open on the new model
        registered.add(job.id)
    metrics = job.metrics()
    st.success(
        f"**{job.name}** {done} after {metrics.get('steps', 0):,} steps ({metrics.get('epochs', 0):.2f} epochs, "
        f"{format_duration(metrics.get('train_seconds', 0))}). It is now in the model picker of every page."
    )
    if snap.error:
        st.warning(snap.error)
    left, right, gif_col, png_col = st.columns(4)
    export_buttons(job, gif_col, png_col)
    left.download_button("Download checkpoint", job.checkpoint_bytes(), file_name=f"vae-run{job.id}.safetensors",
                         mime="application/octet-stream", on_click="ignore", key="train_download_ckpt")  # fmt: skip
    right.download_button("Download metrics CSV", job.metrics_csv(), file_name=f"vae-run{job.id}-metrics.csv",
                          mime="text/csv", on_click="ignore", key="train_download_csv")  # fmt: skip


st.title("Train a VAE")
glossary("ELBO", "IWAE", "KL", "nats", "active units")
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
        draw_progress(job, snap)
        draw_views(job, snap)
        compare_runs(st.session_state.get(RUNS_KEY, []))
