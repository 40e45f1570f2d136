"""tasgen: a declarative compiler for TAS knowledge-distillation assistants.

Importing this package is cheap: torch and timm are imported only by the modules
that build or run models.
"""

__version__ = "0.1.0"
