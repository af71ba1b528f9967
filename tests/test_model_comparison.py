"""explorer.state.comparison and explorer.figures.comparison: two models' numbers on the same digits, and the overlaid figures.

Expected values come from vae_core's own entry points (elbo_terms, latent_activity, iwae_bound,
log_likelihood_estimate) called directly on the digits the comparison documents: the first 2000
digits binarised once, and the first 100 of those for the bounds.
"""

from __future__ import annotations

import math

import pytest
import torch

from explorer.figures import comparison as comparison_figures
from explorer.state import comparison
from explorer.state.registry import ModelEntry
from vae_core import Checkpoint, ModelConfig, build_model, elbo_terms, iwae_bound, log_likelihood_estimate
from vae_core.diagnostics import LatentActivity, latent_activity

FAST_KS = (1, 5, 300)  # 300 > 2**23 / (100 * 784): exercises the chunked log p(x) path too


@pytest.fixture(autouse=True)
def _few_importance_samples(monkeypatch):
    monkeypatch.setattr(comparison, "BOUND_KS", FAST_KS)


def tiny_entry(name: str, latent_dim: int, conditional: bool = False, seed: int = 0) -> ModelEntry:
    torch.manual_seed(seed)
    config = ModelConfig(latent_dim=latent_dim, hidden=(32,), conditional=conditional)
    model = build_model(config).eval().requires_grad_(False)
    return ModelEntry(f"trained:{name}", Checkpoint(model, config), "trained", name)


def first_digits(digits, conditional: bool):
    """What the comparison documents: 2000 digits binarised once; the bounds on the first 100."""
    x = digits.subset(slice(0, 2000)).fixed_binary()
    labels = digits.labels[:2000] if conditional else None
    return x, labels, x[:100], None if labels is None else labels[:100]


def seeded() -> torch.Generator:
    return torch.Generator().manual_seed(comparison.NOISE_SEED)


@pytest.mark.parametrize("conditional", [False, True])
def test_summary_equals_vae_core_on_the_same_digits(sample_digits, conditional):
    entry = tiny_entry("small", 4, conditional)
    summary = comparison.summarise(entry, sample_digits)
    x, labels, x100, labels100 = first_digits(sample_digits, conditional)

    terms = elbo_terms(entry.model, x, labels, seeded())
    assert summary.elbo == pytest.approx(float(terms.elbo.mean()), abs=1e-4)
    assert summary.recon == pytest.approx(float(terms.recon.mean()), abs=1e-4)
    assert summary.kl == pytest.approx(float(terms.kl.mean()), abs=1e-4)
    assert summary.elbo == pytest.approx(summary.recon - summary.kl, abs=1e-3)
    activity = latent_activity(entry.model, x, labels)
    torch.testing.assert_close(summary.activity.kl_per_dim, activity.kl_per_dim)
    assert summary.activity.active_count == activity.active_count

    assert sorted(summary.bounds) == list(FAST_KS)
    assert summary.bounds[1] == pytest.approx(
        float(iwae_bound(entry.model, x100, labels100, 1, seeded()).mean()), abs=1e-4
    )
    expected_log_px = float(log_likelihood_estimate(entry.model, x100, labels100, 300, seeded()).mean())
    assert summary.log_px == pytest.approx(expected_log_px, abs=1e-4)
    assert summary.bound_gap == pytest.approx(summary.log_px - summary.bounds[1], abs=1e-6)
    assert (summary.activity_digits, summary.bound_digits) == (2000, 100)
    assert summary.likelihood_name == ("log p(x|y)" if conditional else "log p(x)")


def test_a_models_numbers_do_not_depend_on_what_it_is_compared_with(sample_digits):
    # cached on the entry: the second call computes nothing and returns the same numbers
    entry = tiny_entry("again", 3)
    first = comparison.summarise(entry, sample_digits, "A")
    entry.cache["iwae_curve"] = {k: math.nan for k in FAST_KS}  # a recomputation would not give NaN
    second = comparison.summarise(entry, sample_digits, "B")
    assert math.isnan(second.log_px)
    assert (second.elbo, second.kl) == (first.elbo, first.kl)


def test_the_bound_rises_above_the_elbo_for_a_trained_model(trained_2d, sample_digits):
    config = ModelConfig(latent_dim=2, hidden=(256, 128))
    entry = ModelEntry("trained:2d", Checkpoint(trained_2d, config), "trained", "2d")
    summary = comparison.summarise(entry, sample_digits)
    assert summary.bound_gap > 0.5  # many samples recover what one-sample q(z|x) misses
    assert summary.log_px > summary.elbo


