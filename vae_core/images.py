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


MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # a phone photo is 2-8 MB; more is not a picture of one digit
MAX_UPLOAD_PIXELS = 25_000_000  # a 5000x5000 photo; larger images are refused before decoding
UPLOAD_FORMATS = ("PNG", "JPEG")
_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")  # the first bytes of every PNG and JPEG file
DRAFT_SIDE = 1024  # a JPEG is decoded at 1/2, 1/4 or 1/8 scale when that still leaves this many pixels


class UnusableImage(ValueError):
    """An upload that is not a usable picture of a digit; the message says why and what to do."""


def mnist_style_digit(data: bytes, image_size: int = 28) -> np.ndarray:
    """A photo or drawing of one digit -> (image_size**2,) float32 in [0, 1], prepared like MNIST.

    MNIST digits are white on black, their ink scaled to fit a 20x20 box (keeping the aspect
    ratio) and placed in a 28x28 frame with the centre of mass at the centre. We do the same:
    greyscale, invert a light background, crop to the ink, fit into 20x20, centre by mass.

    The file is read as a person sees it: turned upright by its EXIF orientation, transparent parts
    as the paper behind the ink, 16-bit and CMYK pixels at their true shade. Its size in bytes and
    its declared width x height are checked before any pixel is decoded (a small file can declare
    billions of pixels). Raises UnusableImage (a ValueError) with a reason for anything else.
    """
    if not data:
        raise UnusableImage("the file is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise UnusableImage(
            f"the file is {len(data) / 2**20:.1f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB — "
            "shrink the picture or save it as a JPEG"
        )
    grey = _decode_grey(data)
    return mnist_style_pixels(grey, image_size)


def _decode_grey(data: bytes) -> np.ndarray:
    """The upload's pixels as an upright (H, W) float32 greyscale picture in [0, 1]."""
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    damaged = UnusableImage(
        "the image data is damaged or cut short (an incomplete download or copy?) — save it again and "
        "upload the new file"
    )
    with warnings.catch_warnings():
        # Pillow warns above ~89 M pixels; our own limit, checked below before decoding, is lower.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))  # reads the header only
        except Image.DecompressionBombError:  # Pillow's own refusal, above ~179 M declared pixels
            raise _too_large(None) from None
        except UnidentifiedImageError:
            if data.startswith(_SIGNATURES):  # begins like a PNG or JPEG, then breaks off or goes wrong
                raise damaged from None
            raise UnusableImage("the file is not a PNG or JPEG image (or any image Pillow knows)") from None
        except Exception:  # a header so malformed that the parser itself failed
            raise damaged from None
        with image:
            width, height = image.size
            if width * height > MAX_UPLOAD_PIXELS:
                raise _too_large((width, height))
            if image.format not in UPLOAD_FORMATS:
                raise UnusableImage(f"the file is a {image.format} image; upload a PNG or JPEG")
            try:
                if image.format == "JPEG":  # decode a big photo at a reduced scale: faster, less memory
                    image.draft(None, (DRAFT_SIDE, DRAFT_SIDE))
                image.load()
                upright = ImageOps.exif_transpose(image)  # a phone photo's pixels may be stored sideways
                return _as_grey(upright)
            except Exception:
                # Decoders raise many types on hostile or truncated data (OSError, SyntaxError,
                # EOFError, struct.error, zlib.error, ValueError…): each one is the same refusal.
                raise damaged from None


def _too_large(size: tuple[int, int] | None) -> UnusableImage:
    what = (
        "the image declares too many pixels" if size is None else f"the image is {size[0]}x{size[1]} pixels"
    )
    return UnusableImage(
        f"{what}; the limit is {MAX_UPLOAD_PIXELS:,} pixels (5000x5000) — crop or shrink it first"
    )


def _as_grey(image) -> np.ndarray:
    """Any Pillow mode -> (H, W) float32 in [0, 1], as the picture looks on screen.

    Transparency: the transparent parts are paper. A transparent PNG's hidden pixels usually hold
    black, so flattening it naively turns black ink on a transparent background into black on black
    ("blank"); the paper is instead the shade that contrasts with the ink (white behind dark ink).
    """
    mode = image.mode
    if mode.startswith("I"):  # 16-bit greyscale PNGs: Pillow's convert("L") clips at 255, not scales
        return np.clip(np.asarray(image, dtype=np.float32) / 65535.0, 0, 1)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if not has_alpha:
        return np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    rgba = image.convert("RGBA")
    grey = np.asarray(rgba.convert("L"), dtype=np.float32) / 255.0
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
    if alpha.sum() < 1e-6:
        return np.zeros_like(grey)  # fully transparent: nothing drawn
    ink_shade = float((grey * alpha).sum() / alpha.sum())  # the mean shade of what is drawn
    paper = 1.0 if ink_shade < 0.5 else 0.0
    return alpha * grey + (1.0 - alpha) * paper


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
        raise UnusableImage("no digit found: the image is blank (or all one shade)")
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
