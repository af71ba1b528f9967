"""Background training jobs (explorer.training.jobs) and the Train page's figure builders.

Tiny models on the bundled 5k sample: every test takes a fraction of a second of training.
"""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import torch

from explorer.figures.training import (
    EPOCH,
    NO_DATA,
    SERIES,
    SMOOTHED,
    STEP,
    VALIDATION,
    curve_frame,
    curve_spec,
    epoch_rows,
    format_duration,
    smooth,
)
from explorer.training import history, jobs
from explorer.training.history import next_snapshot_at
from vae_core import ConfigError, ModelConfig, TrainConfig, load_checkpoint

TINY = ModelConfig(latent_dim=2, hidden=(32,))


@pytest.fixture(scope="module")
def data():
    return jobs.load_training_data(jobs.DATA_SAMPLE)


@pytest.fixture
def make_job(data):
    """Build jobs with tiny settings; whatever a test leaves running is stopped afterwards."""
    made = []

    def make(model_config=TINY, **overrides):
        job_options = {
            k: overrides.pop(k)
            for k in ("idle_timeout_s", "is_watched", "on_end", "number")
            if k in overrides
        }
        settings = {
            "epochs": 1,
            "batch_size": 64,
            "device": "cpu",
            "num_threads": 1,
            "log_every": 2,
            **overrides,
        }
        job = jobs.TrainingJob(
            model_config,
            TrainConfig(**settings),
            data,
            snapshot_every_s=0.0,
            snapshot_share=1.0,
            **job_options,
        )
        made.append(job)
        return job

    yield make
    for job in made:
        job.stop()
        assert job.join(30), f"job {job.id} did not end"


