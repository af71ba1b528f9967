"""Chart builders for the Train page: pure functions from a run's event dicts and arrays to
Vega-Lite specs and data frames (no Streamlit), so they can be tested without a browser.

Why Vega-Lite and not plotly here: the page redraws these charts every second. Streamlit derives
a plotly chart's identity from its whole figure, so every redraw with new data remounted the chart
in the browser (measured: a new plot node on every poll, flicker, and the browser plus the server
eating the CPU the training thread needed). A Vega-Lite chart with a `key` keeps its identity while
its data changes, so the browser updates it in place. The spec is kept constant during a run for
the same reason; everything that changes travels in the data frame.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

# (event field, chart title); validation dicts use the same field names
CURVE_TERMS = (
    ("elbo", "ELBO"),
    ("recon", "Reconstruction log p(x|z)"),
    ("kl", "KL(q(z|x) ‖ p(z))"),
)


def train_bound_name(objective: str, k: int) -> str:
    """The name of what a run's "elbo" field holds in its training events: an IWAE run trains on (and
    reports) its k-sample bound, an ELBO run the ELBO. Its validation points are the ELBO either way,
    so every chart and metric of training says which it shows (the Train page, the Overview's curve)."""
    return f"IWAE bound (k={k})" if objective == "iwae" else "ELBO"


def bound_title(objective: str, k: int) -> str:
    """The Train page's title for the "elbo" chart, which holds training and validation points."""
    name = train_bound_name(objective, k)
    return f"{name}; validation: ELBO" if name != "ELBO" else name


def metric_tiles(events: list[dict], objective: str, k: int) -> list[tuple[str, str, str]]:
    """The Train page's five tiles, (label, value, help), from the events a run had published by the
    step on screen: a time travel to step 0 shows "—", not the newest values."""
    steps = [e for e in events if e["kind"] == "step"]
    last = events[-1] if events else None
    validation = next((e["validation"] for e in reversed(events) if e.get("validation")), None)
    terms = (("elbo", train_bound_name(objective, k)), ("recon", "Reconstruction"), ("kl", "KL"))
    tiles = []
    for name, label in terms:
        value = smooth([e[name] for e in steps])[-1] if steps else last[name] if last else None
        tiles.append((f"Train {label}", "—" if value is None else f"{value:.1f}",
                      "Smoothed over recent steps, nats per image"))  # fmt: skip
    tiles.append(("Validation ELBO", f"{validation['elbo']:.1f}" if validation else "—",
                  "After each epoch, fixed noise, nats per image"))  # fmt: skip
    tiles.append(("β now", f"{last['beta']:.2f}" if last else "—", "The KL term's weight at this step"))
    return tiles


STEP, SMOOTHED, EPOCH, VALIDATION = "train, per step", "train, smoothed", "train, per epoch", "validation"
SERIES = (STEP, SMOOTHED, EPOCH, VALIDATION)
NO_DATA = "no data yet"  # the text a curve shows before its first point (curve_chart_frame)
TRAIN_COLOUR, VALIDATION_COLOUR = "#1f77b4", "#d62728"
ACTIVE, INACTIVE = "active", "collapsed"
ACTIVE_COLOUR, INACTIVE_COLOUR = "#1f77b4", "#bbbbbb"
COMPARED_SERIES = (SMOOTHED, VALIDATION)  # a comparison draws these two of each run's curves
# Distinct hues for runs (Tableau 10): the theme's default for nominal colours is shades of one blue.
RUN_COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7",
               "#9c755f", "#bab0ac")  # fmt: skip


def smooth(values, weight: float = 0.6) -> np.ndarray:
    """Exponential moving average with bias correction, so the first points are not pulled to 0."""
    values = np.asarray(values, dtype=float)
    out = np.empty_like(values)
    average, correction = 0.0, 1.0
    for i, value in enumerate(values):
        average = weight * average + (1 - weight) * value
        correction *= weight
        out[i] = average / (1 - correction) if correction < 1 else value
    return out


def epoch_rows(events: list[dict]) -> list[dict]:
    """Per-epoch rows: each epoch event, plus the final event of a run stopped mid-epoch."""
    rows = [e for e in events if e["kind"] == "epoch"]
    done = [e for e in events if e["kind"] == "done"]
    if done and (not rows or not math.isclose(done[-1]["epoch"], rows[-1]["epoch"])):
        rows.append(done[-1])
    return rows


