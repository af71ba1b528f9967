"""Turning a plotly selection event from the latent map into what the user clicked."""

from __future__ import annotations

from dataclasses import dataclass

from .figures import CLICK_GRID_CURVE


@dataclass(frozen=True)
class MapClick:
    """A click on the latent map: a point of the plane, or one encoded digit."""

    x: float
    y: float
    digit_index: int | None = None  # set when the click landed on a digit's marker

    @property
    def on_digit(self) -> bool:
        return self.digit_index is not None


def click_from_selection(selection) -> MapClick | None:
    """The last selected point of a plotly selection state, or None for an empty selection.

    A point of the invisible grid (curve 0) means "decode here"; any other curve with customdata
    is a digit marker whose customdata is the digit's index.
    """
    points = (selection or {}).get("points") or []
    if not points:
        return None
    point = points[-1]
    x, y = float(point.get("x", 0.0)), float(point.get("y", 0.0))
    curve = point.get("curve_number", point.get("curveNumber"))
    custom = point.get("customdata")
    if isinstance(custom, (list, tuple)):
        custom = custom[0] if custom else None
    if curve != CLICK_GRID_CURVE and custom is not None:
        return MapClick(x, y, int(custom))
    return MapClick(x, y)
