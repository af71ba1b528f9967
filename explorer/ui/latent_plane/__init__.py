"""The latent plane: a Streamlit component (st.components.v2) that draws encoded digits on a canvas
and decodes the point under the cursor in the browser.

Data flow (DESIGN.md §4). When a plane is drawn, Python mounts two things:
  * a payload (bytes, one per model): plane coordinates and labels of every explored digit, the
    MLP decoder's weights and the plane -> latent map. Its bytes are the same on every rerun, so
    Streamlit's message cache sends them to a browser once; plane.js parses them once per model id.
  * a view (small JSON): which model, the overlays (clicked point, 2σ ellipse, your digit's star,
    an interpolation path), the label a conditional model decodes with.
Hovering, zooming and panning never talk to the server. A click is a trigger value:
{"x", "y"} for a point of the plane or {"digit": index} for the digit under the cursor.

Payload format "VLP1": b"VLP1", a little-endian uint32 header length, a JSON header
{"kind", "id", "meta", "arrays": {name: {"dtype", "shape", "offset"}}}, then the arrays, each at an
8-byte aligned offset (float32 "f4", int8 "i1", uint8 "u1").
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import streamlit as st
import torch

from explorer.figures.plots import DIGIT_COLOURS, plane_bounds
from explorer.state.registry import ModelEntry
from explorer.state.share_links import MAX_ABS_COORDINATE
from explorer.ui.resources import LatentCodes, digits_for, latent_codes
from vae_core import VAE, LatentProjection, encode
from vae_core.model_kinds import kind_spec

_HERE = Path(__file__).resolve().parent
# Inline JS/CSS read from the package (no asset_dir manifest: the app runs from a checkout, which may
# be read-only; nothing is fetched from a CDN).
PLANE_JS = (_HERE / "plane.js").read_text(encoding="utf-8")
PLANE_CSS = (_HERE / "plane.css").read_text(encoding="utf-8")
_component = st.components.v2.component("vae_explorer.latent_plane", js=PLANE_JS, css=PLANE_CSS)

MAGIC = b"VLP1"
_DTYPES = {np.dtype(np.float32): "f4", np.dtype(np.int8): "i1", np.dtype(np.uint8): "u1"}
THUMBNAIL_CELL = 14  # thumbnails are drawn from 14x14 ink (28x28 digits are 2x2 averaged in the browser)
CONV_NOTE = (
    "This model's decoder is convolutional, which the browser does not run: hovering shows no "
    "digit, and a click asks the server to decode the point."
)


# --- what the plane shows ------------------------------------------------------------------------
def plane_codes(entry: ModelEntry) -> LatentCodes:
    """Encoder means and stds of every explored digit (10,000 on full MNIST) and their plane points.

    The plane is the one the other pages use (`latent_codes`, fitted on the first digits), so a
    shared point z=x,y means the same latent everywhere.
    """

    def compute() -> LatentCodes:
        projection = latent_codes(entry).projection
        digits = digits_for(entry)
        labels = digits.labels
        mus, sigmas = [], []
        for start in range(0, len(digits), 2000):  # bounded memory for conv encoders
            part = slice(start, min(start + 2000, len(digits)))
            x = digits.subset(part).fixed_binary()  # what the model saw in training: binary
            mu, sigma = encode(entry.model, x, labels[part])  # an unconditional model ignores them
            mus.append(mu.cpu())
            sigmas.append(sigma.cpu())
        mu, sigma = torch.cat(mus), torch.cat(sigmas)
        return LatentCodes(mu, sigma, projection.to_plane(mu), labels, projection)

    return entry.cached("plane_codes", compute)


def mlp_decoder_layers(model: VAE) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """The decoder's layers as the browser runs them, float32 (weight (out, in), bias (out,)), or
    None when the model's kind says the browser cannot run its decoder (a conv decoder)."""
    browser_layers = kind_spec(model.config.kind).browser_layers
    if browser_layers is None:
        return None
    return [
        (
            np.ascontiguousarray(w.detach().to("cpu", torch.float32).numpy()),
            b.detach().to("cpu", torch.float32).numpy(),
        )
        for w, b in browser_layers(model)
    ]


