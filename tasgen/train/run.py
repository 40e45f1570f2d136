"""`train`: a spec in, a trained run folder out (fitting the teacher first when needed)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from tasgen.checkpoint import save_weights
from tasgen.data import DataSplits, build_datasets

from .dist import barrier, default_device, init_from_env, is_main, shutdown
from .errors import TrainError
from .loop import TrainResult, train_loop
from .progress import RunProgress
from .rng import deterministic, seed_everything
from .run_folder import RunFolder
from .setup import TEACHER_FIT_DIR, Role, build_student_setup, build_teacher_setup, run_folder
from .weights import TEACHER_FILE, check_teacher_split, teacher_source, teacher_split_metadata

if TYPE_CHECKING:
    from tasgen.plan import Plan
    from tasgen.spec.load import LoadedSpec


def train(
    loaded: LoadedSpec,
    *,
    role: Role = "student",
    resume: bool = False,
    overwrite: bool = False,
    max_epochs: int | None = None,
    device: torch.device | str | None = None,
    compile_backend: str | None = None,
    quiet: bool = False,
    accept_changes: bool = False,
) -> TrainResult:
    """Train what a spec describes into ``<train.output_dir>/<name>/``.

    ``role="student"`` distils the student with ``distill.method``. Its teacher is
    ``teacher.checkpoint``, else ``teacher.safetensors`` of the run folder, else timm's
    pretrained weights (when their head fits); with none of these the teacher is
    fitted first. ``role="teacher"`` fits the teacher alone with CE and writes
    ``teacher.safetensors``.

    Under torchrun (``WORLD_SIZE`` > 1) every process calls this: it joins the
    process group (NCCL on CUDA, gloo on CPU), trains its shard of each batch under
    DDP, and leaves the group at the end; only rank 0 logs and writes files.

    The run folder has one writer: this process holds its lock until it returns, and
    a second ``train`` on the same folder is refused. A fresh start refuses a folder
    that holds a run unless ``overwrite``; ``resume`` on a finished run returns its result.

    Args:
        loaded: the loaded spec.
        role: "student" or "teacher".
        resume: continue from the run's ``last/`` checkpoint.
        overwrite: a fresh start removes an earlier run's checkpoints and metrics.
        max_epochs: stop after this epoch (the schedule still spans ``train.epochs``).
        device: default: this process's GPU, else the CPU.
        compile_backend: torch.compile backend when ``train.compile`` is on.
        quiet: print nothing.
        accept_changes: with ``resume``, continue although the spec differs from the run's
            ``spec.yaml`` (see `train_loop`); without it such a resume is refused.

    Returns:
        The `TrainResult` of the run (of the teacher fit for ``role="teacher"``).

    Raises:
        SpecError: the spec cannot be planned.
        TrainError, CheckpointError, DataError: see the message.
    """
    created = init_from_env()
    try:
        lock = RunFolder(run_folder(loaded.spec)).lock() if is_main() else contextlib.nullcontext()
        with lock:
            result = _train(loaded, role, resume, overwrite, max_epochs, device, compile_backend, quiet, accept_changes)
    except BaseException:
        if created:  # no barrier: the other ranks may be failing too, or waiting in a collective
            shutdown(wait=False)
        raise
    if created:
        shutdown()
    return result


def _train(
    loaded: LoadedSpec, role: Role, resume: bool, overwrite: bool, max_epochs: int | None,
    device: torch.device | str | None, compile_backend: str | None, quiet: bool, accept_changes: bool,
) -> TrainResult:
    from tasgen.compiler import plan_spec
    from tasgen.spec.load import check_data_root

    device = torch.device(device) if device is not None else default_device()
    report = RunProgress(quiet=quiet or not is_main())
    spec = loaded.spec
    check_data_root(loaded)  # before the planner counts its classes
    plan = plan_spec(loaded)
    run_dir = run_folder(spec)
    splits = build_datasets(spec.data, budget=role != "teacher")
    with deterministic(device):
        if role == "teacher":
            return _fit_teacher(loaded, plan, run_dir, device, resume, max_epochs, compile_backend, report, splits,
                                overwrite, accept_changes)
        source = None
        if plan.method != "none":
            source = teacher_source(spec, run_dir, plan.num_classes)
            if source is None:
                report.log(
                    f"[bold]no teacher weights[/] (no teacher.checkpoint, no {run_dir / TEACHER_FILE}, no pretrained "
                    "head for these classes): fitting the teacher first"
                )
                fit_resume = RunFolder(run_dir / TEACHER_FIT_DIR).resumable() is not None
                _fit_teacher(loaded, plan, run_dir, device, fit_resume, None, compile_backend, report,
                             build_datasets(spec.data, budget=False), accept_changes=accept_changes)
                source = teacher_source(spec, run_dir, plan.num_classes)
                assert source is not None
            check_teacher_split(source, splits.info)
            report.log(f"teacher: {source}")
        seed_everything(spec.seed)
        setup = build_student_setup(spec, plan, run_dir, device, source, init=not resume)
        report.log(f"distilling {spec.name}: {plan.method}, {setup.epochs} epochs -> {run_dir}")
        return train_loop(setup, resume=resume, overwrite=overwrite, max_epochs=max_epochs,
                          compile_backend=compile_backend, report=report, datasets=splits,
                          accept_changes=accept_changes)


def _fit_teacher(
    loaded: LoadedSpec, plan: Plan, run_dir: Path, device: torch.device, resume: bool,
    max_epochs: int | None, compile_backend: str | None, report: RunProgress, splits: DataSplits,
    overwrite: bool = False, accept_changes: bool = False,
) -> TrainResult:
    spec = loaded.spec
    seed_everything(spec.seed)
    setup = build_teacher_setup(spec, plan, run_dir, device, init=not resume)
    report.log(f"fitting the teacher {plan.teacher.model}: {setup.epochs} epochs -> {setup.run_dir}")
    result = train_loop(setup, resume=resume, overwrite=overwrite, max_epochs=max_epochs,
                        compile_backend=compile_backend, report=report, datasets=splits, accept_changes=accept_changes)
    if result.finished and is_main():
        # The split travels with the weights: a run on another split must not reuse them.
        meta = {"plan_hash": setup.key, "role": "teacher", "seed": str(spec.seed), **teacher_split_metadata(splits.info)}
        meta |= {key: f"{value:.4f}" for key, value in result.last.items() if key.endswith("teacher_top1")}
        try:
            save_weights(setup.trained_model.state_dict(), run_dir / TEACHER_FILE, meta)
        except OSError as exc:
            raise TrainError(f"could not write {run_dir / TEACHER_FILE}: {exc.strerror or exc}") from None
        report.log(f"teacher written to {run_dir / TEACHER_FILE} (eval top-1 {result.last['teacher_top1']:.2f}%)")
    barrier()  # the other ranks read the fitted teacher next
    return result
