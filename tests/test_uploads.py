"""Uploads: checkpoints and digit pictures. Bad files get a reason; nothing executes."""

import io
import pickle

import numpy as np
import pytest
import torch
from conftest import RunsCodeWhenUnpickled
from markdown_messages import shown
from PIL import Image, ImageDraw

from explorer.ui.sidebar import MAX_CHECKPOINT_BYTES, checkpoint_from_upload
from vae_core import CheckpointError, ModelConfig, build_model
from vae_core.checkpoint import checkpoint_bytes
from vae_core.images import MAX_UPLOAD_PIXELS, mnist_style_digit


def _png(image: Image.Image, kind: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind)
    return buffer.getvalue()


def _drawn_seven(width=300, height=200, ink=0, paper=255) -> Image.Image:
    image = Image.new("L", (width, height), paper)
    ImageDraw.Draw(image).line([(100, 30), (160, 30), (120, 170)], fill=ink, width=18)
    return image


def test_a_dark_on_light_drawing_becomes_a_centred_white_on_black_mnist_digit():
    pixels = mnist_style_digit(_png(_drawn_seven())).reshape(28, 28)
    assert pixels.dtype == np.float32 and 0 <= pixels.min() and pixels.max() <= 1
    ink = pixels > 0.5
    rows, cols = np.nonzero(ink)
    assert rows.max() - rows.min() + 1 == 20  # the long side fits a 20-pixel box, as in MNIST
    rows_idx, cols_idx = np.indices(pixels.shape)
    centre = np.array([(rows_idx * pixels).sum(), (cols_idx * pixels).sum()]) / pixels.sum()
    assert np.allclose(centre, 14, atol=1.0)  # centre of mass at the centre
    assert pixels[0].max() == 0 and pixels[:, 0].max() == 0  # black background


def test_light_on_dark_and_jpeg_give_the_same_digit():
    light_on_dark = mnist_style_digit(_png(_drawn_seven(ink=255, paper=0)))
    jpeg = mnist_style_digit(_png(_drawn_seven().convert("RGB"), "JPEG"))
    png = mnist_style_digit(_png(_drawn_seven()))
    assert np.abs(light_on_dark - png).mean() < 0.02
    assert np.abs(jpeg - png).mean() < 0.05


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"%PDF-1.4 not an image", "not a PNG or JPEG image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "damaged or cut short"),
        (_png(Image.new("L", (50, 50), 255)), "blank"),
        (_png(_drawn_seven(), "GIF"), "GIF"),
    ],
)
def test_files_that_are_not_usable_digit_pictures_say_why(data, reason):
    with pytest.raises(ValueError, match=reason):
        mnist_style_digit(data)


def test_a_huge_image_is_refused_before_it_is_decoded():
    huge = _png(Image.new("L", (6000, 5000), 0))  # compresses to a few KB, 30 M pixels decoded
    assert 6000 * 5000 > MAX_UPLOAD_PIXELS
    with pytest.raises(ValueError, match="limit"):
        mnist_style_digit(huge)


def test_uploaded_checkpoints_load_or_are_refused_with_a_reason(tmp_path):
    good = checkpoint_bytes(build_model(ModelConfig(latent_dim=2, hidden=(16,))))
    assert checkpoint_from_upload("good.safetensors", good).model_config.latent_dim == 2
    marker = tmp_path / "ran"
    bad_files = {
        "pickle": pickle.dumps(RunsCodeWhenUnpickled(marker)),
        "truncated": good[: len(good) // 2],
        "torch zip": _torch_zip(),
        "too big": b"\x00" * (MAX_CHECKPOINT_BYTES + 1),
    }
    for name, data in bad_files.items():
        with pytest.raises(CheckpointError):
            checkpoint_from_upload(f"{name}.safetensors", data)
    assert not marker.exists()


def _torch_zip() -> bytes:
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buffer)
    return buffer.getvalue()


def test_an_uploads_name_and_reason_are_shown_as_text_not_markdown():
    from explorer.ui.sidebar import _register_upload

    ok, message = _register_upload("[Log in](https://evil.example).safetensors", b"\x00" * 64)
    assert not ok
    assert shown(message).startswith("[Log in](https://evil.example).safetensors was not loaded")


def test_an_unforeseen_failure_while_loading_is_a_refusal_not_a_traceback(monkeypatch):
    import explorer.ui.sidebar as sidebar
    import vae_core

    def explode(_data):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(vae_core, "load_checkpoint", explode)  # imported when a file arrives
    ok, message = sidebar._register_upload("deep.safetensors", b"x" * 100)
    assert not ok and "not loaded" in message


@pytest.mark.parametrize(
    "file_name",
    [
        "[Log in](https://evil.example).safetensors",
        "**bold** <b>x</b> $x$ :red[x].safetensors",
        "../../etc/passwd",
        "..safetensors",
        "www.evil.example.safetensors",
        "x_www.evil.example.safetensors",
        "admin@evil.example.safetensors",
        "https://evil.example/x.safetensors",
    ],
)
def test_an_uploaded_models_name_on_every_page_is_plain_letters(file_name):
    """Pages put model names into Markdown and file names: the visitor's file name is cut to safe characters."""
    import re

    from explorer.ui.sidebar import model_label_from_file_name

    label = model_label_from_file_name(file_name)
    # no `.`, `@` or `:`: GFM autolinks `www.` hosts, e-mail addresses and URLs even inside a word
    assert label and re.fullmatch(r"[A-Za-z0-9_-]+", label) and not label.startswith("_"), label
