"""Visitor text in messages: `visitor_text.inert` makes one code span that shows the value as it
is (read back here by CommonMark's code-span rule, tests/markdown_messages.py), short and on one
line; the model card of an uploaded checkpoint shows its text fields only that way. What Chromium
makes of them: tests/browser/test_visitor_text_in_browser.py.
"""

from __future__ import annotations

import pytest
from markdown_messages import read, shown

from explorer.state.registry import ModelEntry
from explorer.state.visitor_text import QUOTED_CHARS, REASON_CHARS, inert, inert_reason
from vae_core import CheckpointError, ModelConfig, build_model, load_checkpoint
from vae_core.checkpoint import checkpoint_bytes

PAYLOADS = [
    "https://evil.example/login",
    "www.evil.example",
    "admin@evil.example",
    "[Log in](https://evil.example/x)",
    "![x](https://evil.example/i.png)",
    '<a href="https://evil.example/h">h</a><img src="https://evil.example/i.png">',
    "**bold** :red[x] :smile: $x^2$ \\[escaped\\]",
]
BACKTICKS = ["`", "a`b", "`www.evil.example`", "``` fence ```", "x ` y `` z", "`` ` ``"]


@pytest.mark.parametrize("value", PAYLOADS + BACKTICKS + ["", " ", " padded "])
def test_a_value_reads_back_exactly_from_one_code_span(value):
    message = f"model={inert(value, limit=200)} is no model here"
    text, outside = read(message)
    assert outside == "model=  is no model here"  # all of the value is inside the span
    assert text == "model=" + (value or '""') + " is no model here"


def test_a_long_value_is_cut_and_its_length_said():
    message = inert("https://evil.example/" + "x" * 10_000)
    assert shown(message) == "https://evil.example/" + "x" * (QUOTED_CHARS - 21) + "… (10,021 characters)"
    assert len(inert("y" * 10_000, REASON_CHARS)) < REASON_CHARS + 40


def test_line_breaks_and_invisible_characters_are_shown_as_escapes():
    # a right-to-left override would show "exe.txt" as "txt.exe"; a zero-width space hides itself
    assert shown(inert("a\nb\r\tc\u202eexe.txt\u200b")) == "a\\nb\\r\\tc\\u202eexe.txt\\u200b"


def test_a_library_reason_is_inert_as_a_whole():
    error = CheckpointError("the uploaded file has a tensor '[x](https://evil.example)' of dtype BOOL")
    assert shown(inert_reason(error)) == str(error)


# --- the model card of an uploaded checkpoint ----------------------------------------------------


@pytest.mark.parametrize("payload", PAYLOADS)
def test_an_uploaded_cards_text_fields_are_inert(payload):
    from explorer.ui.resources import overview_card

    metrics = {"data": payload, "device": payload, "command": payload, "train_seconds": 60.0}
    model = build_model(ModelConfig(latent_dim=2, hidden=(8,)))
    checkpoint = load_checkpoint(checkpoint_bytes(model, {}, metrics))
    kept = checkpoint.metrics  # as loaded: a "(...)" after the data's name reads "(IDX files)"
    rows = overview_card(ModelEntry("uploaded:m", checkpoint, "uploaded", "m"))["rows"]
    shown_rows = {name: shown(value) for name, value in rows.items()}  # fails on a link outside a span
    assert shown_rows["Trained on"] == kept["data"] and shown_rows["Command"] == kept["command"]
    assert shown_rows["Training time"] == f"1.0 min on {kept['device']}"
    assert shown_rows["Command"] == payload  # shown, not dropped


@pytest.mark.parametrize("field", ["binarization", "lr", "batch_size", "k", "beta"])
def test_the_cards_other_fields_cannot_hold_text(field):
    """The card shows the training settings as they are: the loader lets none of them be text."""
    model = build_model(ModelConfig(latent_dim=2, hidden=(8,)))
    with pytest.raises(CheckpointError, match=field):
        load_checkpoint(checkpoint_bytes(model, {field: "www.evil.example"}))
