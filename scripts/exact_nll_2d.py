"""The exact test NLL of the pretrained 2-D models, by quadrature, stored in their checkpoints.

    python scripts/exact_nll_2d.py [N] [--write]      # needs $VAE_DATA_DIR; default N = 200

For a 2-D latent, log p(x) is an integral over the plane that the Posterior page's grid
(`exact_posterior_grid`) computes to a few hundredths of a nat; the k = 5000 importance-sampling
estimate the CLI stores is below it in expectation (a lower bound on log p(x) on average), so its
NLL is too high. On the first N test digits (binarised by the scoring rule, seed 0) this prints both,
and with --write stores them in each 2-D checkpoint's metrics["test"] as `nll_quadrature`,
`nll_importance` (the same digits, k = 5000) and `nll_quadrature_n`; weights, configs and curves
are kept. Then run scripts/make_overview_cards.py: the checkpoints' SHA-256 changed.
About 1 s per digit per model on one CPU core: 10,000 digits would take hours here, hence N.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vae_core import (  # noqa: E402
    exact_posterior_grid,
    importance_log_px,
    load_checkpoint,
    load_digits,
    save_checkpoint,
)

MODELS = ("mlp2d", "cmlp2d")


def main(n: int, write: bool) -> None:
    torch.set_num_threads(1)
    digits = load_digits("test")
    binary = digits.fixed_binary(index=slice(0, n))
    labels = digits.labels[:n]
    for name in MODELS:
        path = REPO / "pretrained" / f"{name}.safetensors"
        checkpoint = load_checkpoint(path)
        model = checkpoint.model
        label = (lambda i: labels[i : i + 1]) if model.config.conditional else (lambda i: None)
        started = time.time()
        exact = [exact_posterior_grid(model, binary[i : i + 1], None, label(i)).log_px for i in range(n)]
        sampled = [
            importance_log_px(model, binary[i : i + 1], None, label(i), k=5000, seed=i).log_px
            for i in range(n)
        ]
        nll_exact, nll_is = -sum(exact) / n, -sum(sampled) / n
        worst = max(e - s for e, s in zip(exact, sampled, strict=True))
        print(f"{name}: first {n} test digits: NLL by quadrature {nll_exact:.3f}, by importance sampling "
              f"(k=5000) {nll_is:.3f} ({nll_is - nll_exact:+.3f}); worst digit {worst:.2f} nats; "
              f"stored NLL (k=5000, all {checkpoint.metrics['test']['n']}) {checkpoint.metrics['test']['nll']:.3f}; "
              f"{time.time() - started:.0f} s", flush=True)  # fmt: skip
        if write:
            metrics = dict(checkpoint.metrics)
            metrics["test"] = {
                **metrics["test"],
                "nll_quadrature": round(nll_exact, 4),
                "nll_importance": round(nll_is, 4),
                "nll_quadrature_n": n,
            }
            save_checkpoint(path, model, checkpoint.train_config, metrics, checkpoint.curve)


if __name__ == "__main__":
    arguments = [a for a in sys.argv[1:] if a != "--write"]
    main(int(arguments[0]) if arguments else 200, "--write" in sys.argv)
