"""Train: configure a VAE, train it in a background thread and watch it learn.

The run lives in `st.session_state` (one per session, invisible to other sessions). A fragment
polls it every second while it trains; once it ends the page reruns once, polling stops, and
the model joins this session's model picker on every page.

Near 500 lines for a reason: the form, the live fragment and the finished run's views share the
run's session state and read top to bottom as the screen does; the engine behind them is
explorer/training/, the charts explorer/figures/training.py.
"""

import math
import os
import re

import numpy as np
import streamlit as st
import torch
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

from explorer.figures.pictures import digit_grid_png
from explorer.figures.plots import plane_bounds
from explorer.figures.training import (
    CURVE_TERMS,
    bound_title,
    comparison_frame,
    comparison_spec,
    curve_frame,
    curve_spec,
    events_until,
    format_duration,
    kl_frame,
    kl_spec,
    smooth,
)
from explorer.state.registry import ModelEntry
from explorer.state.share_links import escape_markdown
from explorer.state.work_admission import ServerBusy
from explorer.training import jobs
from explorer.training.exports import latent_animation_gif, snapshot_at, views_grid_png
from explorer.ui.latent_plane import latent_plane, points_payload
from explorer.ui.resources import downloads_allowed, register_session_model, session_models
from explorer.ui.widgets import SELECTED_MODEL
from vae_core import ConfigError, ModelConfig, TrainConfig, VAEError
from vae_core.config import MAX_HIDDEN_LAYERS, MAX_LATENT_DIM
from vae_core.limits import ServerLimits

JOB_KEY = "train_job"
RUNS_KEY = "train_runs"  # this session's recent runs, oldest first, for the comparison chart
REMEMBERED_RUNS = 6  # older runs leave the comparison (they stay in the model picker)
REGISTERED_KEY = "train_registered"  # job ids this page has already put into the picker
REWIND_SLIDER = "train_rewind"  # a snapshot's step, or NOW
REWIND_JOB = "train_rewind_job"  # the run the slider belongs to: a new run starts at NOW
FOLLOW_KEY = "train_follow"  # {job id: NOW or the step chosen}; only a move of the slider changes it
RUN_COUNT_KEY = "train_run_count"  # runs started in this session, for their numbers ("run 1", "run 2")
NOW = -1  # the slider's right end: the newest snapshot, whichever step that is
COMPARE_PICK, COMPARE_TERM = "train_compare_runs", "train_compare_term"
SHOWN_KEY = "train_shown_steps"  # {job id: step of the snapshot on screen}, for the PNG download
DRAWN_KEY = "train_drawn_views"  # (snapshot, its pictures and payload) on screen: see drawn_views
POLL_PAUSED_S = 2.0
POLL_DEFAULT_S = 1.0


def poll_interval_s() -> float:
    """Seconds between polls while a run trains: VAE_TRAIN_POLL_S (0.05-5; the load test uses 0.1), else 1.

    Each poll redraws the live panel, and the browser's share of that is ~0.1 s of a core (headless
    chromium, measured: 0.40 cores while polling every 0.5 s, 0.29 every 1 s, 0.19 every 2 s). Where
    the browser shares the server's CPU, or the CPU is busy, that time comes out of the run's speed.
    """
    try:
        value = float(os.environ.get("VAE_TRAIN_POLL_S", str(POLL_DEFAULT_S)))
    except ValueError:
        return POLL_DEFAULT_S
    return min(max(value, 0.05), 5.0) if math.isfinite(value) else POLL_DEFAULT_S


