"""The Posterior page's numbers for a 2-D model, checked against independent float64 computations.

The referee here is written from scratch in this file: the decoder copied to float64, log p(x_obs, z)
from log-sigmoids (not the library's BCE), log p(x_obs) by a fine grid sum, and the best diagonal
Gaussian by Nelder-Mead (scipy) on the continuous grid ELBO (not the library's L-BFGS on the
grid-normalised one). Issue "Every number on the screen is right": mlp2d, test digit #3, top half
hidden, showed an approximation gap of 48.93 nats where the best Gaussian loses about 0.1.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from torch.distributions import Normal

from vae_core import (
    best_gaussian_posterior,
    exact_posterior_grid,
    importance_log_px,
    load_checkpoint,
    load_digits,
    observed_mask,
)

CHECKPOINT = Path(__file__).resolve().parents[1] / "pretrained" / "mlp2d.safetensors"


@pytest.fixture(scope="module")
def mlp2d():
    if not CHECKPOINT.is_file():
        pytest.fail("pretrained/mlp2d.safetensors is not in this checkout")
    return load_checkpoint(CHECKPOINT).model.eval()


@pytest.fixture(scope="module")
def test_digits(mnist_dir):
    return load_digits("test", mnist_dir)


class Referee:
    """log p(x_obs, z) of one binary image in float64, and integrals over z on grids."""

    def __init__(self, model, binary: torch.Tensor, mask: torch.Tensor):
        self.decoder = copy.deepcopy(model.decoder).double()
        self.x = binary.double().reshape(-1)
        self.mask = mask.double().reshape(-1)

    @torch.no_grad()
    def log_joint(self, z: np.ndarray) -> np.ndarray:
        """(N, 2) latents -> (N,) log p(z) + sum over seen pixels of log Bernoulli(x | sigmoid(logit))."""
        out = []
        for part in np.array_split(z, max(1, len(z) // 8192)):
            logits = self.decoder(torch.from_numpy(part), None)
            pixels = self.x * torch.nn.functional.logsigmoid(logits) + (
                1 - self.x
            ) * torch.nn.functional.logsigmoid(-logits)
            prior = -0.5 * (torch.from_numpy(part) ** 2).sum(-1) - math.log(2 * math.pi)
            out.append(((pixels * self.mask).sum(-1) + prior).numpy())
        return np.concatenate(out)

    def grid(self, box, n: int):
        z1, z2 = np.linspace(box[0], box[1], n), np.linspace(box[2], box[3], n)
        g1, g2 = np.meshgrid(z1, z2)
        z = np.stack([g1.ravel(), g2.ravel()], 1)
        return z, (z1[1] - z1[0]) * (z2[1] - z2[0]), self.log_joint(z)

    def posterior(self):
        """log p(x_obs) and the posterior's mean, std, on a grid zoomed onto its mass (kept)."""
        z, cell, lj = self.grid((-8, 8, -8, 8), 241)
        heavy = z[lj > lj.max() - 25]
        span = heavy.max(0) - heavy.min(0) + 0.1
        lo, hi = heavy.min(0) - 0.25 * span, heavy.max(0) + 0.25 * span
        self.z, self.cell, self.lj = self.grid((lo[0], hi[0], lo[1], hi[1]), 241)
        top = self.lj.max()
        log_px = top + math.log(np.exp(self.lj - top).sum() * self.cell)
        p = np.exp(self.lj - top)
        p /= p.sum()
        mean = p @ self.z
        return log_px, mean, np.sqrt(p @ (self.z - mean) ** 2)

    @staticmethod
    def _elbo_on(z, cell, lj, mean, std) -> float:
        log_q = (-0.5 * ((z - mean) / std) ** 2 - np.log(std) - 0.5 * math.log(2 * math.pi)).sum(1)
        return float((np.exp(log_q) * (lj - log_q)).sum() * cell)

    def elbo(self, mean, std, n: int = 121) -> float:
        """E_q[log p(x_obs, z)] + H(q) with q = N(mean, std^2) integrated on a grid over +-7 std."""
        mean, std = np.asarray(mean, float), np.asarray(std, float)
        box = (mean[0] - 7 * std[0], mean[0] + 7 * std[0], mean[1] - 7 * std[1], mean[1] + 7 * std[1])
        return self._elbo_on(*self.grid(box, n), mean, std)

    def kl_to_posterior(self, mean, std, log_px: float) -> float:
        """KL(q || p(z|x_obs)) = E_q[log q - log p(x_obs, z) + log p(x_obs)], on a grid over +-7 std."""
        return log_px - self.elbo(mean, std)

    def best_gaussian(self, start_mean, start_std):
        """Nelder-Mead over (mean, log std) from the posterior's moments, on the posterior's grid."""
        fit = minimize(
            lambda t: -self._elbo_on(self.z, self.cell, self.lj, t[:2], np.exp(t[2:])),
            np.concatenate([start_mean, np.log(start_std)]),
            method="Nelder-Mead",
            options={"xatol": 1e-6, "fatol": 1e-7, "maxiter": 2000},
        )
        return fit.x[:2], np.exp(fit.x[2:])


