"""Pictures a user can take away: PNG bytes of any digit grid, animated GIF bytes from frames."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from vae_core import tile_images


def _enlarged(picture: np.ndarray, scale: int) -> Image.Image:
    image = Image.fromarray(np.asarray(picture, dtype=np.uint8))
    if scale > 1:  # nearest neighbour keeps pixels square: a blurred 28x28 digit looks wrong
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    return image


def png_bytes(picture: np.ndarray, scale: int = 4) -> bytes:
    """An (H, W) or (H, W, 3) uint8 picture as PNG bytes, `scale` times larger."""
    buffer = io.BytesIO()
    _enlarged(picture, scale).save(buffer, format="PNG")
    return buffer.getvalue()


def digit_grid_png(probs, image_size: int = 28, columns: int | None = None, scale: int = 4) -> bytes:
    """(N, D) pixel values in [0, 1] tiled into one grid, as PNG bytes."""
    return png_bytes(tile_images(probs, image_size, columns), scale)


def gif_bytes(frames: Sequence[np.ndarray], frame_ms: int = 120, scale: int = 4, loop: bool = True) -> bytes:
    """Frames of equal shape ((H, W) or (H, W, 3) uint8) as an animated GIF; ValueError if none."""
    if not frames:
        raise ValueError("an animation needs at least one frame")
    shapes = {np.asarray(frame).shape for frame in frames}
    if len(shapes) != 1:
        raise ValueError(f"every frame must have the same shape, got {sorted(shapes)}")
    images = [_enlarged(frame, scale) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(
        buffer, format="GIF", save_all=True, append_images=images[1:], duration=frame_ms,
        loop=0 if loop else 1, disposal=2,
    )  # fmt: skip
    return buffer.getvalue()


# Decodes in an exported interpolation animation: finer than the page's step slider, so it moves smoothly.
PATH_GIF_STEPS = 24


def digit_frames(probs, image_size: int = 28) -> list[np.ndarray]:
    """(N, D) pixel values in [0, 1] -> N (image_size, image_size) uint8 frames."""
    pixels = np.asarray(probs.detach().cpu() if hasattr(probs, "detach") else probs, dtype=np.float32)
    pixels = np.clip(pixels.reshape(-1, image_size, image_size), 0, 1)
    return list((pixels * 255).round().astype(np.uint8))


def there_and_back(frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    """frames, then back again without repeating either end: loops with no jump (N -> 2N - 2 frames)."""
    frames = list(frames)
    return frames + frames[-2:0:-1]


def path_gif(
    probs, image_size: int = 28, frame_ms: int = 80, scale: int = 4, round_trip: bool = True
) -> bytes:
    """Digits decoded along a latent path, (N, D) in [0, 1], as a looping animated GIF."""
    frames = digit_frames(probs, image_size)
    return gif_bytes(there_and_back(frames) if round_trip else frames, frame_ms=frame_ms, scale=scale)