def posterior_ellipse(mu, sigma, projection: LatentProjection, n_std: float = 2.0) -> list[float]:
    """q(z|x) = N(mu, diag(sigma²)) seen on the plane, as an ellipse [cx, cy, rx, ry, angle (rad)].

    The plane shows A (z - mean) with A the projection's rows, so the projected Gaussian has
    covariance A diag(sigma²) Aᵀ (axis-aligned for a 2-D model; rotated under PCA). The radii are
    n_std standard deviations along its principal axes.
    """
    mu = torch.as_tensor(mu, dtype=torch.float32).reshape(1, -1)
    sigma = torch.as_tensor(sigma, dtype=torch.float32).reshape(-1)
    centre = projection.to_plane(mu)[0]
    a = projection.components.to(torch.float64)  # (k, L)
    cov = (a * sigma.to(torch.float64) ** 2) @ a.T  # (k, k)
    if cov.shape[0] < 2:  # 1-D latents: the plane's y axis is unused
        return [float(centre[0]), float(centre[1]), n_std * float(cov[0, 0].sqrt()), 0.0, 0.0]
    variances, axes = torch.linalg.eigh(cov)  # ascending
    major = axes[:, 1]
    angle = float(torch.atan2(major[1], major[0]))
    radii = n_std * variances.clamp_min(0).sqrt()
    return [float(centre[0]), float(centre[1]), float(radii[1]), float(radii[0]), angle]


# --- the bytes the browser gets ------------------------------------------------------------------
def pack_payload(kind: str, meta: dict, arrays: dict[str, np.ndarray]) -> bytes:
    """A VLP1 blob (see the module docstring); its id is a hash of its content.

    Array offsets count from the body, which starts at the first multiple of 8 after the header.
    """
    specs, chunks, offset = {}, [], 0
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        specs[name] = {"dtype": _DTYPES[array.dtype], "shape": list(array.shape), "offset": offset}
        data = array.tobytes()
        chunks.append(data + b"\0" * (-len(data) % 8))
        offset += len(chunks[-1])
    body = b"".join(chunks)
    digest = hashlib.sha1(body + json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]
    header = json.dumps({"kind": kind, "id": f"{kind}-{digest}", "meta": meta, "arrays": specs}).encode()
    padding = -(8 + len(header)) % 8
    return MAGIC + struct.pack("<I", len(header)) + header + b"\0" * padding + body


def payload_id(blob: bytes) -> str:
    (length,) = struct.unpack("<I", blob[4:8])
    return json.loads(blob[8 : 8 + length])["id"]


def model_payload(entry: ModelEntry, codes: LatentCodes) -> bytes:
    """Points, labels, the plane -> latent map and (MLP decoders) the decoder's float32 weights.

    float16 weights would halve the bytes but moved decoded pixels by up to 2.5e-3 on the
    pretrained models, over the 1e-3 the browser's decode must stay within.
    """
    config = entry.config
    layers = mlp_decoder_layers(entry.model)
    labels = codes.labels.numpy() if codes.labels is not None else np.full(len(codes.plane), -1)
    arrays = {
        "points": codes.plane.numpy().astype(np.float32),  # (N, 2)
        "labels": labels.astype(np.int8),  # (N,), -1 = unlabelled
        "mean": codes.projection.mean.numpy().astype(np.float32),  # (L,)
        "components": codes.projection.components.numpy().astype(np.float32),  # (k, L)
    }
    for i, (weight, bias) in enumerate(layers or []):
        arrays[f"W{i}"], arrays[f"b{i}"] = weight, bias
    meta = {
        "latent_dim": config.latent_dim,
        "plane_dims": int(codes.projection.components.shape[0]),
        "conditional": bool(config.conditional),
        "num_classes": config.num_classes,
        "image_size": config.image_size,
        "activation": config.activation,
        "layers": len(layers or []),
        "decodable": layers is not None,
        "axis_labels": list(codes.projection.axis_labels()),
        "count": len(codes.plane),
    }
    return pack_payload("model", meta, arrays)


