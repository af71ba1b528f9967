"""A view's address: read the query parameters a shared link carries, and write a view back as one.

Pure functions, no Streamlit, so every rule is unit-tested. A value that cannot be used raises
ShareLinkError with a sentence the page shows before falling back to its default.

The parameters (each page reads only its own):
    model=mlp2d            a pretrained model by name (a session's own model by its key)
    z=0.51,-1.2            Latent map: the decoded point of the map's plane (the latent itself for
                           a 2-D model, the first two principal components otherwise)
    digit=17               Latent map / Posterior: an explored test digit, by index
    a=17&b=42              Interpolate: the two ends
    path=spherical, steps=12      Interpolate: linear or spherical, and how many steps
    label=3                       the class a conditional decoder draws (Latent map, Interpolate, Samples)
    part=top                      Posterior: which half is hidden (or full)
    seed=4&T=0.8&n=64             Samples: the draw, its temperature and how many

Every value is visitor-controlled: numbers are read from ASCII digits only (int() and float() also
take '²'-like Unicode digits, '1_000', 'nan' and 5000-digit strings), lengths are bounded before
parsing, and a message quotes a value only through visitor_text.inert (a short code span, never a
link), so a ShareLinkError's text is Markdown a page can show as it is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from explorer.state.visitor_text import inert

if TYPE_CHECKING:
    from explorer.state.registry import ModelEntry

MODEL_PARAM = "model"
POINT_PARAM = "z"
DIGIT_PARAM = "digit"
START_PARAM, END_PARAM = "a", "b"
PATH_PARAM = "path"
STEPS_PARAM = "steps"
LABEL_PARAM = "label"
PART_PARAM = "part"
SEED_PARAM, TEMPERATURE_PARAM, COUNT_PARAM = "seed", "T", "n"

# Three decimals is what the map prints; a shared point is rounded to it so the link, the printed
# coordinates and the decoded point are the same numbers (0.0005 of a unit moves no pixel).
POINT_DECIMALS = 3
# A standard-normal prior has no mass this far out; a larger value is a typo, not a view.
MAX_ABS_COORDINATE = 50.0


# Longer than any value this app writes (a 2-D point is at most ~16 characters); longer is not a view.
MAX_VALUE_CHARS = 64
MAX_INDEX_DIGITS = 9
_WHOLE = re.compile(rf"-?[0-9]{{1,{MAX_INDEX_DIGITS}}}")
_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,3})?")


def _bounded(value: str, name: str) -> str:
    if len(value) > MAX_VALUE_CHARS:
        raise ShareLinkError(f"{name}={inert(value)} is too long to be a value of this app")
    return value


class ShareLinkError(ValueError):
    """A query parameter that cannot be used; the message says which, and why, in Markdown that
    quotes the visitor's value only through visitor_text.inert."""


def model_url_name(entry: ModelEntry) -> str:
    """How a link names a model: a pretrained one by its file name, any other by its session key."""
    return entry.name if entry.origin == "pretrained" else entry.key


def find_model(value: str, entries: Iterable[ModelEntry]) -> str:
    """The key of the model a link names, or ShareLinkError listing the names that would work."""
    entries = list(entries)
    for entry in entries:
        if value in (model_url_name(entry), entry.key):
            return entry.key
    names = ", ".join(model_url_name(entry) for entry in entries if entry.origin == "pretrained")
    raise ShareLinkError(
        f"{MODEL_PARAM}={inert(value)} is no model here (the shared ones: {names or 'none'})"
    )


def parse_index(value: str, count: int, name: str = DIGIT_PARAM) -> int:
    """A whole number in [0, count), e.g. an explored digit's index."""
    text = _bounded(value, name).strip(" ")
    # ASCII digits only: str.isdigit() also passes '²' and '٣', which int() then refuses or reads
    if not (_WHOLE.fullmatch(text) and not text.startswith("-")):
        raise ShareLinkError(f"{name}={inert(value)} is not a digit index (a whole number from 0)")
    index = int(text)
    if index >= count:
        raise ShareLinkError(
            f"{name}={index} is out of range: there are {count:,} digits (0 to {count - 1:,})"
        )
    return index


