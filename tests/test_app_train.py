"""The Train page under AppTest: the form, a live run polled by repeated runs, stop, and the trained
model showing up in the model picker of another page.

AppTest ignores `run_every`, so the tests call `run()` again and again, as the fragment would.
"""

from __future__ import annotations

import json
import re
import struct
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest

from explorer.figures.training import CURVE_TERMS, NO_DATA, epoch_rows
from explorer.training import history, jobs
from vae_core.diagnostics import latent_activity

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TRAIN_PAGE = "explorer/pages/train.py"
DRAWN_KEY = "train_drawn_views"  # the page's (snapshot, its pictures and payload) on screen


@pytest.fixture
def app(monkeypatch):
    monkeypatch.setenv("VAE_OFFLINE", "1")
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(TRAIN_PAGE)
    at.run()
    yield at
    job = at.session_state["train_job"] if "train_job" in at.session_state else None
    if job is not None:
        job.stop()
        assert job.join(30)


def fill_form(at: AppTest, **values) -> None:
    """Tiny settings on the bundled sample, long enough (in epochs) that we can stop it mid-run."""
    settings = {
        "train_data": jobs.DATA_SAMPLE,
        "train_hidden": "32",
        "train_epochs": 200.0,
        "train_batch": 64,
    }
    settings.update(values)
    for key, value in settings.items():
        widget = next(
            w for kind in ("selectbox", "text_input", "number_input") for w in at.get(kind) if w.key == key
        )
        widget.set_value(value)


def start(at: AppTest) -> None:
    next(b for b in at.button if b.label == "Start training").click()
    at.run()


def run_until(at: AppTest, condition, timeout: float = 60.0, what: str = "the page") -> None:
    deadline = time.monotonic() + timeout
    while True:
        at.run()
        assert not at.exception, at.exception
        if condition(at):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def progress_text(at: AppTest) -> str:
    bars = at.get("progress")
    return bars[0].proto.text if bars else ""


def test_the_form_renders_with_quick_defaults(app):
    assert not app.exception and not app.error
    assert app.selectbox(key="train_kind").options == ["MLP", "conv", "conditional MLP"]
    assert app.number_input(key="train_latent").value == 2
    assert app.text_input(key="train_hidden").value == "256,128"
    assert app.number_input(key="train_batch").value == 128 and app.text_input(key="train_lr").value == "1e-3"
    assert app.number_input(key="train_epochs").value == 3.0
    assert app.selectbox(key="train_objective").options == ["ELBO", "IWAE"]
    assert "cpu" in app.selectbox(key="train_device").options
    assert [b.label for b in app.button] == ["Start training"]


@pytest.mark.parametrize(
    ("values", "message"),
    [({"train_hidden": "256,abc"}, "hidden sizes"), ({"train_lr": "2"}, "learning rate"),
     ({"train_batch": 8000}, "batch size 8000 is larger")],
)  # fmt: skip
def test_invalid_settings_show_an_error_not_a_traceback(app, values, message):
    fill_form(app, **values)
    start(app)
    assert not app.exception
    assert any(message in e.value for e in app.error), [e.value for e in app.error]
    assert "train_job" not in app.session_state


