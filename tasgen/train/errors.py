"""The error a training run raises for problems a person can fix."""

from __future__ import annotations


class TrainError(Exception):
    """A run cannot start or had to stop; the message says why and what to do."""
