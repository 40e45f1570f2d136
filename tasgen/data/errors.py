"""The error the data layer raises for problems a user can fix."""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(Exception):
    """A dataset is missing, empty, corrupt or inconsistent with the spec; the message says what to do.

    Args:
        message: What is wrong, where, and what to do.
        key: The spec field at fault (``("data", "train_samples")``), when one is: the
            caller that holds the spec file reports the error at that field's line.
    """

    def __init__(self, message: str, key: tuple[str, ...] | None = None) -> None:
        super().__init__(message)
        self.key = key
