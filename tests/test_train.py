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


def test_the_iwae_training_objective_is_the_iwae_bound_and_warmup_scales_only_the_prior_ratio(digits):
    from vae_core.objectives import importance_terms, iwae_bound, log_mean_exp

    trainer = _trainer(digits, objective="iwae", k=4)
    x = digits[0].fixed_binary(0, slice(0, 50))
    loss, sums = trainer.objective(x, None, 1.0, torch.Generator().manual_seed(2))
    bound = iwae_bound(trainer.model, x, k=4, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(loss, -bound.mean())
    torch.testing.assert_close(sums[2], bound.sum())
    warm, _ = trainer.objective(x, None, 0.25, torch.Generator().manual_seed(2))
    terms = importance_terms(trainer.model, x, None, 4, generator=torch.Generator().manual_seed(2))
    by_hand = torch.logsumexp(terms.log_px_z + 0.25 * terms.log_prior_ratio, 0) - math.log(4)
    torch.testing.assert_close(warm, -by_hand.mean())
    torch.testing.assert_close(log_mean_exp(terms.log_weights()), bound)


def test_an_epoch_event_averages_exactly_the_steps_its_step_events_reported(digits):
    events = list(_trainer(digits, epochs=2, log_every=8).run())  # 40 steps an epoch: 5 windows
    for epoch in (1, 2):
        steps = [e for e in events if e.kind == "step" and epoch - 1 < e.epoch <= epoch]
        summary = next(e for e in events if e.kind == "epoch" and math.isclose(e.epoch, epoch))
        assert len(steps) == 5
        for name in ("recon", "kl", "bound"):  # the ELBO objective: its bound is the ELBO
            assert math.isclose(
                getattr(summary, name), sum(getattr(e, name) for e in steps) / 5, rel_tol=1e-5
            )
        assert math.isclose(summary.bound, summary.recon - summary.kl, rel_tol=1e-5)
    assert events[-1].kind == "done" and events[-1].bound == summary.bound  # the last epoch again
    record = events[-1].as_dict()  # plain data keeps the key "elbo": curve rows and CSVs stay alike
    assert record["elbo"] == events[-1].bound and "bound" not in record


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


@pytest.mark.parametrize(
    "config",
    [ModelConfig(latent_dim=2, hidden=(64, 32)), ModelConfig(kind="conv", latent_dim=3, image_size=14)],
)
def test_models_built_with_one_seed_in_two_threads_at_once_are_identical_and_leave_the_global_rng(config):
    from vae_core import build_model

    global_state = torch.get_rng_state()
    barrier = threading.Barrier(2)
    built: dict[int, list] = {}

    def build(slot: int) -> None:
        barrier.wait()  # both threads initialise at the same moment
        built[slot] = [build_model(config, seed=11) for _ in range(5)]

    threads = [threading.Thread(target=build, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    reference = build_model(config, seed=11).state_dict()
    for model in built[0] + built[1]:
        for name, tensor in model.state_dict().items():
            assert torch.equal(tensor, reference[name]), name
    assert torch.equal(torch.get_rng_state(), global_state)  # never read or advanced
    other = build_model(config, seed=12).state_dict()
    assert not torch.equal(
        other["encoder.net.0.weight" if config.kind == "mlp" else "encoder.head.0.weight"],
        reference["encoder.net.0.weight" if config.kind == "mlp" else "encoder.head.0.weight"],
    )
    # PyTorch's default rule: every weight and bias within ±1/sqrt(fan_in), spread across it
    for module in build_model(config, seed=11).modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            fan_in, _ = torch.nn.init._calculate_fan_in_and_fan_out(module.weight)
            bound = fan_in**-0.5
            assert module.weight.abs().max() <= bound and module.weight.abs().max() > 0.9 * bound


def test_two_trainers_with_one_seed_started_in_two_threads_start_from_the_same_weights(digits):
    barrier = threading.Barrier(2)
    weights: dict[int, dict] = {}

    def start(slot: int) -> None:
        barrier.wait()
        weights[slot] = _trainer(digits, seed=5).model.state_dict()

    global_state = torch.get_rng_state()
    threads = [threading.Thread(target=start, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
    assert torch.equal(torch.get_rng_state(), global_state)
