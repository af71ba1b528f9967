"""The glossary: the one home of the words the pages use, as data (term -> definition, Markdown).

explorer/ui/glossary.py draws the terms a page names; tests/test_glossary.py checks that every page
that uses a term offers its definition. Definitions avoid underscores and dollar signs, which
Markdown would read as emphasis and LaTeX.
"""

from __future__ import annotations

import re

GLOSSARY = {
    "nats": (
        "The unit of a log-probability taken with the natural logarithm: log p(x) = −100 nats means "
        "p(x) = e⁻¹⁰⁰. One nat is 1/ln 2 ≈ 1.443 bits. Every figure here is per image (summed over its "
        "pixels): higher log-likelihoods, ELBOs and bounds are better, lower NLLs are better."
    ),
    "bits/dim": (
        "Bits per dimension: a negative log-likelihood (or −ELBO) per pixel and in bits, −log p(x) / (D · ln 2) "
        "with D pixels (784 for 28×28 MNIST, 196 for 14×14). It compares models across image sizes; lower is "
        "better. It is a unit, not a change: the card shows it below the figure in nats."
    ),
    "ELBO": (
        "Evidence lower bound: E over q(z|x) of log p(x|z), minus KL(q(z|x) ‖ p(z)). It equals "
        "log p(x) − KL(q(z|x) ‖ p(z|x)), so it is at most log p(x), and its gap to log p(x) is exactly the "
        "KL divergence of the encoder's q(z|x) from the true posterior p(z|x). A VAE trained on the ELBO "
        "maximises it over encoder and decoder together."
    ),
    "IWAE": (
        "Importance-weighted bound (Burda et al. 2015): Lₖ = E[log (1/k) Σᵢ p(x, zᵢ) / q(zᵢ|x)] with "
        "z₁ … zₖ drawn from q(z|x). L₁ is the ELBO; Lₖ never decreases with k and tends to log p(x) as "
        "k → ∞. It is used two ways: to estimate log p(x) (k = 5000: the test NLL and the Overview's bound "
        "curve), and as a training objective (a card's *Objective: IWAE, k=5*), maximised in place of "
        "the ELBO. With Lₖ as the objective, the encoder's q(z|x) only has to be a good proposal for k draws, not a "
        "close fit to the posterior, and it grows wider than an ELBO-trained one: such a model's ELBO "
        "sits further below its log p(x), and the amortisation gap the Posterior page shows (for the "
        "IWAE-trained mlp2d, say) is larger than the same network trained on the ELBO would have."
    ),
    "KL": (
        "Kullback–Leibler divergence KL(q ‖ p) = E over q of log q(z) − log p(z), never negative and 0 "
        "only when q = p; read *the KL divergence of q from p* (it is not symmetric). In the ELBO, "
        "KL(q(z|x) ‖ p(z)) says how far the encoder's Gaussian for this digit lies from the prior N(0, I); "
        "for diagonal Gaussians it is a sum over latent dimensions, shown per dimension on several pages."
    ),
    "active units": (
        "A latent dimension u is active when the encoder's mean for it moves with the image: the variance "
        "over test digits of the mean of q(zᵤ|x) exceeds 0.01 (Burda et al. 2015). An inactive "
        "(collapsed) dimension has q(zᵤ|x) ≈ the prior N(0, 1) for every digit, a KL near 0, and the "
        "decoder ignores it."
    ),
    "amortisation gap": (
        "One part of log p(x) − ELBO (Cremer et al. 2018): ELBO(q*) − ELBO(q(z|x)), what the encoder "
        "loses on this digit against q*, the best distribution of its family (a diagonal Gaussian) fitted "
        "to this digit alone. It is the price of one network that encodes every digit; never negative "
        "when q* is truly the best."
    ),
    "approximation gap": (
        "The other part of log p(x) − ELBO (Cremer et al. 2018): log p(x) − ELBO(q*) = KL(q* ‖ p(z|x)), "
        "what even the best Gaussian q* misses because the true posterior is not Gaussian. Approximation "
        "gap + amortisation gap = log p(x) − ELBO of the encoder."
    ),
}

# How each term shows in a page's text: a page whose text matches a pattern must offer that term.
MENTIONS = {
    "nats": r"\bnats?\b",
    "bits/dim": r"bits/dim|bits per (dimension|pixel)",
    "ELBO": r"\bELBO\b",
    "IWAE": r"\bIWAE\b",
    "KL": r"\bKL\b",
    "active units": r"\bactive\b",
    "amortisation gap": r"amortis",
    "approximation gap": r"approximation gap",
}


def terms_mentioned(text: str) -> list[str]:
    """The glossary's terms that `text` uses, in the glossary's order."""
    return [term for term in GLOSSARY if re.search(MENTIONS[term], text, flags=re.IGNORECASE)]
