"""The Train page's form under hostile values: every field given the wrong type, nan, inf, zero, a
negative or a huge value, and settings above the server's limits (ServerLimits, $VAE_MAX_*), each
get exactly one clear st.error and no run is started. Limits a deployer sets by environment
variable take effect, and a bad variable falls back to the default instead of breaking the page."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from markdown_messages import shown
from streamlit.testing.v1 import AppTest

from explorer.state import work_admission
from explorer.state.work_admission import ServerBusy, WorkAdmission
from explorer.training import jobs
from vae_core.config import setting_number
from vae_core.errors import ConfigError
from vae_core.limits import MB, ServerLimits

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TRAIN_PAGE = "explorer/pages/train.py"
# Small enough to start in a second on the bundled sample; each case changes one thing.
QUICK = {"train_data": jobs.DATA_SAMPLE, "train_hidden": "32", "train_epochs": 1.0, "train_batch": 64}


@pytest.fixture(scope="module")
def page():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VAE_OFFLINE", "1")
        at = AppTest.from_file(APP, default_timeout=60)
        at.run()
        at.switch_page(TRAIN_PAGE)
        at.run()
        yield at


def submit(at: AppTest, **values) -> None:
    """Every field at its default except QUICK and `values`, then Start."""
    defaults = {"train_kind": "MLP", "train_latent": 2, "train_hidden": "256,128", "train_epochs": 3.0,
                "train_batch": 128, "train_lr": "1e-3", "train_seed": 0, "train_beta": 1.0,
                "train_objective": "ELBO", "train_k": 5, "train_warmup": 0.0, "train_device": "cpu"}  # fmt: skip
    for key, value in {**defaults, **QUICK, **values}.items():
        widget = next(
            w for kind in ("selectbox", "text_input", "number_input") for w in at.get(kind) if w.key == key
        )
        widget.set_value(value)
    next(b for b in at.button if b.label == "Start training").click()
    at.run()


def forget_run(at: AppTest) -> None:
    """Stop the page's run and take it off the page, so the form is free for the next case."""
    job = at.session_state["train_job"]
    job.stop()
    assert job.join(60)
    del at.session_state["train_job"]
    at.run()


def assert_refused(at: AppTest, *words: str) -> None:
    assert not at.exception, at.exception
    errors = [shown(e.value) for e in at.error]  # the visitor's text only in code spans: no link
    assert len(errors) == 1 and errors[0].startswith("Cannot start: "), errors
    assert "\n" not in errors[0] and len(errors[0]) < 400, errors[0]
    for word in words:
        assert word in errors[0], (word, errors[0])
    assert "train_job" not in at.session_state and jobs.active_job_count() == 0


HOSTILE = [
    # hidden sizes: text, so every kind of wrong text
    ({"train_hidden": "20000,20000"}, "from 1 to 16,384"),
    ({"train_hidden": "4096"}, "more than this server allows"),
    ({"train_hidden": "2048,2048,2048,2048"}, "this server allows 5,000,000"),  # parameters
    ({"train_hidden": "abc"}, "hidden sizes"),
    ({"train_hidden": "[Log in](https://evil.example)"}, "hidden sizes"),
    ({"train_hidden": "https://evil.example/h"}, "https://evil.example/h"),  # quoted, in a code span
    ({"train_hidden": "-3"}, "hidden sizes"),
    ({"train_hidden": "1e9"}, "hidden sizes"),
    ({"train_hidden": "0"}, "hidden sizes"),
    ({"train_hidden": ""}, "hidden sizes"),
    ({"train_hidden": " , "}, "hidden sizes"),
    ({"train_hidden": "٣٢"}, "hidden sizes"),  # Arabic-Indic digits: int() would read 32
    ({"train_hidden": "9" * 5000}, "hidden sizes"),
    ({"train_hidden": "8," * 9}, "hidden sizes"),  # 9 layers
    ({"train_hidden": "32.5"}, "hidden sizes"),
    # latent size
    ({"train_latent": 0}, "Latent size must be between 1 and 256"),
    ({"train_latent": -3}, "Latent size"),
    ({"train_latent": 10**9}, "Latent size"),
    # epochs
    ({"train_epochs": 0.0}, "epochs must be positive"),
    ({"train_epochs": -1.0}, "epochs must be positive"),
    ({"train_epochs": 1e9}, "more than this server allows (500)"),
    ({"train_epochs": 501.0}, "(500)"),
    # batch size
    ({"train_batch": 0}, "batch_size must be at least 2"),
    ({"train_batch": 1}, "batch_size must be at least 2"),
    ({"train_batch": -64}, "batch_size must be at least 2"),
    ({"train_batch": 1025}, "larger than this server allows (1,024)"),
    ({"train_batch": 2**40}, "larger than this server allows"),
    # learning rate: text
    ({"train_lr": "0"}, "learning rate"),
    ({"train_lr": "-1e-3"}, "learning rate"),
    ({"train_lr": "2"}, "learning rate"),
    ({"train_lr": "nan"}, "learning rate must be a finite number"),
    ({"train_lr": "a@evil.example"}, "a@evil.example"),  # quoted, in a code span
    ({"train_lr": "inf"}, "learning rate must be a finite number"),
    ({"train_lr": "abc"}, "learning rate must be a finite number"),
    ({"train_lr": ""}, "learning rate must be a finite number"),
    # seed, beta, warm-up
    ({"train_seed": -1}, "Seed must be between 0"),
    ({"train_beta": -0.5}, "β must be between 0"),
    ({"train_beta": 1e9}, "β must be between 0"),
    ({"train_warmup": -1.0}, "KL warm-up epochs must be between 0"),
    # IWAE's k, alone and with the batch: k x batch x 784 logits
    ({"train_objective": "IWAE", "train_k": 5000, "train_batch": 512}, "k up to 50"),
    ({"train_objective": "IWAE", "train_k": 51}, "k up to 50"),
    ({"train_objective": "IWAE", "train_k": 0}, "k must be between 1 and 5000"),
    ({"train_objective": "IWAE", "train_k": -5}, "k must be between 1 and 5000"),
    (
        {"train_objective": "IWAE", "train_k": 50, "train_batch": 1024, "train_hidden": "1024"},
        "lower IWAE samples k (now 50) or Batch size (now 1024)",
    ),
]


