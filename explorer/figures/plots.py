"""Figure builders: pure functions from arrays to plotly figures or pixel arrays (no Streamlit),
so each can be tested without a browser. Latent planes are drawn by explorer/ui/latent_plane.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch

from vae_core import tile_images

# The ten digit classes' colours, everywhere (the latent plane gets them from here with every view).
# Petroff's 10-colour sequence (M. A. Petroff, "Accessible Color Sequences for Data Visualization",
# 2021), picked for colour-vision deficiencies. Measured (tests/test_palette.py): the closest pair is
# CIEDE2000 17.3 apart with normal vision, 12.6 under a deuteranopia, 11.9 under a protanopia and 13.3
# under a tritanopia simulation (Machado 2009, severity 1); the previous matplotlib tab10 fell to 3.3
# (orange/olive) under deuteranopia and 1.3 (orange/green) under protanopia.
DIGIT_COLOURS = (
    "#3f90da", "#ffa90e", "#bd1f01", "#94a4a2", "#832db6",
    "#a96b59", "#e76300", "#b9ac70", "#717581", "#92dadd",
)  # fmt: skip


def as_numpy(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def digit_picture(probs, image_size: int = 28, scale: int = 6) -> np.ndarray:
    """One digit's pixel probabilities (D,) -> an upscaled uint8 picture with crisp pixels."""
    image = (np.clip(as_numpy(probs).reshape(image_size, image_size), 0, 1) * 255).astype(np.uint8)
    return np.kron(image, np.ones((scale, scale), dtype=np.uint8))


def grid_picture(probs, image_size: int = 28, columns: int | None = None, scale: int = 2) -> np.ndarray:
    """Many digits (N, D) -> one tiled, upscaled uint8 picture."""
    tiled = tile_images(probs, image_size, columns)
    return np.kron(tiled, np.ones((scale, scale), dtype=np.uint8))


def plane_bounds(plane, margin: float = 0.08) -> tuple[float, float, float, float]:
    """A box around every point, `margin` of each span to spare: (x_min, x_max, y_min, y_max).

    Every point, not the bulk: a default view that cuts off the outliers hides the digits a student
    most wants to find. (The views keep equal scales, so they widen one axis to fit the box.)
    """
    points = as_numpy(plane)
    low, high = points.min(axis=0), points.max(axis=0)
    span = np.maximum(high - low, 1e-3)
    low, high = low - margin * span, high + margin * span
    if np.allclose(points[:, 1], 0):  # 1-D latents: give the flat line some room
        low[1], high[1] = -1.0, 1.0
    return float(low[0]), float(high[0]), float(low[1]), float(high[1])