def curve_frame(events: list[dict], term: str, smoothing: float = 0.6, max_points: int = 500) -> pd.DataFrame:
    """One term's curves in long form: columns epoch, value, series (one of SERIES).

    A long run keeps every n-th step event (smoothed over all of them, the newest always kept):
    the page resends this every poll, and a few hundred points per line look the same as
    thousands.
    """
    frames = []
    steps = [e for e in events if e["kind"] == "step"]
    if steps:
        stride = max(1, math.ceil(len(steps) / max_points))
        keep = slice((len(steps) - 1) % stride, None, stride)
        epochs = np.array([e["epoch"] for e in steps])[keep]
        values = np.array([e[term] for e in steps], dtype=float)
        frames.append(pd.DataFrame({"epoch": epochs, "value": values[keep], "series": STEP}))
        frames.append(
            pd.DataFrame({"epoch": epochs, "value": smooth(values, smoothing)[keep], "series": SMOOTHED})
        )
    epochs = epoch_rows(events)
    if epochs:
        frames.append(
            pd.DataFrame(
                {"epoch": [e["epoch"] for e in epochs], "value": [e[term] for e in epochs], "series": EPOCH}
            )
        )
    validated = [e for e in epochs if e.get("validation")]
    if validated:
        frames.append(
            pd.DataFrame(
                {
                    "epoch": [e["epoch"] for e in validated],
                    "value": [e["validation"][term] for e in validated],
                    "series": VALIDATION,
                }
            )
        )
    if not frames:
        return pd.DataFrame({"epoch": pd.Series(dtype=float), "value": pd.Series(dtype=float), "series": ""})
    return pd.concat(frames, ignore_index=True)


def curve_chart_frame(
    events: list[dict], term: str, smoothing: float = 0.6, max_points: int = 500
) -> pd.DataFrame:
    """What `curve_spec` draws: curve_frame's rows (shown), and one hidden row for each layer it has no
    data for. Columns: epoch, value, series, shown.

    Every layer of the chart filters the frame to its series, and a layer left with no rows made Vega
    warn "Infinite extent" for its scales on every redraw (before the first epoch, the epoch and
    validation layers; at step 0, all of them, and the charts had no axes). A hidden row sits on the
    first real point, so it changes no domain and draws nothing (size 0, empty text, a one-point line).
    With no data at all, the one shown row is the "no data yet" text at (0, 0).
    """
    frame = curve_frame(events, term, smoothing, max_points).assign(shown=True)
    if frame.empty:
        frame = pd.DataFrame({"epoch": [0.0], "value": [0.0], "series": [NO_DATA], "shown": [True]})
    present = set(frame["series"])
    missing = [series for series in (*SERIES, NO_DATA) if series not in present]
    first = frame.iloc[0]
    hidden = pd.DataFrame({"epoch": float(first["epoch"]), "value": float(first["value"]), "series": missing,
                           "shown": False})  # fmt: skip
    return pd.concat([frame, hidden], ignore_index=True)


def events_until(events: list[dict], step: int) -> list[dict]:
    """The events a run had published when it reached `step`: its curves as they were then."""
    return [e for e in events if e["step"] <= step]


def _only(series: str) -> list[dict]:
    return [{"filter": {"field": "series", "equal": series}}]


def _if_shown(value, hidden) -> dict:
    """An encoding that gives curve_chart_frame's hidden rows `hidden` (a size 0, an empty text)."""
    return {"condition": {"test": "datum.shown", "value": value}, "value": hidden}


