"""The training engine: learns, streams events, stops on request, seeds per run, guards NaN."""

import math
import threading

import pytest
import torch

from vae_core import ConfigError, ModelConfig, TrainConfig, Trainer, TrainingDivergedError, load_sample_digits


@pytest.fixture(scope="module")
def digits():
    sample = load_sample_digits()
    return sample.subset(slice(0, 4000)), sample.subset(slice(4000, None))


def _trainer(digits, **overrides):
    train, valid = digits
    settings = {"epochs": 1, "batch_size": 100, "log_every": 5, "device": "cpu", **overrides}
    return Trainer(ModelConfig(latent_dim=2, hidden=(64,)), TrainConfig(**settings), train, valid)


def test_training_streams_events_and_improves_the_validation_elbo(digits):
    trainer = _trainer(digits, epochs=2)
    before = trainer.validate()["elbo"]
    events = list(trainer.run())
    kinds = [e.kind for e in events]
    assert kinds.count("epoch") == 2 and kinds[-1] == "done" and kinds.count("step") == 80 // 5
    steps = [e for e in events if e.kind == "step"]
    assert [e.step for e in steps] == list(range(5, 81, 5))
    assert steps[-1].images_seen == 8000 and math.isclose(steps[-1].epoch, 2.0)
    assert all(e.images_per_s > 0 and e.kl >= 0 and e.recon <= 0 for e in steps)
    assert events[-1].validation["elbo"] > before + 20


def test_a_stop_event_from_another_thread_ends_the_run_early(digits):
    trainer = _trainer(digits, epochs=50)
    stop = threading.Event()
    events = []
    for event in trainer.run(stop):
        events.append(event)
        if len(events) == 3:
            threading.Thread(target=stop.set).start()
    assert events[-1].kind == "done" and events[-1].stopped
    assert trainer.step < trainer.total_steps


def test_same_seed_same_run_and_the_global_rng_is_not_used(digits):
    first = _trainer(digits, seed=7)
    list(first.run())
    torch.manual_seed(999)  # a different global state must not matter
    second = _trainer(digits, seed=7)
    list(second.run())
    assert [e["elbo"] for e in first.history] == [e["elbo"] for e in second.history]
    other = _trainer(digits, seed=8)
    list(other.run())
    assert [e["elbo"] for e in other.history] != [e["elbo"] for e in first.history]


def test_kl_warmup_ramps_beta_linearly_from_zero(digits):
    trainer = _trainer(digits, warmup_epochs=0.5, beta=2.0)  # 40 steps an epoch
    assert trainer.beta_at(0) == 0.0 and trainer.beta_at(10) == 1.0 and trainer.beta_at(20) == 2.0
    assert trainer.beta_at(500) == 2.0
    first = next(iter(trainer.run()))
    assert 0 < first.beta < 2.0


def test_a_diverging_run_stops_with_a_message_that_says_what_to_do(digits):
    trainer = _trainer(digits)
    with torch.no_grad():
        trainer.model.decoder.net[0].weight.fill_(float("nan"))
    with pytest.raises(TrainingDivergedError, match="Lower the learning rate"):
        list(trainer.run())


def test_iwae_objective_trains_and_reports_its_bound(digits):
    trainer = _trainer(digits, objective="iwae", k=5, epochs=0.5)
    events = list(trainer.run())
    assert "iwae_k5" in events[-1].validation
    assert events[-1].validation["iwae_k5"] >= events[-1].validation["elbo"] - 0.5


@pytest.mark.parametrize(
    "settings",
    [{"lr": 10}, {"batch_size": 1}, {"epochs": 0}, {"k": 0}, {"objective": "gan"}, {"device": "tpu"}],
)
def test_absurd_settings_are_refused_before_training(settings):
    with pytest.raises(ConfigError):
        TrainConfig(**settings)


def test_absurd_model_settings_are_refused():
    with pytest.raises(ConfigError, match="latent_dim"):
        ModelConfig(latent_dim=0)
    with pytest.raises(ConfigError, match="latent_dim"):
        ModelConfig(latent_dim=300)


def test_a_conditional_model_needs_labelled_digits(digits):
    train, _ = digits
    unlabeled = train.subset(slice(0, 500))
    unlabeled.labels = torch.full_like(unlabeled.labels, -1)
    with pytest.raises(ConfigError, match="labelled"):
        Trainer(ModelConfig(conditional=True), TrainConfig(), unlabeled)