def thumbnail_payload(entry: ModelEntry, count: int, model_id: str) -> bytes:
    """The first `count` explored digits, binary and bit-packed (N, ceil(D/8)): thumbnails."""
    digits = digits_for(entry)
    binary = digits.subset(slice(0, count)).fixed_binary().numpy() > 0.5
    bits = np.packbits(binary.astype(np.uint8), axis=1)
    meta = {"model": model_id, "count": int(count), "image_size": entry.config.image_size,
            "stride": int(bits.shape[1])}  # fmt: skip
    return pack_payload("thumbnails", meta, {"bits": bits})


def points_payload(plane, labels, axis_labels: tuple[str, str], image_size: int = 28) -> bytes:
    """Points only, no decoder: a snapshot of a model still training (its weights change under it)."""
    points = np.asarray(plane, dtype=np.float32).reshape(-1, 2)
    arrays = {
        "points": points,
        "labels": np.asarray(labels).astype(np.int8),
        "mean": np.zeros(2, dtype=np.float32),
        "components": np.eye(2, dtype=np.float32),
    }
    meta = {"latent_dim": 2, "plane_dims": 2, "conditional": False, "num_classes": 10, "image_size": image_size,
            "activation": "relu", "layers": 0, "decodable": False, "axis_labels": list(axis_labels),
            "count": len(points)}  # fmt: skip
    return pack_payload("model", meta, arrays)


def payload_meta(blob: bytes) -> dict:
    (length,) = struct.unpack("<I", blob[4:8])
    return json.loads(blob[8 : 8 + length])["meta"]


def cached_model_payload(entry: ModelEntry, codes: LatentCodes) -> bytes:
    return entry.cached("plane_payload", lambda: model_payload(entry, codes))


def server_image(probs, text: str) -> dict:
    """A server-decoded digit for the component to show (conv decoders): uint8 pixels, base64."""
    pixels = (np.clip(np.asarray(probs, dtype=np.float32).reshape(-1), 0, 1) * 255).round().astype(np.uint8)
    return {"pixels": base64.b64encode(pixels.tobytes()).decode("ascii"), "text": text}


def _prompt(decodable: bool, clickable: bool) -> str:
    # device-neutral: the component's help line says how, for the mouse, a finger or the keys
    if decodable:
        return (
            "Point at the map to decode; choose a point to keep it."
            if clickable
            else "Point at the map to decode."
        )
    return "Choose a point to decode it (on the server)." if clickable else ""


# --- mounting ------------------------------------------------------------------------------------
def _mount_payload(blob: bytes) -> None:
    # keyed by content: the same model's bytes keep one element, so reruns send a reference to them
    _component(key=f"vlp_{payload_id(blob)}", data=blob, height="content")


