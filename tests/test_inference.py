"""Inference ops: decoding, interpolation, grids, PCA maps, SVI completion, exact posterior."""

import numpy as np
import pytest
import torch

from vae_core import (
    LatentProjection,
    ModelConfig,
    build_model,
    complete_masked_image,
    decode,
    encode,
    exact_posterior_grid,
    interpolate,
    latent_grid,
    observed_mask,
    reconstruct,
    sample_prior,
)


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(kind="mlp", latent_dim=3, hidden=(64, 32)),
        ModelConfig(kind="conv", latent_dim=5),
        ModelConfig(kind="conv", latent_dim=2, image_size=14),
        ModelConfig(kind="mlp", latent_dim=2, hidden=(32,), image_size=14, conditional=True),
        ModelConfig(kind="conv", latent_dim=2, conditional=True),
    ],
)
def test_every_model_kind_maps_images_to_posteriors_and_latents_to_pixel_probabilities(config):
    model = build_model(config)
    x = torch.rand(6, config.pixels)
    labels = torch.arange(6) if config.conditional else None
    mu, sigma = encode(model, x, labels)
    assert mu.shape == sigma.shape == (6, config.latent_dim) and (sigma > 0).all()
    probs = decode(model, mu, labels)
    assert probs.shape == (6, config.pixels) and (probs >= 0).all() and (probs <= 1).all()
    assert reconstruct(model, x, labels).shape == (6, config.pixels)


def test_conditional_model_without_labels_says_what_to_pass():
    model = build_model(ModelConfig(conditional=True, hidden=(16,)))
    with pytest.raises(ValueError, match="labels"):
        encode(model, torch.rand(2, 784))


def test_an_unconditional_model_ignores_labels_even_the_no_label_minus_one():
    """Callers pass whatever labels their digits carry; VAE.label_onehot drops them for an
    unconditional model, so every library entry point gives exactly the labels=None numbers."""
    from vae_core import bounds_against_k, elbo_terms, importance_log_px, latent_activity

    model = build_model(ModelConfig(kind="mlp", latent_dim=2, hidden=(16,), image_size=14))
    x = torch.bernoulli(torch.rand(4, 196, generator=torch.Generator().manual_seed(1)))
    for labels in (torch.full((4,), -1), torch.arange(4) + 7):
        assert torch.equal(encode(model, x, labels)[0], encode(model, x)[0])
        assert torch.equal(decode(model, torch.zeros(4, 2), labels), decode(model, torch.zeros(4, 2)))
        seeded = lambda: torch.Generator().manual_seed(0)  # noqa: E731
        assert torch.equal(
            elbo_terms(model, x, labels, seeded()).elbo, elbo_terms(model, x, None, seeded()).elbo
        )
        assert torch.equal(latent_activity(model, x, labels).kl_per_dim, latent_activity(model, x).kl_per_dim)
        assert (
            bounds_against_k(model, x, labels, (1, 5)).as_dict()
            == bounds_against_k(model, x, None, (1, 5)).as_dict()
        )
        mask = torch.ones(196)
        assert (
            importance_log_px(model, x[:1], mask, labels[:1], k=50).log_px
            == importance_log_px(model, x[:1], mask, None, k=50).log_px
        )
        assert (
            exact_posterior_grid(model, x[:1], mask, labels[:1]).log_px
            == exact_posterior_grid(model, x[:1], mask).log_px
        )


def test_prior_samples_at_zero_temperature_all_decode_the_origin(trained_2d):
    z, probs = sample_prior(trained_2d, 5, temperature=0.0)
    assert (z == 0).all()
    torch.testing.assert_close(probs, decode(trained_2d, torch.zeros(5, 2)))
    z, _ = sample_prior(trained_2d, 4000, temperature=2.0, generator=torch.Generator().manual_seed(0))
    assert abs(z.std().item() - 2.0) < 0.1


def test_interpolation_hits_both_ends_and_spherical_keeps_the_norm():
    a, b = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 3.0])
    linear = interpolate(a, b, 5, "linear")
    torch.testing.assert_close(linear[0], a)
    torch.testing.assert_close(linear[-1], b)
    torch.testing.assert_close(linear[2], (a + b) / 2)
    spherical = interpolate(a, b, 5, "spherical")
    torch.testing.assert_close(spherical[-1], b)
    torch.testing.assert_close(spherical.norm(dim=1), torch.full((5,), 3.0))
    with pytest.raises(ValueError):
        interpolate(a, b, 3, "cubic")


