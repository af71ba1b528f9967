"""Pictures a user can take away: PNG bytes of any digit grid, animated GIF bytes from frames."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

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


# The traversal picture's left margin (pixels): a row's dimension and KL, and "collapsed" where it is.
ROW_LABEL_WIDTH = 104
COLLAPSED_COLOUR = (255, 140, 0)  # orange: the frame round a collapsed row and its label


def labelled_rows_picture(
    probs, image_size: int, columns: int, row_labels: Sequence[str], collapsed: Sequence[bool], scale: int = 2
) -> np.ndarray:
    """Digits (rows * columns, D) in [0, 1], tiled one row per label: an (H, ROW_LABEL_WIDTH + W, 3) uint8
    picture with each row's label on its left and collapsed rows framed in orange.

    The digits' pixels are exactly `tile_images`' (upscaled `scale` times): labels go in the margin and
    frames in the grey gaps between tiles, so the picture can still be checked against the decoder.
    """
    if len(row_labels) != len(collapsed):
        raise ValueError(f"{len(row_labels)} labels for {len(collapsed)} rows")
    pad = 1  # tile_images' gap between tiles
    grid = np.kron(tile_images(probs, image_size, columns, pad), np.ones((scale, scale), dtype=np.uint8))
    cell, gap = (image_size + pad) * scale, pad * scale
    if grid.shape[0] != len(row_labels) * cell + gap:
        raise ValueError(f"{len(row_labels)} labels for a picture of {(grid.shape[0] - gap) // cell} rows")
    picture = np.zeros((grid.shape[0], ROW_LABEL_WIDTH + grid.shape[1], 3), dtype=np.uint8)
    picture[:, ROW_LABEL_WIDTH:] = grid[..., None]
    for row, marked in enumerate(collapsed):
        if marked:  # a frame drawn over the gaps round the row only, never over a digit's pixels
            top, bottom = row * cell, (row + 1) * cell  # the gap above the row, and the one below it
            picture[top : top + gap, ROW_LABEL_WIDTH:] = COLLAPSED_COLOUR
            picture[bottom : bottom + gap, ROW_LABEL_WIDTH:] = COLLAPSED_COLOUR
            for c in range(columns + 1):  # the gaps between tiles, and at both ends
                left = ROW_LABEL_WIDTH + c * cell
                picture[top : bottom + gap, left : left + gap] = COLLAPSED_COLOUR
    image = Image.fromarray(picture)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(10, min(14, cell // 4)))
    for row, (label, marked) in enumerate(zip(row_labels, collapsed, strict=True)):
        text = f"{label}\ncollapsed" if marked else label
        draw.multiline_text(
            (6, row * cell + cell // 2 + gap // 2), text, font=font, anchor="lm", spacing=2,
            fill=COLLAPSED_COLOUR if marked else (235, 235, 235),
        )  # fmt: skip
    return np.asarray(image)
