"""Derived values cached per model: a computation that needs another cached value (the latent codes
of a 14x14 model need its pooled digits) finishes, for every model kind and image size."""

import threading

import pytest

from explorer.state.registry import ModelEntry
from explorer.ui.resources import latent_codes
from vae_core import ModelConfig, build_model
from vae_core.checkpoint import Checkpoint

EVERY_SAVABLE_KIND = [
    (kind, conditional, size)
    for kind in ("mlp", "conv")
    for conditional in (False, True)
    for size in (28, 14)
]


def _entry(kind: str, conditional: bool, size: int) -> ModelEntry:
    config = ModelConfig(kind=kind, conditional=conditional, image_size=size, latent_dim=2, hidden=(32,))
    model = build_model(config).requires_grad_(False)
    return ModelEntry(f"uploaded:{kind}{size}", Checkpoint(model, config), "uploaded", f"{kind}{size}")


@pytest.mark.parametrize("kind, conditional, size", EVERY_SAVABLE_KIND)
def test_latent_codes_finish_for_every_kind_and_size(kind, conditional, size):
    entry = _entry(kind, conditional, size)
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("codes", latent_codes(entry)), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "latent_codes deadlocked on the model's cache lock"
    codes = result["codes"]
    assert codes.plane.shape[1] == 2 and len(codes.labels) == len(codes.plane)


def test_two_threads_asking_for_one_value_compute_it_once():
    entry = _entry("mlp", False, 28)
    calls, gate = [], threading.Event()

    def slow():
        calls.append(1)
        gate.wait(5)
        return object()

    threads = [threading.Thread(target=entry.cached, args=("x", slow)) for _ in range(4)]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join(10)
    assert len(calls) == 1
