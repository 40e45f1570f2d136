"""`tasgen train --nproc N`: the trainer under torchrun, one process per device.

``python -m tasgen_cli.launch ARGS`` is torchrun (``torch.distributed.run``) with one
difference: when a worker fails it exits with that worker's exit code (2 for a
user error, already explained by the worker) instead of printing torchrun's
traceback and exiting 1. And none of these processes outlives ``tasgen train``:
torchrun gets SIGKILL when ``tasgen train`` dies, and each worker SIGKILL when
torchrun dies (`tasgen.parent_death`), whatever killed them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

from tasgen.parent_death import PARENT_PID_ENV, die_with_parent_from_env, inherit_parent_pid


def torchrun_command(nproc: int, train_args: Sequence[str]) -> list[str]:
    """The command that runs ``tasgen train TRAIN_ARGS`` in ``nproc`` local processes.

    ``--standalone`` lets torchrun pick a free port on this machine; several machines
    need torchrun's own ``--nnodes``/``--rdzv-endpoint`` (see docs/distributed.md).
    """
    return [sys.executable, "-m", "tasgen_cli.launch", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "tasgen_cli", "train", *train_args]


def launch(nproc: int, train_args: Sequence[str]) -> int:
    """Run ``tasgen train TRAIN_ARGS`` under torchrun in a subprocess and return its exit code."""
    env = {**os.environ, PARENT_PID_ENV: str(os.getpid())}  # torchrun stops when this process dies
    try:
        return subprocess.run(torchrun_command(nproc, train_args), check=False, env=env).returncode
    except KeyboardInterrupt:  # torchrun has passed the signal to its workers
        return 130


def main(argv: Sequence[str]) -> int:
    """torchrun with ``argv``; the exit code of the first failed worker, 0 when all succeed."""
    # SIGKILL, not SIGTERM: torchrun's own shutdown on SIGTERM outlasted seconds on a
    # loaded machine; its workers end by their own death signal when it does.
    die_with_parent_from_env()
    inherit_parent_pid()  # its workers stop when it dies
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    try:
        run(parse_args(list(argv)))
    except SignalException as exc:  # the parent died (or the user sent a signal): workers stopped, no traceback
        return 128 + int(exc.sigval)
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
