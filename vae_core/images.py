"""Pixel arrays to pictures: tiled grids as numpy arrays and PNG files (Pillow, no torchvision)."""

from __future__ import annotations

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
