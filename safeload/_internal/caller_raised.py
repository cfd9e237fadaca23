"""A carrier for an exception the caller's own code raised inside a load (a leaf: no torch)."""

from __future__ import annotations


class MapLocationRaised(Exception):  # noqa: N818 - a carrier, never shown
    """The caller's `map_location` callable raised `original`: torch.load lets it through
    unchanged, so the loader re-raises it, never as a fault of the file."""

    def __init__(self, original: Exception) -> None:
        super().__init__(str(original))
        self.original = original


__all__ = ["MapLocationRaised"]
