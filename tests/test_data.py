"""MNIST loading: IDX files, binarisations, 14x14, splits, the bundled sample, clear errors."""

import gzip

import numpy as np
import pytest
import torch

from vae_core import DataError, load_digits, load_sample_digits, load_train_validation
from vae_core.data import DigitImages
from vae_core.mnist import BUNDLED_DIGITS, bundled_test_indices, read_idx


def test_full_mnist_loads_from_a_folder_of_idx_files(mnist_dir):
    test = load_digits("test", mnist_dir)
    assert test.pixels.shape == (10_000, 784) and test.pixels.dtype == torch.uint8
    assert set(test.labels.unique().tolist()) == set(range(10))
    train, valid = load_train_validation(mnist_dir, validation_size=5000)
    assert len(train) == 55_000 and len(valid) == 5000
    assert test.source == "MNIST test (IDX files)"  # the folder stays off screens and checkpoints


def test_idx_reader_rejects_a_truncated_file(tmp_path, mnist_dir):
    raw = gzip.open(mnist_dir / "t10k-labels-idx1-ubyte.gz").read()
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(raw[:-10])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "t10k-labels-idx1-ubyte")


def test_dynamic_binarisation_resamples_while_static_and_evaluation_are_fixed(sample_digits):
    index = torch.arange(200)
    a, b = sample_digits.binary_batch(index), sample_digits.binary_batch(index)
    assert set(a.unique().tolist()) <= {0.0, 1.0} and not torch.equal(a, b)
    # Resampled pixels average to the grey level.
    draws = torch.stack([sample_digits.binary_batch(index) for _ in range(200)]).mean(0)
    assert (draws - sample_digits.grey(index)).abs().max() < 0.15
    torch.testing.assert_close(sample_digits.fixed_binary(0), sample_digits.fixed_binary(0))
    static = load_sample_digits(binarization="static")
    torch.testing.assert_close(static.binary_batch(index), static.binary_batch(index))


def test_a_dynamically_binarised_pixel_is_on_with_probability_level_over_255():
    draws = 40_000
    levels = torch.arange(256, dtype=torch.uint8).repeat(draws, 1)  # every level, 40k times
    digits = DigitImages(levels, torch.full((draws,), -1), 16, "dynamic", "every grey level")
    on = digits.binary_batch(torch.arange(draws), torch.Generator().manual_seed(3)).mean(0)
    p = torch.arange(256) / 255
    assert on[0] == 0 and on[255] == 1  # never and always, exactly
    z = (on - p)[1:255] / (p * (1 - p) / draws).sqrt()[1:255]
    assert z.abs().max() < 5 and abs(z.mean()) < 5 / 254**0.5  # no level, and no overall, bias
    rows = digits.binary_batch(slice(0, 2))
    assert rows.shape == (2, 256) and rows.dtype == torch.float32


def test_fourteen_pixel_images_are_2x2_averages():
    full, small = load_sample_digits(28), load_sample_digits(14)
    assert small.pixels.shape == (5000, 196)
    block_mean = full.pixels[0].float().view(14, 2, 14, 2).mean((1, 3)).round()
    torch.testing.assert_close(small.pixels[0].view(14, 14).float(), block_mean)


def test_bundled_sample_is_real_labelled_mnist_and_says_so():
    sample = load_sample_digits()
    assert len(sample) == 5000 and sample.has_labels and "training digits shipped" in sample.source
    assert 0.1 < sample.grey().mean() < 0.15  # MNIST's mean intensity is about 0.13


