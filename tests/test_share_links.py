"""explorer.state.share_links: what a shared link's query parameters mean, and how a view is written as one.

Every bad value must raise ShareLinkError (a ValueError) naming the parameter, never anything else:
the pages turn it into a warning and fall back to their defaults.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from markdown_messages import shown

from explorer.state.registry import ModelEntry
from explorer.state.share_links import (
    MAX_ABS_COORDINATE,
    POINT_DECIMALS,
    ShareLinkError,
    find_model,
    format_point,
    model_url_name,
    parse_choice,
    parse_float_in,
    parse_index,
    parse_int_in,
    parse_label,
    parse_point,
    round_point,
    view_url,
)
from explorer.state.visitor_text import QUOTED_CHARS

# --- points --------------------------------------------------------------------------------------


def test_a_formatted_point_reads_back_as_the_rounded_point():
    rng = np.random.default_rng(0)
    points = [*rng.normal(0, 3, size=(200, 2)).tolist(), (0.0, 0.0), (-0.0004, 0.0004), (49.9996, -12.5)]
    for point in points:
        text = format_point(point)
        assert parse_point(text) == round_point(point)
        # a link moves a point by at most half of its last decimal
        assert np.abs(np.subtract(parse_point(text), point)).max() <= 0.5 * 10**-POINT_DECIMALS + 1e-12


@pytest.mark.parametrize(
    ("point", "text"),
    [
        ((0.51, -1.2), "0.51,-1.2"),
        ((0.5104, -1.19951), "0.51,-1.2"),
        ((2.0, 0.0), "2,0"),
        ((-0.0002, 3), "0,3"),
    ],
)
def test_points_are_written_short(point, text):
    assert format_point(point) == text


def test_rounding_is_idempotent_and_drops_negative_zero():
    once = round_point((0.12345678, -0.0001))
    assert round_point(once) == once
    assert str(once[1]) == "0.0"


@pytest.mark.parametrize("text", ["0.51,-1.20", " 0.51 , -1.2 ", "5.1e-1,-1.2"])
def test_a_point_accepts_spaces_trailing_zeros_and_exponents(text):
    assert parse_point(text) == (0.51, -1.2)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "not 2 numbers"),
        ("abc", "not 2 numbers"),
        ("0.5;1", "not 2 numbers"),
        ("0.5,,1", "not 2 numbers"),
        ("0.5", "has 1 numbers"),
        ("1,2,3", "has 3 numbers"),
        ("nan,0", "not finite"),
        ("0,-inf", "not finite"),
        (f"{MAX_ABS_COORDINATE + 1},0", "outside"),
        ("1e300,0", "outside"),
    ],
)
def test_bad_points_are_refused_with_the_reason(text, why):
    with pytest.raises(ShareLinkError, match=why) as caught:
        parse_point(text)
    assert str(caught.value).startswith("z=")


def test_a_point_of_another_dimension_can_be_asked_for():
    assert parse_point("1,2,3", dimension=3) == (1.0, 2.0, 3.0)
    with pytest.raises(ShareLinkError, match="has 2 numbers; the map's point has 3"):
        parse_point("1,2", dimension=3)


# --- indices, numbers, choices -------------------------------------------------------------------


@pytest.mark.parametrize(("text", "index"), [("0", 0), ("17", 17), (" 9999 ", 9999), ("007", 7)])
def test_an_index_in_range_is_read(text, index):
    assert parse_index(text, 10_000) == index


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("10000", "out of range: there are 10,000 digits"),
        ("123456789", "out of range"),
        ("-1", "not a digit index"),
        ("+2", "not a digit index"),
        ("1.5", "not a digit index"),
        ("seven", "not a digit index"),
        ("", "not a digit index"),
    ],
)
def test_bad_indices_are_refused_with_the_reason(text, why):
    with pytest.raises(ShareLinkError, match=why):
        parse_index(text, 10_000, "a")


def test_the_error_names_the_parameter():
    with pytest.raises(ShareLinkError, match=r"^b=12 is out of range"):
        parse_index("12", 10, "b")


def test_whole_numbers_and_numbers_in_a_range():
    assert parse_int_in(" 25 ", 3, 25, "steps") == 25
    assert parse_float_in("0.5", 0.1, 2.0, "T") == 0.5
    for bad, why in [
        ("26", "outside 3 to 25"),
        ("2", "outside"),
        ("ten", "not a whole number"),
        ("7.0", "whole"),
    ]:
        with pytest.raises(ShareLinkError, match=why):
            parse_int_in(bad, 3, 25, "steps")
    for bad, why in [
        ("nan", "not a number"),
        ("inf", "not a number"),
        ("1e999", "outside"),
        ("0.05", "outside 0.1 to 2"),
        ("hot", "not a number"),
    ]:
        with pytest.raises(ShareLinkError, match=why):
            parse_float_in(bad, 0.1, 2.0, "T")


def test_choices_ignore_case_and_list_the_options_when_wrong():
    assert parse_choice("Spherical", ("linear", "spherical"), "path") == "spherical"
    with pytest.raises(ShareLinkError, match="path=` curvy ` is not one of linear, spherical"):
        parse_choice("curvy", ("linear", "spherical"), "path")


def test_a_label_only_for_a_conditional_model():
    assert parse_label("3", conditional=True, model_name="cmlp2d") == 3
    with pytest.raises(ShareLinkError, match="` mlp2d ` is not a conditional model"):
        parse_label("3", conditional=False, model_name="mlp2d")
    with pytest.raises(ShareLinkError, match="outside 0 to 9"):
        parse_label("10", conditional=True, model_name="cmlp2d")


# --- models and URLs -----------------------------------------------------------------------------


@pytest.fixture
def entries() -> list[ModelEntry]:
    # find_model reads only keys, names and origins: no checkpoint needed
    return [
        ModelEntry("pretrained:mlp2d", None, "pretrained", "mlp2d"),
        ModelEntry("pretrained:mlp20", None, "pretrained", "mlp20"),
        ModelEntry("trained:mine", None, "trained", "mine"),
    ]


def test_pretrained_models_are_linked_by_name_and_session_models_by_key(entries):
    assert [model_url_name(e) for e in entries] == ["mlp2d", "mlp20", "trained:mine"]
    for entry in entries:
        assert find_model(model_url_name(entry), entries) == entry.key
        assert find_model(entry.key, entries) == entry.key


def test_an_unknown_model_names_the_shareable_ones(entries):
    with pytest.raises(
        ShareLinkError, match=r"model=` mine ` is no model here \(the shared ones: mlp2d, mlp20\)"
    ):
        find_model("mine", entries)  # a session model's bare name would be ambiguous across sessions
    with pytest.raises(ShareLinkError, match="the shared ones: none"):
        find_model("mlp2d", [])


def test_a_view_url_keeps_commas_and_colons_readable_and_parses_back():
    params = {"model": "trained:mine", "z": format_point((0.51, -1.2)), "digit": 17}
    url = view_url("http://localhost:8501/latent_map", params)
    assert url == "http://localhost:8501/latent_map?model=trained:mine&z=0.51,-1.2&digit=17"
    parts = urlsplit(url)
    assert parts.path == "/latent_map"
    assert {k: v[0] for k, v in parse_qs(parts.query).items()} == {k: str(v) for k, v in params.items()}
    assert view_url("/posterior", {}) == "/posterior"


def test_a_view_url_escapes_what_would_break_the_query():
    url = view_url("/samples", {"model": "a&b=c d"})
    assert parse_qs(urlsplit(url).query) == {"model": ["a&b=c d"]}


@pytest.mark.parametrize("value", ["²", "٣", "1" * 5000, "+3", "3.0", "0x10", "1_0", "-0", "", " "])
def test_digit_indices_that_are_not_plain_ascii_numbers_warn(value):
    with pytest.raises(ShareLinkError, match="not a digit index|too long"):
        parse_index(value, 100)


HOSTILE_VALUES = [
    "https://evil.example/login",
    "www.evil.example",
    "admin@evil.example",
    "[Log in again](https://evil.example)",
    "![x](https://evil.example/x.png)",
    '<a href="https://evil.example">x</a><img src=x>',
    "``` `www.evil.example` ```",
    "https://evil.example/" + "x" * 10_000,
]
EVERY_PARSER = {
    "model": lambda v: find_model(v, []),
    "digit": lambda v: parse_index(v, 100),
    "steps": lambda v: parse_int_in(v, 3, 25, "steps"),
    "T": lambda v: parse_float_in(v, 0.1, 2.0, "T"),
    "label": lambda v: parse_label(v, False, "mlp2d"),
    "path": lambda v: parse_choice(v, ("linear", "spherical"), "path"),
    "z": lambda v: parse_point(v),
}


@pytest.mark.parametrize("parameter", EVERY_PARSER)
@pytest.mark.parametrize("payload", HOSTILE_VALUES, ids=lambda v: v[:24])
def test_a_refused_value_is_quoted_only_in_a_short_code_span(parameter, payload):
    with pytest.raises(ShareLinkError) as caught:
        EVERY_PARSER[parameter](payload)
    message = str(caught.value)
    text = shown(message)  # fails if anything outside a code span could form a link
    assert text.startswith(f"{parameter}=") and len(message) < 300, message
    assert payload[:QUOTED_CHARS] in text
