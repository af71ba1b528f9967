"""A run's snapshot history (time travel), live KL per latent dimension, run comparison data, and
the Train page's picture exports (latent GIF, digit-grid PNG).

Tiny models on the bundled 5k sample, as in test_training_jobs.py.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from explorer.figures.plots import DIGIT_COLOURS
from explorer.figures.training import (
    ACTIVE,
    INACTIVE,
    SMOOTHED,
    VALIDATION,
    comparison_frame,
    comparison_spec,
    curve_frame,
    events_until,
    kl_frame,
    kl_spec,
)
from explorer.training import history, jobs
from explorer.training.exports import (
    BACKGROUND,
    DIGIT_RGB,
    GIF_SCALE,
    SCATTER_PIXELS,
    latent_animation_gif,
    latent_frames,
    scatter_picture,
    snapshot_at,
    views_grid,
    views_grid_png,
)
from vae_core import ModelConfig, TrainConfig, reconstruct
from vae_core.diagnostics import latent_activity

LATENT_DIM = 4


def fake_views(step: int, latent_dim: int = LATENT_DIM, points: int = 5) -> history.LiveViews:
    """A snapshot whose arrays encode its step, so a test can tell snapshots apart."""
    fill = step % 256
    return history.LiveViews(
        step=step, epoch=step / 100, image_size=28,
        originals=np.zeros((history.RECON_DIGITS, 784), np.float32),
        recon_pixels=np.full((history.RECON_DIGITS, 784), fill, np.uint8),
        sample_pixels=np.full((history.PRIOR_SAMPLES, 784), fill, np.uint8),
        plane=np.full((points, 2), step, np.float16), labels=np.arange(points) % 10, axis_titles=("z₁", "z₂"),
        kl_per_dim=np.full(latent_dim, step, np.float32), active=np.arange(latent_dim) % 2 == 0,
    )  # fmt: skip


# ------------------------------------------------------------------------------ history
def test_history_keeps_everything_until_it_is_full():
    history = jobs.SnapshotHistory(capacity=10)
    for step in range(5):
        history.add(fake_views(step))
    assert [v.step for v in history.snapshots()] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("capacity", [4, 7, 60])
def test_history_is_bounded_evenly_thinned_and_keeps_the_first_and_newest(capacity):
    history = jobs.SnapshotHistory(capacity)
    for step in range(1, 1001):
        history.add(fake_views(step))
        steps = [v.step for v in history.snapshots()]
        assert len(steps) <= capacity and steps[0] == 1 and steps[-1] == step
        assert steps == sorted(set(steps))
    evenly_spaced = np.diff(steps[:-1])  # all but the newest sit on one stride
    assert len(set(evenly_spaced.tolist())) == 1
    assert len(steps) >= capacity // 2  # thinning halves at most: the history stays useful


def test_a_snapshot_at_the_same_step_replaces_the_newest():
    """An epoch or end event right after a step event shows the same model: one place, the later data."""
    history = jobs.SnapshotHistory(capacity=4)
    history.add(fake_views(10))
    later = fake_views(10)
    history.add(later)
    assert history.snapshots() == [later]
    for step in (20, 30, 40, 50, 50):
        history.add(fake_views(step))
    steps = [v.step for v in history.snapshots()]
    assert steps[0] == 10 and steps[-1] == 50 and len(steps) == len(set(steps)) <= 4


def test_a_history_needs_room_for_first_and_newest():
    with pytest.raises(ValueError, match="capacity"):
        jobs.SnapshotHistory(capacity=1)


# ------------------------------------------------------------------------------ a real run
@pytest.fixture(scope="module")
def data():
    return jobs.load_training_data(jobs.DATA_SAMPLE)


@pytest.fixture(scope="module")
def finished_run(data):
    """A run that snapshots at every progress event into a history too small to keep them all."""
    job = jobs.TrainingJob(
        ModelConfig(latent_dim=LATENT_DIM, hidden=(32,)),
        TrainConfig(epochs=1, batch_size=64, device="cpu", num_threads=1, log_every=2),
        data, snapshot_every_s=0.0, snapshot_share=1.0, history_size=6,
    )  # fmt: skip
    job.start()
    assert job.join(60) and job.status == jobs.FINISHED
    return job, data


def test_a_run_keeps_a_bounded_history_from_its_first_event_to_its_end(finished_run):
    job, _ = finished_run
    snap = job.snapshot()
    steps = [views.step for views in snap.history]
    assert len(steps) <= 6 and steps == sorted(set(steps))
    assert steps[0] == 0 and steps[-1] == snap.step  # the untrained model and the final one
    assert snap.views is snap.history[-1]
    first, last = snap.history[0], snap.history[-1]
    assert not np.array_equal(first.plane, last.plane) and not np.array_equal(
        first.sample_pixels, last.sample_pixels
    )
    assert first.originals is last.originals and first.labels is last.labels  # fixed inputs are not copied


def test_snapshots_are_stored_small(finished_run):
    job, data = finished_run
    views = job.snapshot().views
    assert (
        views.recon_pixels.dtype == views.sample_pixels.dtype == np.uint8 and views.plane.dtype == np.float16
    )
    n = len(data.validation)
    expected = (history.RECON_DIGITS + history.PRIOR_SAMPLES) * 784 + n * 2 * 2 + LATENT_DIM * (4 + 1)
    assert views.nbytes == expected
    # uint8 costs at most half a grey level against the model's real reconstructions
    recon_input = data.validation.subset(slice(0, history.RECON_DIGITS)).fixed_binary()
    exact = reconstruct(job.model, recon_input).numpy()
    assert np.abs(views.reconstructions - exact).max() <= 0.5 / 255 + 1e-6
    assert 0 <= views.samples.min() and views.samples.max() <= 1


def test_kl_per_dimension_and_active_units_are_latent_activity_on_the_fixed_validation_digits(finished_run):
    job, data = finished_run
    views = job.snapshot().views  # taken at the end: the model as it is now
    batch = data.validation.subset(slice(0, len(views.plane))).fixed_binary()
    expected = latent_activity(job.model, batch)
    np.testing.assert_allclose(views.kl_per_dim, expected.kl_per_dim.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(views.active, expected.active.numpy())
    assert views.active_count == expected.active_count
    assert views.kl_per_dim.sum() > 0


def test_events_until_cuts_the_curves_where_a_snapshot_was_taken(finished_run):
    job, _ = finished_run
    snap = job.snapshot()
    early = snap.history[1]
    cut = events_until(snap.events, early.step)
    assert cut and cut[-1]["step"] == early.step and len(cut) < len(snap.events)
    assert curve_frame(cut, "elbo")["epoch"].max() == pytest.approx(early.epoch)


# ------------------------------------------------------------------------------ figures
def test_kl_frame_has_one_row_per_dimension_in_order():
    frame = kl_frame([0.5, 0.001, 3.0], [True, False, True])
    assert frame["dimension"].tolist() == [1, 2, 3] and frame["kl"].tolist() == [0.5, 0.001, 3.0]
    assert frame["state"].tolist() == [ACTIVE, INACTIVE, ACTIVE]
    assert kl_spec()["encoding"]["color"]["scale"]["domain"] == [ACTIVE, INACTIVE]


def _run_events(offset: float) -> list[dict]:
    steps = [{"kind": "step", "step": s, "epoch": s / 10, "elbo": -200.0 + s + offset, "recon": -150.0,
              "kl": 20.0, "validation": None, "stopped": False} for s in range(1, 11)]  # fmt: skip
    epoch = {
        **steps[-1],
        "kind": "epoch",
        "validation": {"elbo": -150.0 + offset, "recon": -130.0, "kl": 20.0},
    }
    return steps + [epoch]


def test_a_comparison_holds_each_runs_smoothed_curve_and_validation_under_its_name():
    runs = {"run 1: 2-D MLP": _run_events(0.0), "run 2: 8-D MLP": _run_events(5.0)}
    frame = comparison_frame(runs, "elbo")
    assert set(frame["run"]) == set(runs) and set(frame["series"]) == {SMOOTHED, VALIDATION}
    for name, events in runs.items():
        own = frame[frame["run"] == name]
        expected = curve_frame(events, "elbo")
        assert own[own["series"] == SMOOTHED]["value"].tolist() == pytest.approx(
            expected[expected["series"] == SMOOTHED]["value"].tolist()
        )
        assert own[own["series"] == VALIDATION]["value"].tolist() == [events[-1]["validation"]["elbo"]]
    spec = comparison_spec("ELBO", list(runs))
    assert spec["encoding"]["color"]["field"] == "run" and spec["encoding"]["color"]["scale"][
        "domain"
    ] == list(runs)
    assert comparison_frame({}, "elbo").empty


# ------------------------------------------------------------------------------ exports
def test_scatter_picture_puts_each_digit_where_it_belongs_in_its_colour():
    size = 101
    plane = [[0.0, 0.0], [1.0, 1.0], [-1.0, -1.0]]
    picture = scatter_picture(plane, [3, 7, 9], size=size, bounds=(-1.0, 1.0, -1.0, 1.0))
    assert picture.shape == (size, size, 3) and picture.dtype == np.uint8
    centre, last = size // 2, size - 1
    assert tuple(picture[centre, centre]) == tuple(DIGIT_RGB[3])
    assert tuple(picture[0, last]) == tuple(DIGIT_RGB[7])  # (1, 1): top right, y grows upwards
    assert tuple(picture[last, 0]) == tuple(DIGIT_RGB[9])
    assert tuple(picture[centre // 2, centre // 2]) == BACKGROUND
    assert DIGIT_RGB[3].tolist() == [int(DIGIT_COLOURS[3][i : i + 2], 16) for i in (1, 3, 5)]


def test_the_latent_gif_has_one_frame_per_snapshot_coloured_by_digit(finished_run):
    job, _ = finished_run
    history = job.snapshot().history
    gif = Image.open(io.BytesIO(latent_animation_gif(history)))
    assert gif.format == "GIF" and gif.n_frames == len(history)
    assert gif.size == (SCATTER_PIXELS * GIF_SCALE, SCATTER_PIXELS * GIF_SCALE)
    gif.seek(gif.n_frames - 1)
    colours = {tuple(c) for c in np.asarray(gif.convert("RGB")).reshape(-1, 3)}
    assert {tuple(c) for c in DIGIT_RGB.tolist()} <= colours  # every digit class is drawn
    assert len(latent_frames(history)) == len(history)


def test_the_digit_grid_png_holds_originals_reconstructions_and_samples(finished_run):
    job, _ = finished_run
    views = job.snapshot().views
    picture = np.asarray(Image.open(io.BytesIO(views_grid_png(views))))
    rows = len(views_grid(views)) // len(views.originals)
    scale, cell = 4, 28 + 1  # digit_grid_png's default enlargement; tile_images pads each digit by 1
    assert picture.shape == ((rows * cell + 1) * scale, (len(views.originals) * cell + 1) * scale)
    first_reconstruction = picture[
        (cell + 1) * scale : (cell + 29) * scale : scale, scale : 29 * scale : scale
    ]
    np.testing.assert_array_equal(first_reconstruction.reshape(-1), views.recon_pixels[0])


def test_the_png_follows_the_step_on_screen_or_falls_back_to_the_newest():
    history = [fake_views(step) for step in (0, 10, 20)]
    assert snapshot_at(history, 10) is history[1]
    assert snapshot_at(history, 15) is history[-1] and snapshot_at(history, None) is history[-1]
