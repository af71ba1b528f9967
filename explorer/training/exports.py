"""Pictures of a training run to take away: its latent scatter drawn with numpy (no plotly image
export, no kaleido), the scatter animated over the run's snapshots as a GIF, and one snapshot's
digits as a PNG grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from explorer.figures.pictures import digit_grid_png, gif_bytes
from explorer.figures.plots import DIGIT_COLOURS, plane_bounds
from explorer.training.history import LiveViews

SCATTER_PIXELS = 240  # side of one rendered frame before the GIF's enlargement
GIF_SCALE = 2  # nearest-neighbour enlargement: 480 px frames, dots stay crisp
FRAME_MS = 150
DOT_RADIUS = 1  # a dot is (2r+1)² pixels: 3x3 keeps 1,000 points apart at 240 px
BACKGROUND, AXIS_GREY, TEXT_COLOUR = (255, 255, 255), (215, 215, 215), (40, 40, 40)
LABEL_FONT_PX = 13
CAPTION_AT = (4, 3)  # top-left corner of the step label, pixels


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))


DIGIT_RGB = np.array([_rgb(colour) for colour in DIGIT_COLOURS], dtype=np.uint8)  # (10, 3)


def scatter_picture(
    plane, labels, size: int = SCATTER_PIXELS, bounds: tuple[float, float, float, float] | None = None,
    caption: str | None = None,
) -> np.ndarray:  # fmt: skip
    """Points (N, 2) as dots coloured by digit class on white: an (size, size, 3) uint8 picture.

    `bounds` = (x_min, x_max, y_min, y_max); by default a box around the bulk of the points (outliers
    fall off the edge). y grows upwards as on a chart. Later points are drawn over earlier ones.
    Grey lines mark the axes through 0 when they are in view; `caption` goes in the top-left corner.
    """
    points = np.asarray(plane, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    x_min, x_max, y_min, y_max = plane_bounds(points) if bounds is None else bounds
    canvas = np.empty((size, size, 3), dtype=np.uint8)
    canvas[:] = BACKGROUND
    last = size - 1

    def column(x):
        return np.rint((np.asarray(x) - x_min) / (x_max - x_min) * last).astype(np.int64)

    def row(y):
        return last - np.rint((np.asarray(y) - y_min) / (y_max - y_min) * last).astype(np.int64)

    if x_min < 0 < x_max:
        canvas[:, column(0.0)] = AXIS_GREY
    if y_min < 0 < y_max:
        canvas[row(0.0), :] = AXIS_GREY
    cols, rows = column(points[:, 0]), row(points[:, 1])
    colours = DIGIT_RGB[labels % len(DIGIT_RGB)]
    for d_row in range(-DOT_RADIUS, DOT_RADIUS + 1):
        for d_col in range(-DOT_RADIUS, DOT_RADIUS + 1):
            r, c = rows + d_row, cols + d_col
            inside = (r >= 0) & (r < size) & (c >= 0) & (c < size)
            canvas[r[inside], c[inside]] = colours[inside]
    if caption:  # on a white box: dots under the text would make it unreadable
        picture = Image.fromarray(canvas)
        draw = ImageDraw.Draw(picture)
        font = ImageFont.load_default(LABEL_FONT_PX)
        box = draw.textbbox(CAPTION_AT, caption, font=font)
        draw.rectangle((box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2), fill=BACKGROUND)
        draw.text(CAPTION_AT, caption, fill=TEXT_COLOUR, font=font)
        canvas = np.asarray(picture)
    return canvas


def latent_frames(history: Sequence[LiveViews], size: int = SCATTER_PIXELS) -> list[np.ndarray]:
    """One scatter picture per snapshot, each framed around its own points and labelled with its step.

    Each frame has its own box because early in a run the encoder means sit in a tiny cloud near 0
    that a box fitted to the trained model would draw as a single dot; the axes through 0 and the
    step label keep the frames readable side by side.
    """
    return [
        scatter_picture(
            views.plane, views.labels, size, caption=f"step {views.step:,} · epoch {views.epoch:.2f}"
        )
        for views in history
    ]


def latent_animation_gif(history: Sequence[LiveViews], size: int = SCATTER_PIXELS) -> bytes:
    """The latent scatter over a run's snapshots as an animated GIF, one frame per snapshot."""
    return gif_bytes(latent_frames(history, size), frame_ms=FRAME_MS, scale=GIF_SCALE)


def snapshot_at(history: Sequence[LiveViews], step: int | None) -> LiveViews:
    """The snapshot taken at `step`, or the newest when there is none (thinned away, or no step)."""
    return next((views for views in history if views.step == step), history[-1])


def views_grid(views: LiveViews) -> np.ndarray:
    """(8 + 8 + 16, D) pixel values in [0, 1]: the originals, their reconstructions, the prior samples.

    Tiled as many to a row as there are originals, so each reconstruction sits under its digit."""
    return np.concatenate([views.originals, views.reconstructions, views.samples])


def views_grid_png(views: LiveViews) -> bytes:
    """The snapshot's digits as a PNG, rows as in `views_grid`."""
    return digit_grid_png(views_grid(views), views.image_size, columns=len(views.originals))