def thresholded(test_digits, index: int) -> torch.Tensor:
    """The image the issue was measured on: grey levels thresholded at 0.5 (the page's old rule)."""
    return (test_digits.grey(index) > 0.5).float().reshape(1, -1)


def test_the_issues_digit_has_a_best_gaussian_on_its_one_peak_losing_about_a_tenth_of_a_nat(
    mlp2d, test_digits
):
    x, mask = thresholded(test_digits, 3), observed_mask("top")
    referee = Referee(mlp2d, x, mask)
    log_px, post_mean, post_std = referee.posterior()
    assert log_px == pytest.approx(-56.58, abs=0.02)  # the quadrature the page showed was right
    ref_mean, ref_std = referee.best_gaussian(post_mean, post_std)
    np.testing.assert_allclose(ref_mean, [-0.18, 2.12], atol=0.01)
    np.testing.assert_allclose(ref_std, [0.03, 0.06], atol=0.01)
    ref_gap = log_px - referee.elbo(ref_mean, ref_std)
    assert 0.05 < ref_gap < 0.15

    grid = exact_posterior_grid(mlp2d, x, mask)
    fit = best_gaussian_posterior(mlp2d, x, mask, grid=grid)
    assert fit.converged and fit.message == ""
    np.testing.assert_allclose(fit.mean, ref_mean, atol=0.005)  # not (-0.85, 1.6), where SVI stopped
    np.testing.assert_allclose(fit.std, ref_std, rtol=0.05)
    gap = grid.log_px - fit.elbo  # what the page shows
    assert gap == pytest.approx(ref_gap, abs=0.02)  # ~0.1 nats, not 48.93
    # the library's q* is as good as the referee's optimum by the referee's own ELBO
    assert referee.elbo(fit.mean, fit.std) >= referee.elbo(ref_mean, ref_std) - 0.005

    # Importance sampling from the encoder's q (the page's 1,000 draws) misses the peak: ~48 nats
    # low with an effective sample size of ~1, so it disagrees with quadrature and says so...
    encoder_is = importance_log_px(mlp2d, x, mask, k=1000)
    assert encoder_is.ess < 5 and encoder_is.disagrees_with(log_px)
    # ...while q* widened 1.5x covers the posterior and agrees within its standard error.
    proposal = Normal(torch.tensor(fit.mean[None]).float(), torch.tensor(1.5 * fit.std[None]).float())
    covered = importance_log_px(mlp2d, x, mask, k=1000, proposal=proposal)
    assert covered.ess > 300 and not covered.disagrees_with(log_px)
    assert abs(covered.log_px - log_px) < 3 * covered.std_error + 0.01


