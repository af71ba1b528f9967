"""Which models the app can show: the committed pretrained checkpoints (loaded once per server,
shared read-only by every session) plus the models a session trained or uploaded (its own), and
what those visitors' models may take of the server's memory (`SessionModelBudget`).
"""

from __future__ import annotations

import dataclasses
import gc
import os
import threading
import weakref
from collections.abc import MutableMapping
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


@dataclass(eq=False)  # compared and hashed by identity: the server's budget holds entries in a WeakSet
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

    def __post_init__(self) -> None:
        if self.origin != "pretrained":  # a visitor's model: counted in the server's budget while it lives
            _visitor_models.add(self)

    def resident_bytes(self) -> int:
        """What this model holds in memory now: its float32 weights and everything derived from it
        and cached on it (latent codes, the latent plane's payload with the decoder's weights, …)."""
        weights = sum(p.numel() * p.element_size() for p in self.model.parameters())
        with self.lock:
            cached = list(self.cache.values())
        return weights + sum(_payload_bytes(value) for value in cached)

    def expected_bytes(self) -> int:
        """What this model comes to hold once the pages have used it, whichever is larger of that
        and what it holds now: its weights, the plane payload's float32 copy of its decoder, and the
        codes and plane points of EXPLORED_DIGITS digits (plus their 14x14 pooling for a 14x14 model)."""
        weights = sum(p.numel() * 4 for p in self.model.parameters())
        decoder = sum(p.numel() * 4 for p in self.model.decoder.parameters())
        latent = self.config.latent_dim
        # float32 mu and sigma (the map's codes and the plane's), plane points and the payload's copy
        codes = 4 * EXPLORED_DIGITS * (4 * latent + 4)
        pooled = 4 * EXPLORED_DIGITS * self.config.pixels if self.config.image_size != 28 else 0
        return max(weights + decoder + codes + pooled, self.resident_bytes())

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


# ------------------------------------------------------------------------- visitors' models' memory
MB = 1_000_000
EXPLORED_DIGITS = 10_000  # the most test digits a page encodes for one model (the plane's points)
# Every trained or uploaded ModelEntry alive in this process (any session's): held weakly, so a
# model leaves the count once its session drops it (a closed tab, after Streamlit's session TTL).
_visitor_models: weakref.WeakSet[ModelEntry] = weakref.WeakSet()


def _payload_bytes(value, depth: int = 0) -> int:
    """Bytes held by a cached value: tensors, arrays, bytes and strings, inside dataclasses, dicts,
    lists and tuples (a few levels deep; anything else counts as nothing)."""
    if depth > 4:
        return 0
    if hasattr(value, "untyped_storage"):  # torch.Tensor (views of one storage are rare here)
        return value.numel() * value.element_size()
    if hasattr(value, "nbytes") and hasattr(value, "dtype"):  # numpy arrays
        return int(value.nbytes)
    if isinstance(value, (bytes, bytearray, str)):
        return len(value)
    if isinstance(value, dict):
        return sum(_payload_bytes(v, depth + 1) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_payload_bytes(v, depth + 1) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(_payload_bytes(getattr(value, f.name), depth + 1) for f in dataclasses.fields(value))
    if hasattr(value, "__dict__"):  # a small object holding arrays (a LatentProjection)
        return sum(_payload_bytes(v, depth + 1) for v in vars(value).values())
    return 0


class ModelBudgetError(Exception):
    """An upload the server has no room for; the message says why and what to do."""


@dataclass(frozen=True)
class SessionModelBudget:
    """What visitors' models may hold: each session keeps at most `uploads_per_session` uploaded
    models (a new upload makes the session's oldest one leave), and all trained and uploaded models
    of every session together at most `total_mb` (by `ModelEntry.expected_bytes`), past which an
    upload is refused. Pretrained models are the server's own and not counted."""

    uploads_per_session: int = 3  # $VAE_MAX_UPLOADS_PER_SESSION
    total_mb: float = 80.0  # $VAE_MAX_VISITOR_MODELS_MB

    ENV = {"uploads_per_session": "VAE_MAX_UPLOADS_PER_SESSION", "total_mb": "VAE_MAX_VISITOR_MODELS_MB"}

    @classmethod
    def from_env(cls) -> SessionModelBudget:
        from vae_core.limits import env_number  # here: importing the registry needs no torch

        defaults = cls()
        return cls(
            env_number(cls.ENV["uploads_per_session"], defaults.uploads_per_session, integer=True),
            env_number(cls.ENV["total_mb"], defaults.total_mb),
        )

    def add_upload(self, session: MutableMapping[str, ModelEntry], entry: ModelEntry) -> list[ModelEntry]:
        """Put `entry` (just loaded) into `session` (its models by key), making room: returns the
        session's uploads that left for it, oldest first. Raises ModelBudgetError, changing nothing,
        when all visitors' models with it would pass `total_mb`."""
        with _budget_lock:  # two sessions uploading at once must not both take the last room
            uploads = [key for key, held in session.items() if held.origin == "uploaded"]
            leaving = uploads[: max(0, len(uploads) + 1 - self.uploads_per_session)]
            need = entry.expected_bytes()
            held = self._held_bytes(entry, [session[key] for key in leaving])
            if held + need > self.total_mb * MB:
                gc.collect()  # models of ended sessions may wait for the cycle collector: count again
                held = self._held_bytes(entry, [session[key] for key in leaving])
            if held + need > self.total_mb * MB:
                raise ModelBudgetError(
                    f"This server already holds {held / MB:,.0f} MB of models that visitors trained or "
                    f"uploaded, and this one needs {need / MB:,.1f} MB: together they would pass its limit "
                    f"of {self.total_mb:,.0f} MB. Try again later, or use a pretrained model."
                )
            left = [session.pop(key) for key in leaving]
            session[entry.key] = entry
            return left

    @staticmethod
    def _held_bytes(entry: ModelEntry, leaving: list[ModelEntry]) -> int:
        """All visitors' models but `entry` and those about to leave, by `expected_bytes`."""
        skipped = {id(entry), *map(id, leaving)}
        return sum(held.expected_bytes() for held in list(_visitor_models) if id(held) not in skipped)


_budget_lock = threading.Lock()
