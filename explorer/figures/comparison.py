"""Figures that overlay two models' numbers (explorer/state/comparison.py): KL per dimension, IWAE bounds."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from explorer.figures.plots import as_numpy
from explorer.state.comparison import ModelSummary

MODEL_COLOURS = ("#1f77b4", "#d62728")  # the picked model, the one it is compared with


def kl_overlay_figure(summaries: list[ModelSummary], height: int = 280) -> go.Figure:
    """Each model's KL per latent dimension, most used first, as grouped bars; inactive ones faded.

    Dimensions of two models do not correspond, so the x axis is the rank, not the dimension;
    the hover names the dimension.
    """
    figure = go.Figure()
    for summary, colour in zip(summaries, MODEL_COLOURS, strict=False):
        kl, active = as_numpy(summary.activity.kl_per_dim), as_numpy(summary.activity.active)
        order = np.argsort(-kl)
        figure.add_trace(
            go.Bar(
                x=np.arange(1, len(kl) + 1), y=kl[order], name=summary.name, marker_color=colour,
                marker_opacity=[1.0 if active[i] else 0.3 for i in order],
                customdata=[f"z{i + 1}" for i in order],
                hovertemplate=f"{summary.name} %{{customdata}}: %{{y:.2f}} nats<extra></extra>",
            )
        )  # fmt: skip
    figure.update_layout(height=height, margin={"l": 10, "r": 10, "t": 10, "b": 10}, barmode="group",
                         xaxis_title="latent dimension, ranked by KL (most used first)",
                         yaxis_title="KL (nats per image)",
                         legend={"orientation": "h", "y": 1.02, "yanchor": "bottom"})  # fmt: skip
    return figure


def bounds_overlay_figure(summaries: list[ModelSummary], height: int = 300) -> go.Figure:
    """Each model's IWAE bound against k (log axis): k=1 is its ELBO, large k approaches its log p(x)."""
    figure = go.Figure()
    for summary, colour in zip(summaries, MODEL_COLOURS, strict=False):
        ks = sorted(summary.bounds)
        figure.add_trace(
            go.Scatter(
                x=ks, y=[summary.bounds[k] for k in ks], mode="lines+markers", line={"color": colour},
                name=f"{summary.name} — {summary.likelihood_name}",
                hovertemplate=f"{summary.name} k=%{{x}}: %{{y:.2f}} nats<extra></extra>",
            )
        )  # fmt: skip
    figure.update_layout(height=height, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                         xaxis={"type": "log", "title": "importance samples k"},
                         yaxis_title="bound, nats per image",
                         legend={"orientation": "h", "y": 1.02, "yanchor": "bottom"})  # fmt: skip
    return figure