def wait_until(condition, timeout: float = 30.0, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(0.02)


def test_training_data_holds_out_validation_digits_as_uint8(data, mnist_dir, monkeypatch):
    assert (len(data.train), len(data.validation)) == (4500, 500)
    assert data.train.pixels.dtype == torch.uint8 and "shipped with the app" in data.note
    # both splits hold every digit (MNIST's first 5,000 training images: 393 to 563 of each class)
    assert torch.bincount(data.validation.labels).min() > 20 and torch.bincount(data.train.labels).min() > 300
    monkeypatch.setenv("VAE_DATA_DIR", str(mnist_dir))
    full = jobs.load_training_data(jobs.DATA_FULL, allow_download=False)
    assert (len(full.train), len(full.validation)) == (50_000, 10_000)
    monkeypatch.delenv("VAE_DATA_DIR")
    fallback = jobs.load_training_data(jobs.DATA_FULL, allow_download=False)
    assert len(fallback.train) == 4500 and "not available" in fallback.note


def test_a_job_trains_in_its_thread_and_publishes_events_views_and_a_checkpoint(make_job):
    ended = []
    job = make_job(on_end=ended.append).start()
    assert job.join(60) and job.status == jobs.FINISHED
    snap = job.snapshot()
    kinds = [e["kind"] for e in snap.events]
    steps_per_epoch = 4500 // 64
    assert kinds.count("step") == steps_per_epoch // 2 and kinds.count("epoch") == 1 and kinds[-1] == "done"
    assert snap.step == snap.total_steps == steps_per_epoch and snap.progress == 1.0
    assert snap.images_per_s > 0 and snap.wall_images_per_s > 0 and snap.eta_s == 0
    views = snap.views
    assert views.step == steps_per_epoch
    assert views.originals.shape == views.reconstructions.shape == (8, 784)
    assert views.samples.shape == (16, 784) and views.plane.shape == (500, 2) and views.labels.shape == (500,)
    assert 0 <= views.reconstructions.min() and views.reconstructions.max() <= 1
    assert ended == [job] and job.has_model
    checkpoint = load_checkpoint(job.checkpoint_bytes())
    assert checkpoint.model_config == TINY and checkpoint.metrics["steps"] == steps_per_epoch
    assert checkpoint.train_config["num_threads"] == 1 and checkpoint.curve
    for name, tensor in checkpoint.model.state_dict().items():
        assert torch.equal(tensor, job.model.state_dict()[name])
    rows = job.metrics_csv().splitlines()
    assert rows[0].startswith("kind,step,") and "val_elbo" in rows[0] and len(rows) == len(snap.events) + 1


def test_live_views_use_pca_for_more_than_two_latent_dimensions(make_job):
    job = make_job(ModelConfig(latent_dim=5, hidden=(32,)), epochs=0.1).start()
    assert job.join(60) and job.status == jobs.FINISHED
    views = job.snapshot().views
    assert views.plane.shape == (500, 2) and views.axis_titles[0].startswith("PC1")


def test_pause_holds_progress_and_resume_continues(make_job):
    job = make_job(epochs=500).start()
    wait_until(lambda: job.snapshot().step >= 4, message="first steps")
    job.pause()
    assert job.status == jobs.PAUSED and job.wait_parked(30)
    held = job.snapshot().step
    time.sleep(0.4)
    assert job.snapshot().step == held and job.is_alive()
    job.resume()
    assert job.status == jobs.RUNNING
    wait_until(lambda: job.snapshot().step > held + 4, message="progress after resume")


def test_stop_ends_the_run_early_and_keeps_the_model(make_job):
    job = make_job(epochs=500).start()
    initial = {k: v.clone() for k, v in job.model.state_dict().items()}
    wait_until(lambda: job.snapshot().step >= 10, message="first steps")
    job.stop()
    assert job.join(30) and job.status == jobs.STOPPED
    snap = job.snapshot()
    assert snap.stop_reason == "user" and snap.events[-1]["stopped"] and snap.step < snap.total_steps
    assert snap.events[-1]["validation"]["elbo"] < 0
    assert job.has_model and job.checkpoint().metrics["steps"] == snap.step
    assert any(not torch.equal(v, initial[k]) for k, v in job.model.state_dict().items())


def test_stop_while_paused_ends_the_run(make_job):
    job = make_job(epochs=500).start()
    wait_until(lambda: job.snapshot().step >= 2, message="first steps")
    job.pause()
    assert job.wait_parked(30)
    job.stop()
    assert job.join(30) and job.status == jobs.STOPPED and job.has_model


def test_a_diverging_run_reports_failed_with_the_trainers_message(make_job):
    ended = []
    job = make_job(on_end=ended.append)
    with torch.no_grad():
        next(job.model.parameters()).fill_(math.nan)  # every loss is NaN from the first step
    job.start()
    assert job.join(30) and job.status == jobs.FAILED
    snap = job.snapshot()
    assert "diverged" in snap.error and "learning rate" in snap.error
    assert not job.has_model and ended == []
    with pytest.raises(RuntimeError, match="failed"):
        job.checkpoint_bytes()


def test_bad_settings_raise_before_any_thread_starts(make_job):
    before = jobs.active_job_count()
    with pytest.raises(ConfigError, match="batch size"):
        make_job(batch_size=8192)
    assert jobs.active_job_count() == before


def test_an_unpolled_job_stops_itself(make_job):
    job = make_job(epochs=500, idle_timeout_s=0.3).start()
    assert job.join(30), "an unwatched job kept training"
    snap = job.snapshot()
    assert job.status == jobs.STOPPED and snap.stop_reason == "idle" and job.has_model


def test_an_unpolled_job_frees_its_thread_and_its_slot(make_job):
    """Tabs closed, nobody polls: the thread itself must end (not only the status), and the slot with it."""
    job = make_job(epochs=500, idle_timeout_s=0.2, is_watched=lambda: False).start()
    wait_until(lambda: job.snapshot().events, message="a first event")
    assert job.join(30) and not job.is_alive() and not job._thread.is_alive()
    assert not any(
        other is job for other in jobs._active if other.is_alive()
    )  # the server cap counts it no more
    assert job.snapshot().stop_reason == "idle"


def test_a_paused_unpolled_job_also_ends(make_job):
    job = make_job(epochs=500, idle_timeout_s=0.3).start()
    job.pause()
    assert job.join(30) and job.snapshot().stop_reason == "idle"


def test_run_numbers_are_the_callers_not_the_servers(make_job):
    first, second = make_job(number=1), make_job(number=1)
    assert first.id != second.id and first.key != second.key  # still unique server-wide
    assert first.name.startswith("run 1:") and second.name.startswith("run 1:")


def test_an_unpolled_job_keeps_going_while_its_session_is_connected(make_job):
    job = make_job(epochs=500, idle_timeout_s=0.1, is_watched=lambda: True).start()
    time.sleep(0.6)
    assert job.is_alive() and job.status == jobs.RUNNING


def test_a_touched_job_survives_a_short_idle_timeout(make_job):
    job = make_job(epochs=500, idle_timeout_s=0.5).start()
    for _ in range(8):
        job.touch()
        time.sleep(0.1)
    assert job.is_alive() and job.snapshot().stop_reason is None


def test_two_jobs_are_independent(make_job):
    first = make_job(epochs=500, seed=1).start()
    second = make_job(epochs=500, seed=2).start()
    assert first.key != second.key and first.model is not second.model
    wait_until(lambda: first.snapshot().step >= 4 and second.snapshot().step >= 4, message="both train")
    first.pause()
    assert first.wait_parked(30)
    held = first.snapshot().step
    moving = second.snapshot().step
    wait_until(lambda: second.snapshot().step > moving + 4, message="the other job to keep training")
    assert first.snapshot().step == held
    second.stop()
    assert second.join(30) and second.status == jobs.STOPPED
    assert first.status == jobs.PAUSED and first.is_alive()
    a, b = first.snapshot().events, second.snapshot().events
    assert a[0]["elbo"] != b[0]["elbo"]  # different seeds, different runs


# ------------------------------------------------------------------------------ figures
def test_smooth_is_a_bias_corrected_moving_average():
    assert smooth([5.0, 5.0, 5.0]) == pytest.approx([5.0, 5.0, 5.0])
    values = smooth([0.0, 10.0], weight=0.5)
    assert values[0] == 0.0 and math.isclose(values[1], (0.5 * 0.5 * 0 + 0.5 * 10) / 0.75)


def _event(kind, step, epoch, validation=None, stopped=False):
    return {"kind": kind, "step": step, "epoch": epoch, "elbo": -100.0 - step, "recon": -90.0, "kl": 10.0 + step,
            "validation": validation, "stopped": stopped}  # fmt: skip


def test_curve_frames_hold_steps_smoothing_epochs_and_validation():
    val = {"elbo": -99.0, "recon": -90.0, "kl": 9.0}
    events = [_event("step", s, s / 10) for s in (2, 4, 6, 8, 10)] + [_event("epoch", 10, 1.0, val)]
    events += [_event("step", 12, 1.2), _event("done", 13, 1.3, val, stopped=True)]
    assert [e["step"] for e in epoch_rows(events)] == [10, 13]  # the stopped run's last point counts
    frame = curve_frame(events, "kl")
    assert list(frame.columns) == ["epoch", "value", "series"]
    counts = frame["series"].value_counts().to_dict()
    assert counts == {STEP: 6, SMOOTHED: 6, EPOCH: 2, VALIDATION: 2}
    validation = frame[frame["series"] == VALIDATION]
    assert validation["value"].tolist() == [9.0, 9.0] and validation["epoch"].tolist() == [1.0, 1.3]
    smoothed = frame[frame["series"] == SMOOTHED]["value"].to_numpy()
    assert smoothed == pytest.approx(smooth([12.0, 14.0, 16.0, 18.0, 20.0, 22.0]))
    assert curve_frame([], "elbo").empty


def test_long_runs_are_thinned_but_keep_the_newest_point():
    long_run = [_event("step", s, s / 100) for s in range(1, 2001)]
    frame = curve_frame(long_run, "elbo", max_points=500)
    smoothed = frame[frame["series"] == SMOOTHED]
    assert len(smoothed) == 500 and smoothed["epoch"].iloc[-1] == 20.0
    assert smoothed["value"].iloc[-1] == pytest.approx(smooth([e["elbo"] for e in long_run])[-1])


def test_chart_specs_are_constant_and_name_every_series():
    spec = curve_spec("ELBO")
    assert spec == curve_spec("ELBO")  # a spec that changed between polls would redraw from scratch
    assert spec["encoding"]["color"]["scale"]["domain"] == list(SERIES)
    filters = [layer["transform"][0]["filter"]["equal"] for layer in spec["layer"]]
    # validation has a line and a point layer; the last layer writes "no data yet" when there is none
    assert filters == [*SERIES[:3], VALIDATION, VALIDATION, NO_DATA]


def test_duration_text():
    assert format_duration(math.inf) == "—" and format_duration(42.4) == "42 s"
    assert format_duration(185) == "3 min 05 s" and format_duration(3725) == "1 h 02 min"


def test_simultaneous_starts_respect_the_server_cap():
    """Sessions pressing Start at the same moment must not all get past the cap."""
    data = jobs.load_training_data(jobs.DATA_SAMPLE)
    barrier, outcomes, started = threading.Barrier(4), [], []

    def press_start(seed: int) -> None:
        job = jobs.TrainingJob(
            ModelConfig(latent_dim=2, hidden=(16,)), TrainConfig(epochs=50, num_threads=1, seed=seed), data
        )
        barrier.wait()
        try:
            started.append(job.start(max_active=2))
            outcomes.append("started")
        except ConfigError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=press_start, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert outcomes.count("started") == 2, outcomes
        assert all("its limit" in o for o in outcomes if o != "started")
    finally:
        for job in started:
            job.stop()
        for job in started:
            assert job.join(60)


def test_freed_heap_of_a_finished_thread_goes_back_to_the_os():
    # A fresh interpreter: a thread allocates 240 MB in heap-sized blocks (below glibc's mmap
    # threshold) and frees them; glibc keeps the pages until return_freed_heap_to_os trims them.
    script = textwrap.dedent("""
        import threading, numpy as np
        from vae_core.heap import return_freed_heap_to_os
        def rss_mb():
            return int(open('/proc/self/statm').read().split()[1]) * 4096 / 2**20
        def churn():
            blocks = [np.ones(60_000 // 8) for _ in range(4000)]
            del blocks[:-1]
        worker = threading.Thread(target=churn); worker.start(); worker.join()
        before = rss_mb(); return_freed_heap_to_os(); after = rss_mb()
        print(round(before), round(after))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    before, after = map(int, run.stdout.split())
    assert before - after > 150, (before, after)


def test_snapshots_keep_to_their_clock_unless_slow_then_to_their_share_of_the_run():
    assert next_snapshot_at(10.0, 0.01, every_s=1.0, share=0.03) == 11.0  # cheap: the clock decides
    later = next_snapshot_at(10.0, 0.3, every_s=1.0, share=0.03)  # slow: 0.3 s is 3% of 10 s
    assert later == pytest.approx(20.0)


def test_a_slow_snapshot_is_not_taken_at_every_event(data):
    job = jobs.TrainingJob(
        TINY, TrainConfig(epochs=1, batch_size=64, device="cpu", num_threads=1, log_every=2), data,
        snapshot_every_s=0.0, snapshot_share=0.01,
    )  # fmt: skip
    taken = []
    compute = job._compute_views

    def slow_views(step, epoch):
        time.sleep(0.02)  # at least 2 s until the next one at a 1% share
        taken.append((time.monotonic(), step))
        return compute(step, epoch)

    job._compute_views = slow_views
    job.start()
    assert job.join(60) and job.status == jobs.FINISHED
    events = job.snapshot().events
    step_events = {e["step"] for e in events if e["kind"] == "step"}
    ends = {e["step"] for e in events if e["kind"] != "step"}  # epoch and end: always a snapshot
    on_steps = [(at, step) for at, step in taken if step not in ends]
    assert 1 <= len(on_steps) < len(step_events)
    assert all(b[0] - a[0] >= 2.0 for a, b in itertools.pairwise(on_steps))


def test_snapshot_share_must_be_a_share(data):
    with pytest.raises(ValueError, match="snapshot_share"):
        jobs.TrainingJob(TINY, TrainConfig(epochs=1, device="cpu"), data, snapshot_share=0.0)


def test_recent_speed_is_images_over_seconds_of_the_recent_windows():
    # two windows of 1,280 images: 0.1 s and 0.4 s, so 2,560 images in 0.5 s
    events = [{"kind": "step", "images_per_s": 12_800.0}, {"kind": "step", "images_per_s": 3_200.0}]
    snap = history.JobSnapshot(
        job_id=1, status=jobs.RUNNING, events=events, history=[], error=None, stop_requested=False,
        stop_reason=None, active_s=1.0,
    )  # fmt: skip
    assert snap.images_per_s == pytest.approx(2_560 / 0.5)
