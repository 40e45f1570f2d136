"""Distillation methods by name: the registry (torch-free) that ``distill.method`` reads.

The torch side of a method (what its builder receives and returns) is in `tasgen.losses.method`.
"""

from .registry import (
    ENTRY_POINT_GROUP,
    Method,
    MethodError,
    broken_plugins,
    get_method,
    method_names,
    register_method,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Method",
    "MethodError",
    "broken_plugins",
    "get_method",
    "method_names",
    "register_method",
]
