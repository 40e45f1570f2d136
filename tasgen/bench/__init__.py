"""`tasgen bench`: how fast a spec trains and what its assistant costs.

`run` orchestrates the phases, `timing` times them (and counts FLOPs and the
matmul peak MFU divides by), `memory` reads each phase's peak memory.
"""

from .run import run_bench

__all__ = ["run_bench"]
