"""The Overview's first paint: the model card shipped for each pretrained checkpoint
(pretrained/overview_cards.json, made by scripts/make_overview_cards.py), shown before torch loads.

A shipped card must be what the script makes from today's checkpoints, must be dropped once its
checkpoint changes, and must be enough to draw the title and the card without importing torch.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from explorer.state.registry import load_pretrained_models
from explorer.ui import resources
from vae_core import count_parameters

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "pretrained"


def pixels(card: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(card["prior_samples_png"]))), dtype=np.int16)


@pytest.fixture
def cards_from(monkeypatch):
    """pretrained_cards() as the app would read them from a given directory."""

    def read(directory: Path) -> dict:
        monkeypatch.setattr(resources, "PRETRAINED_DIR", directory)
        resources.pretrained_cards.clear()
        return resources.pretrained_cards()

    yield read
    resources.pretrained_cards.clear()


def test_the_shipped_cards_are_what_the_script_makes_from_the_checkpoints():
    shipped = json.loads((SHIPPED / resources.CARDS_FILE).read_text())["cards"]
    made = resources.overview_cards(SHIPPED)["cards"]
    assert [card["file"] for card in shipped] == [card["file"] for card in made]
    for old, new in zip(shipped, made, strict=True):
        text = {k: v for k, v in old.items() if k != "prior_samples_png"}
        assert text == {k: v for k, v in new.items() if k != "prior_samples_png"}, old["file"]
        # the same seeded samples; another CPU's float rounding may move a grey level by one
        assert pixels(old).shape == pixels(new).shape
        assert np.abs(pixels(old) - pixels(new)).max() <= 1, old["file"]


def test_every_shipped_card_is_used_and_matches_its_model(cards_from):
    cards = cards_from(SHIPPED)
    entries = load_pretrained_models(SHIPPED)
    assert list(cards) == list(entries)  # the picker's order
    for key, entry in entries.items():
        shown = {label: value for label, value, _, _ in cards[key]["metrics"]}
        assert cards[key]["label"] == entry.label
        assert shown["Latent size"] == str(entry.config.latent_dim)
        assert shown["Parameters"] == f"{count_parameters(entry.model):,}"
        assert shown[f"Test NLL (k={entry.test_metrics['k']})"] == f"{entry.test_metrics['nll']:.2f}"


def test_a_card_is_dropped_once_its_checkpoint_changed(tmp_path, cards_from):
    for path in SHIPPED.glob("*.safetensors"):
        shutil.copy(path, tmp_path / path.name)
    shutil.copy(SHIPPED / resources.CARDS_FILE, tmp_path / resources.CARDS_FILE)
    assert cards_from(tmp_path)  # an exact copy: used
    first, second = json.loads((SHIPPED / resources.CARDS_FILE).read_text())["cards"][:2]
    shutil.copy(SHIPPED / second["file"], tmp_path / first["file"])  # another model under its name
    assert cards_from(tmp_path) == {}
    # then the picker waits for the models and labels them itself
    assert resources.model_labels() == {key: e.label for key, e in resources.pretrained_models().items()}


def test_a_checkpoint_without_a_card_makes_the_cards_unused(tmp_path, cards_from):
    for path in SHIPPED.glob("*.safetensors"):
        shutil.copy(path, tmp_path / path.name)
    shutil.copy(SHIPPED / resources.CARDS_FILE, tmp_path / resources.CARDS_FILE)
    shutil.copy(SHIPPED / next(SHIPPED.glob("*.safetensors")).name, tmp_path / "extra.safetensors")
    assert cards_from(tmp_path) == {}


# Run in a fresh interpreter where importing torch fails: how far does the Overview get?
WITHOUT_TORCH = """
import importlib.abc, json, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "torch":
            raise ImportError("torch is blocked in this test")

sys.meta_path.insert(0, NoTorch())
from streamlit.testing.v1 import AppTest

at = AppTest.from_file("app.py", default_timeout=60)
at.run()
print(json.dumps({
    "titles": [t.value for t in at.title],
    "headers": [h.value for h in at.header],
    "metrics": {m.label: m.value for m in at.metric},
    "captions": [c for image in at.image for c in image.captions],
    "picker": at.sidebar.selectbox(key="model_picker").value,
    "exceptions": [e.value for e in at.exception],
}))
"""


def test_the_overview_draws_the_title_and_model_card_before_it_imports_torch():
    env = {**os.environ, "VAE_PRETRAINED_DIR": str(SHIPPED), "VAE_OFFLINE": "1"}
    run = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    shown = json.loads(run.stdout.strip().splitlines()[-1])
    first = next(iter(load_pretrained_models(SHIPPED).values()))
    assert shown["picker"] == first.key
    assert shown["titles"] == ["VAE Explorer"]
    assert shown["headers"] == [f"Model card · {first.name}"]
    assert shown["metrics"]["Latent size"] == str(first.config.latent_dim)
    assert shown["metrics"]["Parameters"] == f"{count_parameters(first.model):,}"
    assert shown["metrics"][f"Test NLL (k={first.test_metrics['k']})"] == f"{first.test_metrics['nll']:.2f}"
    assert "Prior samples" in shown["captions"]
    # and the page stopped right after the card, at its first import of torch
    assert len(shown["exceptions"]) == 1 and "torch is blocked" in shown["exceptions"][0]
