"""The digit classes' colours stay apart for colour-blind eyes, and the default view holds every point.

Measure: each colour simulated under a full (severity 1) protanopia, deuteranopia and tritanopia with
Machado, Oliveira & Fernandes (2009)'s matrices, applied in linear RGB, then the CIEDE2000 colour
difference (Sharma, Wu & Dalal 2005) between every pair of classes, in CIELAB under D65. Threshold:
every pair at least 10 apart under every simulation and with normal vision: about five times the
just-noticeable difference for patches, which small dots on a canvas need (matplotlib's tab10 falls
to 1.3 under a protanopia). The CIEDE2000 code below is checked against Sharma's published pairs.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from explorer.figures.plots import DIGIT_COLOURS, plane_bounds

MIN_DELTA_E = 10.0
# Machado et al. 2009, severity 1.0: linear RGB -> linear RGB as the dichromat sees it.
MACHADO = {
    "protanopia": [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]],
    "deuteranopia": [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]],
    "tritanopia": [[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602], [0.004733, 0.691367, 0.303900]],
}  # fmt: skip
TAB10 = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


def linear_rgb(hex_colour: str) -> np.ndarray:
    srgb = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]) / 255
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def cielab(linear: np.ndarray) -> np.ndarray:
    to_xyz = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                       [0.0193339, 0.1191920, 0.9503041]])  # fmt: skip
    t = to_xyz @ linear / np.array([0.95047, 1.0, 1.08883])  # D65 white
    f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def ciede2000(lab1, lab2) -> float:
    (l1, a1, b1), (l2, a2, b2) = lab1, lab2
    c_mean = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    g = 0.5 * (1 - np.sqrt(c_mean**7 / (c_mean**7 + 25**7)))
    a1, a2 = (1 + g) * a1, (1 + g) * a2
    c1, c2 = np.hypot(a1, b1), np.hypot(a2, b2)
    h1, h2 = np.degrees(np.arctan2(b1, a1)) % 360, np.degrees(np.arctan2(b2, a2)) % 360
    dh = 0.0 if c1 * c2 == 0 else (h2 - h1 + 180) % 360 - 180
    d_big_h = 2 * np.sqrt(c1 * c2) * np.sin(np.radians(dh) / 2)
    l_mean, c_mean = (l1 + l2) / 2, (c1 + c2) / 2
    if c1 * c2 == 0:
        h_mean = h1 + h2
    elif abs(h1 - h2) <= 180:
        h_mean = (h1 + h2) / 2
    else:
        h_mean = (h1 + h2 + 360) / 2 if h1 + h2 < 360 else (h1 + h2 - 360) / 2
    t = (1 - 0.17 * np.cos(np.radians(h_mean - 30)) + 0.24 * np.cos(np.radians(2 * h_mean))
         + 0.32 * np.cos(np.radians(3 * h_mean + 6)) - 0.20 * np.cos(np.radians(4 * h_mean - 63)))  # fmt: skip
    rotation = (
        -np.sin(np.radians(60 * np.exp(-(((h_mean - 275) / 25) ** 2))))
        * 2
        * np.sqrt(c_mean**7 / (c_mean**7 + 25**7))
    )
    s_l = 1 + 0.015 * (l_mean - 50) ** 2 / np.sqrt(20 + (l_mean - 50) ** 2)
    s_c, s_h = 1 + 0.045 * c_mean, 1 + 0.015 * c_mean * t
    dl, dc, dh_term = (l2 - l1) / s_l, (c2 - c1) / s_c, d_big_h / s_h
    return float(np.sqrt(dl**2 + dc**2 + dh_term**2 + rotation * dc * dh_term))


def closest_pair(colours, vision: str) -> tuple[float, int, int]:
    seen = []
    for colour in colours:
        linear = linear_rgb(colour)
        if vision != "normal":
            linear = np.clip(np.array(MACHADO[vision]) @ linear, 0, 1)
        seen.append(cielab(linear))
    return min((ciede2000(seen[i], seen[j]), i, j) for i, j in itertools.combinations(range(len(seen)), 2))


@pytest.mark.parametrize(
    ("lab1", "lab2", "expected"),
    [  # Sharma, Wu & Dalal (2005), table 1: pairs 1, 7, 17 and 25
        ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
        ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
        ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
        ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ],
)
def test_ciede2000_matches_sharmas_published_pairs(lab1, lab2, expected):
    assert ciede2000(lab1, lab2) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("vision", ["normal", "deuteranopia", "protanopia", "tritanopia"])
def test_every_pair_of_digit_colours_stays_apart(vision):
    assert len(set(DIGIT_COLOURS)) == 10
    delta, i, j = closest_pair(DIGIT_COLOURS, vision)
    assert delta >= MIN_DELTA_E, f"digits {i} and {j}: CIEDE2000 {delta:.1f} under {vision}"


def test_the_measure_fails_the_old_palette():
    """The check can fail: tab10, the palette before, merges pairs for red-green dichromats."""
    assert closest_pair(TAB10, "deuteranopia")[0] < MIN_DELTA_E
    assert closest_pair(TAB10, "protanopia")[0] < MIN_DELTA_E


def test_default_bounds_hold_every_point_even_outliers():
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(size=(5000, 2)), [[-9.0, 0.5], [0.2, 7.5]]])
    x0, x1, y0, y1 = plane_bounds(points)
    assert x0 < points[:, 0].min() and x1 > points[:, 0].max()
    assert y0 < points[:, 1].min() and y1 > points[:, 1].max()
