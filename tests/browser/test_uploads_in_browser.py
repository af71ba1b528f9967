"""Uploads through a real browser: the sidebar's checkpoint uploader and the Latent map's own-digit
uploader. Bad files must give a message, run no code and leave the app working; good ones are used.

What each input produced is printed (run with `-s`) and written to upload_messages.json in the
test's tmp dir, so a report can quote the messages users see.
"""

from __future__ import annotations

import io
import json
import pickle
import re

import pytest
from PIL import Image, ImageDraw
from safetensors.torch import save as save_tensors

from vae_core import ModelConfig, build_model
from vae_core.checkpoint import checkpoint_bytes

from .conftest import open_page, wait_for_app_idle

pytestmark = pytest.mark.browser

EXCEPTION = '[data-testid="stException"]'
SIDEBAR_UPLOAD = '[data-testid="stSidebar"] [data-testid="stFileUploaderDropzoneInput"]'
MAIN = '[data-testid="stMainBlockContainer"]'


class _Exploit:
    """Unpickling this creates `marker`: proof that the server ran code from the upload."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _wrong_shapes() -> bytes:
    """A well-formed checkpoint whose metadata describes another architecture than its tensors."""
    small = build_model(ModelConfig(latent_dim=2, hidden=(16,)))
    data = checkpoint_bytes(build_model(ModelConfig(latent_dim=2, hidden=(32,))))
    metadata = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])["__metadata__"]
    return save_tensors({k: v.contiguous() for k, v in small.state_dict().items()}, metadata=metadata)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _drawn_seven() -> bytes:
    image = Image.new("L", (300, 200), 255)
    ImageDraw.Draw(image).line([(100, 30), (160, 30), (120, 170)], fill=0, width=18)
    return _png(image)


def _open_upload_box(page) -> None:
    """Expand the sidebar's upload box unless it is open: a click toggles it, and after a page
    switch the sidebar's expander may or may not keep the state it had (it raced in CI)."""
    box = page.get_by_test_id("stSidebar").get_by_test_id("stExpander").filter(has_text="Upload a checkpoint")
    if box.locator("details[open]").count() == 0:
        box.get_by_text("Upload a checkpoint").click()
    box.locator("details[open]").wait_for()


def _upload(page, selector: str, name: str, data: bytes, mime: str) -> None:
    page.locator(selector).set_input_files({"name": name, "mimeType": mime, "buffer": data})


def _alert_naming(page, scope: str, name: str) -> tuple[str, str]:
    """Wait for the alert in `scope` that mentions the file `name`; (kind, text) of it."""
    alert = page.locator(f"{scope} [data-testid='stAlert']", has_text=name).first
    alert.wait_for(timeout=60_000)
    wait_for_app_idle(page)
    kind = alert.locator("[data-testid^='stAlertContent']").first.get_attribute("data-testid")
    return kind.removeprefix("stAlertContent").lower(), alert.inner_text().strip()


def _note(tmp_path, results: dict, name: str, outcome: tuple[str, str]) -> None:
    """Keep what `name` produced; printed and saved at once, so a failing assert loses nothing."""
    results[name] = outcome
    print(f"\n[upload] {name}: {outcome[0]}: {outcome[1]}")
    (tmp_path / "upload_messages.json").write_text(json.dumps(results, indent=2) + "\n")


def test_checkpoint_uploads_refuse_bad_files_and_select_a_good_one(page, app_server, tmp_path):
    marker = tmp_path / "unpickled"
    good = checkpoint_bytes(build_model(ModelConfig(latent_dim=2, hidden=(16,))))
    inputs = {
        "pickle.safetensors": pickle.dumps(_Exploit(marker)),
        "truncated.safetensors": good[: len(good) // 2],
        "wrong_shapes.safetensors": _wrong_shapes(),
    }
    open_page(page, app_server, "")
    _open_upload_box(page)
    results = {}
    for name, data in inputs.items():
        _upload(page, SIDEBAR_UPLOAD, name, data, "application/octet-stream")
        _note(tmp_path, results, name, _alert_naming(page, '[data-testid="stSidebar"]', name))

    assert not marker.exists(), "the server unpickled an uploaded file"
    for name, (kind, text) in results.items():
        assert kind == "error", f"{name}: {kind}: {text}"
        assert "was not loaded" in text, text
    assert "pickle" in results["pickle.safetensors"][1]
    assert "truncated" in results["truncated.safetensors"][1]
    assert "wrong shapes" in results["wrong_shapes.safetensors"][1]
    assert page.locator(EXCEPTION).count() == 0

    # the refusals left the app working: another page still renders
    page.get_by_test_id("stSidebarNav").locator("a", has_text="Samples").first.click()
    page.wait_for_url(re.compile(r"/samples(\?.*)?$"))
    page.get_by_role("heading", name=re.compile("sample", re.IGNORECASE)).first.wait_for()
    wait_for_app_idle(page)
    assert page.locator(EXCEPTION).count() == 0

    _open_upload_box(page)
    _upload(page, SIDEBAR_UPLOAD, "valid.safetensors", good, "application/octet-stream")
    kind, text = _alert_naming(page, '[data-testid="stSidebar"]', "valid.safetensors")
    _note(tmp_path, results, "valid.safetensors", (kind, text))
    assert kind == "success" and "It is now selected" in text, text
    picker = page.get_by_test_id("stSidebar").get_by_role("combobox", name="Model", exact=True)
    assert picker.input_value().startswith("valid · "), picker.input_value()
    assert page.locator(EXCEPTION).count() == 0


def test_own_digit_uploads_on_the_latent_map(page, app_server, tmp_path):
    open_page(page, app_server, "latent_map")
    page.get_by_text("Your own digit").first.click()
    main_upload = f"{MAIN} [data-testid='stFileUploaderDropzoneInput']"
    results = {}

    _upload(page, main_upload, "seven.png", _drawn_seven(), "image/png")
    page.get_by_text("your digit, MNIST-style").wait_for(timeout=60_000)
    wait_for_app_idle(page)
    metric = page.locator('[data-testid="stMetric"]', has_text="ELBO (nats)")
    value = metric.locator('[data-testid="stMetricValue"]').inner_text()
    typicality = page.get_by_text("of test digits have").inner_text()
    _note(tmp_path, results, "seven.png", ("shown", f"ELBO {value}; {typicality}"))
    assert re.fullmatch(r"-?\d+\.\d", value.strip()), value

    _upload(page, main_upload, "notes.png", b"just some text, not a picture\n" * 20, "image/png")
    _note(tmp_path, results, "notes.png", _alert_naming(page, MAIN, "notes.png"))

    huge = _png(Image.new("L", (6000, 5000), 0))  # a few KB on the wire, 30 M pixels decoded
    _upload(page, main_upload, "huge.png", huge, "image/png")
    _note(tmp_path, results, "huge.png", _alert_naming(page, MAIN, "huge.png"))

    for name in ("notes.png", "huge.png"):
        kind, text = results[name]
        assert kind == "error" and "was not used" in text, f"{name}: {kind}: {text}"
    assert "not a PNG or JPEG image" in results["notes.png"][1]
    assert "limit" in results["huge.png"][1] and "6000x5000" in results["huge.png"][1]
    assert page.get_by_text("your digit, MNIST-style").count() == 0  # the refused file replaced it
    assert page.locator(EXCEPTION).count() == 0
    page.locator('[data-testid="stBidiComponentIsolated"] canvas.vlp-canvas').first.wait_for()
