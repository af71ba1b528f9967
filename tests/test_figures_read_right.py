"""Figure builders say what they show: the trained bound's name on a training curve, a picture's row
labels and collapsed rows, a chart with no data yet, the Train page's tiles at the step on screen."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.figures.pictures import COLLAPSED_COLOUR, ROW_LABEL_WIDTH, labelled_rows_picture
from explorer.figures.plots import curve_figure
from explorer.figures.training import (
    NO_DATA,
    SERIES,
    bound_title,
    curve_chart_frame,
    curve_frame,
    curve_spec,
    events_until,
    metric_tiles,
    smooth,
    train_bound_name,
)
from vae_core import tile_images


def run_events() -> list[dict]:
    """An IWAE run's events as the trainer publishes them: steps, then an epoch with validation."""
    steps = [
        {"kind": "step", "step": s, "epoch": s / 4, "elbo": -200.0 + s, "recon": -190.0 + s, "kl": 15.0 - s,
         "beta": 1.0}
        for s in (1, 2, 3, 4)
    ]  # fmt: skip
    epoch = {**steps[-1], "kind": "epoch", "validation": {"elbo": -199.0, "recon": -188.0, "kl": 11.0}}
    return [*steps, epoch]


def test_an_iwae_models_curve_names_the_iwae_bound_and_keeps_validation_as_the_elbo():
    """The Overview drew the k = 5 bound as "train ELBO" beside "validation ELBO": an 8-nat gap that was not one."""
    assert train_bound_name("iwae", 5) == "IWAE bound (k=5)" and train_bound_name("elbo", 1) == "ELBO"
    assert bound_title("iwae", 5) == "IWAE bound (k=5); validation: ELBO"  # the Train page's chart, as before
    names = [trace.name for trace in curve_figure(run_events(), train_bound_name("iwae", 5)).data]
    assert names == ["train IWAE bound (k=5)", "train IWAE bound (k=5) (epoch)", "validation ELBO"]
    assert [t.name for t in curve_figure(run_events()).data] == [
        "train ELBO",
        "train ELBO (epoch)",
        "validation ELBO",
    ]


def test_tiles_show_the_step_on_screen_and_dashes_before_the_first_report():
    events = run_events()
    assert [value for _, value, _ in metric_tiles(events_until(events, 0), "iwae", 5)] == ["—"] * 5
    tiles = metric_tiles(events_until(events, 2), "iwae", 5)
    assert [label for label, _, _ in tiles] == [
        "Train IWAE bound (k=5)", "Train Reconstruction", "Train KL", "Validation ELBO", "β now",
    ]  # fmt: skip
    # smoothed over the steps up to 2 only, and no validation yet
    smoothed = [f"{smooth(values)[-1]:.1f}" for values in ([-199.0, -198.0], [-189.0, -188.0], [14.0, 13.0])]
    assert [value for _, value, _ in tiles] == [*smoothed, "—", "1.00"]
    assert [value for _, value, _ in metric_tiles(events, "elbo", 1)][3] == "-199.0"


def test_every_curve_layer_has_a_row_and_only_real_data_is_shown():
    """A layer with no rows made Vega warn "Infinite extent" on every redraw (before the first epoch, and
    every layer at step 0, where the charts also lost their axes)."""
    spec = curve_spec("ELBO")
    filters = {layer["transform"][0]["filter"]["equal"] for layer in spec["layer"]}
    assert filters == {*SERIES, NO_DATA}
    for events in ([], run_events()[:3], run_events()):
        frame = curve_chart_frame(events, "elbo")
        assert set(frame["series"]) == filters  # no layer left empty
        assert np.isfinite(frame[["epoch", "value"]].to_numpy()).all()
        shown, hidden = frame[frame["shown"]], frame[~frame["shown"]]
        real = curve_frame(events, "elbo")
        if real.empty:  # step 0: one shown row, the "no data yet" text, giving the axes a finite domain
            assert list(shown["series"]) == [NO_DATA] and shown[["epoch", "value"]].values.tolist() == [
                [0.0, 0.0]
            ]
        else:  # the shown rows are the curves; the hidden ones sit on the first point: no domain moves
            assert shown.drop(columns="shown").reset_index(drop=True).equals(real)
            assert (hidden[["epoch", "value"]].to_numpy() == real[["epoch", "value"]].to_numpy()[0]).all()
        assert len(hidden) == len(filters) - len(set(shown["series"]))
    # hidden rows draw nothing: points of size 0 and an empty text
    conditioned = [layer["encoding"] for layer in spec["layer"] if "encoding" in layer]
    assert [e.get("size", e.get("text"))["value"] for e in conditioned] == [0, 0, ""]
    assert all(e.get("size", e.get("text"))["condition"]["test"] == "datum.shown" for e in conditioned)


def test_traversal_rows_are_labelled_in_a_margin_and_collapsed_rows_framed_without_touching_a_digit():
    rng = np.random.default_rng(0)
    rows, steps, size, scale = 3, 4, 28, 2
    probs = rng.random((rows * steps, size * size))
    collapsed = [False, True, False]
    picture = labelled_rows_picture(probs, size, steps, ["dim 2 · KL 3.07", "dim 1 · KL 0.00", "dim 3 · KL 1.00"],
                                    collapsed, scale=scale)  # fmt: skip
    grid = np.kron(tile_images(probs, size, steps), np.ones((scale, scale), dtype=np.uint8))
    assert picture.shape == (grid.shape[0], ROW_LABEL_WIDTH + grid.shape[1], 3)
    cell, gap = (size + 1) * scale, scale
    for row in range(rows):
        for step in range(steps):  # every digit's pixels are exactly the tiled ones, in grey
            top, left = gap + row * cell, ROW_LABEL_WIDTH + gap + step * cell
            tile = picture[top : top + size * scale, left : left + size * scale]
            np.testing.assert_array_equal(tile, np.repeat(grid[top : top + size * scale, left - ROW_LABEL_WIDTH :
                                                               left - ROW_LABEL_WIDTH + size * scale, None], 3, 2))  # fmt: skip
        band = picture[row * cell + gap : (row + 1) * cell, ROW_LABEL_WIDTH:]  # the row, its own side gaps
        framed = (band == COLLAPSED_COLOUR).all(axis=2)
        assert framed.any() == collapsed[row]  # the frame marks the collapsed row only
        margin = picture[row * cell + gap : (row + 1) * cell, :ROW_LABEL_WIDTH]
        assert (margin.max(axis=2) > 128).sum() > 20  # a label is written beside every row
        orange = (margin[..., 0] > 200) & (margin[..., 2] < 80)
        assert orange.any() == collapsed[row]  # and a collapsed row's label is in the frame's colour
    with pytest.raises(ValueError, match="labels"):
        labelled_rows_picture(probs, size, steps, ["one"], [False])