def test_the_shipped_test_digits_are_mnist_test_images_and_the_training_ones_training_images(mnist_dir):
    """Offline pages score pretrained models on the shipped test digits: each must be the held-out
    MNIST test image (and label) it claims to be, never a training image."""
    test = load_digits("test", mnist_dir)
    shipped = load_sample_digits(split="test")
    index = torch.from_numpy(bundled_test_indices())
    assert torch.equal(index, torch.arange(0, 10_000, 2))  # both halves of the test set (writer groups)
    assert torch.equal(shipped.pixels, test.pixels[index]) and torch.equal(shipped.labels, test.labels[index])
    assert shipped.source == "5,000 MNIST test digits shipped with the app"
    train = load_digits("train", mnist_dir)
    shipped_train = load_sample_digits(split="train")
    assert torch.equal(shipped_train.pixels, train.pixels[:5000])
    assert torch.equal(shipped_train.labels, train.labels[:5000])
    assert len(set(map(bytes, shipped.pixels.numpy())) & set(map(bytes, train.pixels.numpy()))) == 0


def test_the_shipped_sample_is_small_and_carries_its_licence():
    assert BUNDLED_DIGITS.stat().st_size < 1_500_000
    notice = (BUNDLED_DIGITS.parent / "NOTICE").read_text()
    assert "LeCun" in notice and "CC BY-SA 3.0" in notice


def test_offline_without_files_falls_back_to_the_sample_only_when_asked(monkeypatch):
    monkeypatch.delenv("VAE_DATA_DIR", raising=False)
    offline = load_digits("test", allow_download=False, allow_sample=True)
    assert offline.source == "5,000 MNIST test digits shipped with the app"
    with pytest.raises(DataError, match="VAE_DATA_DIR"):
        load_digits("test", allow_download=False)


def test_a_missing_data_folder_is_named(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_digits("test", tmp_path / "missing")
    with pytest.raises(DataError, match="no MNIST test files"):
        load_digits("test", tmp_path)


def test_statically_binarised_mnist_loads_its_three_splits(mnist_dir, monkeypatch):
    npz = mnist_dir.parent / "binarized_mnist" / "binarized_mnist.npz"
    if not npz.is_file():
        pytest.fail(f"{npz} missing: the shared data folder is incomplete")
    monkeypatch.setenv("VAE_BINARIZED_DIR", str(npz.parent))
    train, valid = load_train_validation(binarization="binarized")
    test = load_digits("test", binarization="binarized")
    assert (len(train), len(valid), len(test)) == (50_000, 10_000, 10_000)
    assert set(np.unique(test.pixels.numpy()).tolist()) == {0, 255}
    assert not test.has_labels


def test_train_validation_falls_back_to_the_sample_with_a_tenth_held_out(monkeypatch):
    monkeypatch.delenv("VAE_DATA_DIR", raising=False)
    with pytest.raises(DataError):  # no folder, no download, no fallback: a clear refusal
        load_train_validation(allow_download=False)
    train, valid = load_train_validation(allow_download=False, allow_sample=True)
    sample = load_sample_digits()
    assert (len(train), len(valid)) == (len(sample) - len(sample) // 10, len(sample) // 10)
    assert torch.equal(valid.pixels, sample.pixels[-len(valid) :])  # the tail, in MNIST's own order
    assert len(valid.labels.unique()) == 10  # that order mixes the classes
    with pytest.raises(DataError, match="both sides"):
        load_train_validation(sample_only=True, validation_size=len(sample))


def test_sample_only_ignores_a_configured_mnist_folder(mnist_dir, monkeypatch):
    monkeypatch.setenv("VAE_DATA_DIR", str(mnist_dir))
    train, valid = load_train_validation(sample_only=True)
    assert len(train) + len(valid) == len(load_sample_digits())
    full_train, full_valid = load_train_validation()
    assert (len(full_train), len(full_valid)) == (50_000, 10_000)


def test_a_digit_sources_description_names_no_folder_of_this_machine(tmp_path):
    """The source is shown in the sidebar and saved in checkpoints: it must not carry a path."""
    import os

    from vae_core.mnist import load_digits

    folder = os.path.abspath(os.environ["VAE_DATA_DIR"])
    digits = load_digits("test", data_dir=folder, allow_download=False)
    assert folder not in digits.source and "/" not in digits.source, digits.source
