"""Which pixels a model sees: split masks for completion and the posterior, (D,) floats, 1 = seen."""

from __future__ import annotations

import numpy as np
import torch

HIDDEN_HALVES = ("top", "bottom", "left", "right")


def observed_mask(hidden: str, image_size: int = 28) -> torch.Tensor:
    """A (D,) float mask: 1 for pixels the model sees, 0 for the hidden half."""
    if hidden not in HIDDEN_HALVES:
        raise ValueError(f"hidden must be one of {HIDDEN_HALVES}, got {hidden!r}")
    mask = torch.ones(image_size, image_size)
    half = image_size // 2
    region = {
        "top": (slice(0, half), slice(None)),
        "bottom": (slice(half, None), slice(None)),
        "left": (slice(None), slice(0, half)),
        "right": (slice(None), slice(half, None)),
    }[hidden]
    mask[region] = 0.0
    return mask.reshape(-1)


def centre_square_mask(side: int, image_size: int = 28) -> torch.Tensor:
    """A (D,) float mask hiding a side x side square at the centre of the image (1 = seen).

    When image_size - side is odd the square sits half a pixel up and left of the true centre.
    """
    if not isinstance(side, (int, np.integer)) or not 1 <= side < image_size:
        raise ValueError(
            f"side must be a whole number of pixels from 1 to {image_size - 1} for a {image_size}x{image_size} "
            f"image (something must stay visible), got {side!r}"
        )
    start = (image_size - side) // 2
    mask = torch.ones(image_size, image_size)
    mask[start : start + side, start : start + side] = 0.0
    return mask.reshape(-1)


def random_pixels_mask(fraction: float, image_size: int = 28, seed: int = 0) -> torch.Tensor:
    """A (D,) float mask hiding round(fraction * D) pixels picked uniformly at random (1 = seen).

    The same seed always hides the same pixels, so a completion can be rerun and compared.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction is the share of pixels to hide: use a value in [0, 1), got {fraction!r}")
    n_pixels = image_size * image_size
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randperm(n_pixels, generator=generator)[: round(fraction * n_pixels)]
    mask = torch.ones(n_pixels)
    mask[hidden] = 0.0
    return mask


def painted_region_mask(painting, image_size: int = 28, threshold: float = 0.5) -> torch.Tensor:
    """A (D,) float mask hiding the pixels a user painted over (1 = seen).

    `painting` is an (H, W) array of paint coverage in [0, 1] (a canvas's alpha channel), with H and
    W the same whole multiple of image_size: each image pixel is the mean over its block of canvas
    pixels and is hidden when at least `threshold` of it is painted.
    """
    painting = np.asarray(painting, dtype=np.float32)
    if painting.ndim != 2 or painting.shape[0] != painting.shape[1] or painting.shape[0] % image_size:
        raise ValueError(
            f"painting must be a square (H, H) array with H a multiple of {image_size}, got shape "
            f"{painting.shape}; resize the canvas picture to {image_size}x{image_size} first"
        )
    if painting.size and not (painting.min() >= 0.0 and painting.max() <= 1.0):
        raise ValueError(
            "painting holds paint coverage: values must lie in [0, 1] (divide 8-bit alpha by 255)"
        )
    if not 0.0 < threshold <= 1.0:
        raise ValueError(
            f"threshold is the painted share that hides a pixel: use a value in (0, 1], got {threshold!r}"
        )
    block = painting.shape[0] // image_size
    coverage = painting.reshape(image_size, block, image_size, block).mean(axis=(1, 3))  # (S, S)
    return torch.from_numpy((coverage < threshold).astype(np.float32)).reshape(-1)


def mask_or_all_seen(mask: torch.Tensor | None, pixels: int, device: torch.device) -> torch.Tensor:
    """`mask` as a (D,) float tensor on `device`; None means every pixel is seen."""
    if mask is None:
        return torch.ones(pixels, device=device)
    return torch.as_tensor(mask, dtype=torch.float32, device=device).reshape(-1)
