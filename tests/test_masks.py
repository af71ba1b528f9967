"""Any-mask completion: the mask builders, a canvas picture turned into a mask or a digit, and SVI
completing a digit whose centre is hidden."""

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from explorer.ui.drawing_canvas import CANVAS_PX, canvas_state, coverage_from_rgba
from vae_core import (
    centre_square_mask,
    complete_masked_image,
    painted_region_mask,
    random_pixels_mask,
)
from vae_core.images import mnist_style_digit, mnist_style_pixels


def test_centre_square_mask_hides_exactly_the_centred_square():
    mask = centre_square_mask(14).reshape(28, 28)
    assert mask.shape == (28, 28) and mask.dtype == torch.float32
    hidden_rows, hidden_cols = torch.nonzero(mask == 0, as_tuple=True)
    assert (hidden_rows.min(), hidden_rows.max(), hidden_cols.min(), hidden_cols.max()) == (7, 20, 7, 20)
    assert int((mask == 0).sum()) == 14 * 14 and set(mask.unique().tolist()) == {0.0, 1.0}
    # an odd margin puts the square half a pixel up and left: rows 7..19 of 28 for side 13
    odd = centre_square_mask(13).reshape(28, 28)
    assert odd[7:20, 7:20].sum() == 0 and odd[6].all() and odd[20].all() and odd[:, 6].all()
    small = centre_square_mask(4, image_size=14).reshape(14, 14)
    assert small[5:9, 5:9].sum() == 0 and small.sum() == 14 * 14 - 16


@pytest.mark.parametrize("side", [0, 28, 30, -3, 2.5])
def test_centre_square_mask_refuses_squares_that_hide_nothing_or_everything(side):
    with pytest.raises(ValueError, match="side must be a whole number of pixels from 1 to 27"):
        centre_square_mask(side)


@pytest.mark.parametrize(("fraction", "image_size"), [(0.0, 28), (0.25, 28), (0.5, 14), (0.9, 28)])
def test_random_pixels_mask_hides_the_asked_share(fraction, image_size):
    mask = random_pixels_mask(fraction, image_size, seed=3)
    n_pixels = image_size * image_size
    assert mask.shape == (n_pixels,)
    assert int((mask == 0).sum()) == round(fraction * n_pixels)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}


def test_random_pixels_mask_is_reproducible_by_seed_and_spread_over_the_image():
    first, again, other = (random_pixels_mask(0.5, seed=s) for s in (7, 7, 8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    # uniform over the image: each quadrant gets about its quarter of the 392 hidden pixels
    hidden = (first == 0).reshape(28, 28)
    quadrants = [int(hidden[r : r + 14, c : c + 14].sum()) for r in (0, 14) for c in (0, 14)]
    assert all(60 < count < 140 for count in quadrants), quadrants


@pytest.mark.parametrize("fraction", [1.0, -0.1, 1.5])
def test_random_pixels_mask_refuses_shares_outside_zero_to_one(fraction):
    with pytest.raises(ValueError, match=r"share of pixels to hide.*\[0, 1\)"):
        random_pixels_mask(fraction)


def test_painted_region_mask_hides_the_image_pixels_mostly_under_paint():
    painting = np.zeros((CANVAS_PX, CANVAS_PX), dtype=np.float32)  # 10 canvas pixels per image pixel
    painting[30:60, 100:150] = 1.0  # image rows 3..5, columns 10..14, fully painted
    painting[60:64, 100:150] = 1.0  # 40% of image row 6: under the 50% threshold, still seen
    painting[0:10, 0:6] = 1.0  # 60% of image pixel (0, 0): hidden
    mask = painted_region_mask(painting, 28).reshape(28, 28)
    expected = torch.ones(28, 28)
    expected[3:6, 10:15] = 0.0
    expected[0, 0] = 0.0
    assert torch.equal(mask, expected)
    # the same painting read at 14x14 (20 canvas pixels per image pixel)
    coarse = painted_region_mask(painting, 14).reshape(14, 14)
    coverage = painting.reshape(14, 20, 14, 20).mean(axis=(1, 3))
    assert torch.equal(coarse, torch.from_numpy((coverage < 0.5).astype(np.float32)))
    assert torch.equal(painted_region_mask(np.zeros((28, 28)), 28), torch.ones(784))


@pytest.mark.parametrize(
    ("painting", "message"),
    [
        (np.zeros((280, 140)), "square"),
        (np.zeros((100, 100)), "multiple of 28"),
        (np.zeros(784), "square"),
        (np.full((28, 28), 255.0), r"\[0, 1\]"),
    ],
)
def test_painted_region_mask_says_what_is_wrong_with_a_painting(painting, message):
    with pytest.raises(ValueError, match=message):
        painted_region_mask(painting, 28)


def _decode_state(state: dict) -> np.ndarray:
    encoded = state["drawing"]["data"].split(";base64,", 1)[1]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))))


