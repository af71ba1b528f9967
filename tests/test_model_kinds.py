"""A model kind is one spec (vae_core.model_kinds): building, counting, the memory estimate, the
browser's decoder, the hand-written gradients and the Train form all ask it, so a new kind is a
spec and its tests, and a network holding a layer the fast paths do not compute is refused."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from explorer.training.jobs import _default_name
from explorer.ui.latent_plane import mlp_decoder_layers
from vae_core import ModelConfig, TrainConfig, build_model
from vae_core import model_kinds as kinds
from vae_core.limits import estimate_run_memory
from vae_core.mlp_elbo_gradients import MLPElboGradients, covers
from vae_core.model_kinds import ModelKind, kind_label, offered_kinds, parameter_count


def test_the_parameter_count_agrees_with_the_layer_arithmetic():
    # 784-512-256-2 MLP: encoder 784->512->256->4, decoder 2->256->512->784, weights plus biases
    mlp = (784 * 512 + 512) + (512 * 256 + 256) + (256 * 4 + 4) + (2 * 256 + 256) + (256 * 512 + 512)
    assert parameter_count(ModelConfig(hidden=(512, 256))) == mlp + (512 * 784 + 784)
    # conv, 28x28, channels 32/64, dense 256, latent 2: two 4x4 convolutions each way
    encoder = (32 * 16 + 32) + (64 * 32 * 16 + 64) + (64 * 49 * 256 + 256) + (256 * 4 + 4)
    decoder = (2 * 256 + 256) + (256 * 64 * 49 + 64 * 49) + (64 * 32 * 16 + 32) + (32 * 16 + 1)
    assert parameter_count(ModelConfig(kind="conv", hidden=())) == encoder + decoder


def test_the_browser_decodes_an_mlp_with_the_specs_layers_and_no_conv():
    config = ModelConfig(latent_dim=3, hidden=(16, 8), activation="tanh")
    model = build_model(config, seed=1)
    z = torch.randn(5, 3)
    h = z.numpy()
    layers = mlp_decoder_layers(model)
    for i, (weight, bias) in enumerate(layers):
        h = h @ weight.T + bias
        if i < len(layers) - 1:
            h = np.tanh(h)
    np.testing.assert_allclose(h, model.decoder_logits(z).detach().numpy(), atol=1e-5)
    assert mlp_decoder_layers(build_model(ModelConfig(kind="conv", image_size=14))) is None


def test_a_layer_the_fast_paths_do_not_compute_is_refused_not_dropped():
    model = build_model(ModelConfig(latent_dim=2, hidden=(16,)))
    model.encoder.net.insert(1, nn.LayerNorm(16))  # the hand gradients would skip it without a word
    with pytest.raises(NotImplementedError, match="LayerNorm"):
        MLPElboGradients(model, torch.Generator())
    model.decoder.net.insert(1, nn.Dropout(0.1))
    with pytest.raises(NotImplementedError, match="Dropout"):
        mlp_decoder_layers(model)


def test_the_form_and_run_names_use_the_kinds_labels():
    assert offered_kinds() == [
        ("MLP", "mlp", False),
        ("conv", "conv", False),
        ("conditional MLP", "mlp", True),
    ]
    name = _default_name(ModelConfig(conditional=True), TrainConfig(epochs=2), 4)
    assert name == "run 4: 2-D conditional MLP, 2 ep, ELBO"


def test_a_new_kind_is_one_spec(monkeypatch):
    """An MLP with a normalisation layer, added as a third kind: everything asks its spec."""

    def networks(config):
        encoder, decoder = kinds.MLP.networks(config)
        encoder.net.insert(1, nn.LayerNorm(config.hidden[0]))
        return encoder, decoder

    normed = ModelKind(
        name="mlp_norm", label="normalised MLP", networks=networks, describe=kinds.MLP.describe,
        row_floats=kinds.MLP.row_floats, validation_advice=kinds.MLP.validation_advice,
        browser_layers=None, hand_gradients=False, form_conditional=False,
    )  # fmt: skip
    monkeypatch.setitem(kinds.SPECS, "mlp_norm", normed)
    config = ModelConfig(kind="mlp_norm", latent_dim=2, hidden=(32,))
    model = build_model(config, seed=0)  # LayerNorm's weights need an initialisation rule, or it raises
    assert parameter_count(config) == sum(p.numel() for p in model.parameters())
    assert parameter_count(config) == parameter_count(dataclasses.replace(config, kind="mlp")) + 2 * 32
    assert estimate_run_memory(config, TrainConfig()).peak > 0
    assert not covers(config, TrainConfig(), distributed=False)
    assert mlp_decoder_layers(model) is None
    assert ("normalised MLP", "mlp_norm", False) in offered_kinds()
    assert kind_label("mlp_norm", True) == "conditional normalised MLP"
