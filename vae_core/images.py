"""Pixel arrays to pictures: tiled grids as numpy arrays and PNG files (Pillow, no torchvision)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch


def tile_images(
    probs: torch.Tensor | np.ndarray, image_size: int = 28, columns: int | None = None, pad: int = 1
) -> np.ndarray:
    """(N, D) values in [0, 1] -> one (H, W) uint8 picture, N tiles in rows of `columns`."""
    images = np.asarray(probs.detach().cpu() if isinstance(probs, torch.Tensor) else probs, dtype=np.float32)
    images = images.reshape(-1, image_size, image_size)
    n = len(images)
    columns = columns or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / columns)
    cell = image_size + pad
    canvas = np.ones((rows * cell + pad, columns * cell + pad), dtype=np.float32) * 0.5
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas[pad + r * cell : pad + r * cell + image_size, pad + c * cell : pad + c * cell + image_size] = (
            image
        )
    return (np.clip(canvas, 0, 1) * 255).round().astype(np.uint8)


def save_image_grid(
    probs, path: str | Path, image_size: int = 28, columns: int | None = None, scale: int = 2
) -> Path:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.fromarray(tile_images(probs, image_size, columns))
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    picture.save(path)
    return path


MAX_UPLOAD_PIXELS = 25_000_000  # a 5000x5000 photo; larger images are refused before decoding


def mnist_style_digit(data: bytes, image_size: int = 28) -> np.ndarray:
    """A photo or drawing of one digit -> (image_size**2,) float32 in [0, 1], prepared like MNIST.

    MNIST digits are white on black, their ink scaled to fit a 20x20 box (keeping the aspect
    ratio) and placed in a 28x28 frame with the centre of mass at the centre. We do the same:
    greyscale, invert a light background, crop to the ink, fit into 20x20, centre by mass.
    Raises ValueError with a reason for anything that is not a usable image.
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ValueError("the file is empty")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
            kind = probe.format
            if width * height > MAX_UPLOAD_PIXELS:
                raise ValueError(
                    f"the image is {width}x{height} pixels; the limit is {MAX_UPLOAD_PIXELS:,} pixels — "
                    "crop or shrink it first"
                )
            if kind not in ("PNG", "JPEG"):
                raise ValueError(f"the file is a {kind} image; upload a PNG or JPEG")
            probe.load()
            grey = np.asarray(probe.convert("L"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError) as exc:
        raise ValueError(f"the file is not a readable PNG or JPEG image ({type(exc).__name__})") from None
    return mnist_style_pixels(grey, image_size)


def mnist_style_pixels(grey: np.ndarray, image_size: int = 28) -> np.ndarray:
    """A greyscale picture of one digit, (H, W) in [0, 1] -> (image_size**2,) float32 prepared like MNIST.

    The pixel-array half of `mnist_style_digit`, for pictures that never were files (a canvas drawing):
    invert a light background, stretch the contrast, crop to the ink, fit it into a 20x20 box (for
    28x28) keeping the aspect ratio, and centre it by mass. ValueError if there is no ink.
    """
    from PIL import Image

    grey = np.asarray(grey, dtype=np.float32)
    if grey.ndim != 2 or min(grey.shape) < 2:
        raise ValueError(
            f"a digit picture must be a 2-D (H, W) array of at least 2x2 pixels, got shape {grey.shape}"
        )
    if not (np.isfinite(grey).all() and grey.min() >= 0.0 and grey.max() <= 1.0):
        raise ValueError("pixel values must be finite and lie in [0, 1] (divide 8-bit values by 255)")
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if np.median(border) > 0.5:  # dark ink on light paper: MNIST is light ink on black
        grey, border = 1.0 - grey, 1.0 - border
    background, brightest = float(np.median(border)), float(grey.max())
    grey = np.clip((grey - background) / max(brightest - background, 1e-6), 0, 1)
    ink = grey > 0.2
    if not ink.any():
        raise ValueError("no digit found: the image is blank (or all one shade)")
    rows, cols = np.nonzero(ink)
    crop = grey[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    box = round(image_size * 20 / 28)
    scale = box / max(crop.shape)
    new_h, new_w = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    resized = (
        np.asarray(
            Image.fromarray((crop * 255).astype(np.uint8)).resize((new_w, new_h), Image.LANCZOS),
            dtype=np.float32,
        )
        / 255.0
    )
    canvas = np.zeros((image_size, image_size), dtype=np.float32)
    total = resized.sum()
    cy, cx = (np.array(np.nonzero(resized > -1)).reshape(2, -1) * resized.reshape(-1)).sum(1) / max(
        total, 1e-6
    )
    top = int(round(image_size / 2 - cy))
    left = int(round(image_size / 2 - cx))
    top = min(max(top, 0), image_size - new_h)
    left = min(max(left, 0), image_size - new_w)
    canvas[top : top + new_h, left : left + new_w] = resized
    return canvas.reshape(-1)