@pytest.mark.parametrize(("values", "message"), HOSTILE, ids=[repr(v)[:60] for v, _ in HOSTILE])
def test_each_hostile_value_gets_one_clear_error_and_starts_nothing(page, values, message):
    submit(page, **values)
    assert_refused(page, message)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("train_epochs", math.nan),
        ("train_beta", math.inf),
        ("train_warmup", -math.inf),
        ("train_seed", 2**63),
    ],
)
def test_numbers_a_browser_cannot_carry_arrive_as_the_inputs_default(page, key, value):
    # nan, inf and integers beyond 2**53 do not survive Streamlit's number input: the page gets the
    # default (3 epochs, beta 1, no warm-up, seed 0), never the value.
    submit(page, **{key: value})
    job = page.session_state["train_job"]
    try:
        assert not page.exception and not page.error
        field, default = {"train_epochs": ("epochs", 3.0), "train_beta": ("beta", 1.0),
                          "train_warmup": ("warmup_epochs", 0.0), "train_seed": ("seed", 0)}[key]  # fmt: skip
        assert getattr(job.train_config, field) == default
    finally:
        forget_run(page)


def test_a_fraction_where_a_count_belongs_is_refused():
    # Streamlit rounds what an integer input receives; a caller of start_run may not. The form and
    # the CLI read a setting with the same function (vae_core.config.setting_number).
    with pytest.raises(ConfigError, match="Batch size must be a whole number, got 64.5"):
        setting_number(64.5, "Batch size", whole=True)
    for value in (math.nan, math.inf, None, True, 2**70):
        with pytest.raises(ConfigError, match="finite"):
            setting_number(value, "Batch size", whole=True)
    for text in ("6 4", "٦٤", "64.0", "1e2", "9" * 25):
        with pytest.raises(ConfigError, match="Batch size must be a whole number"):
            setting_number(text, "Batch size", whole=True)
    assert setting_number(64.0, "Batch size", whole=True) == 64
    assert setting_number(" 64 ", "Batch size", whole=True) == 64


def test_a_run_over_the_memory_limit_names_the_estimate_and_what_to_lower(page, monkeypatch):
    monkeypatch.setenv("VAE_MAX_RUN_MEMORY_MB", "5")
    submit(page, train_hidden="512,256", train_batch=512)
    assert_refused(page, "this run would need about", "the limit on this server is 5.0 MB", "lower")


def test_a_deployer_raises_a_limit_by_environment_variable(page, monkeypatch):
    monkeypatch.setenv("VAE_MAX_BATCH_SIZE", "2048")
    submit(page, train_batch=1500, train_epochs=0.01)  # above the default 1,024, below the sample's 4,500
    assert not page.exception and not page.error, [e.value for e in page.error]
    forget_run(page)


@pytest.mark.parametrize("bad", ["abc", "nan", "-5", "0", "inf", "1.5e", ""])
def test_a_bad_limit_variable_falls_back_to_the_default_with_a_warning(monkeypatch, caplog, bad):
    monkeypatch.setenv("VAE_MAX_EPOCHS", bad)
    monkeypatch.setenv("VAE_MAX_K", "2.5")  # a fraction where a count belongs
    with caplog.at_level("WARNING", logger="vae_core.limits"):
        limits = ServerLimits.from_env()
    assert limits.max_epochs == ServerLimits.max_epochs and limits.max_k == ServerLimits.max_k
    assert sum("VAE_MAX_EPOCHS" in r.getMessage() for r in caplog.records) == (1 if bad else 0)
    assert any("VAE_MAX_K" in r.getMessage() for r in caplog.records)


def test_every_limit_has_its_variable():
    environ = {variable: "7" for variable in ServerLimits.ENV.values()}
    limits = ServerLimits.from_env(environ)
    assert all(getattr(limits, name) == 7 for name in ServerLimits.ENV)


def test_a_run_is_admitted_once_by_the_servers_budget_for_heavy_work(page, monkeypatch):
    # One run's estimate is ~16 MB here: a 20 MB budget for heavy work lets one start, not two.
    budget = WorkAdmission(20, wait_s=0)
    monkeypatch.setattr(work_admission, "_server", budget)
    submit(page, train_epochs=50.0)
    first = page.session_state["train_job"]
    try:
        assert not page.error and first.is_alive()
        assert first.memory.peak <= 20_000_000 < 2 * first.memory.peak
        assert budget.running() == ["this training run"]  # counted once, at its estimate
        assert budget.in_use_mb == pytest.approx(first.memory.peak / MB)
        second = jobs.TrainingJob(
            first.model_config, first.train_config, jobs.load_training_data(jobs.DATA_SAMPLE)
        )
        with pytest.raises(ServerBusy, match="Try again in a moment"):
            second.start(max_active=5)
    finally:
        forget_run(page)
    assert budget.in_use_mb == 0  # the run's share went back when its thread ended


def test_a_run_larger_than_the_budget_for_heavy_work_is_refused_on_the_page(page, monkeypatch):
    monkeypatch.setattr(work_admission, "_server", WorkAdmission(5, wait_s=0))
    submit(page)
    assert_refused(page, "more than the 5 MB this server allows for heavy work")