def test_a_run_shows_live_progress_and_after_stop_its_model_is_offered_on_other_pages(app):
    fill_form(app)
    start(app)
    assert not app.exception and [b.label for b in app.button] == ["Start training", "Pause", "Stop"]
    assert [b.label for b in app.get("download_button")] == [
        "Latent map GIF",
        "Digits PNG",
    ]  # while it trains
    run_until(app, lambda at: "step" in progress_text(at) and at.metric, what="progress and metrics")
    first = progress_text(app)
    assert "/ 14,000" in first and "images/s" in first and "ETA" in first
    assert [m.label for m in app.metric][:4] == [
        "Train ELBO",
        "Train Reconstruction",
        "Train KL",
        "Validation ELBO",
    ]
    assert len(app.get("image")) == 2  # reconstructions and prior samples
    app.button(key="train_pause").click().run()
    assert app.button(key="train_resume") and "paused" in progress_text(app)
    app.button(key="train_resume").click().run()
    app.button(key="train_stop").click().run()
    run_until(app, lambda at: at.success, what="the stopped run")
    assert "was stopped after" in app.success[0].value
    job = app.session_state["train_job"]
    ended_text = progress_text(app)  # nothing runs: no speed, no ETA, just where it stopped
    assert ended_text.startswith(f"stopped at step {job.snapshot().step:,} of 14,000")
    assert "ETA" not in ended_text and "images/s" not in ended_text
    assert job.name.startswith("run 1:")  # numbered in this session, whatever other sessions ran
    labels = [b.label for b in app.get("download_button")]
    assert labels == ["Download checkpoint", "Download metrics CSV", "Latent map GIF", "Digits PNG"]
    job = app.session_state["train_job"]
    assert job.status == jobs.STOPPED and app.session_state["selected_model"] == job.key

    app.switch_page("explorer/pages/latent_map.py")
    app.run()
    assert not app.exception
    picker = app.sidebar.selectbox(key="model_picker")
    assert f"{job.name} · 784-32-2 MLP VAE · trained" in picker.options
    assert picker.value == job.key  # the page opens on the model just trained


def test_an_iwae_run_calls_its_training_curve_the_iwae_bound_not_the_elbo(app):
    """An IWAE run trains on (and reports) its k-sample bound; only validation is the ELBO."""
    fill_form(app, train_objective="IWAE", train_k=3)
    start(app)
    run_until(app, lambda at: "step" in progress_text(at) and at.metric and charts(at), what="progress")
    assert [m.label for m in app.metric][0] == "Train IWAE bound (k=3)"  # one name everywhere
    assert "IWAE bound (k=3); validation: ELBO" in [spec.get("title") for spec, _ in charts(app)]
    app.button(key="train_stop").click().run()
    run_until(app, lambda at: at.success, what="the stopped run")


# ------------------------------------------------------------------------------ time travel
def charts(at: AppTest) -> list[tuple[dict, pd.DataFrame]]:
    """Every Vega-Lite chart on the page as (spec, data frame)."""
    return [
        (json.loads(chart.proto.spec), convert_arrow_bytes_to_pandas_df(chart.proto.data.data))
        for chart in at.get("vega_lite_chart")
    ]


def chart_with(at: AppTest, column: str) -> pd.DataFrame:
    found = [frame for _, frame in charts(at) if column in frame.columns]
    assert len(found) == 1, f"expected one chart with a {column!r} column, found {len(found)}"
    return found[0]


def curve_epochs(at: AppTest) -> float:
    """The latest epoch drawn on the ELBO curve."""
    frame = next(frame for spec, frame in charts(at) if spec.get("title") == "ELBO")
    return frame["epoch"].max()


def image_urls(at: AppTest) -> list[str]:
    """Media URLs of the reconstructions and samples; AppTest names each by a hash of its bytes."""
    return [image.proto.imgs[0].url for image in at.get("image")]


def shown_active_count(at: AppTest) -> tuple[int, int]:
    found = [re.search(r"\*\*(\d+) of (\d+)\*\* latent dimensions active", c.value) for c in at.caption]
    found = [f for f in found if f]
    assert len(found) == 1
    return int(found[0][1]), int(found[0][2])


def shown_latents(at: AppTest) -> np.ndarray:
    """The points the live latent plane was sent: its bytes payload's "points" array."""
    from explorer.ui.latent_plane import payload_meta

    blobs = [e.proto.bytes for e in at.get("bidi_component") if e.proto.WhichOneof("data") == "bytes"]
    assert len(blobs) == 1, f"expected one latent plane payload, found {len(blobs)}"
    (blob,) = blobs
    (length,) = struct.unpack("<I", blob[4:8])
    spec = json.loads(blob[8 : 8 + length])["arrays"]["points"]
    assert payload_meta(blob)["decodable"] is False  # a model in training: no decoder is sent
    body = 8 + length + (-(8 + length) % 8)
    return np.frombuffer(blob, np.float32, int(np.prod(spec["shape"])), body + spec["offset"]).reshape(-1, 2)