def test_latent_grid_follows_the_gaussian_inverse_cdf():
    grid = latent_grid(5)
    assert grid.shape == (25, 2)
    expected_axis = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, 5))
    torch.testing.assert_close(grid[:5, 0], expected_axis)  # first row runs along z1
    torch.testing.assert_close(grid[::5, 1], expected_axis.flip(0))  # rows go from high z2 to low


def test_pca_projection_inverts_on_its_plane_and_explains_variance():
    torch.manual_seed(0)
    latents = torch.randn(500, 2) @ torch.randn(2, 10) + 0.01 * torch.randn(500, 10)
    projection = LatentProjection.fit(latents)
    assert projection.is_pca and sum(projection.explained) > 0.99
    points = projection.to_plane(latents)
    torch.testing.assert_close(projection.from_plane(points), latents, atol=0.05, rtol=0)
    assert "PC1" in projection.axis_labels()[0]
    identity = LatentProjection.fit(torch.randn(10, 2))
    torch.testing.assert_close(identity.from_plane(torch.tensor([[0.5, -1.0]])), torch.tensor([[0.5, -1.0]]))


def test_observed_mask_hides_exactly_the_chosen_half():
    top = observed_mask("top").reshape(28, 28)
    assert top[:14].sum() == 0 and top[14:].sum() == 14 * 28
    left = observed_mask("left", 14).reshape(14, 14)
    assert left[:, :7].sum() == 0 and left[:, 7:].all()


def test_svi_completion_raises_the_observed_elbo_and_keeps_seen_pixels(trained_8d, test_batch):
    x, mask = test_batch[3], observed_mask("bottom")
    result = complete_masked_image(trained_8d, x, mask, steps=200, n_completions=5, seed=0)
    assert result.elbo_trace.shape == (200,)
    # Starting from the prior, the fit gains several nats; step-to-step noise is under one nat.
    assert result.elbo_trace[-20:].mean() > result.elbo_trace[:5].mean() + 5
    assert result.svi_elbo.value > result.elbo_trace[0]
    assert result.completions.shape == (5, 784)
    seen = mask.bool()
    assert torch.equal(result.completions[:, seen], x[seen].expand(5, -1))
    assert all(p.grad is None for p in trained_8d.parameters())  # the model was not touched


def test_exact_posterior_grid_is_normalised_and_agrees_with_the_encoder_roughly(trained_2d, test_batch):
    grid = exact_posterior_grid(trained_2d, test_batch[0], resolution=101)
    assert np.isclose(np.exp(grid.log_posterior).sum(), 1.0, atol=1e-6)
    assert np.isclose(np.exp(grid.log_q).sum(), 1.0, atol=1e-6)
    posterior = np.exp(grid.log_posterior)
    z1, z2 = np.meshgrid(grid.z1, grid.z2)
    mean = np.array([(posterior * z1).sum(), (posterior * z2).sum()])
    # The amortised encoder is not exact, but on a training-distribution digit it lands nearby.
    assert np.linalg.norm(mean - grid.q_mean) < 1.0
    masked = exact_posterior_grid(trained_2d, test_batch[0], observed_mask("top"), resolution=61)
    assert masked.log_px > grid.log_px  # fewer observed pixels: a likelier observation


def test_exact_posterior_refuses_models_that_are_not_2d(trained_8d, test_batch):
    with pytest.raises(ValueError, match="2-D"):
        exact_posterior_grid(trained_8d, test_batch[0])


def test_svi_can_start_at_the_encoders_q_and_then_only_improves_on_it(trained_2d, test_batch):
    from vae_core import fit_posterior, observed_elbo

    mask = torch.ones(784)
    for i in range(3):
        x = test_batch[i : i + 1]
        cold = fit_posterior(trained_2d, x, mask, steps=1, lr=1e-9)
        warm = fit_posterior(trained_2d, x, mask, steps=1, lr=1e-9, start_at_encoder=True)
        q = trained_2d.posterior(x)
        torch.testing.assert_close(warm.q.loc, q.loc, atol=1e-6, rtol=0)
        torch.testing.assert_close(cold.q.loc, torch.zeros(1, 2), atol=1e-6, rtol=0)
        generator = torch.Generator().manual_seed(i)
        fitted = fit_posterior(trained_2d, x, mask, steps=150, start_at_encoder=True, generator=generator)
        with torch.no_grad():
            svi, encoder = (
                observed_elbo(trained_2d, x, mask, fit_q, None, 1000, generator) for fit_q in (fitted.q, q)
            )
        assert svi >= encoder - 0.5
