"""`tasgen bench`: how fast a spec trains and what its assistant costs.

`run` orchestrates the phases and holds the targets, `timing` times them
(interleaved), `memory` reads each phase's peak memory.
"""

from .run import TARGETS, missed_targets, run_bench

__all__ = ["TARGETS", "missed_targets", "run_bench"]
