"""tasgen: a declarative compiler for TAS knowledge-distillation assistants.

Importing this package is cheap: torch and timm are imported only by the modules
that build or run models. ``tasgen.compile`` (see `tasgen.api`) loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasgen.api import Compiled, compile  # noqa: A004

__version__ = "0.1.0"
__all__ = ["Compiled", "__version__", "compile"]


def __getattr__(name: str) -> Any:
    # PEP 562: the API pulls in torch, so it is imported when first asked for.
    if name in ("compile", "Compiled"):
        from tasgen import api

        return getattr(api, name)
    raise AttributeError(f"module 'tasgen' has no attribute {name!r}")