def test_canvas_picture_becomes_paint_coverage_whatever_the_screen_density():
    coverage = np.zeros((CANVAS_PX, CANVAS_PX), dtype=np.float32)
    coverage[100:180, 40:60] = 1.0
    rgba = _decode_state(canvas_state(coverage))  # what the component sends for these strokes
    assert rgba.shape == (CANVAS_PX, CANVAS_PX, 4)
    np.testing.assert_allclose(coverage_from_rgba(rgba), coverage, atol=1 / 255)
    # a see-through brush: alpha 0.55 * 255 is full coverage
    see_through = rgba.copy()
    see_through[..., 3] = np.round(see_through[..., 3] * 0.55).astype(np.uint8)
    np.testing.assert_allclose(coverage_from_rgba(see_through, 0.55), coverage, atol=0.01)
    # a 2x high-DPI canvas sends 560x560: coverage comes back at CANVAS_PX, same strokes
    dense = np.kron(rgba, np.ones((2, 2, 1), dtype=np.uint8))
    np.testing.assert_allclose(coverage_from_rgba(dense), coverage, atol=1 / 255)
    assert coverage_from_rgba(np.zeros((CANVAS_PX, CANVAS_PX, 4), np.uint8)) is None  # nothing drawn
    assert coverage_from_rgba(None) is None


def test_a_drawing_is_prepared_like_an_uploaded_picture_of_it():
    ink = np.zeros((CANVAS_PX, CANVAS_PX), dtype=np.float32)
    ink[40:240, 130:152] = 1.0  # a "1": a tall bar, off-centre to the right of the canvas middle
    from_array = mnist_style_pixels(ink)
    buffer = io.BytesIO()
    Image.fromarray((ink * 255).astype(np.uint8)).save(buffer, "PNG")
    assert np.array_equal(from_array, mnist_style_digit(buffer.getvalue()))
    digit = from_array.reshape(28, 28)
    rows, cols = np.nonzero(digit > 0.5)
    assert rows.max() - rows.min() + 1 == 20  # the long side fits MNIST's 20-pixel box
    centre_col = (np.arange(28) * digit.sum(0)).sum() / digit.sum()
    assert abs(centre_col - 14) <= 1.0  # recentred by mass
    with pytest.raises(ValueError, match="blank"):
        mnist_style_pixels(np.zeros((CANVAS_PX, CANVAS_PX)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        mnist_style_pixels(ink * 255)


def test_svi_completes_a_hidden_centre_better_than_the_encoder(trained_8d, test_batch):
    """The encoder saw no half-grey images in training; a per-image q* fitted to the visible ring
    explains those pixels better. Several digits, so one lucky image cannot carry the test."""
    mask = centre_square_mask(12)
    gains = []
    for x in test_batch[:4]:
        result = complete_masked_image(trained_8d, x, mask, steps=300, n_completions=4, seed=1)
        assert result.svi_elbo.value > result.elbo_trace[:5].mean()  # SVI climbed from its starts
        seen = mask.bool()
        assert torch.equal(result.completions[:, seen], x[seen].expand(4, -1))  # the ring is kept
        gains.append(result.gain.value)
    # the 4,000-sample ELBO estimates are good to a fraction of a nat: a real gain on every digit
    assert min(gains) > 0.5, gains