def test_progress_reports_the_share_of_samples_done(sample_digits):
    entry = tiny_entry("progress", 2)
    x = sample_digits.subset(slice(0, 20)).fixed_binary()
    reports = []
    comparison.iwae_curve(entry.model, x, None, ks=(1, 9, 90), progress=lambda f, k: reports.append((f, k)))
    before_each_k = [(0.0, 1), (1 / 100, 9), (10 / 100, 90), (1.0, 90)]
    assert all(r in reports for r in before_each_k)
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and reports[-1] == (1.0, 90)


def summary(
    name, latent_dim=3, conditional=False, active=(True, True, False), bounds=None
) -> comparison.ModelSummary:
    kl = torch.linspace(2.0, 0.0, latent_dim)
    activity = LatentActivity(kl, kl, torch.tensor(active[:latent_dim]))
    return comparison.ModelSummary(
        name=name, conditional=conditional, latent_dim=latent_dim, parameters=1000 + latent_dim,
        image_size=28, elbo=-100.123, recon=-90.0, kl=10.123, activity=activity,
        bounds=bounds or {1: -100.0, 10: -97.5, 5000: -96.25}, activity_digits=2000, bound_digits=100,
    )  # fmt: skip


def test_table_holds_each_models_numbers_in_its_column():
    first = summary("alpha", bounds={1: -100.0, 5000: -96.254})
    second = summary(
        "beta", latent_dim=2, conditional=True, active=(True, False), bounds={1: -90.0, 5000: -88.0}
    )
    table = comparison.comparison_table(first, second)
    assert list(table.columns) == ["alpha", "beta", "measured on"]
    assert table.loc["Latent size", "alpha"] == "3" and table.loc["Latent size", "beta"] == "2"
    assert table.loc["Parameters", "beta"] == "1,002"
    assert table.loc["Active units", "alpha"] == "2" and table.loc["Active units", "beta"] == "1"
    assert table.loc["ELBO (nats)", "alpha"] == "-100.12"
    likelihood_row = "log p(x) | log p(x|y) estimate, k=5000 (nats)"  # mixed: both named, in column order
    assert table.loc[likelihood_row, "alpha"] == "-96.25" and table.loc[likelihood_row, "beta"] == "-88.00"
    assert table.loc["Bound gap k=5000 − k=1 (nats)", "alpha"] == "3.75"
    assert table.loc["ELBO (nats)", "measured on"] == "first 2,000 test digits"
    assert table.loc[likelihood_row, "measured on"] == "first 100 test digits"


def test_table_names_log_p_x_given_y_when_both_models_are_conditional():
    table = comparison.comparison_table(summary("a", conditional=True), summary("b", conditional=True))
    assert "log p(x|y) estimate, k=5000 (nats)" in table.index


def test_kl_overlay_has_one_sorted_bar_trace_per_model():
    first, second = summary("alpha"), summary("beta", latent_dim=2, active=(True, False))
    figure = comparison_figures.kl_overlay_figure([first, second])
    assert [trace.type for trace in figure.data] == ["bar", "bar"]
    assert [trace.name for trace in figure.data] == ["alpha", "beta"]
    assert [len(trace.y) for trace in figure.data] == [3, 2]
    for trace in figure.data:
        assert list(trace.y) == sorted(trace.y, reverse=True)
    assert list(figure.data[0].marker.opacity) == [1.0, 1.0, 0.3]  # the inactive dimension is faded


def test_bound_overlay_has_one_curve_per_model_labelled_with_what_it_bounds():
    first = summary("alpha")
    second = summary("beta", conditional=True, bounds={1: -90.0, 2: -89.0, 5: -88.5, 5000: -88.0})
    figure = comparison_figures.bounds_overlay_figure([first, second])
    assert [trace.name for trace in figure.data] == ["alpha — log p(x)", "beta — log p(x|y)"]
    assert list(figure.data[0].x) == [1, 10, 5000] and list(figure.data[0].y) == [-100.0, -97.5, -96.25]
    assert len(figure.data[1].x) == 4
    assert figure.layout.xaxis.type == "log"


def test_two_models_with_one_name_get_their_origin():
    pretrained, uploaded = tiny_entry("best", 2), tiny_entry("best", 2)
    pretrained.origin, uploaded.origin = "pretrained", "uploaded"
    assert comparison.distinct_names(pretrained, uploaded) == ("best (pretrained)", "best (uploaded)")
    assert comparison.distinct_names(tiny_entry("a", 2), tiny_entry("b", 2)) == ("a", "b")


def test_importance_sampling_leaves_the_models_lock_free_for_other_pages(sample_digits):
    # the lock also guards every page's cached arrays of the model: 20 s of sampling under it
    # would stall the Latent map of the same model in every other session
    entry = tiny_entry("unlocked", 2)
    held = []
    comparison.bounds_of(entry, sample_digits, progress=lambda fraction, k: held.append(entry.lock.locked()))
    assert held and not any(held)
    assert entry.cache["iwae_curve"] is comparison.bounds_of(entry, sample_digits)  # stored once, reused