def assert_shows(at: AppTest, views: history.LiveViews) -> None:
    """The latent map and the KL bars on the page are this snapshot's."""
    np.testing.assert_array_equal(shown_latents(at), views.plane.astype(np.float32))
    kl = chart_with(at, "dimension")
    np.testing.assert_allclose(kl["kl"].to_numpy(), views.kl_per_dim, rtol=1e-6)
    assert shown_active_count(at) == (views.active_count, len(views.kl_per_dim))
    assert (kl["state"] == "active").sum() == views.active_count


def shown_step(at: AppTest) -> int:
    """The step of the latent map on the page, from its caption."""
    found = [re.search(r"validation digits at step ([\d,]+)", c.value) for c in at.caption]
    found = [f for f in found if f]
    assert len(found) == 1
    return int(found[0][1].replace(",", ""))


def slider_steps(at: AppTest) -> list[int]:
    """The steps the time-travel slider offers before its right end, "now"."""
    *steps, now = at.get("select_slider")[0].options
    assert now == "now"
    return [int(option.removeprefix("step ").replace(",", "")) for option in steps]


def history_of(at: AppTest) -> list[history.LiveViews]:
    return at.session_state["train_job"].snapshot().history


def test_time_travel_rewinds_curves_pictures_latents_and_kl_while_training_and_after(app):
    fill_form(app, train_latent=3)
    start(app)
    # three snapshots on the slider: two before "now"; the test picks only options the page offered,
    # as a user would (the history may have grown since the page was drawn)
    run_until(app, lambda at: at.get("select_slider") and len(slider_steps(at)) >= 2, what="three snapshots")
    now = app.get("select_slider")[0].value  # the default: the right end, following the run
    assert slider_steps(app) == [views.step for views in history_of(app)[: len(slider_steps(app))]]
    latest = next(views for views in history_of(app) if views.step == shown_step(app))
    assert latest.step > slider_steps(app)[-1]
    assert_shows(app, latest)
    latest_urls = image_urls(app)

    assert slider_steps(app)[0] == history_of(app)[0].step == 0  # the untrained model
    early = history_of(app)[1]  # the first snapshot after training began: curves to cut
    assert early.step == slider_steps(app)[1]
    app.get("select_slider")[0].set_value(early.step).run()
    assert not app.exception
    assert app.get("select_slider")[0].value == early.step
    assert f"as it was at step {early.step:,}" in app.info[0].value
    assert_shows(app, early)
    assert not np.array_equal(early.plane, latest.plane)
    assert image_urls(app) != latest_urls  # other reconstructions and samples
    assert curve_epochs(app) == pytest.approx(early.epoch)  # the curves are cut at that step
    drawn = app.session_state[DRAWN_KEY][1]
    early_urls = image_urls(app)

    # new snapshots keep arriving; the view stays where the user put it
    seen = len(history_of(app))
    run_until(app, lambda at: history_of(at)[-1].step > latest.step and len(history_of(at)) > seen,
              what="newer snapshots")  # fmt: skip
    assert app.get("select_slider")[0].value == early.step
    assert_shows(app, early)
    # polls that show the same snapshot reuse its pictures and payload instead of building them anew
    assert app.session_state[DRAWN_KEY][1] is drawn and image_urls(app) == early_urls

    app.button(key="train_stop").click().run()
    run_until(app, lambda at: at.success, what="the stopped run")
    assert app.get("select_slider")[0].value == early.step  # still there after the run ended
    assert_shows(app, early)
    # step 0, the untrained model, before any progress report: the tiles said the final values and the
    # curves were empty charts without axes (Vega: "Infinite extent"). Now "—", and "no data yet" on axes.
    app.get("select_slider")[0].set_value(0).run()
    assert not [e for e in app.session_state["train_job"].snapshot().events if e["step"] <= 0]
    tiles = [m.value for m in app.metric if m.label.startswith(("Train ", "Validation ", "β"))]
    assert tiles == ["—"] * 5
    curves = [frame for spec, frame in charts(app) if spec.get("title") in dict(CURVE_TERMS).values()]
    assert len(curves) == len(CURVE_TERMS)
    for frame in curves:  # one finite point shown, the "no data yet" text; the other layers' rows hidden
        assert list(frame[frame["shown"]]["series"]) == [NO_DATA]
        assert np.isfinite(frame[["epoch", "value"]].to_numpy()).all()
    app.get("select_slider")[0].set_value(now).run()
    final = history_of(app)[-1]
    assert not app.info and shown_step(app) == final.step == app.session_state["train_job"].snapshot().step
    assert_shows(app, final)
    assert curve_epochs(app) == pytest.approx(app.session_state["train_job"].snapshot().last["epoch"])