@pytest.mark.parametrize(("index", "hidden"), [(0, None), (3, None), (0, "top"), (7, "bottom")])
def test_elbo_of_q_star_is_just_under_log_px_and_the_gap_is_its_kl_to_the_posterior(
    mlp2d, test_digits, index, hidden
):
    x = test_digits.fixed_binary(index=index).reshape(1, -1)
    mask = torch.ones(784) if hidden is None else observed_mask(hidden)
    referee = Referee(mlp2d, x, mask)
    log_px, post_mean, post_std = referee.posterior()
    fit = best_gaussian_posterior(mlp2d, x, mask)
    assert fit.converged, fit.message
    margin = 4 * fit.elbo_std_error + 0.005
    # ELBO(q*) <= log p(x) <= ELBO(q*) + small: these posteriors have one peak
    assert fit.elbo <= log_px + margin
    assert log_px - fit.elbo < 0.5
    assert fit.grid_log_px == pytest.approx(log_px, abs=0.01)
    # KL(q* || p) integrated on the referee's grid equals log p(x) - ELBO(q*), both ways of getting ELBO(q*)
    kl = referee.kl_to_posterior(fit.mean, fit.std, log_px)
    assert kl >= 0
    assert kl == pytest.approx(log_px - fit.elbo, abs=margin + 0.005)
    assert kl == pytest.approx(fit.grid_kl, abs=0.01)


def test_quadrature_finds_posterior_mass_far_out_in_the_prior_tail(trained_2d, sample_digits):
    # This digit's posterior reaches z2 = -5.4, beyond the first coarse pass's [-4.5, 4.5]: the
    # grid used to stop there and miss 0.03 nats, and then ELBO(q*) came out above log p(x).
    # (Digit 4539 of the shipped training sample: of the fixture's 500 validation digits, the
    # one whose encoder q reaches furthest.)
    x = sample_digits.subset(slice(4539, 4540)).fixed_binary(0)
    log_px, mean, std = Referee(trained_2d, x, torch.ones(784)).posterior()
    assert (abs(mean) + 3 * std).max() > 5.0
    assert exact_posterior_grid(trained_2d, x).log_px == pytest.approx(log_px, abs=0.005)
    fit = best_gaussian_posterior(trained_2d, x, samples=4096)
    assert fit.converged and fit.elbo <= log_px + 4 * fit.elbo_std_error


def test_the_importance_estimates_ess_and_standard_error_follow_from_its_weights(mlp2d, test_digits):
    x, mask = test_digits.fixed_binary(index=1).reshape(1, -1), observed_mask("left")
    k = 600
    estimate = importance_log_px(mlp2d, x, mask, k=k, seed=5)
    # The same draws, weighted independently in float64
    q = mlp2d.posterior(x * mask)
    eps = torch.randn((k, 1, 2), generator=torch.Generator().manual_seed(5))
    z = (q.loc + q.scale * eps)[:, 0].detach().double()
    log_q = Normal(q.loc[0].detach().double(), q.scale[0].detach().double()).log_prob(z).sum(-1).numpy()
    log_w = Referee(mlp2d, x, mask).log_joint(z.numpy()) - log_q
    w = np.exp(log_w - log_w.max())
    assert estimate.log_px == pytest.approx(log_w.max() + math.log(w.mean()), abs=1e-3)
    ess = w.sum() ** 2 / (w**2).sum()
    assert estimate.ess == pytest.approx(ess, rel=1e-3)
    assert estimate.std_error == pytest.approx(math.sqrt(1 / ess - 1 / k), rel=1e-3)
    assert estimate.k == k


def test_q_star_that_did_not_finish_its_search_says_it_did_not_converge(mlp2d, test_digits):
    x, mask = test_digits.fixed_binary(index=0).reshape(1, -1), observed_mask("top")
    grid = exact_posterior_grid(mlp2d, x, mask)
    stopped = best_gaussian_posterior(
        mlp2d, x, mask, grid=grid, max_iter=0, samples=256
    )  # the start: moments
    assert not stopped.converged and "gradient" in stopped.message and stopped.gradient >= 1e-4
    strict = best_gaussian_posterior(mlp2d, x, mask, grid=grid, tolerance=0.0, samples=256)  # no |g| < 0
    assert not strict.converged and "gradient" in strict.message


def test_the_scoring_functions_refuse_grey_levels(mlp2d, test_digits):
    grey = test_digits.grey(0).reshape(1, -1)
    for call in (
        lambda: exact_posterior_grid(mlp2d, grey),
        lambda: best_gaussian_posterior(mlp2d, grey),
        lambda: importance_log_px(mlp2d, grey),
    ):
        with pytest.raises(ValueError, match="binary"):
            call()
