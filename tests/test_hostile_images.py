"""Uploaded digit pictures as people really send them, and as an attacker might.

Every picture is crafted in memory. A usable one must come out as the same MNIST-style digit as a
plain greyscale PNG of the same drawing (whatever its mode, transparency or EXIF orientation); an
unusable one must raise UnusableImage (a ValueError) with one clear sentence for its kind of
trouble, decided before any pixel is decoded where the header alone tells.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFile

from vae_core.images import MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS, UnusableImage, mnist_style_digit

INK = [(100, 30), (160, 30), (120, 170)]  # a 7 on a 300x200 sheet: not symmetric under any turn


def encoded(image: Image.Image, kind: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind, **options)
    return buffer.getvalue()


def drawn_seven(mode: str = "L", paper=255, ink=0, size=(300, 200)) -> Image.Image:
    image = Image.new(mode, size, paper)
    ImageDraw.Draw(image).line(INK, fill=ink, width=18)
    return image


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """The digit as a plain 8-bit greyscale PNG (dark ink on white paper) gives it."""
    return mnist_style_digit(encoded(drawn_seven()))


def assert_same_digit(pixels: np.ndarray, reference: np.ndarray, tolerance: float = 0.03) -> None:
    assert pixels.shape == reference.shape and pixels.dtype == np.float32
    assert np.abs(pixels - reference).mean() < tolerance, np.abs(pixels - reference).mean()


# --- every Pillow mode a PNG or JPEG can open in ---------------------------------------------------


def _palette_with_transparent_paper() -> bytes:
    image = drawn_seven("P", paper=0, ink=1)
    image.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)  # index 0 white paper, 1 black ink
    return encoded(image, transparency=0)


def _sixteen_bit(ink: int, paper: int) -> bytes:
    grey = np.asarray(drawn_seven(), dtype=np.float64) / 255.0  # 0 ink, 1 paper
    values = np.where(grey > 0.5, paper, ink).astype(np.uint16)
    return encoded(Image.fromarray(values))  # opens as mode I;16


MODES = [
    ("RGBA: black ink on a transparent background", encoded(drawn_seven("RGBA", (0, 0, 0, 0), (0, 0, 0, 255)))),
    ("RGBA: white ink on a transparent background", encoded(drawn_seven("RGBA", (255, 255, 255, 0), (255, 255, 255, 255)))),
    ("RGBA: opaque dark ink on opaque paper", encoded(drawn_seven("RGBA", (250, 250, 240, 255), (10, 10, 60, 255)))),
    ("LA: black ink on a transparent background", encoded(drawn_seven("LA", (0, 0), (0, 255)))),
    ("P: palette with a transparent paper colour", _palette_with_transparent_paper()),
    ("I;16: 16-bit greyscale, dark on light", _sixteen_bit(ink=2_000, paper=60_000)),
    ("I;16: 16-bit greyscale, light on dark", _sixteen_bit(ink=65_535, paper=0)),
    ("CMYK JPEG", encoded(drawn_seven("CMYK", (0, 0, 0, 0), (0, 0, 0, 255)), "JPEG", quality=95)),
    ("1: bilevel", encoded(drawn_seven("1", 1, 0))),
    ("RGB JPEG", encoded(drawn_seven("RGB", (255, 255, 255), (0, 0, 0)), "JPEG", quality=95)),
]  # fmt: skip


@pytest.mark.parametrize(("name", "data"), MODES, ids=[name for name, _ in MODES])
def test_every_pillow_mode_gives_the_digit_a_person_sees(name, data, reference):
    with Image.open(io.BytesIO(data)) as opened:  # the crafted file really is in that mode
        assert opened.mode == name.split(":")[0].split(" ")[0], opened.mode
    assert_same_digit(mnist_style_digit(data), reference)


def test_a_fully_transparent_image_is_blank():
    with pytest.raises(UnusableImage, match="blank"):
        mnist_style_digit(encoded(Image.new("RGBA", (50, 50), (0, 0, 0, 0))))


# --- EXIF orientation: phones store pixels sideways and say so in a tag ------------------------------

# EXIF Orientation -> how the stored pixels are turned from upright (what the viewer undoes)
STORED_FOR = {
    3: lambda im: im.transpose(Image.Transpose.ROTATE_180),
    6: lambda im: im.transpose(Image.Transpose.ROTATE_90),  # shown after turning 90° clockwise
    8: lambda im: im.transpose(Image.Transpose.ROTATE_270),
    2: lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
}


@pytest.mark.parametrize("orientation", sorted(STORED_FOR))
@pytest.mark.parametrize("kind", ["JPEG", "PNG"])
def test_exif_orientation_turns_the_photo_upright_first(orientation, kind, reference):
    stored = STORED_FOR[orientation](drawn_seven("RGB", (255, 255, 255), (0, 0, 0)))
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encoded(stored, kind, exif=exif, **({"quality": 95} if kind == "JPEG" else {}))
    assert_same_digit(mnist_style_digit(data), reference, 0.04)
    # and without the tag the same pixels are a different picture: the tag is what was honoured
    plain = mnist_style_digit(encoded(stored, kind))
    assert np.abs(plain - reference).mean() > 0.05


def test_a_nonsense_orientation_value_is_ignored(reference):
    exif = Image.Exif()
    exif[0x0112] = 99
    data = encoded(drawn_seven("RGB", (255, 255, 255), (0, 0, 0)), "JPEG", exif=exif, quality=95)
    assert_same_digit(mnist_style_digit(data), reference)


# --- hostile and broken files: one clear sentence each, never a traceback ---------------------------


def _png_declaring(width: int, height: int) -> bytes:
    """A valid-looking PNG header declaring width x height, with a tiny (wrong) data chunk."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + chunk(b"IEND", b"")
    )


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) is rewritten to declare width x height."""
    data = bytearray(encoded(drawn_seven("L"), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.fixture
def nothing_is_decoded(monkeypatch):
    """Fail if any pixel data is decoded: the refusal must come from the header alone."""

    def refuse(self, *args, **kwargs):
        raise AssertionError("pixel data was decoded before the size was checked")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


@pytest.mark.parametrize(
    "data",
    [
        _png_declaring(100_000, 100_000),  # 10^10 pixels in ~100 bytes: Pillow's own bomb error
        _png_declaring(10_000, 10_000),  # 10^8: above our limit, below Pillow's
        _png_declaring(MAX_UPLOAD_PIXELS + 1, 1),  # one absurd side
        _jpeg_declaring(65_000, 65_000),
        _jpeg_declaring(6_000, 5_000),
    ],
    ids=["png-1e10", "png-1e8", "png-one-long-row", "jpeg-65000x65000", "jpeg-6000x5000"],
)
def test_decompression_bombs_and_huge_dimensions_are_refused_from_the_header(data, nothing_is_decoded):
    assert len(data) < 10_000  # small files: what they claim is the danger
    with pytest.raises(UnusableImage, match=rf"the limit is {MAX_UPLOAD_PIXELS:,} pixels .*crop or shrink"):
        mnist_style_digit(data)


def test_a_file_over_the_byte_limit_is_refused_before_it_is_opened(monkeypatch):
    padded = encoded(drawn_seven()) + b"\x00" * MAX_UPLOAD_BYTES  # a valid PNG with junk after IEND

    def refuse(*args, **kwargs):
        raise AssertionError("the file was opened")

    monkeypatch.setattr(Image, "open", refuse)
    with pytest.raises(UnusableImage, match=r"MB; the limit is 20 MB"):
        mnist_style_digit(padded)


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.4 not an image",
        b"<html><body>a digit</body></html>",
        b"\x00" * 100,
        np.random.default_rng(0).bytes(5000),
        "seven".encode("utf-16"),
    ],
    ids=["pdf", "html", "zeros", "random", "text"],
)
def test_files_that_are_not_images_say_so(data):
    with pytest.raises(UnusableImage, match="not a PNG or JPEG image"):
        mnist_style_digit(data)


@pytest.mark.parametrize("kind", ["GIF", "BMP", "TIFF", "WEBP"])
def test_other_image_formats_name_themselves(kind):
    with pytest.raises(UnusableImage, match=f"is a {kind} image; upload a PNG or JPEG"):
        mnist_style_digit(encoded(drawn_seven(), kind))


def _flip_a_byte(data: bytes, at: float) -> bytes:
    damaged = bytearray(data)
    damaged[int(len(data) * at)] ^= 0xFF
    return bytes(damaged)


PHOTO = drawn_seven("RGB", (255, 255, 255), (0, 0, 0), size=(600, 400))


@pytest.mark.parametrize(
    "data",
    [
        encoded(PHOTO)[: len(encoded(PHOTO)) // 2],
        encoded(PHOTO, "JPEG")[: len(encoded(PHOTO, "JPEG")) // 2],
        encoded(PHOTO)[:40],  # the header and no pixel data at all
        _flip_a_byte(encoded(PHOTO), 0.5),  # a corrupted data chunk: its checksum fails
        _png_declaring(300, 200),  # the header promises more rows than the data holds
    ],
    ids=["png-half", "jpeg-half", "png-header-only", "png-bad-crc", "png-short-data"],
)
def test_truncated_and_corrupt_files_say_the_data_is_damaged(data):
    with pytest.raises(UnusableImage, match="damaged or cut short"):
        mnist_style_digit(data)


def test_every_refusal_is_a_value_error_with_one_sentence():
    """The page shows `{name} was not used: {reason}.`: one line, no exception class names."""
    refusals = [
        b"",
        b"junk",
        _png_declaring(100_000, 100_000),
        encoded(PHOTO)[:40],
        encoded(drawn_seven(), "GIF"),
    ]
    for data in refusals:
        with pytest.raises(ValueError) as caught:
            mnist_style_digit(data)
        reason = str(caught.value)
        assert "\n" not in reason and "Error" not in reason and not reason.endswith(".")
