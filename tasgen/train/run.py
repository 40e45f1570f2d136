"""`train`: a spec in, a trained run folder out (fitting the teacher first when needed)."""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING

import torch

from tasgen.checkpoint import find_checkpoint, save_weights
from tasgen.data import DataError, DataSplits, build_datasets
from tasgen.teacher_store import StoredTeacher, TeacherStore, teacher_fit_fields, teacher_key

from .dist import barrier, default_device, init_from_env, is_main, shutdown
from .errors import TrainError
from .loop import TrainResult, train_loop
from .progress import RunProgress
from .rng import deterministic, seed_everything
from .run_folder import RunFolder
from .setup import Role, build_student_setup, build_teacher_setup, run_folder, teacher_fit_key
from .weights import check_teacher_split, teacher_source, teacher_split_metadata

if TYPE_CHECKING:
    from tasgen.plan import Plan
    from tasgen.spec.load import LoadedSpec
    from tasgen.spec.schema import Spec


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
    ``teacher.checkpoint``, else the teacher store's fit of this spec's teacher (see
    `tasgen.teacher_store`: shared by every run whose teacher fit is the same, whatever
    its name), else timm's pretrained weights (when their head fits); with none of
    these the teacher is fitted into the store first. ``role="teacher"`` fits the
    teacher alone with CE into the store (``overwrite`` fits it again), or returns
    the stored fit.

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
        # A teacher fit writes to the store, under the store's own lock.
        own_folder = is_main() and role != "teacher"
        lock = RunFolder(run_folder(loaded.spec)).lock() if own_folder else contextlib.nullcontext()
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
    try:
        splits = build_datasets(spec.data, budget=role != "teacher")
    except DataError as err:
        if err.key is None:
            raise
        raise loaded.error(err.key, str(err)) from None  # at the field's line of the spec file
    with deterministic(device):
        if role == "teacher":
            return _fit_teacher(loaded, plan, device, resume, max_epochs, compile_backend, report, splits,
                                overwrite, accept_changes)
        source = None
        if plan.method != "none":
            source = teacher_source(spec, run_dir, plan.num_classes)
            if source is None:
                report.log(
                    "[bold]no teacher weights[/] (no teacher.checkpoint, no stored teacher for this spec, no "
                    "pretrained head for these classes): fitting the teacher first, into the teacher store"
                )
                _fit_teacher(loaded, plan, device, False, None, compile_backend, report,
                             build_datasets(spec.data, budget=False), accept_changes=accept_changes)
                source = teacher_source(spec, run_dir, plan.num_classes)
                assert source is not None
            check_teacher_split(source, splits.info)
            if source.kind == "stored" and is_main():
                TeacherStore().touch(source.key)
            report.log(f"teacher: {source}")
        seed_everything(spec.seed)
        setup = build_student_setup(spec, plan, run_dir, device, source, init=not resume,
                                    num_train=splits.info.num_train)
        report.log(f"distilling {spec.name}: {plan.method}, {setup.epochs} epochs -> {run_dir}")
        return train_loop(setup, resume=resume, overwrite=overwrite, max_epochs=max_epochs,
                          compile_backend=compile_backend, report=report, datasets=splits,
                          accept_changes=accept_changes)


def _fit_teacher(
    loaded: LoadedSpec, plan: Plan, device: torch.device, resume: bool, max_epochs: int | None,
    compile_backend: str | None, report: RunProgress, splits: DataSplits, overwrite: bool = False,
    accept_changes: bool = False,
) -> TrainResult:
    """Fit the spec's teacher into the teacher store, or return the stored fit.

    One process fits a given teacher at a time (the store's lock); one that waited
    finds the weights written and reuses them. A fit interrupted earlier resumes.
    """
    spec = loaded.spec
    store = TeacherStore()
    stored = store.teacher(teacher_key(spec, plan.num_classes))
    lock = store.lock(stored.key, report.log) if is_main() else contextlib.nullcontext()
    with lock:
        barrier()  # the other ranks look into the store once rank 0 holds its lock
        if stored.exists and not overwrite:
            report.log(f"teacher {plan.teacher.model} is in the store: {stored.weights}")
            return _stored_result(stored)
        resume = resume or (not overwrite and find_checkpoint(RunFolder(stored.fit_dir).last) is not None)
        seed_everything(spec.seed)
        setup = build_teacher_setup(spec, plan, stored.folder, device, init=not resume)
        report.log(f"fitting the teacher {plan.teacher.model}: {setup.epochs} epochs -> {setup.run_dir}")
        result = train_loop(setup, resume=resume, overwrite=overwrite, max_epochs=max_epochs,
                            compile_backend=compile_backend, report=report, datasets=splits,
                            accept_changes=accept_changes)
        if result.finished and is_main():
            _store_teacher(store, stored, setup.trained_model.state_dict(), spec, plan, splits, result)
            report.log(f"teacher written to {stored.weights} (test top-1 {result.last['teacher_top1']:.2f}%)")
        barrier()  # the other ranks read the fitted teacher next
    return result


def _store_teacher(
    store: TeacherStore, stored: StoredTeacher, state: dict[str, torch.Tensor], spec: Spec, plan: Plan,
    splits: DataSplits, result: TrainResult,
) -> None:
    # The split travels with the weights: a run on another split must not reuse them.
    meta = {"plan_hash": teacher_fit_key(plan), "role": "teacher", "seed": str(spec.seed),
            "store_key": stored.key, **teacher_split_metadata(splits.info)}
    scores = {key: value for key, value in result.last.items() if key.endswith("teacher_top1")}
    meta |= {key: f"{value:.4f}" for key, value in scores.items()}
    try:
        # The entry first: the weights' arrival is what makes the teacher present.
        store.record(stored.key, {
            "model": plan.teacher.model, "data": splits.info.name, "num_classes": plan.num_classes,
            "image_size": plan.image_size, "seed": spec.seed, "epochs": result.epochs_done,
            "best_top1": result.best_top1, **scores, "spec": teacher_fit_fields(spec, plan.num_classes),
        })
        save_weights(state, stored.weights, meta)
    except OSError as exc:
        raise TrainError(f"could not write the teacher to {stored.folder}: {exc.strerror or exc}") from None


def _stored_result(stored: StoredTeacher) -> TrainResult:
    """The `TrainResult` of a teacher fitted earlier, from its store entry."""
    entry = stored.entry()
    epochs = int(entry.get("epochs", 0))
    last = {key: value for key, value in entry.items() if key.endswith("teacher_top1")}
    return TrainResult(run_dir=stored.fit_dir, epochs_done=epochs, epochs=epochs,
                       best_top1=float(entry.get("best_top1", last.get("teacher_top1", math.nan))), last=last)
