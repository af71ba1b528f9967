"""Posterior-collapse and bound-tightness diagnostics against direct computations."""

import torch
from torch.distributions import kl_divergence

from vae_core import ModelConfig, bounds_by_k, build_model, latent_activity


def test_latent_activity_sums_to_the_total_kl_and_finds_a_collapsed_dimension(trained_8d, test_batch):
    activity = latent_activity(trained_8d, test_batch)
    q = trained_8d.posterior(test_batch)
    total = kl_divergence(q, trained_8d.prior()).sum(-1).mean()
    torch.testing.assert_close(activity.kl_per_dim.sum(), total)
    assert activity.active_count <= 8 and activity.active_count >= 1

    collapsed = build_model(ModelConfig(latent_dim=3, hidden=(16,)))
    with torch.no_grad():
        head = collapsed.encoder.net[-1]
        head.weight[[0, 3]] = 0.0  # mean and log-variance of z_0 ignore the image...
        head.bias[[0, 3]] = 0.0  # ...and equal the prior's: N(0, 1)
    activity = latent_activity(collapsed, (torch.rand(200, 784) < 0.2).float())
    assert not activity.active[0] and activity.kl_per_dim[0].abs() < 1e-6


def test_bounds_tighten_with_k_from_the_elbo_towards_log_px(trained_8d, test_batch):
    # Across seeds the estimates move by ~0.4 nats; steps of 10x in k gain more than that here.
    bounds = bounds_by_k(trained_8d, test_batch, ks=(1, 10, 1000))
    assert bounds[1] < bounds[10] < bounds[1000]
    assert bounds[10] - bounds[1] > 1.0


def test_gaps_add_up_and_the_best_gaussian_sits_between_the_encoder_and_log_px(trained_2d, test_batch):
    from vae_core import best_gaussian_posterior, inference_gaps

    summary = inference_gaps(trained_2d, test_batch[:3])
    assert summary.exact and bool(summary.converged.all())
    total = (summary.log_px - summary.encoder_elbo).mean()
    assert abs(total - (summary.amortisation_gap + summary.approximation_gap)) < 1e-9
    # an ELBO never beats log p(x): 4,096 draws from a q* this close to the posterior vary by ~0.01
    assert (summary.q_star_elbo <= summary.log_px + 0.03).all()
    # the best Gaussian is at least as good as the encoder's (whose ELBO estimate varies by ~0.1)
    assert (summary.q_star_elbo >= summary.encoder_elbo - 0.3).all()
    # each digit's numbers are the library's best Gaussian for that digit, nothing else
    alone = best_gaussian_posterior(trained_2d, test_batch[1:2], samples=4096, seed=1)
    assert summary.q_star_elbo[1] == alone.elbo and summary.log_px[1] == alone.grid_log_px


def test_gaps_beyond_two_dimensions_use_svi_and_say_they_are_not_exact(trained_8d, test_batch):
    from vae_core import inference_gaps

    summary = inference_gaps(trained_8d, test_batch[:2], svi_steps=20, k=200, elbo_samples=256)
    assert not summary.exact and not summary.converged.any()
    assert summary.log_px.shape == summary.q_star_elbo.shape == (2,)


def test_one_digits_bounds_rise_from_its_elbo_to_its_quadrature_log_px(trained_2d, test_batch):
    from vae_core import elbo_terms, exact_posterior_grid, repeated_bounds_by_k

    x = test_batch[:1]
    means, stds = repeated_bounds_by_k(trained_2d, x, ks=(1, 50, 5000), repeats=5)
    assert means[0] < means[1] < means[2]
    # Independent checks: the ELBO from 20,000 single-sample draws (analytic KL), and log p(x) as a
    # grid sum over the latent plane (no sampling at all).
    with torch.no_grad():
        draws = elbo_terms(trained_2d, x.expand(20_000, -1), generator=torch.Generator().manual_seed(7)).elbo
    assert abs(means[0] - draws.mean()) < 4 * (draws.std() / 20_000**0.5 + stds[0])
    exact = exact_posterior_grid(trained_2d, x).log_px
    assert means[2] <= exact + 0.1  # a lower bound in expectation (0.1 for grid error)
    assert exact - means[2] < 0.5  # and, with 5000 samples in two dimensions, a tight one


def test_repeated_bounds_need_two_repeats(trained_2d, test_batch):
    import pytest

    from vae_core import repeated_bounds_by_k

    with pytest.raises(ValueError, match="at least 2"):
        repeated_bounds_by_k(trained_2d, test_batch[:1], repeats=1)


def test_bound_progress_moves_within_a_large_k_and_ends_at_one(trained_8d, test_batch):
    seen: list[float] = []
    with_progress = bounds_by_k(trained_8d, test_batch, ks=(1, 5000), progress=seen.append)
    assert with_progress == bounds_by_k(trained_8d, test_batch, ks=(1, 5000))  # reporting changes nothing
    inside = [f for f in seen if 1 / 5001 < f < 1.0]
    assert len(inside) >= 2 and seen == sorted(seen) and seen[-1] == 1.0  # k=5000 is drawn in chunks