def curve_spec(title: str) -> dict:
    """A layered line chart of one term: faint raw steps, a smoothed line, epoch and validation points.

    No legend (three would repeat it and squeeze the plots): the page explains the marks once.
    """
    return {
        "title": title,
        # Vega makes the description the chart's accessible name (aria-label): a text alternative
        "description": f"Line chart of {title} in nats per image against epoch: training steps (faint), "
                       "smoothed training, epoch means (circles) and validation.",
        "encoding": {
            "x": {"field": "epoch", "type": "quantitative", "title": "epoch"},
            "y": {"field": "value", "type": "quantitative", "title": "nats per image", "scale": {"zero": False}},
            "color": {
                "field": "series", "type": "nominal", "title": None,
                "scale": {"domain": list(SERIES), "range": [TRAIN_COLOUR, TRAIN_COLOUR, TRAIN_COLOUR, VALIDATION_COLOUR]},
                "legend": None,
            },
            "tooltip": [{"field": "series"}, {"field": "epoch", "format": ".2f"}, {"field": "value", "format": ".2f"}],
        },
        "layer": [  # every layer has a row in curve_chart_frame: the hidden ones draw nothing
            {"transform": _only(STEP), "mark": {"type": "line", "strokeWidth": 1, "opacity": 0.35}},
            {"transform": _only(SMOOTHED), "mark": {"type": "line", "strokeWidth": 2}},
            {"transform": _only(EPOCH), "mark": {"type": "point", "filled": False},
             "encoding": {"size": _if_shown(60, 0)}},
            {"transform": _only(VALIDATION), "mark": {"type": "line", "strokeWidth": 2}},
            {"transform": _only(VALIDATION), "mark": {"type": "point", "filled": True},
             "encoding": {"size": _if_shown(30, 0)}},
            {"transform": _only(NO_DATA), "mark": {"type": "text"},
             "encoding": {"text": _if_shown(NO_DATA, ""), "color": {"value": "grey"}, "tooltip": None}},
        ],
    }  # fmt: skip


def kl_frame(kl_per_dim, active) -> pd.DataFrame:
    """One row per latent dimension (1-based): its mean KL in nats per image and active or collapsed."""
    kl, active = np.asarray(kl_per_dim, dtype=float), np.asarray(active, dtype=bool)
    return pd.DataFrame(
        {"dimension": np.arange(1, len(kl) + 1), "kl": kl, "state": np.where(active, ACTIVE, INACTIVE)}
    )


def kl_spec() -> dict:
    """Bars of KL per latent dimension, in dimension order (bars that re-sorted every poll would jump)."""
    return {
        "description": "Bar chart of the KL of each latent dimension in nats per image, active dimensions "
                       "and collapsed ones in two colours.",
        "mark": {"type": "bar"},
        "encoding": {
            "x": {"field": "dimension", "type": "ordinal", "title": "latent dimension u", "axis": {"labelAngle": 0}},
            "y": {"field": "kl", "type": "quantitative", "title": "KL, nats per image"},
            "color": {
                "field": "state", "type": "nominal", "title": None,
                "scale": {"domain": [ACTIVE, INACTIVE], "range": [ACTIVE_COLOUR, INACTIVE_COLOUR]},
                "legend": {"orient": "top"},
            },
            "tooltip": [{"field": "dimension"}, {"field": "kl", "format": ".3f"}, {"field": "state"}],
        },
    }  # fmt: skip


def comparison_frame(runs: dict[str, list[dict]], term: str) -> pd.DataFrame:
    """Each run's smoothed training curve and validation points of one term, with a `run` column.

    `runs` maps a run's name to its events. Columns: epoch, value, series, run.
    """
    frames = []
    for name, events in runs.items():
        frame = curve_frame(events, term)
        frame = frame[frame["series"].isin(COMPARED_SERIES)].assign(run=name)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["epoch", "value", "series", "run"])
    return pd.concat(frames, ignore_index=True)


def comparison_spec(title: str, run_names: list[str]) -> dict:
    """Runs overlaid: colour is the run (named in the legend), solid = smoothed training, dashed = validation."""
    return {
        "title": title,
        "description": f"Line chart of {title} against epoch for each run: solid smoothed training, "
                       "dashed validation.",
        "encoding": {
            "x": {"field": "epoch", "type": "quantitative", "title": "epoch"},
            "y": {"field": "value", "type": "quantitative", "title": "nats per image", "scale": {"zero": False}},
            "color": {"field": "run", "type": "nominal", "title": "run",
                      "scale": {"domain": list(run_names), "range": [RUN_COLOURS[i % len(RUN_COLOURS)] for i in range(len(run_names))]},
                      "legend": {"orient": "bottom", "columns": 1, "labelLimit": 600}},
            "tooltip": [{"field": "run"}, {"field": "series"}, {"field": "epoch", "format": ".2f"},
                        {"field": "value", "format": ".2f"}],
        },
        "layer": [
            {"transform": _only(SMOOTHED), "mark": {"type": "line", "strokeWidth": 2}},
            {"transform": _only(VALIDATION),
             "mark": {"type": "line", "point": True, "strokeWidth": 2, "strokeDash": [6, 3]}},
        ],
    }  # fmt: skip


def format_duration(seconds: float) -> str:
    """'42 s', '3 min 05 s', or '—' for an unknown (infinite) duration."""
    if not math.isfinite(seconds):
        return "—"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
