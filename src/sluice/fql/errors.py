"""The one exception FQL compilation raises."""

from __future__ import annotations

__all__ = ["FqlError"]


class FqlError(ValueError):
    """Invalid FQL source: ``position`` is the 0-based character offset, ``expected`` what was expected there."""

    def __init__(self, message: str, position: int, expected: str) -> None:
        self.message = message
        self.position = position
        self.expected = expected
        super().__init__(f"{message} at position {position}: expected {expected}")
