"""The error of the data pipeline's user-facing checks."""
from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """A dataset, cache or argument cannot be used (the message names the file or argument and why)."""