def latent_plane(
    entry: ModelEntry | None,
    codes: LatentCodes | None,
    *,
    key: str,
    on_click: Callable[[dict], None] | None = None,
    bounds: tuple[float, float, float, float] | None = None,
    label: int | None = None,
    clicked: tuple[float, float] | None = None,
    clicked_digit: int | None = None,
    ellipse: list[float] | None = None,
    star: tuple[float, float] | None = None,
    thumbnails: int = 0,
    decoded_by_server: dict | None = None,
    prompt: str | None = None,
    height: int = 520,
    pick_digits: bool = True,
    payload: bytes | None = None,
    path: dict | None = None,
    on_path: Callable[[dict], None] | None = None,
    note: str | None = None,
    refit: bool = False,
) -> None:
    """Draw the plane of `codes` for `entry`; `on_click(value)` runs (as a widget callback, before the
    rerun) with {"x", "y"} or {"digit": i}. `thumbnails` > 0 draws that many digits as images.

    `path` = {"start", "end" (latents), "method", "steps", "walk" (0-based step shown)}: an
    interpolation path the browser decodes (MLP decoders) and lets the user drag, its ends and its
    walk point; `on_path({"start", "end", "walk"})` runs when a drag ends.

    Given a `payload` (say `points_payload` of a live run) `entry` and `codes` may be None; then pass
    `bounds`. `refit` fits the view to `bounds` on every update (a live run's points move).
    """
    blob = payload if payload is not None else cached_model_payload(entry, codes)
    model_id = payload_id(blob)
    decodable = payload_meta(blob)["decodable"]
    view = {
        "view_key": key,
        "model": model_id,
        "height": height,
        "bounds": list(bounds or plane_bounds(codes.plane)),
        "colours": list(DIGIT_COLOURS),  # plane.js has no palette of its own
        "label": int(label or 0),
        "clicked": list(clicked) if clicked is not None else None,
        "clicked_digit": clicked_digit,
        "ellipse": ellipse,
        "star": list(star) if star is not None else None,
        "thumbnails": bool(thumbnails),
        "server_image": decoded_by_server,
        "prompt": prompt if prompt is not None else _prompt(decodable, on_click is not None),
        "note": note if note is not None else ("" if decodable else CONV_NOTE),
        "refit": refit,
        "pick_digits": pick_digits,
        "clicks": on_click is not None,
        "path": None,
        "path_plane": None,
        "path_walk": None,
    }
    if path is not None:
        from vae_core import interpolate

        latents = interpolate(
            torch.as_tensor(path["start"]), torch.as_tensor(path["end"]), path["steps"], path["method"]
        )
        view["path"] = {k: (list(map(float, v)) if k in ("start", "end") else v) for k, v in path.items()}
        view["path_plane"] = codes.projection.to_plane(latents).tolist()
        view["path_walk"] = path["walk"]

    def event(name: str, callback):
        def run() -> None:
            value = (st.session_state.get(key) or {}).get(name)
            if callback is not None and isinstance(value, dict):
                callback(value)

        return run

    # One JSON string, not the dict: Streamlit checks each value of a dict for a dataframe, and
    # that check imports pandas and pyarrow (about 68 MB, 0.7 s) on a page that needs neither.
    # allow_nan=False: the browser's JSON.parse fails on NaN or Infinity, and none should be here.
    _component(
        key=key, data=json.dumps(view, allow_nan=False), height="content",
        on_click_change=event("click", on_click), on_path_change=event("path", on_path),
    )  # fmt: skip
    _mount_payload(blob)
    if thumbnails:
        _mount_payload(entry.cached(f"plane_thumbs:{thumbnails}",
                                    lambda: thumbnail_payload(entry, thumbnails, model_id)))  # fmt: skip


def _coordinate(value) -> bool:
    """A number a visitor may send as a coordinate: an int or float (not a bool), finite, within
    ±MAX_ABS_COORDINATE (the bound a shared link has; far outside any prior's mass)."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and abs(value) <= MAX_ABS_COORDINATE
    )


def path_value(value, latent_dim: int, steps: int) -> tuple[list[float], list[float], int] | None:
    """A dragged path's trigger value as (start latent, end latent, walk step), or None if malformed.

    The value travels over the websocket from the visitor's machine: every field is checked.
    """
    if not isinstance(value, dict):
        return None
    ends = [value.get("start"), value.get("end")]
    walk = value.get("walk")
    if not (isinstance(walk, int) and not isinstance(walk, bool) and 0 <= walk < steps):
        return None
    for end in ends:
        if not (isinstance(end, list) and len(end) == latent_dim and all(map(_coordinate, end))):
            return None
    return [float(v) for v in ends[0]], [float(v) for v in ends[1]], walk


def click_value(value, count: int | None = None) -> tuple[float, float, int | None] | None:
    """A click trigger value as (x, y, digit index or None); None for anything malformed.

    The value travels over the websocket from the visitor's machine: a point's coordinates must be
    finite and within ±MAX_ABS_COORDINATE, a digit's index below `count` (the digits on the plane).
    """
    if not isinstance(value, dict):
        return None
    digit = value.get("digit")
    if isinstance(digit, int) and not isinstance(digit, bool):
        return (0.0, 0.0, digit) if digit >= 0 and (count is None or digit < count) else None
    x, y = value.get("x"), value.get("y")
    if _coordinate(x) and _coordinate(y):
        return (float(x), float(y), None)
    return None
