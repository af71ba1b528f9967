"""Memory per visitor is bounded: what a session's uploads keep, what all visitors' models keep
together, the parameter budget uploads share with training, and the one server-wide admission
that heavy work (bounds against k, training runs, ...) passes through."""

from __future__ import annotations

import json
import struct
import threading
import time
import weakref
from pathlib import Path

import pytest
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from explorer.state import comparison, registry, work_admission
from explorer.state.registry import ModelBudgetError, ModelEntry, SessionModelBudget
from explorer.state.work_admission import ServerBusy, WorkAdmission, WorkTooLarge
from tests.markdown_messages import shown
from vae_core import ModelConfig, build_model, load_checkpoint
from vae_core.checkpoint import checkpoint_bytes
from vae_core.config import parameter_count
from vae_core.limits import MB, ServerLimits

PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained"


def distinct_copy(name: str, number: int) -> bytes:
    """A shipped checkpoint with one metadata field changed: a different file, the same model."""
    data = (PRETRAINED / f"{name}.safetensors").read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    metadata = json.loads(data[8 : 8 + length])["__metadata__"]
    metrics = json.loads(metadata["metrics"])
    metrics["data"] = f"copy {number}"
    return save_tensors(load_tensors(data), metadata={**metadata, "metrics": json.dumps(metrics)})


@pytest.fixture
def session(monkeypatch):
    import streamlit as st

    monkeypatch.setenv("VAE_MAX_VISITOR_MODELS_MB", "100000")  # only the per-session count binds here
    st.session_state.clear()
    yield st.session_state
    st.session_state.clear()


# --- uploads -----------------------------------------------------------------------------------------
def test_a_session_uploading_many_checkpoints_keeps_only_its_latest_few(session):
    from explorer.ui.resources import session_models
    from explorer.ui.sidebar import SELECTED_MODEL, _register_upload

    kept = SessionModelBudget.from_env().uploads_per_session
    messages = [_register_upload(f"copy{i}.safetensors", distinct_copy("mlp20", i)) for i in range(kept + 3)]
    assert all(ok for ok, _ in messages), messages
    models = session_models()
    assert [entry.name for entry in models.values()] == [f"copy{i}" for i in range(3, kept + 3)]
    assert [entry.checkpoint.metrics["data"] for entry in models.values()] == [
        f"copy {i}" for i in range(3, kept + 3)
    ]
    assert session[SELECTED_MODEL] == list(models)[-1]
    assert "left" not in messages[kept - 1][1]  # room was left until then
    left = shown(messages[kept][1])  # as a visitor reads it: the names inside code spans
    assert "copy0 left to make room" in left and f"keeps {kept} uploaded models" in left


def test_all_visitors_models_together_stay_within_the_servers_budget(monkeypatch):
    monkeypatch.setattr(registry, "_visitor_models", weakref.WeakSet())  # not other tests' models
    loaded = [load_checkpoint(distinct_copy("mlp20", i)) for i in range(3)]

    def uploaded(i: int) -> ModelEntry:  # made when its upload arrives: alive, it counts
        return ModelEntry(f"uploaded:budget{i}", loaded[i], "uploaded", f"m{i}")

    first_session, second_session = {}, {}
    first = uploaded(0)
    one = first.expected_bytes()
    # the real resident cost: float32 weights, and the plane's copy of the decoder and the codes to come
    assert one > 4 * parameter_count(first.config)
    budget = SessionModelBudget(uploads_per_session=3, total_mb=2.5 * one / MB)
    budget.add_upload(first_session, first)
    budget.add_upload(second_session, uploaded(1))
    with pytest.raises(ModelBudgetError, match="Try again later"):
        budget.add_upload(second_session, uploaded(2))
    assert [entry.name for entry in second_session.values()] == ["m1"]  # nothing changed by the refusal
    first_session.clear()  # a session that ends gives its models' room back
    del first
    budget.add_upload(second_session, uploaded(2))
    assert [entry.name for entry in second_session.values()] == ["m1", "m2"]


def test_a_float16_checkpoint_over_the_parameter_budget_is_refused_with_a_message(session):
    from explorer.ui.resources import session_models
    from explorer.ui.sidebar import MAX_CHECKPOINT_BYTES, _register_upload

    config = ModelConfig(latent_dim=2, hidden=(2048, 1024))  # 7.4 M parameters: 15 MB in float16
    count = parameter_count(config)
    assert ServerLimits().max_parameters < count
    data = checkpoint_bytes(build_model(config))
    (length,) = struct.unpack("<Q", data[:8])
    metadata = json.loads(data[8 : 8 + length])["__metadata__"]
    half = save_tensors({k: t.half() for k, t in load_tensors(data).items()}, metadata=metadata)
    assert len(half) < MAX_CHECKPOINT_BYTES  # the upload's size limit alone lets it through
    ok, message = _register_upload("wide.safetensors", half)
    message = shown(message)  # as a visitor reads it
    assert not ok and f"{count:,} parameters" in message and f"{ServerLimits().max_parameters:,}" in message
    assert session_models() == {}


# --- the server-wide admission of heavy work ---------------------------------------------------------
@pytest.fixture
def admission(monkeypatch):
    def install(budget_mb: float, wait_s: float) -> WorkAdmission:
        admitted = WorkAdmission(budget_mb, wait_s)
        monkeypatch.setattr(work_admission, "_server", admitted)
        return admitted

    return install


def best_entries(count: int) -> list[ModelEntry]:
    checkpoint = load_checkpoint(PRETRAINED / "best.safetensors")
    return [ModelEntry(f"pretrained:best{i}", checkpoint, "pretrained", f"best{i}") for i in range(count)]


