"""The error the data layer raises for problems a user can fix."""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(Exception):
    """A dataset is missing, empty, corrupt or inconsistent with the spec; the message says what to do."""
