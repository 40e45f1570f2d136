"""`run_study`: specs x variants x seeds, each an ordinary run folder, resumable.

    study/
      study.json, study.csv, <spec>-top1.png|svg, <spec>-curves.png|svg
      <spec>/<variant>-seed<k>/         one run folder per (variant, seed)

Each spec's teacher is fitted once (with the study's seed of the spec) into the
teacher store (`tasgen.teacher_store`), or reused from it when any earlier run or
study fitted the same teacher; every run of the spec distils from those weights. A
study folder of an earlier tasgen, with ``<spec>/teacher.safetensors``, keeps its teacher.

A variant is a name and the ``--set`` overrides that make it (a method of the
study: ``distill.method=kd``; a candidate of the split search:
``assistant.split=2``...). Finished runs are read, not trained again; an
interrupted one resumes from its ``last/`` checkpoint, so re-running the same command
after a kill finishes the study. Only a run (or a shared teacher) whose ``spec.yaml``
equals the spec the study would train is reused: a study re-run with other settings
in the same folder is refused, naming what differs.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from tasgen.output import prepare_output
from tasgen.spec.load import LoadedSpec, load_spec
from tasgen.teacher_store import WEIGHTS_FILE, StoredTeacher, weak_teacher_message

from .table import STUDY_FILE, StudyError, read_run, read_study, write_study

__all__ = [
    "METHODS", "RunTask", "Study", "Variant", "arm_variant", "check_reuse", "method_variants", "prepare_study",
    "run_study",
]

METHODS = ("none", "kd", "fitnet", "crd", "dkd", "dist", "ofa", "tas")
"""The methods a study compares by default (the paper's baselines, then OFA and TAS); any
registered method may be named. They share the trainer, data, schedule and seeds."""


@dataclass(frozen=True)
class Variant:
    """One arm of a study: a name and the overrides that make it."""

    name: str
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class RunTask:
    """One (spec, variant, seed) run."""

    spec_path: Path
    spec_name: str
    variant: str
    seed: int
    overrides: tuple[str, ...]
    run_dir: Path

    @property
    def label(self) -> str:
        return f"{self.spec_name} {self.variant} seed {self.seed}"


@dataclass
class Study:
    """A validated study: every spec loaded, every run laid out, nothing run yet."""

    folder: Path
    specs: dict[str, Path]
    overrides: tuple[str, ...]
    variants: list[Variant]
    seeds: list[int]
    tasks: list[RunTask] = field(default_factory=list)
    epochs: dict[str, int] = field(default_factory=dict)
    teacher_given: dict[str, bool] = field(default_factory=dict)

    def config(self) -> dict[str, Any]:
        return {
            "specs": {name: str(path) for name, path in self.specs.items()},
            "variants": {v.name: list(v.overrides) for v in self.variants},
            "seeds": self.seeds,
            "overrides": list(self.overrides),
            "epochs": self.epochs,
        }


def method_variants(methods: Sequence[str]) -> list[Variant]:
    """The study's variants for method names.

    Raises:
        StudyError: an unknown or repeated method.
    """
    from tasgen.methods import MethodError, get_method, method_names

    for name in methods:
        try:
            get_method(name)
        except MethodError as exc:
            raise StudyError(str(exc)) from None
    if len(set(methods)) != len(methods) or not methods:
        raise StudyError(f"--methods needs distinct names from {', '.join(method_names())}, "
                         f"got {','.join(methods) or 'none'}")
    return [Variant(m, (f"distill.method={m}",)) for m in methods]


_ARM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def arm_variant(text: str) -> Variant:
    """An extra arm from ``NAME:KEY=VALUE[;KEY=VALUE...]`` (an ablation row of a study).

    ``tas-head:distill.method=tas;distill.feature.pool=head`` trains the spec with
    both overrides as the arm ``tas-head``; its runs sit beside the methods' runs, on
    the same seeds, split and teacher, so the table pairs them with ``none``.

    Raises:
        StudyError: no name, a name that is not a folder name, or an override
            without ``=``.
    """
    name, sep, rest = text.partition(":")
    name = name.strip()
    if not sep or not _ARM_NAME.fullmatch(name):
        raise StudyError(f"--arm {text!r}: write NAME:KEY=VALUE[;KEY=VALUE...], NAME made of letters, digits, "
                         "'.', '_' or '-' (e.g. --arm 'tas-head:distill.method=tas;distill.feature.pool=head')")
    overrides = tuple(part.strip() for part in rest.split(";") if part.strip())
    bad = [part for part in overrides if "=" not in part]
    if not overrides or bad:
        raise StudyError(f"--arm {text!r}: each override is KEY=VALUE, got {', '.join(map(repr, bad)) or 'none'}")
    return Variant(name, overrides)


def check_variants(variants: Sequence[Variant]) -> None:
    """Refuse two arms of one name (they would share run folders).

    Raises:
        StudyError: a repeated name.
    """
    names = [v.name for v in variants]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise StudyError(f"two arms are named {', '.join(map(repr, repeated))}; give each method and --arm its own name")


def _legacy_teacher_file(folder: Path, spec_name: str) -> Path:
    """Where studies before the teacher store kept a spec's teacher."""
    return folder / spec_name / "teacher.safetensors"


def prepare_study(
    spec_paths: Sequence[str | os.PathLike[str]],
    variants: Sequence[Variant],
    seeds: int | Sequence[int],
    folder: str | os.PathLike[str],
    overrides: Sequence[str] = (),
) -> Study:
    """Validate every spec and every variant before anything runs.

    Args:
        spec_paths: The spec files.
        variants: The arms (see `method_variants`).
        seeds: A count (seeds 0..n-1) or the seeds themselves.
        folder: The study folder.
        overrides: ``--set`` values applied to every spec, before each variant's own.

    Returns:
        The `Study`, its run folders laid out under ``folder``.

    Raises:
        StudyError: no seed, two specs with one name.
        SpecError: a spec, or a spec with a variant's overrides, is invalid (located).
    """
    check_variants(variants)
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list or (isinstance(seeds, int) and seeds < 1):
        raise StudyError(f"--seeds must be at least 1, got {seeds}")
    if any(s < 0 for s in seed_list):
        raise StudyError(f"seeds must be >= 0, got {seed_list}")
    root = Path(folder)
    study = Study(root, {}, tuple(overrides), list(variants), seed_list)
    for raw_path in spec_paths:
        path = Path(raw_path)
        loaded = load_spec(path, overrides)
        name = loaded.spec.name
        if name in study.specs:
            raise StudyError(f"{path} and {study.specs[name]} both name their run '{name}'; give one another name")
        study.specs[name] = path
        study.epochs[name] = loaded.spec.train.epochs
        study.teacher_given[name] = loaded.spec.teacher.checkpoint is not None
        for variant in variants:
            for seed in seed_list:
                run_dir = root / name / f"{variant.name}-seed{seed}"
                run_overrides = (
                    *overrides, *variant.overrides, f"seed={seed}", f"name={run_dir.name}",
                    f"train.output_dir={run_dir.parent}",
                )
                if seed == seed_list[0]:
                    load_spec(path, run_overrides)  # a variant that breaks this spec fails now, not in an hour
                study.tasks.append(RunTask(path, name, variant.name, seed, run_overrides, run_dir))
    return study


def _teacher_overrides(study: Study, name: str) -> tuple[str, ...]:
    return (*study.overrides, f"name={name}", f"train.output_dir={study.folder}")


def _teacher_weights(study: Study, name: str) -> Path:
    """Where spec ``name``'s shared teacher is (or will be, once fitted): the study folder's own
    file for a study made before the teacher store, else the store's entry for its key."""
    legacy = _legacy_teacher_file(study.folder, name)
    if legacy.is_file():
        return legacy
    from tasgen.compiler import num_classes
    from tasgen.teacher_store import TeacherStore, teacher_key

    spec = load_spec(study.specs[name], _teacher_overrides(study, name)).spec
    return TeacherStore().teacher(teacher_key(spec, num_classes(spec))).weights


def _student_overrides(study: Study, task: RunTask) -> tuple[str, ...]:
    # The shared teacher is named by its absolute path: the run's spec.yaml records it so.
    teacher = () if study.teacher_given[task.spec_name] else (
        f"teacher.checkpoint={_teacher_weights(study, task.spec_name).absolute()}",)
    return (*task.overrides, *teacher)


def check_reuse(study: Study) -> None:
    """Refuse a study folder whose runs or teachers were trained with other settings than ``study`` gives them.

    A run folder (or a spec's teacher fit) that the study would reuse or resume must
    record in its ``spec.yaml`` the spec the study would train there now; keys no result
    depends on (``RESULT_NEUTRAL_KEYS``) may differ.

    Raises:
        StudyError: naming each such run with the keys that differ, and the ways forward.
        SpecError: a run's spec.yaml does not load (located).
    """
    places = [(study.folder / name / "teacher", path, _teacher_overrides(study, name), False, True)
              for name, path in study.specs.items() if not study.teacher_given[name]]
    # A shared teacher's weights are named by the study (in the store, or not fitted yet): they follow from
    # the spec's own keys, which are compared, so the path the run recorded is not.
    places += [(task.run_dir, task.spec_path, task.overrides, not study.teacher_given[task.spec_name], False)
               for task in study.tasks]
    conflicts = [c for c in (_reuse_conflict(*place) for place in places) if c is not None]
    if not conflicts:
        return
    shown = "; ".join(conflicts[:4]) + (f"; and {len(conflicts) - 4} more" if len(conflicts) > 4 else "")
    earlier = _earlier_overrides(study.folder)
    raise StudyError(
        f"{study.folder} holds runs trained with other settings than this study gives them: {shown}. "
        "A study reuses or resumes a run only when it was trained with the spec it would train now, so its table "
        "never mixes settings. Write this study to another folder (-o), or re-run it with the settings of the "
        f"runs it holds{earlier}, or remove those run folders to train them again."
    )


def _reuse_conflict(run_dir: Path, spec_path: Path, overrides: tuple[str, ...], shared_teacher: bool,
                    teacher_fit: bool) -> str | None:
    """What keeps the study from reusing ``run_dir`` (None when nothing does, or it holds no run yet).

    With ``shared_teacher``, the study names the teacher's weights: ``teacher.checkpoint`` is not compared.
    A ``teacher_fit`` folder is compared on what a teacher fit reads (`RunFolder.spec_changes`).
    """
    from tasgen.train.run_folder import RunFolder, describe_changes

    folder = RunFolder(run_dir)
    if not folder.spec_file.is_file():
        held = folder.leftovers()
        return f"{run_dir} holds {', '.join(held)} but no spec.yaml to tell what they were trained with" if held else None
    changes = folder.spec_changes(load_spec(spec_path, overrides).spec, teacher_fit=teacher_fit)
    if shared_teacher:
        changes = [c for c in changes if c[0] != "teacher.checkpoint"]
    return f"{run_dir}: {describe_changes(changes)}" if changes else None


def _earlier_overrides(folder: Path) -> str:
    """`` (study.json records --set a=1 --set b=2)``, or nothing when no earlier record says."""
    import json

    try:
        earlier = json.loads((folder / STUDY_FILE).read_text(encoding="utf-8"))["config"]["overrides"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    if not isinstance(earlier, list):
        return ""
    given = " ".join(f"--set {o}" for o in earlier)
    return f" ({STUDY_FILE} records {given or 'no --set'} for the last run of the study)"


def _finished(run_dir: Path, epochs: int) -> dict[str, Any] | None:
    result = read_run(run_dir)
    return result if result is not None and result["epochs"] >= epochs else None


def _train_one(spec_path: Path, overrides: tuple[str, ...], role: str, resume: bool) -> str:
    """Train one run in this process (also the body of a `--jobs` worker); returns its run folder."""
    from tasgen.train import train

    loaded: LoadedSpec = load_spec(spec_path, overrides)
    result = train(loaded, role=role, resume=resume, quiet=True)  # type: ignore[arg-type]
    return str(result.run_dir)


def _worker_init(threads: int, parent: int) -> None:
    from tasgen.parent_death import die_with_parent

    die_with_parent(parent)  # a study killed by any signal leaves no worker training (and holding a lock)
    import torch

    torch.set_num_threads(threads)


def _resume_flag(run_dir: Path) -> bool:
    from tasgen.train.run_folder import RunFolder

    return RunFolder(run_dir).resumable() is not None


Progress = Callable[[str, dict[str, Any]], None]


def run_study(study: Study, jobs: int = 1, progress: Progress | None = None) -> dict[str, Any]:
    """Fit (or find) each spec's teacher once, then train every run not yet finished.

    Args:
        study: From `prepare_study`.
        jobs: Runs at once, each in its own process with ``cpu_count // jobs``
            threads; 1 trains in this process.
        progress: Called with an event name ("teacher", "run", "skip") and a dict
            (task label, result, done/total counts, ETA in seconds).

    Returns:
        The study record also written to ``study.json`` (see `write_study`).

    Raises:
        OutputError: the study folder cannot be written (a file, read-only).
        StudyError: the folder holds runs trained with other settings (see `check_reuse`).
    """
    report = progress or (lambda event, info: None)
    check_reuse(study)  # before anything trains: a folder of other settings is refused whole
    prepare_output(study.folder, kind="folder", resumable=True)  # an existing study folder is continued
    jobs = max(1, jobs)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    pool = ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_worker_init,
                               initargs=(threads, os.getpid())) if jobs > 1 else None

    def submit(fn: Callable[..., Any], *args: Any) -> Future:
        if pool is not None:
            return pool.submit(fn, *args)
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - re-raised by .result() below
            if isinstance(exc, KeyboardInterrupt):
                raise
            future.set_exception(exc)
        return future

    try:
        # 1. Runs: skip the finished; the others are resumed or started below.
        results: dict[RunTask, dict[str, Any]] = {}
        todo = []
        for task in study.tasks:
            done = _finished(task.run_dir, study.epochs[task.spec_name])
            if done is not None:
                results[task] = done
                report("skip", {"task": task, "result": done, "done": len(results), "total": len(study.tasks)})
            else:
                todo.append(task)

        # 2. Teachers: once per spec with runs to train, fitted into the teacher store (or found there) unless
        # the spec names weights; a spec whose runs are all finished keeps the teacher study.json recorded.
        earlier = _earlier_teachers(study.folder)
        needed = {task.spec_name for task in todo}
        teachers: dict[str, Any] = {}
        weights: dict[str, Path] = {}
        fits: dict[str, Path] = {}
        pending = {}
        for name, path in study.specs.items():
            legacy = _legacy_teacher_file(study.folder, name)
            if study.teacher_given[name] or name not in needed:
                continue
            if legacy.is_file():
                weights[name], fits[name] = legacy, study.folder / name / "teacher"
                continue
            pending[name] = submit(_train_one, path, _teacher_overrides(study, name), "teacher", False)
        for name, future in pending.items():
            fits[name] = Path(future.result())  # <store>/<key>/teacher: the weights sit beside it
            weights[name] = fits[name].parent / WEIGHTS_FILE
        for name in study.specs:
            if name not in needed and name in earlier:
                teachers[name] = earlier[name]
                continue
            fit = read_run(fits[name], role="teacher") if name in fits else None
            if name in pending:
                report("teacher", {"spec": name, "weights": weights[name], "warning": _weak_teacher(fits[name], fit)})
            teachers[name] = {
                "given": study.teacher_given[name],
                "weights": str(weights[name]) if name in weights else None,
                "test_top1": fit["test_top1"] if fit else None,
                "val_top1": fit["best_val_top1"] if fit else None,
                "seed": _spec_seed(study, name),
            }

        # 3. Runs: resume the interrupted, start the rest.
        started = time.perf_counter()
        running: dict[Future, RunTask] = {}
        queue = list(todo)
        finished_now = 0
        while queue or running:
            while queue and (pool is None and not running or pool is not None and len(running) < jobs):
                task = queue.pop(0)
                running[submit(_train_one, task.spec_path, _student_overrides(study, task), "student",
                               _resume_flag(task.run_dir))] = task
            completed, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in completed:
                task = running.pop(future)
                future.result()
                finished_now += 1
                result = read_run(task.run_dir) or {}
                results[task] = result
                elapsed = time.perf_counter() - started
                eta = elapsed / finished_now * (len(todo) - finished_now)
                report("run", {"task": task, "result": result, "done": len(results), "total": len(study.tasks),
                               "eta": eta})
                _write(study, teachers, results)
        return _write(study, teachers, results)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _earlier_teachers(folder: Path) -> dict[str, Any]:
    """The teachers an earlier call recorded in the study's ``study.json`` (none when absent)."""
    try:
        teachers = read_study(folder).get("teachers", {})
    except StudyError:
        return {}
    return teachers if isinstance(teachers, dict) else {}


def _weak_teacher(fit_dir: Path, fit: dict[str, Any] | None) -> str | None:
    """The weak-teacher warning of a stored fit, from its store entry's class count."""
    classes = StoredTeacher(fit_dir.parent.name, fit_dir.parent).entry().get("num_classes")
    if fit is None or not isinstance(classes, int) or math.isnan(fit["test_top1"]):
        return None
    return weak_teacher_message(fit["test_top1"], classes)


def _spec_seed(study: Study, name: str) -> int:
    return load_spec(study.specs[name], study.overrides).spec.seed


def _write(study: Study, teachers: dict[str, Any], results: dict[RunTask, dict[str, Any]]) -> dict[str, Any]:
    rows = []
    for task in study.tasks:  # in the study's order, whatever order they finished in
        result = results.get(task)
        if not result:
            continue
        rows.append({
            "spec": task.spec_name, "variant": task.variant, "seed": task.seed, "run_dir": str(task.run_dir),
            **{k: v for k, v in result.items()},
        })
        if math.isnan(rows[-1]["teacher_test_top1"]) and teachers.get(task.spec_name, {}).get("test_top1") is not None:
            rows[-1]["teacher_test_top1"] = teachers[task.spec_name]["test_top1"]
    return write_study(study.folder, study.config(), teachers, rows)
