"""Which models the app can show: the committed pretrained checkpoints (loaded once per server,
shared read-only by every session) plus the models a session trained or uploaded (its own).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # vae_core imports torch: the Overview's first paint reads PRETRAINED_DIR without it
    from vae_core import Checkpoint

PRETRAINED_DIR = Path(
    os.environ.get("VAE_PRETRAINED_DIR") or Path(__file__).resolve().parents[2] / "pretrained"
)
# The order the picker offers them in: the 2-D model first, since its latent map needs no PCA.
PREFERRED_ORDER = ("mlp2d", "cmlp2d", "best", "mlp20")


@dataclass
class ModelEntry:
    """A model the pages can use. `cache` holds derived read-only arrays (codes, projections)."""

    key: str
    checkpoint: Checkpoint
    origin: str  # "pretrained" | "trained" | "uploaded"
    name: str
    cache: dict = field(default_factory=dict, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def model(self):
        return self.checkpoint.model

    @property
    def config(self):
        return self.checkpoint.model_config

    @property
    def test_metrics(self) -> dict:
        return self.checkpoint.metrics.get("test") or {}

    @property
    def label(self) -> str:
        parts = [self.name, self.config.describe()]
        nll = self.test_metrics.get("nll")
        if nll is not None:
            parts.append(f"NLL {nll:.1f}")
        if self.origin != "pretrained":
            parts.append(self.origin)
        return " · ".join(parts)

    _name_locks: dict = field(default_factory=dict, repr=False)

    def cached(self, name: str, compute):
        """Compute a derived value once per model (thread-safe: sessions share pretrained models).

        One lock per name, not one per model: a computation may need another cached value (the
        latent codes need the 14x14 digits), and holding a single non-reentrant lock across
        `compute()` deadlocked the session on every 14x14 model.
        """
        with self.lock:
            name_lock = self._name_locks.setdefault(name, threading.Lock())
        with name_lock:
            if name not in self.cache:
                self.cache[name] = compute()
            return self.cache[name]


def _order(path: Path) -> tuple[int, str]:
    stem = path.stem
    return (PREFERRED_ORDER.index(stem) if stem in PREFERRED_ORDER else len(PREFERRED_ORDER), stem)


def load_pretrained_models(directory: Path = PRETRAINED_DIR) -> dict[str, ModelEntry]:
    """Every readable checkpoint in `directory`; an unreadable one is skipped, not fatal."""
    from vae_core import load_checkpoint

    entries: dict[str, ModelEntry] = {}
    for path in sorted(directory.glob("*.safetensors"), key=_order):
        try:
            checkpoint = load_checkpoint(path)
        except Exception:  # a broken file must not take the whole app down
            continue
        checkpoint.model.requires_grad_(False)  # shared by sessions: inference only
        key = f"pretrained:{path.stem}"
        entries[key] = ModelEntry(key, checkpoint, "pretrained", path.stem)
    return entries
