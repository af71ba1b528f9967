"""One drawing canvas for every page: draw a digit, or paint over the part of a digit to hide.

A thin wrapper over streamlit-drawable-canvas (a Fabric.js canvas built on Streamlit's Components v2
API). Whatever the use, it hands back the same thing: paint coverage, an (H, W) float array in
[0, 1] that is 1 where the brush went. Strokes are drawn over a background *image*, never a
background colour, because the canvas leaves its background image out of the picture it returns:
the alpha channel of that picture is then exactly the paint.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import streamlit as st
from PIL import Image

from explorer.figures.pictures import png_bytes
from explorer.figures.plots import digit_picture

CANVAS_PX = 280  # 10 canvas pixels per pixel of a 28x28 digit, 20 per pixel of a 14x14 one
PAINT = "rgba(255, 60, 60, 0.55)"  # see-through red: the digit under it stays readable
PAINT_OPACITY = 0.55
INK = "#ffffff"  # MNIST digits are white ink on black
DIGIT_BRUSH_PX = 22  # about two MNIST pixels, the width of a typical MNIST stroke
REGION_BRUSH_PX = 30
TOOLBAR_PX = 36  # height of the undo / redo / clear bar the component draws over the canvas's top edge


def _canvas_coverage(
    key: str, background_png: bytes, stroke_colour: str, stroke_opacity: float, brush_px: int
) -> np.ndarray | None:
    try:
        # Imported here: the component registers itself on import, which needs a running app.
        from streamlit_drawable_canvas import st_canvas
    except ImportError:
        st.warning(
            "Drawing needs the `streamlit-drawable-canvas` package (pinned in requirements.txt); "
            "it is not installed here."
        )
        return None
    st.space(TOOLBAR_PX)  # the canvas's toolbar floats above it: keep it off the text above
    result = st_canvas(
        stroke_width=brush_px, stroke_color=stroke_colour, background_image=background_png,
        height=CANVAS_PX, width=CANVAS_PX, drawing_mode="freedraw", return_image_data=True, key=key,
    )  # fmt: skip
    return coverage_from_rgba(result.image_data, stroke_opacity)


def coverage_from_rgba(rgba: np.ndarray | None, stroke_opacity: float = 1.0) -> np.ndarray | None:
    """A canvas picture (h, w, 4) uint8 -> paint coverage (CANVAS_PX, CANVAS_PX) in [0, 1]; None if blank.

    A see-through brush leaves alpha = its opacity, so alpha is divided by it. A high-DPI screen can
    send a larger picture: it is box-filtered back to CANVAS_PX so coverage maps onto image pixels.
    """
    if rgba is None:
        return None
    alpha = np.asarray(rgba)[..., 3]
    if alpha.shape != (CANVAS_PX, CANVAS_PX):
        alpha = np.asarray(Image.fromarray(alpha).resize((CANVAS_PX, CANVAS_PX), Image.BOX))
    coverage = np.clip(alpha.astype(np.float32) / (255.0 * stroke_opacity), 0.0, 1.0)
    return coverage if coverage.max() > 0 else None


def draw_digit(key: str) -> np.ndarray | None:
    """A canvas to draw a digit on: its ink (CANVAS_PX, CANVAS_PX) in [0, 1], or None before any stroke.

    Feed the ink to `vae_core.images.mnist_style_pixels` to crop, scale and centre it like MNIST.
    """
    black = np.zeros((CANVAS_PX, CANVAS_PX), dtype=np.uint8)
    return _canvas_coverage(key, png_bytes(black, scale=1), INK, 1.0, DIGIT_BRUSH_PX)


def paint_region(key: str, digit, image_size: int = 28) -> np.ndarray | None:
    """A canvas showing `digit` (D,) to paint over: coverage (CANVAS_PX, CANVAS_PX), or None if unpainted.

    Turn coverage into a mask with `vae_core.painted_region_mask(coverage, image_size)`.
    """
    picture = digit_picture(digit, image_size, scale=CANVAS_PX // image_size)
    return _canvas_coverage(key, png_bytes(picture, scale=1), PAINT, PAINT_OPACITY, REGION_BRUSH_PX)


def canvas_state(coverage: np.ndarray) -> dict:
    """What the canvas component reports for a drawing with this coverage (CANVAS_PX, CANVAS_PX).

    AppTest cannot draw: tests put this in `session_state[key]` to stand in for a user's strokes.
    """
    rgba = np.zeros((*coverage.shape, 4), dtype=np.uint8)
    rgba[..., :3] = 255
    rgba[..., 3] = np.round(np.clip(coverage, 0, 1) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
    data_url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return {"drawing": {"raw": {"objects": []}, "data": data_url}}
