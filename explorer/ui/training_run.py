"""The Train page's views of a run: its progress, curves, pictures, latent map and KL bars (live or
rewound with the time-travel slider), the export buttons, and the comparison of a session's runs.

Drawn from a job's snapshot (explorer/training/history.py); the page decides when (a polling
fragment while the run trains, once when it has ended).
"""

import numpy as np
import streamlit as st

from explorer.figures.pictures import digit_grid_png
from explorer.figures.plots import plane_bounds
from explorer.figures.training import (
    CURVE_TERMS,
    bound_title,
    comparison_frame,
    comparison_spec,
    curve_chart_frame,
    curve_spec,
    events_until,
    format_duration,
    kl_frame,
    kl_spec,
    metric_tiles,
)
from explorer.training.exports import latent_animation_gif, snapshot_at, views_grid_png
from explorer.training.history import HISTORY_SIZE, JobSnapshot, LiveViews
from explorer.training.jobs import ENDED, PAUSED, RUNNING, TrainingJob
from explorer.ui.latent_plane import latent_plane, points_payload

REWIND_SLIDER = "train_rewind"  # a snapshot's step, or NOW
REWIND_JOB = "train_rewind_job"  # the run the slider belongs to: a new run starts at NOW
FOLLOW_KEY = "train_follow"  # {job id: NOW or the step chosen}; only a move of the slider changes it
NOW = -1  # the slider's right end: the newest snapshot, whichever step that is
COMPARE_PICK, COMPARE_TERM = "train_compare_runs", "train_compare_term"
SHOWN_KEY = "train_shown_steps"  # {job id: step of the snapshot on screen}, for the PNG download
DRAWN_KEY = "train_drawn_views"  # (snapshot, its pictures and payload) on screen: see drawn_views
CURVE_HEIGHT, LATENT_HEIGHT, KL_HEIGHT, COMPARE_HEIGHT = 280, 400, 170, 340


def draw_progress(job: TrainingJob, snap: JobSnapshot) -> None:
    last = snap.last
    if last is None:
        st.progress(0.0, text="Starting… (the first progress report comes after a few steps)")
        return
    state = {PAUSED: " · paused", RUNNING: ""}.get(snap.status, f" · {snap.status}")
    if snap.stop_requested and snap.status not in ENDED:
        state = " · stopping…"
    if snap.status in ENDED:  # no speed or ETA once nothing runs
        text = f"{snap.status} at step {snap.step:,} of {snap.total_steps:,} · epoch {last['epoch']:.2f}"
    else:
        text = (
            f"step {snap.step:,} / {snap.total_steps:,} · epoch {last['epoch']:.2f} · "
            f"{snap.images_per_s:,.0f} images/s · ETA {format_duration(snap.eta_s)}{state}"
        )
    st.progress(snap.progress, text=text)
    shown = st.session_state.get(FOLLOW_KEY, {}).get(job.id, NOW)  # the time-travel slider's step
    events = snap.events if shown == NOW else events_until(snap.events, shown)
    tiles = metric_tiles(events, job.train_config.objective, job.train_config.k)
    for col, (label, value, help_text) in zip(st.columns(len(tiles)), tiles, strict=True):
        col.metric(label, value, help=help_text)


def rewind_key(job_id: int) -> str:
    return f"{REWIND_SLIDER}_{job_id}"  # a widget per run: a new run starts with a fresh slider at NOW


def slider_moved(job_id: int) -> None:
    """on_change of the time-travel slider: the one place where the shown step changes."""
    st.session_state.setdefault(FOLLOW_KEY, {})[job_id] = st.session_state[rewind_key(job_id)]


def rewound_views(job: TrainingJob, history: list[LiveViews]) -> LiveViews:
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
        help=f"The run keeps up to {HISTORY_SIZE} snapshots, spread evenly over its length. "
        "At the right end (now) the view follows the run as it trains.",
    )  # fmt: skip
    return newest if chosen == NOW else history[earlier.index(chosen)]


def drawn_views(views: LiveViews) -> dict:
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


def draw_kl_per_dimension(views: LiveViews, frame) -> None:
    latent_dim = len(views.kl_per_dim)
    st.vega_lite_chart(frame, kl_spec(), key="train_kl_dims", width="stretch", height=KL_HEIGHT)
    st.caption(
        f"**{views.active_count} of {latent_dim}** latent dimensions active. Bars: KL(q(z_u|x) ‖ p(z_u)) per "
        f"dimension, averaged over the {len(views.plane):,} validation digits. A dimension is active when its "
        "mean E_q[z_u] varies across digits (variance > 0.01, Burda et al. 2015); a collapsed one ignores x "
        "and its KL falls to ~0."
    )


def export_buttons(job: TrainingJob, gif_col, png_col) -> None:
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


def draw_views(job: TrainingJob, snap: JobSnapshot) -> None:
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
                f"Showing the run as it was at step {views.step:,} (epoch {views.epoch:.2f}): metrics, curves, "
                "pictures, latent map and KL per dimension. Drag the slider to its right end (now) to "
                "follow the run again."
            )
    events = events_until(snap.events, views.step) if rewound else snap.events
    titles = {**dict(CURVE_TERMS), "elbo": bound_title(job.train_config.objective, job.train_config.k)}
    for column, (term, _) in zip(st.columns(len(CURVE_TERMS)), CURVE_TERMS, strict=True):
        title = titles[term]
        column.vega_lite_chart(
            curve_chart_frame(events, term), curve_spec(title), key=f"train_curve_{term}", width="stretch",
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
        st.image(
            drawn["digits_png"],
            caption="Validation digits (top) and their reconstructions (bottom)",
            alt="Validation digits and, below them, the model's reconstructions",
        )
        st.image(
            drawn["samples_png"],
            caption="16 fixed prior samples z ~ N(0, I), decoded by the model at this step",
            alt="16 digits decoded from fixed prior samples at this training step",
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


def compare_runs(runs: list[TrainingJob]) -> None:
    """Overlay the curves of this session's `runs` (shown once there are two with progress)."""
    runs = [job for job in runs if job.snapshot().events]
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
