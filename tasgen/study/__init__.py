"""Evidence over seeds: `tasgen study` (methods x seeds x specs) and `tasgen search` (the split).

Each run of a study is an ordinary run folder trained by the ordinary trainer; this
package lays them out, skips what is finished, shares one teacher per spec, and
aggregates what the run folders hold. Nothing here imports torch at import time.
"""

from .runner import (
    METHODS,
    RunTask,
    Study,
    Variant,
    arm_variant,
    method_variants,
    prepare_study,
    run_study,
)
from .search import SearchResult, search_split
from .table import StudyError, aggregate, read_run, read_study

__all__ = [
    "METHODS",
    "RunTask",
    "SearchResult",
    "Study",
    "StudyError",
    "Variant",
    "aggregate",
    "arm_variant",
    "method_variants",
    "prepare_study",
    "read_run",
    "read_study",
    "run_study",
    "search_split",
]