POLL_RUNNING_S = poll_interval_s()
CURVE_HEIGHT, LATENT_HEIGHT, KL_HEIGHT, COMPARE_HEIGHT = 280, 400, 170, 340
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
    """'256,128' -> (256, 128): 1 to 8 widths in ASCII digits (no '1e9', '٣' or 5,000-digit numbers)."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not 1 <= len(parts) <= MAX_HIDDEN_LAYERS or not all(re.fullmatch(r"[0-9]{1,7}", p) for p in parts):
        raise ConfigError(
            f"hidden sizes must be 1 to {MAX_HIDDEN_LAYERS} comma-separated whole numbers like 256,128, "
            f"got {text[:40]!r}"
        )
    return tuple(int(part) for part in parts)


def form_number(
    settings: dict, key: str, label: str, low=None, high=None, whole: bool = False
) -> float | int:
    """A number input's value, checked here: the inputs have no bounds of their own, because
    Streamlit silently swaps a value outside them for the default (1e9 epochs became 3) where
    the person should be told what this server allows."""
    value = settings[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{label} must be a finite number, got {value!r}")
    if whole and value != int(value):
        raise ConfigError(f"{label} must be a whole number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(f"{label} must be between {low:,} and {high:,}, got {value:,}")
    return int(value) if whole else float(value)


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
    """Check the settings against this server's limits (ServerLimits.from_env: $VAE_MAX_*), then start.

    Every refusal is a ConfigError whose message says what to change (or ServerBusy, from the
    server's budget for heavy work); no model is built before the memory estimate says the run fits.
    """
    limits = ServerLimits.from_env()
    if settings["kind"] not in KINDS or settings["objective"] not in ("ELBO", "IWAE"):
        raise ConfigError(f"unknown model {settings['kind']!r} or objective {settings['objective']!r}")
    kind, conditional = KINDS[settings["kind"]]
    hidden = parse_hidden(settings["hidden"])
    limits.check_hidden(hidden)
    model_config = ModelConfig(
        kind=kind, latent_dim=form_number(settings, "latent", "Latent size", 1, MAX_LATENT_DIM, whole=True),
        hidden=hidden, conditional=conditional,
    )  # fmt: skip
    iwae = settings["objective"] == "IWAE"
    data = training_data(settings["data"])  # once per server; its validation size sets the estimate
    train_config = TrainConfig(
        epochs=form_number(settings, "epochs", "Epochs"),
        batch_size=form_number(settings, "batch", "Batch size", whole=True), lr=parse_lr(settings["lr"]),
        beta=form_number(settings, "beta", "β", 0, 100), objective=settings["objective"].lower(),
        k=form_number(settings, "k", "IWAE samples k", whole=True) if iwae else 1,
        warmup_epochs=form_number(settings, "warmup", "KL warm-up epochs", 0, 100),
        seed=form_number(settings, "seed", "Seed", 0, 2**31 - 1, whole=True), device=settings["device"],
        num_threads=1, log_every=jobs.LOG_EVERY, validation_size=len(data.validation),
    )  # fmt: skip
    job = jobs.TrainingJob(  # checks the settings against `limits` before building anything
        model_config,
        train_config,
        data,
        is_watched=session_probe(),
        on_end=share_from_thread(session_models()),
        number=st.session_state.get(RUN_COUNT_KEY, 0) + 1,
        limits=limits,
    )
    st.session_state[JOB_KEY] = job.start(max_active=jobs.MAX_ACTIVE_JOBS)  # admitted there, once
    st.session_state[RUN_COUNT_KEY] = job.number
    runs = st.session_state.setdefault(RUNS_KEY, [])
    runs.append(job)
    del runs[:-REMEMBERED_RUNS]


def settings_form(busy: bool) -> None:
    limits = ServerLimits.from_env()
    # Folded while a run trains, so the live charts sit near the top of the page.
    with st.expander("Settings", expanded=not busy), st.form("train_form"):
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
            "objective": right.selectbox("Objective", ["ELBO", "IWAE"], key="train_objective"),
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
            start_run(settings)
        except (VAEError, ValueError, ServerBusy) as exc:  # the user can fix these, or try again soon
            st.error(f"Cannot start: {escape_markdown(str(exc))}")  # it may quote the visitor's text
            return
        st.rerun()  # redraw with the controls and the polling fragment


def controls(job: jobs.TrainingJob, snap: jobs.JobSnapshot) -> None:
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


def draw_progress(job: jobs.TrainingJob, snap: jobs.JobSnapshot) -> None:
    last = snap.last
    if last is None:
        st.progress(0.0, text="Starting… (the first progress report comes after a few steps)")
        return
    state = {jobs.PAUSED: " · paused", jobs.RUNNING: ""}.get(snap.status, f" · {snap.status}")
    if snap.stop_requested and snap.status not in jobs.ENDED:
        state = " · stopping…"
    if snap.status in jobs.ENDED:  # no speed or ETA once nothing runs
        text = f"{snap.status} at step {snap.step:,} of {snap.total_steps:,} · epoch {last['epoch']:.2f}"
    else:
        text = (
            f"step {snap.step:,} / {snap.total_steps:,} · epoch {last['epoch']:.2f} · "
            f"{snap.images_per_s:,.0f} images/s · ETA {format_duration(snap.eta_s)}{state}"
        )
    st.progress(snap.progress, text=text)
    steps = [e for e in snap.events if e["kind"] == "step"]
    validation = next((e["validation"] for e in reversed(snap.events) if e.get("validation")), None)
    cols = st.columns(5)
    bound = "IWAE bound" if job.train_config.objective == "iwae" else "ELBO"  # what the run trains on
    terms = (("elbo", bound), ("recon", "Reconstruction"), ("kl", "KL"))
    for col, (name, label) in zip(cols[:3], terms, strict=True):
        value = smooth([e[name] for e in steps])[-1] if steps else last[name]
        col.metric(f"Train {label}", f"{value:.1f}", help="Smoothed over recent steps, nats per image")
    cols[3].metric("Validation ELBO", f"{validation['elbo']:.1f}" if validation else "—",
                   help="After each epoch, fixed noise, nats per image")  # fmt: skip
    cols[4].metric("β now", f"{last['beta']:.2f}")


def rewind_key(job_id: int) -> str:
    return f"{REWIND_SLIDER}_{job_id}"  # a widget per run: a new run starts with a fresh slider at NOW


def slider_moved(job_id: int) -> None:
    """on_change of the time-travel slider: the one place where the shown step changes."""
    st.session_state.setdefault(FOLLOW_KEY, {})[job_id] = st.session_state[rewind_key(job_id)]


def rewound_views(job: jobs.TrainingJob, history: list[jobs.LiveViews]) -> jobs.LiveViews:
    """The time-travel slider over the run's snapshots; returns the snapshot to draw (the newest by default).

    The slider's right end is NOW, not the newest step: while the run trains, new snapshots arrive
    and old ones are thinned under the slider. Which step to show is FOLLOW_KEY's entry for the
    run, NOW until the person moves the slider (its on_change), and it is also the widget's
    default. The default used to be the first option, step 0, and the server wrote NOW into the
    widget's state: under CPU load (polls every 0.1 s beside 8 busy processes) the browser came back
    with the slider at its default, and the whole view froze at step 0 for the rest of the run and
    after Stop. The server never writes the widget's state, so a drag is never fought.
    """
    newest = history[-1]
    if len(history) < 2:
        return newest
    earlier = [views.step for views in history[:-1]]
    follow = st.session_state.setdefault(FOLLOW_KEY, {})
    chosen = follow.get(job.id, NOW)
    if chosen != NOW and chosen not in earlier:  # thinned away: the nearest snapshot still kept
        chosen = follow[job.id] = min(earlier, key=lambda step: abs(step - chosen))
    st.session_state[REWIND_JOB] = job.id
    st.select_slider(
        "Time travel: show the run at", options=[*earlier, NOW], value=chosen, key=rewind_key(job.id),
        format_func=lambda step: "now" if step == NOW else f"step {step:,}",
        on_change=slider_moved, args=(job.id,),
        help=f"The run keeps up to {jobs.HISTORY_SIZE} snapshots, spread evenly over its length. "
        "At the right end (now) the view follows the run as it trains.",
    )  # fmt: skip
    return newest if chosen == NOW else history[earlier.index(chosen)]


def drawn_views(views: jobs.LiveViews) -> dict:
    """A snapshot's pictures (PNG bytes), latent-plane payload and bounds, and KL bars, built once.

    Polls outnumber snapshots, and a rewound view shows the same snapshot on every poll: building
    these anew each time held the GIL the training thread needs between its torch ops. Identical
    PNG bytes also keep their media URL, so the browser does not fetch and decode them again.
    """
    # One slot per session: only the run on screen is drawn, and an earlier run's pictures go.
    cached = st.session_state.get(DRAWN_KEY)
    if cached is not None and cached[0] is views:  # snapshots are immutable: identity is enough
        return cached[1]
    size = views.image_size
    both = np.concatenate([views.originals, views.reconstructions])
    # PCA axis titles carry variance shares that move every snapshot; a changing spec would
    # redraw the chart from scratch, so the shares go into the caption instead.
    titles = ("PC1", "PC2") if len(views.kl_per_dim) > 2 else views.axis_titles
    drawn = {
        # PNG, not JPEG: JPEG smears the sharp edges of 28x28 digits
        "digits_png": digit_grid_png(both, size, columns=len(views.originals), scale=2),
        "samples_png": digit_grid_png(views.samples, size, columns=8, scale=2),
        "payload": points_payload(views.plane, views.labels, titles, size),
        "bounds": plane_bounds(views.plane.astype(np.float32)),
        "kl": kl_frame(views.kl_per_dim, views.active),
    }
    st.session_state[DRAWN_KEY] = (views, drawn)
    return drawn


def draw_kl_per_dimension(views: jobs.LiveViews, frame) -> None:
    latent_dim = len(views.kl_per_dim)
    st.vega_lite_chart(frame, kl_spec(), key="train_kl_dims", width="stretch", height=KL_HEIGHT)
    st.caption(
        f"**{views.active_count} of {latent_dim}** latent dimensions active. Bars: KL(q(z_u|x) ‖ p(z_u)) per "
        f"dimension, averaged over the {len(views.plane):,} validation digits. A dimension is active when its "
        "mean E_q[z_u] varies across digits (variance > 0.01, Burda et al. 2015); a collapsed one ignores x "
        "and its KL falls to ~0."
    )


def export_buttons(job: jobs.TrainingJob, gif_col, png_col) -> None:
    """The latent GIF and the digit PNG, both built when clicked (in a thread of their own).

    They live outside the polling fragment: a download button re-rendered every poll gets a
    new file id each time, and a click that raced a redraw was seen to download nothing. So they
    read the job when clicked: the GIF has every snapshot up to that moment, and the PNG shows the
    step on screen, which the fragment records in SHOWN_KEY's dict (a plain dict that the
    callbacks' thread can read without Streamlit).
    """
    shown_steps = st.session_state.setdefault(SHOWN_KEY, {})
    gif_col.download_button(
        "Latent map GIF", lambda: latent_animation_gif(job.snapshot().history),
        file_name=f"vae-run{job.id}-latents.gif", mime="image/gif", on_click="ignore", key="train_download_gif",
        help="The latent map at each snapshot of the run, as an animation (one frame per snapshot).",
    )  # fmt: skip
    png_col.download_button(
        "Digits PNG", lambda: views_grid_png(snapshot_at(job.snapshot().history, shown_steps.get(job.id))),
        file_name=f"vae-run{job.id}-digits.png", mime="image/png", on_click="ignore", key="train_download_png",
        help="The validation digits, their reconstructions and the prior samples at the step on screen.",
    )  # fmt: skip


def draw_views(job: jobs.TrainingJob, snap: jobs.JobSnapshot) -> None:
    if not snap.events:
        return
    history = snap.history
    # One container whatever it holds (nothing, the slider, slider and notice): elements that
    # appear above the charts would shift their positions, and the browser would remount them.
    with st.container():
        views = rewound_views(job, history) if history else None
        rewound = views is not None and views is not history[-1]
        if rewound:
            st.info(
                f"Showing the run as it was at step {views.step:,} (epoch {views.epoch:.2f}): curves, "
                "pictures, latent map and KL per dimension. Drag the slider to its right end (now) to "
                "follow the run again."
            )
    events = events_until(snap.events, views.step) if rewound else snap.events
    titles = {**dict(CURVE_TERMS), "elbo": bound_title(job.train_config.objective, job.train_config.k)}
    for column, (term, _) in zip(st.columns(len(CURVE_TERMS)), CURVE_TERMS, strict=True):
        title = titles[term]
        column.vega_lite_chart(
            curve_frame(events, term), curve_spec(title), key=f"train_curve_{term}", width="stretch",
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
    if views is None:
        return
    latent_dim = job.model_config.latent_dim
    drawn = drawn_views(views)
    pictures, scatter = st.columns([2, 3])
    with pictures:
        st.image(drawn["digits_png"], caption="Validation digits (top) and their reconstructions (bottom)")
        st.image(
            drawn["samples_png"],
            caption="16 fixed prior samples z ~ N(0, I), decoded by the model at this step",
        )
        draw_kl_per_dimension(views, drawn["kl"])
    with scatter:
        # A new snapshot is a new points payload (a few kB) for the same component: the canvas
        # redraws its dots, nothing is rebuilt. No decoder is sent: the weights change as it trains.
        latent_plane(
            None, None, key=f"train_latents:{job.id}", payload=drawn["payload"], bounds=drawn["bounds"],
            height=LATENT_HEIGHT, refit=True, pick_digits=False,
            note="Live: hover decodes once the run has finished (open it on the Latent map).", prompt="",
        )  # fmt: skip
        pca = f" Axes: {', '.join(views.axis_titles)}." if latent_dim > 2 else ""
        st.caption(f"Encoder means of {len(views.plane):,} validation digits at step {views.step:,}.{pca}")
    st.session_state.setdefault(SHOWN_KEY, {})[job.id] = views.step


def compare_runs() -> None:
    """Overlay the curves of this session's runs (shown once there are two with progress)."""
    runs = [job for job in st.session_state.get(RUNS_KEY, []) if job.snapshot().events]
    if len(runs) < 2:
        return
    st.subheader("Compare runs")
    by_id = {job.id: job for job in runs}
    left, right = st.columns([3, 1])
    chosen = left.multiselect("Runs", list(by_id), default=list(by_id)[-2:], key=COMPARE_PICK,
                              format_func=lambda job_id: by_id[job_id].name)  # fmt: skip
    terms = dict(CURVE_TERMS)
    term = right.selectbox("Term", list(terms), format_func=terms.get, key=COMPARE_TERM)
    if not chosen:
        st.caption("Choose runs to compare.")
        return
    names = [by_id[job_id].name for job_id in chosen]
    frame = comparison_frame({by_id[job_id].name: by_id[job_id].snapshot().events for job_id in chosen}, term)
    st.vega_lite_chart(frame, comparison_spec(terms[term], names), key="train_compare", width="stretch",
                       height=COMPARE_HEIGHT)  # fmt: skip
    st.caption(
        "Solid: each run's smoothed training curve; dashed with points: its validation value after each "
        "epoch (nats per image). Runs on different data or batch sizes still share the epoch axis."
    )


def live_panel(job: jobs.TrainingJob, status_at_render: str) -> None:
    job.touch()
    snap = job.snapshot()
    if snap.status != status_at_render:
        st.rerun()  # the whole page: buttons change and polling stops (or slows) from here
    draw_progress(job, snap)
    draw_views(job, snap)
    compare_runs()


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
    left, right, gif_col, png_col = st.columns(4)
    export_buttons(job, gif_col, png_col)
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
        draw_progress(job, snap)
        draw_views(job, snap)
        compare_runs()
