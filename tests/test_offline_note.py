"""The sidebar's note on which digits are explored: a plain sentence, whatever went wrong underneath."""

from __future__ import annotations

import pytest
import torch

import vae_core
from explorer.ui import resources
from vae_core import DataError

# What vae_core says when the download fails offline: for the server's log, not for a visitor.
DOWNLOAD_FAILURE = DataError(
    "MNIST is not in /root/.cache/vae_explorer and could not be downloaded (OSError: no network: "
    "ossci-datasets.s3.amazonaws.com is unreachable). Offline? Point --data-dir or $VAE_DATA_DIR at a "
    "folder with the four MNIST IDX files."
)


@pytest.fixture
def fresh_digit_cache():
    resources.explore_digits.clear()
    yield
    resources.explore_digits.clear()


def test_the_offline_note_is_a_plain_sentence_and_the_reason_goes_to_the_log(
    monkeypatch, fresh_digit_cache, caplog
):
    def unavailable(*args, **kwargs):
        raise DOWNLOAD_FAILURE

    monkeypatch.setattr(vae_core, "load_digits", unavailable)  # resources imports it when called
    with caplog.at_level("WARNING", logger=resources.__name__):
        digit_set = resources.explore_digits()
    assert not digit_set.is_full_test_set and len(digit_set.digits) == 5000
    # the held-out test digits shipped in vae_core, not training digits
    assert torch.equal(digit_set.digits.pixels, vae_core.load_sample_digits(split="test").pixels)
    note = digit_set.note
    assert note == (
        "Digits: 5,000 MNIST test digits shipped with the app, every other one of the 10,000, because "
        "the full MNIST test set is not available on this server."
    )
    for leak in ("OSError", "Error", "/root", "ossci", "$VAE", "("):
        assert leak not in note
    assert "OSError: no network" in caplog.text  # whoever runs the server still sees why
