"""How it works in a real browser: clicking Resample ε moves z and changes the decoded image."""

from __future__ import annotations

import re

import pytest

from .accessibility import assert_no_serious_violations
from .conftest import open_page, wait_for_app_idle

pytestmark = pytest.mark.browser


def shown_vectors(page) -> dict[str, str]:
    """μ, σ, ε and z as the page prints them, as text."""
    text = page.locator('[data-testid="stMarkdown"]', has_text="ε = (").first.inner_text()
    return dict(re.findall(r"(μ|σ|ε|z) = \(([^)]*)\)", text))


def decoded_image_src(page) -> str:
    image = page.locator('[data-testid="stImage"]', has_text="p(x|z)").locator("img").first
    return image.get_attribute("src")


def test_resample_moves_z_and_changes_the_decoded_image(page, app_server):
    open_page(page, app_server, "how_it_works")
    assert page.locator('[data-testid="stException"]').count() == 0
    page.wait_for_selector("h1:has-text('How a VAE computes')")
    assert_no_serious_violations(page, "How it works")  # axe-core
    before, image_before = shown_vectors(page), decoded_image_src(page)
    assert before["ε"] and before["z"]
    page.get_by_role("button", name="Resample ε").click()
    page.wait_for_function(
        "(old) => ![...document.querySelectorAll('[data-testid=\"stMarkdown\"]')]"
        ".some(e => e.innerText.includes('ε = (' + old + ')'))",
        arg=before["ε"],
    )
    wait_for_app_idle(page)
    after = shown_vectors(page)
    assert after["ε"] != before["ε"] and after["z"] != before["z"]
    assert after["μ"] == before["μ"] and after["σ"] == before["σ"]  # the encoder's outputs stay
    assert decoded_image_src(page) != image_before
    assert page.locator('[data-testid="stException"]').count() == 0


def test_traversal_rows_are_the_decoded_swept_latents(page, app_server):
    """Each row of the traversal picture, read back from the browser, is vae_core.decode of z with
    that row's dimension swept over −3 … +3 and the others at 0 (pixels within one grey level)."""
    from pathlib import Path

    import numpy as np
    import torch

    from explorer.figures.pictures import ROW_LABEL_WIDTH
    from vae_core import load_checkpoint
    from vae_core.inference import decode

    from .test_latent_plane import image_pixels

    open_page(page, app_server, "how_it_works")
    page.wait_for_selector("h1:has-text('How a VAE computes')")
    model_name = page.get_by_test_id("stSidebar").get_by_role("combobox", name="Model", exact=True)
    name = model_name.input_value().split()[0]
    image = page.locator('[data-testid="stImage"]', has_text="one row per latent dimension").locator("img")
    around_mu = image.first.get_attribute("src")
    page.get_by_text("0 (the prior mean)").click()
    # under load the page can look idle before the rerun starts: wait for the new picture itself
    page.wait_for_function(
        """(old) => [...document.querySelectorAll('[data-testid="stImage"]')]
             .some(e => e.innerText.includes('one row per latent dimension')
                        && e.querySelector('img') && e.querySelector('img').src !== old
                        && e.querySelector('img').complete)""",
        arg=around_mu,
        timeout=90_000,
    )
    wait_for_app_idle(page)
    rows_caption = page.get_by_text(re.compile(r"^Rows \(KL averaged")).first.inner_text()
    order = [int(d) - 1 for d in re.findall(r"dim (\d+) \(KL", rows_caption)]
    pixels = image_pixels(page, image.first.get_attribute("src"))[:, ROW_LABEL_WIDTH:]  # after the row labels

    checkpoint = load_checkpoint(Path(__file__).resolve().parents[2] / "pretrained" / f"{name}.safetensors")
    model, size = checkpoint.model, checkpoint.model_config.image_size
    assert sorted(order) == list(range(model.latent_dim))
    steps = 9  # the page's default
    values = torch.linspace(-3.0, 3.0, steps)
    scale, pad, cell = 2, 1, size + 1
    tiled = pixels[::scale, ::scale]  # the page upscales each pixel to a 2x2 block
    assert tiled.shape == (len(order) * cell + pad, steps * cell + pad), tiled.shape
    for row, dim in enumerate(order):
        latents = torch.zeros(steps, model.latent_dim)
        latents[:, dim] = values
        labels = torch.zeros(steps, dtype=torch.long) if model.config.conditional else None
        expected = decode(model, latents, labels).reshape(steps, size, size).detach().numpy() * 255
        for step in range(steps):
            top, left = pad + row * cell, pad + step * cell
            shown = tiled[top : top + size, left : left + size]
            assert np.abs(shown - expected[step]).max() <= 1.0, (name, dim, step)
