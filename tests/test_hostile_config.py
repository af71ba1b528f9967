"""Hostile model/train settings (as a checkpoint's JSON or a caller sends them): each field refused
with a ConfigError before anything is built, and the parameter budget computed without building."""

import math

import pytest

from vae_core.config import (
    MAX_PARAMETERS,
    ModelConfig,
    TrainConfig,
    model_config_from_dict,
)
from vae_core.errors import ConfigError
from vae_core.model_kinds import parameter_count
from vae_core.models import build_model

EVERY_SAVABLE_KIND = [
    dict(kind=kind, conditional=conditional, image_size=size, latent_dim=latent, hidden=hidden)
    for kind in ("mlp", "conv")
    for conditional in (False, True)
    for size in (28, 14)
    for latent, hidden in ((2, (64, 32)), (5, (48,)))
]


@pytest.mark.parametrize("settings", EVERY_SAVABLE_KIND)
def test_parameter_count_equals_the_built_models_weights(settings):
    config = ModelConfig(**settings)
    built = sum(p.numel() for p in build_model(config).parameters())
    assert parameter_count(config) == built


@pytest.mark.parametrize(
    "field, value",
    [
        ("latent_dim", 2.5),
        ("latent_dim", True),
        ("latent_dim", 0),
        ("latent_dim", 10**6),
        ("latent_dim", "2"),
        ("image_size", 28.0),
        ("image_size", 7),
        ("num_classes", 0),
        ("num_classes", 1),
        ("conditional", "yes"),
        ("hidden", (20000, 20000)),
        ("hidden", "512"),
        ("hidden", (512.5,)),
        ("hidden", (-5,)),
        ("hidden", (1,) * 50),
        ("kind", 3),
        ("kind", "transformer"),
        ("activation", "gelu;rm"),
        ("conv_channels", (1, 2, 3)),
    ],
)
def test_every_model_field_is_checked(field, value):
    with pytest.raises(ConfigError):
        ModelConfig(**{field: value})


def test_a_config_asking_for_a_huge_network_is_refused_before_allocation():
    data = dict(ModelConfig().__dict__)
    data["hidden"] = [16000, 16000, 16000]
    with pytest.raises(ConfigError, match="parameters"):
        model_config_from_dict(data)
    assert parameter_count(ModelConfig(hidden=(512, 256))) < MAX_PARAMETERS


@pytest.mark.parametrize("bad", [[], "x", 3, None, [1, 2]])
def test_model_config_must_be_an_object(bad):
    with pytest.raises(ConfigError):
        model_config_from_dict(bad)


@pytest.mark.parametrize(
    "field, value",
    [
        ("epochs", math.inf),
        ("epochs", math.nan),
        ("epochs", -1),
        ("epochs", 10**400),
        ("lr", -(10**400)),
        ("warmup_epochs", math.nan),
        ("lr", math.inf),
        ("beta", "4"),
        ("batch_size", 12.5),
        ("batch_size", True),
        ("k", "5"),
        ("num_threads", 0),
        ("lr_decay", "no"),
    ],
)
def test_every_training_field_is_checked(field, value):
    with pytest.raises(ConfigError):
        TrainConfig(**{field: value})
