"""`tasgen train --nproc N`: the trainer under torchrun, one process per device.

``python -m tasgen_cli.launch ARGS`` is torchrun (``torch.distributed.run``) with one
difference: when a worker fails it exits with that worker's exit code (2 for a
user error, already explained by the worker) instead of printing torchrun's
traceback and exiting 1.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence


def torchrun_command(nproc: int, train_args: Sequence[str]) -> list[str]:
    """The command that runs ``tasgen train TRAIN_ARGS`` in ``nproc`` local processes.

    ``--standalone`` lets torchrun pick a free port on this machine; several machines
    need torchrun's own ``--nnodes``/``--rdzv-endpoint`` (see docs/distributed.md).
    """
    return [sys.executable, "-m", "tasgen_cli.launch", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "tasgen_cli", "train", *train_args]


def launch(nproc: int, train_args: Sequence[str]) -> int:
    """Run ``tasgen train TRAIN_ARGS`` under torchrun in a subprocess and return its exit code."""
    try:
        return subprocess.run(torchrun_command(nproc, train_args), check=False).returncode
    except KeyboardInterrupt:  # torchrun has passed the signal to its workers
        return 130


def main(argv: Sequence[str]) -> int:
    """torchrun with ``argv``; the exit code of the first failed worker, 0 when all succeed."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    try:
        run(parse_args(list(argv)))
    except ChildFailedError as exc:
        codes = [failure.exitcode for failure in exc.failures.values()]
        exited = [c for c in codes if c > 0]
        if exited:
            return exited[0]
        killed = [c for c in codes if c < 0]  # torchrun reports a signal as its negative number
        return 128 - killed[0] if killed else 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