class CountingCurve:
    """Stands in for the importance sampling: records how many run at once, optionally holding each."""

    def __init__(self, hold: threading.Event | None = None):
        self.lock, self.running, self.most, self.calls = threading.Lock(), 0, 0, 0
        self.hold = hold

    def __call__(self, model, x, labels, ks=None, progress=None):
        with self.lock:
            self.running += 1
            self.calls += 1
            self.most = max(self.most, self.running)
        if self.hold is not None:
            self.hold.wait(60)
        with self.lock:
            self.running -= 1
        return {1: -100.0, 5000: -90.0}


def run_in_threads(entries, digits) -> list:
    outcomes = [None] * len(entries)

    def ask(i: int) -> None:
        try:
            outcomes[i] = comparison.bounds_of(entries[i], digits)
        except ServerBusy as busy:
            outcomes[i] = busy

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(entries))]
    for thread in threads:
        thread.start()
    return threads, outcomes


@pytest.mark.parametrize("sessions", [2, 6])
def test_concurrent_bounds_with_no_room_to_wait_are_admitted_within_the_budget(
    sessions, admission, monkeypatch, sample_digits
):
    entries = best_entries(sessions)
    cost = comparison.bounds_cost_mb(entries[0])
    budget = admission(1.5 * cost, wait_s=0)  # room for one at a time; nobody waits
    release = threading.Event()
    curve = CountingCurve(hold=release)
    monkeypatch.setattr(comparison, "iwae_curve", curve)
    threads, outcomes = run_in_threads(entries, sample_digits)
    try:
        # the one admitted holds its share until released: every other one has been told "busy"
        for _ in range(2400):  # up to 2 minutes on a loaded machine; normally at once
            if sum(isinstance(o, ServerBusy) for o in outcomes) == sessions - 1:
                break
            time.sleep(0.05)
    finally:
        release.set()
        for thread in threads:
            thread.join(60)
    busy = [o for o in outcomes if isinstance(o, ServerBusy)]
    assert len(busy) == sessions - 1 and curve.calls == 1 and curve.most == 1
    assert all("Try again in a moment" in str(b) for b in busy)
    assert budget.peak_mb <= budget.budget_mb and budget.in_use_mb == 0


@pytest.mark.parametrize("sessions", [2, 6])
def test_concurrent_bounds_queue_and_all_finish_within_the_budget(
    sessions, admission, monkeypatch, sample_digits
):
    entries = best_entries(sessions)
    budget = admission(1.5 * comparison.bounds_cost_mb(entries[0]), wait_s=120)
    curve = CountingCurve()
    monkeypatch.setattr(comparison, "iwae_curve", curve)
    threads, outcomes = run_in_threads(entries, sample_digits)
    for thread in threads:
        thread.join(120)
    assert all(isinstance(o, dict) for o in outcomes), outcomes
    assert curve.calls == sessions and curve.most == 1  # one at a time: two would pass the budget
    assert budget.peak_mb <= budget.budget_mb and budget.in_use_mb == 0


def test_two_sessions_asking_for_one_models_bounds_share_one_computation(
    admission, monkeypatch, sample_digits
):
    admission(10_000, wait_s=120)
    (entry,) = best_entries(1)
    second_asked = threading.Event()

    class HeldUntilTheSecondAsks(CountingCurve):
        def __call__(self, *args, **kwargs):
            if self.calls == 0:
                second_asked.wait(5)  # the old code let the second compute beside the first here
            return super().__call__(*args, **kwargs)

    curve = HeldUntilTheSecondAsks()
    monkeypatch.setattr(comparison, "iwae_curve", curve)
    first, outcomes = run_in_threads([entry], sample_digits)
    second, second_outcome = run_in_threads([entry], sample_digits)
    second_asked.set()
    for thread in first + second:
        thread.join(60)
    assert curve.calls == 1 and outcomes[0] is second_outcome[0]


def test_the_bounds_memory_estimate_covers_what_they_take():
    # Measured (one thread, 100 digits, k up to 5000, comparison.BOUND_ELEMENT_BUDGET): 27-28 MB above
    # the process's resident set; the estimate asked for is above that, and four fit the budget.
    for entry in best_entries(1):
        assert 28 < comparison.bounds_cost_mb(entry) < work_admission.WORK_MEMORY_MB / 4


def test_admission_is_first_come_first_served_and_releases_once():
    ended = []
    admitted = WorkAdmission(100, wait_s=0, after_work=lambda: ended.append(1))
    with pytest.raises(WorkTooLarge, match="more than the 100 MB"):
        admitted.acquire(101, "a huge job")
    first = admitted.acquire(60, "first")
    with pytest.raises(ServerBusy, match="60 of the 100 MB"):
        admitted.acquire(50, "second")
    small = admitted.acquire(40, "small")
    assert admitted.running() == ["first", "small"] and admitted.peak_mb == 100
    first.release()
    first.release()  # a second release changes nothing
    assert admitted.in_use_mb == 40
    small.release()
    assert admitted.in_use_mb == 0 and admitted.running() == [] and len(ended) == 2  # once per piece of work


def test_a_bad_budget_variable_falls_back_to_the_default(monkeypatch):
    monkeypatch.setenv(work_admission.WORK_MEMORY_ENV, "lots")
    monkeypatch.setenv(work_admission.WORK_WAIT_ENV, "3")
    admitted = WorkAdmission.from_env()
    assert admitted.budget_mb == work_admission.WORK_MEMORY_MB and admitted.wait_s == 3