def test_kl_per_dimension_shown_is_latent_activity_on_the_fixed_validation_digits(app):
    fill_form(app, train_latent=5)
    start(app)
    run_until(app, lambda at: at.get("select_slider"), what="live views")
    app.button(key="train_pause").click().run()
    job = app.session_state["train_job"]
    assert job.wait_parked(30)
    app.run()  # paused: no snapshot arrives while this renders
    assert shown_step(app) == history_of(app)[-1].step
    assert_shows(app, history_of(app)[-1])  # live, before the run ends
    app.button(key="train_stop").click().run()
    run_until(app, lambda at: at.success, what="the stopped run")
    # the last snapshot is the final model: recompute its activity independently of the job
    validation = jobs.load_training_data(jobs.DATA_SAMPLE).validation
    batch = validation.subset(slice(0, min(history.LIVE_MAP_DIGITS, len(validation)))).fixed_binary()
    expected = latent_activity(job.model, batch)
    kl = chart_with(app, "dimension")
    assert kl["dimension"].tolist() == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(kl["kl"].to_numpy(), expected.kl_per_dim.numpy(), rtol=1e-5, atol=1e-6)
    assert shown_active_count(app) == (expected.active_count, 5)


def validation_values(job: jobs.TrainingJob, term: str) -> list[float]:
    return [e["validation"][term] for e in epoch_rows(job.snapshot().events) if e.get("validation")]


def test_two_runs_are_compared_in_one_chart_with_both_names(app):
    def one_run(**values):
        fill_form(app, **values)
        start(app)
        run_until(app, lambda at: at.session_state["train_job"].snapshot().events, what="progress")
        app.button(key="train_stop").click().run()
        run_until(app, lambda at: at.success, what="the stopped run")
        return app.session_state["train_job"]

    first = one_run(train_seed=1)
    assert not app.get("multiselect")  # one run: nothing to compare
    second = one_run(train_seed=2, train_latent=4)
    picker = app.multiselect(key="train_compare_runs")
    assert picker.value == [first.id, second.id]
    spec, frame = next((spec, frame) for spec, frame in charts(app) if "run" in frame.columns)
    assert spec["encoding"]["color"]["scale"]["domain"] == [first.name, second.name]
    assert set(frame["run"]) == {first.name, second.name}
    for job in (first, second):  # each run's validation points, the one after it was stopped last
        validation = frame[(frame["run"] == job.name) & (frame["series"] == "validation")]
        assert validation["value"].tolist() == pytest.approx(validation_values(job, "elbo"))
        assert validation["value"].iloc[-1] == pytest.approx(job.snapshot().last["validation"]["elbo"])

    app.selectbox(key="train_compare_term").set_value("kl").run()
    _, frame = next((spec, frame) for spec, frame in charts(app) if "run" in frame.columns)
    validation = frame[(frame["run"] == second.name) & (frame["series"] == "validation")]
    assert validation["value"].tolist() == pytest.approx(validation_values(second, "kl"))
    picker.unselect(first.id).run()
    _, frame = next((spec, frame) for spec, frame in charts(app) if "run" in frame.columns)
    assert set(frame["run"]) == {second.name}
