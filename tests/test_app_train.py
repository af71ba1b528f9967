"""The Train page under AppTest: the form, a live run polled by repeated runs, stop, and the trained
model showing up in the model picker of another page.

AppTest ignores `run_every`, so the tests call `run()` again and again, as the fragment would.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from explorer import training_jobs as jobs

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TRAIN_PAGE = "explorer/pages/train.py"


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
    assert [b.label for b in app.get("download_button")] == ["Download checkpoint", "Download metrics CSV"]
    job = app.session_state["train_job"]
    assert job.status == jobs.STOPPED and app.session_state["selected_model"] == job.key

    app.switch_page("explorer/pages/latent_map.py")
    app.run()
    assert not app.exception
    picker = app.sidebar.selectbox(key="model_picker")
    assert f"{job.name} · 784-32-2 MLP VAE · trained" in picker.options
    assert picker.value == job.key  # the page opens on the model just trained