def ellipse_points(centre, std, n_std: float = 2.0, n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """An axis-aligned ellipse at `centre` with radii n_std * std (a diagonal Gaussian's contour)."""
    angle = np.linspace(0, 2 * np.pi, n)
    centre, std = as_numpy(centre), as_numpy(std)
    return centre[0] + n_std * std[0] * np.cos(angle), centre[1] + n_std * std[1] * np.sin(angle)


def curve_figure(curve: list[dict], bound: str = "ELBO", height: int = 300) -> go.Figure:
    """Training curve from a checkpoint or a live run: the trained bound per step and per epoch (train),
    the ELBO per epoch (validation).

    `bound` names what the rows' "elbo" field holds in training (figures.training.train_bound_name):
    an IWAE run's is its k-sample bound, several nats above its ELBO, beside a validation ELBO.
    """
    figure = go.Figure()
    steps = [row for row in curve if row.get("kind") == "step"]
    epochs = [row for row in curve if row.get("kind") == "epoch"]
    if steps:
        figure.add_trace(go.Scatter(x=[r["epoch"] for r in steps], y=[r["elbo"] for r in steps],
                                    name=f"train {bound}", mode="lines", line={"width": 1}))  # fmt: skip
    if epochs:
        figure.add_trace(go.Scatter(x=[r["epoch"] for r in epochs], y=[r["elbo"] for r in epochs],
                                    name=f"train {bound} (epoch)", mode="lines+markers"))  # fmt: skip
        validation = [r for r in epochs if r.get("validation")]
        if validation:
            figure.add_trace(
                go.Scatter(x=[r["epoch"] for r in validation], y=[r["validation"]["elbo"] for r in validation],
                           name="validation ELBO", mode="lines+markers")
            )  # fmt: skip
    figure.update_layout(height=height, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                         xaxis_title="epoch", yaxis_title="nats per image")  # fmt: skip
    return figure


def latent_bars_figure(values, title: str, colour: str, height: int = 220) -> go.Figure:
    """One bar per latent dimension (numbered from 1), one tick per bar: with numbers as labels plotly
    chose a numeric axis and put ticks at 0.5, 1.5, 2.5 between the dimensions."""
    values = as_numpy(values).reshape(-1)
    names = [str(i + 1) for i in range(len(values))]
    figure = go.Figure(go.Bar(x=names, y=values.tolist(), marker_color=colour))
    figure.update_layout(title=title, height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                         xaxis={"title": "latent dimension", "type": "category", "tickmode": "array",
                                "tickvals": names, "ticktext": names})  # fmt: skip
    return figure


def trace_figure(values, title: str = "observed-pixel ELBO", height: int = 260) -> go.Figure:
    values = as_numpy(values)
    figure = go.Figure(go.Scatter(y=values, mode="lines", name=title))
    figure.update_layout(height=height, margin={"l": 10, "r": 10, "t": 30, "b": 10}, title=title,
                         xaxis_title="SVI step", yaxis_title="nats")  # fmt: skip
    return figure


def posterior_figure(grid, svi: tuple | None = None, truth_point=None, height: int = 480) -> go.Figure:
    """Exact posterior p(z|x_obs) as filled contours, the encoder's q and the SVI q* as 2σ ellipses."""
    density = np.exp(grid.log_posterior)
    figure = go.Figure(
        go.Contour(x=grid.z1, y=grid.z2, z=density, colorscale="Blues", name="exact posterior",
                   contours={"coloring": "heatmap"}, showscale=False, hoverinfo="skip")
    )  # fmt: skip
    ex, ey = ellipse_points(grid.q_mean, grid.q_std)
    figure.add_trace(go.Scatter(x=ex, y=ey, mode="lines", name="encoder q(z|x), 2σ",
                                line={"color": "#d62728", "width": 2}))  # fmt: skip
    if svi is not None:
        sx, sy = ellipse_points(*svi)
        figure.add_trace(go.Scatter(x=sx, y=sy, mode="lines", name="SVI q*(z), 2σ",
                                    line={"color": "#2ca02c", "width": 2, "dash": "dash"}))  # fmt: skip
    if truth_point is not None:
        figure.add_trace(go.Scatter(x=[truth_point[0]], y=[truth_point[1]], mode="markers",
                                    name="encoder mean, full image", marker={"symbol": "x", "size": 12}))  # fmt: skip
    figure.update_layout(height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10}, xaxis_title="z₁",
                         yaxis_title="z₂", legend={"orientation": "h", "y": 1.02, "yanchor": "bottom"})  # fmt: skip
    return figure


def kl_per_dimension_figure(kl_per_dim, active, height: int = 240) -> go.Figure:
    """Bar per latent dimension: its average KL; inactive (collapsed) dimensions in grey."""
    kl, active = as_numpy(kl_per_dim), as_numpy(active)
    order = np.argsort(-kl)
    figure = go.Figure(
        go.Bar(
            x=[f"z{i + 1}" for i in order], y=kl[order],
            marker_color=["#1f77b4" if active[i] else "#bbbbbb" for i in order],
            hovertemplate="%{x}: %{y:.2f} nats<extra></extra>",
        )
    )  # fmt: skip
    figure.update_layout(height=height, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                         yaxis_title="KL (nats per image)", xaxis_title="latent dimension, most used first")  # fmt: skip
    return figure


def digit_bounds_figure(
    ks: list[int], means: np.ndarray, stds: np.ndarray, exact_log_px: float | None = None, height: int = 300
) -> go.Figure:
    """One digit's IWAE bounds against k, mean ± std over repeats, and log p(x) by quadrature if known."""
    figure = go.Figure(go.Scatter(
        x=ks, y=means, error_y={"type": "data", "array": stds, "visible": True}, mode="lines+markers",
        name="IWAE bound (k = 1 is the ELBO)", hovertemplate="k=%{x}: %{y:.2f} nats<extra></extra>",
    ))  # fmt: skip
    if exact_log_px is not None:
        figure.add_hline(
            y=exact_log_px, line_dash="dash", line_color="#2ca02c",
            annotation_text=f"log p(x) by quadrature: {exact_log_px:.2f}", annotation_position="bottom right",
        )  # fmt: skip
    figure.update_layout(height=height, margin={"l": 10, "r": 10, "t": 10, "b": 10}, showlegend=False,
                         xaxis={"type": "log", "title": "importance samples k"},
                         yaxis_title="nats")  # fmt: skip
    return figure


def bounds_figure(bounds: dict[int, float], height: int = 280) -> go.Figure:
    """IWAE bound against k on a log axis: k=1 is the ELBO, large k approaches log p(x)."""
    ks = sorted(bounds)
    figure = go.Figure(go.Scatter(x=ks, y=[bounds[k] for k in ks], mode="lines+markers",
                                  hovertemplate="k=%{x}: %{y:.2f} nats<extra></extra>"))  # fmt: skip
    figure.update_layout(height=height, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                         xaxis={"type": "log", "title": "importance samples k"},
                         yaxis_title="bound on log p(x), nats per image")  # fmt: skip
    return figure
