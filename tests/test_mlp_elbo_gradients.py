"""The hand-derived ELBO gradient of MLP VAEs is autograd's, and the trainer follows the same path."""

import pytest
import torch

from vae_core import ModelConfig, TrainConfig, Trainer, build_model, load_sample_digits
from vae_core import train as train_module
from vae_core.mlp_elbo_gradients import MLPElboGradients
from vae_core.objectives import elbo_terms


@pytest.mark.parametrize(
    ("activation", "conditional", "hidden", "beta"),
    [
        ("relu", False, (64,), 1.0),
        ("relu", True, (48, 32), 0.3),
        ("elu", False, (40, 24, 16), 2.0),
        ("elu", True, (32,), 0.0),  # the first step of a KL warm-up
        ("tanh", False, (32, 16), 0.7),
        ("tanh", True, (56, 40, 24), 1.0),
    ],
)
def test_every_parameter_gradient_is_autograds_in_float64(activation, conditional, hidden, beta):
    config = ModelConfig(latent_dim=3, hidden=hidden, conditional=conditional, activation=activation)
    model = build_model(config, seed=4).double()
    latent = config.latent_dim
    with torch.no_grad():  # log variances below, above and inside the clamp (zero gradient outside)
        model.encoder.net[-1].bias[latent:] = torch.tensor([-35.0, 25.0, 1.0], dtype=torch.float64)
    data = torch.Generator().manual_seed(1)
    x = (torch.rand(24, 784, generator=data, dtype=torch.float64) < 0.3).double()
    labels = torch.randint(0, 10, (24,), generator=data) if conditional else None

    terms = elbo_terms(model, x, labels, torch.Generator().manual_seed(9))
    terms.loss(beta).backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}
    expected_sums = torch.stack((terms.recon, terms.kl, terms.elbo)).detach().sum(1)
    model.zero_grad(set_to_none=True)

    sums = MLPElboGradients(model, torch.Generator().manual_seed(9))(x, labels, beta)
    torch.testing.assert_close(sums, expected_sums, rtol=1e-10, atol=1e-9)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-10, atol=1e-12, msg=name)
    log_var_bias_grad = model.encoder.net[-1].bias.grad[latent:]
    assert log_var_bias_grad[0] == 0 and log_var_bias_grad[1] == 0 and log_var_bias_grad[2] != 0


def _trainer(config: ModelConfig, **settings) -> Trainer:
    digits = load_sample_digits()
    train, valid = digits.subset(slice(0, 2000)), digits.subset(slice(2000, 2500))
    settings = {"epochs": 1, "batch_size": 100, "log_every": 5, "device": "cpu", "seed": 3, **settings}
    return Trainer(config, TrainConfig(**settings), train, valid)


def test_the_trainer_takes_the_same_path_by_hand_as_by_autograd(monkeypatch):
    config = ModelConfig(latent_dim=4, hidden=(64, 32), conditional=True, activation="elu")
    settings = {"warmup_epochs": 0.5, "beta": 1.5, "lr_decay": True}
    by_hand = _trainer(config, **settings)
    assert isinstance(by_hand.compute_gradients, MLPElboGradients)
    hand_events = list(by_hand.run())
    monkeypatch.setattr(train_module.mlp_elbo_gradients, "covers", lambda *args: False)
    by_autograd = _trainer(config, **settings)
    assert not isinstance(by_autograd.compute_gradients, MLPElboGradients)
    autograd_events = list(by_autograd.run())
    assert [e.kind for e in hand_events] == [e.kind for e in autograd_events]
    for ours, theirs in zip(hand_events, autograd_events, strict=True):
        for name in ("recon", "kl", "bound"):
            assert getattr(ours, name) == pytest.approx(getattr(theirs, name), rel=1e-4)
    for (name, ours), theirs in zip(
        by_hand.model.named_parameters(), by_autograd.model.parameters(), strict=True
    ):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize(
    ("config", "settings"),
    [
        (ModelConfig(kind="conv", latent_dim=2, image_size=14), {}),
        (ModelConfig(latent_dim=2, hidden=(32,)), {"objective": "iwae", "k": 3}),
    ],
)
def test_conv_models_and_the_iwae_objective_keep_autograd(config, settings):
    digits = load_sample_digits().subset(slice(0, 300))
    if config.image_size == 14:
        from vae_core.data import DigitImages, pool_to_14

        digits = DigitImages(pool_to_14(digits.pixels), digits.labels, 14, digits.binarization, digits.source)
    trainer = Trainer(config, TrainConfig(epochs=1, batch_size=100, device="cpu", **settings), digits)
    assert not isinstance(trainer.compute_gradients, MLPElboGradients)
