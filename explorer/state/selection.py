"""What the user clicked on a latent plane (explorer/ui/latent_plane): a point, or one encoded digit."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MapClick:
    """A click on the latent map: a point of the plane, or one encoded digit."""

    x: float
    y: float
    digit_index: int | None = None  # set when the click landed on a digit's dot

    @property
    def on_digit(self) -> bool:
        return self.digit_index is not None


def latent_click_key(model_key: str) -> str:
    """The session-state key of a model's last MapClick: the Latent map writes it, How it works reads it."""
    return f"latent_click:{model_key}"
