"""One binarisation for scoring: the binary image a digit is scored on depends on the digit alone.

Issue "Every number on the screen is right": the same test digit was binarised by seeded sampling on
some pages and by thresholding at 0.5 on others, so one digit had two likelihoods.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from vae_core import complete_masked_image, exact_posterior_grid, load_digits, observed_mask
from vae_core.data import EVALUATION_BINARIZATION_SEED, DigitImages, scoring_binary

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def test_digits(mnist_dir):
    return load_digits("test", mnist_dir)


def test_a_digit_gets_one_binary_image_alone_in_a_batch_in_the_split_or_as_a_drawing(test_digits):
    whole = test_digits.fixed_binary()
    assert whole.shape == (10_000, 784) and set(whole.unique().tolist()) == {0.0, 1.0}
    for i in (0, 3, 9_999):
        assert torch.equal(test_digits.fixed_binary(index=i), whole[i])
    index = torch.tensor([42, 7, 7, 3])
    assert torch.equal(test_digits.fixed_binary(index=index), whole[index])  # any order, repeats
    assert torch.equal(test_digits.subset(slice(100, 130)).fixed_binary(), whole[100:130])
    # a drawing arrives as grey floats in [0, 1]: the same rule on its 256 levels
    assert torch.equal(scoring_binary(test_digits.grey(5)), whole[5])
    assert torch.equal(scoring_binary(test_digits.pixels[5].numpy()), whole[5])


def test_each_pixel_is_on_with_probability_its_grey_level(test_digits):
    # 20,000 images that differ in two pixels, every other pixel at one level
    for level in (0, 1, 64, 128, 254, 255):
        images = torch.full((20_000, 784), level, dtype=torch.uint8)
        images[:, 0], images[:, 1] = torch.arange(20_000) % 256, torch.arange(20_000) // 256
        share = scoring_binary(images)[:, 2:].mean().item()
        p = level / 255
        assert abs(share - p) <= 4 * (p * (1 - p) / (20_000 * 782)) ** 0.5 + 1e-12, level
    # over the real test set: the share of ink equals the mean grey level
    assert test_digits.fixed_binary().mean().item() == pytest.approx(
        test_digits.grey().mean().item(), abs=5e-4
    )
    # pixels of one image are not correlated with each other (the noise is well mixed)
    draws = scoring_binary(torch.cat([torch.full((20_000, 782), 128), images[:, :2]], 1).to(torch.uint8))
    correlation = torch.corrcoef(draws[:, :40].T)
    assert (correlation - torch.eye(40)).abs().max() < 0.04


def test_the_seed_changes_the_draw_and_the_data_kind_sets_the_rule(test_digits):
    first = test_digits.subset(slice(0, 50))
    assert torch.equal(first.fixed_binary(EVALUATION_BINARIZATION_SEED), first.fixed_binary())
    assert not torch.equal(first.fixed_binary(1), first.fixed_binary(0))
    static = DigitImages(first.pixels, first.labels, 28, "static", "test")
    assert torch.equal(static.fixed_binary(), (first.pixels > 127).float())
    given = DigitImages((first.pixels > 127).to(torch.uint8) * 255, first.labels, 28, "binarized", "test")
    assert torch.equal(given.fixed_binary(), (first.pixels > 127).float())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        scoring_binary(torch.full((784,), 2.0))


def test_library_scoring_functions_take_binary_images_and_refuse_grey_ones(trained_2d, test_digits):
    grey = test_digits.grey(0)
    with pytest.raises(ValueError, match="binary"):
        complete_masked_image(trained_2d, grey, observed_mask("top"), steps=1)
    with pytest.raises(ValueError, match="binary"):
        exact_posterior_grid(trained_2d, grey)
    binary = test_digits.fixed_binary(index=0)
    assert exact_posterior_grid(trained_2d, binary, resolution=21).log_px < 0


def test_no_page_or_library_function_thresholds_grey_levels_at_one_half():
    pattern = re.compile(r">\s*0\.5\s*\)\s*\.(float|astype|to)\(")  # (grey > 0.5).float(), the old idiom
    offenders = [
        f"{path.relative_to(REPO)}:{number}"
        for folder in ("vae_core", "explorer")
        for path in sorted((REPO / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not offenders, f"threshold grey levels through vae_core.data.scoring_binary instead: {offenders}"