def parse_int_in(value: str, low: int, high: int, name: str) -> int:
    """A whole number in [low, high]."""
    text = _bounded(value, name).strip(" ")
    if not _WHOLE.fullmatch(text):
        raise ShareLinkError(f"{name}={inert(value)} is not a whole number")
    number = int(text)
    if not low <= number <= high:
        raise ShareLinkError(f"{name}={number} is outside {low} to {high}")
    return number


def parse_float_in(value: str, low: float, high: float, name: str) -> float:
    """A finite number in [low, high]."""
    text = _bounded(value, name).strip(" ")
    if not _DECIMAL.fullmatch(text):  # no 'nan', 'inf', '1_0' or non-ASCII digits
        raise ShareLinkError(f"{name}={inert(value)} is not a number")
    number = float(text)
    if not low <= number <= high:  # 1e999 reads as inf, which is outside too
        raise ShareLinkError(f"{name}={inert(value)} is outside {low:g} to {high:g}")
    return number


def parse_label(value: str, conditional: bool, model_name: str) -> int:
    """The class (0 to 9) a conditional decoder draws; an unconditional model has none to set."""
    if not conditional:
        raise ShareLinkError(f"{LABEL_PARAM}={inert(value)}: {inert(model_name)} is not a conditional model")
    return parse_int_in(value, 0, 9, LABEL_PARAM)


def parse_choice(value: str, options: Sequence[str], name: str) -> str:
    """One of `options`, matched without regard to case."""
    wanted = _bounded(value, name).strip().lower()
    for option in options:
        if option.lower() == wanted:
            return option
    raise ShareLinkError(f"{name}={inert(value)} is not one of {', '.join(options)}")


def parse_point(value: str, dimension: int = 2, name: str = POINT_PARAM) -> tuple[float, ...]:
    """`dimension` comma-separated finite numbers within ±MAX_ABS_COORDINATE, rounded to POINT_DECIMALS."""
    parts = [part.strip(" ") for part in _bounded(value, name).split(",")]
    if parts and all(part.lower() in ("nan", "inf", "-inf", "+inf", "infinity") or _DECIMAL.fullmatch(part)
                     for part in parts):  # fmt: skip
        numbers = [float(part) for part in parts]
    else:
        raise ShareLinkError(f"{name}={inert(value)} is not {dimension} numbers like 0.5,-1.2")
    if len(numbers) != dimension:
        raise ShareLinkError(
            f"{name}={inert(value)} has {len(numbers)} numbers; the map's point has {dimension}"
        )
    if not all(math.isfinite(number) for number in numbers):
        raise ShareLinkError(f"{name}={inert(value)} is not finite")
    if max(abs(number) for number in numbers) > MAX_ABS_COORDINATE:
        raise ShareLinkError(f"{name}={inert(value)} lies outside ±{MAX_ABS_COORDINATE:g}")
    return round_point(numbers)


def round_point(point: Iterable[float]) -> tuple[float, ...]:
    """The point as a link keeps it (see POINT_DECIMALS); -0.0 becomes 0.0 so it prints as 0."""
    return tuple(round(float(v), POINT_DECIMALS) + 0.0 for v in point)


def format_point(point: Iterable[float]) -> str:
    """'0.51,-1.2': rounded like round_point, without trailing zeros; parse_point reads it back."""

    def short(v: float) -> str:
        text = f"{v:.{POINT_DECIMALS}f}".rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text

    return ",".join(short(v) for v in round_point(point))


def view_url(page_url: str, params: Mapping[str, object]) -> str:
    """`page_url` with `params` as its query string; commas and colons stay readable."""
    query = urlencode({name: str(value) for name, value in params.items()}, safe=",:")
    return f"{page_url}?{query}" if query else page_url
