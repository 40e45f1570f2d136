"""The training loop: one function, read top to bottom."""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from timm.utils import ModelEmaV3
from torch.utils.data import DataLoader, IterableDataset

from tasgen.checkpoint import find_checkpoint, load_checkpoint, read_manifest
from tasgen.data import DataSplits, build_datasets, build_eval_loader, build_loaders
from tasgen.data.indexed import WithIndex
from tasgen.emit.system import Solo
from tasgen.losses.logit_temperature import CONFIDENT_TEMPERATURE, teacher_confidence
from tasgen.teacher_store import weak_teacher_message

from .dist import average_buffers, barrier, is_main, rank, world_size
from .errors import TrainError
from .evaluate import accuracy
from .loggers import Loggers
from .optim import scheduler_state
from .progress import RunProgress
from .rng import reseed_loader, rng_state, set_rng_state
from .run_folder import RunFolder, describe_changes, read_rows, spec_changes
from .setup import Setup, load_trainable
from .step import build_engine, flops_per_image, matmul_peak

CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class TrainResult:
    """What a run ended with.

    Attributes:
        run_dir: its folder.
        epochs_done: epochs completed (of ``epochs``).
        epochs: epochs of the schedule.
        best_top1: the trained model's top-1 (%) on the validation split at the best epoch
            (the one ``best/`` holds); with no validation split, the last epoch's test top-1.
        last: the last metrics row (empty when no epoch ran); ``<model>_top1`` keys are on
            the test split, ``val_<model>_top1`` keys on the validation split.
    """

    run_dir: Path
    epochs_done: int
    epochs: int
    best_top1: float
    last: dict[str, Any]

    @property
    def finished(self) -> bool:
        return self.epochs_done >= self.epochs


def train_loop(
    setup: Setup,
    *,
    resume: bool = False,
    overwrite: bool = False,
    max_epochs: int | None = None,
    compile_backend: str | None = None,
    report: RunProgress | None = None,
    datasets: DataSplits | None = None,
    accept_changes: bool = False,
) -> TrainResult:
    """Train ``setup.optimised`` and write metrics and checkpoints to ``setup.run_dir``.

    Each epoch: train (forward of the system, objective, backward, optimizer step,
    schedule per update, EMA, log), evaluate on the validation and test splits, then
    save ``last/`` (and ``best/`` when the trained model's validation top-1 improved;
    every epoch when there is no validation split) and a metrics row.

    Args:
        setup: what to train (see `Setup`).
        resume: continue from ``last/``; refused when it belongs to another plan, or when
            the spec differs from the run's ``spec.yaml`` (unless ``accept_changes``).
        overwrite: a fresh start may remove an earlier run's checkpoints and metrics
            (without it, a folder holding a run is refused).
        max_epochs: stop after this epoch (the schedule still spans ``setup.epochs``),
            e.g. to resume later.
        compile_backend: torch.compile backend when ``train.compile`` is on (None: inductor).
        report: progress output; silent when None.
        datasets: the spec's splits when the caller built them already.
        accept_changes: resume although the spec differs from ``spec.yaml``: the run goes on
            under the spec as it is now (its optimizer settings and schedule, stepped to the
            update reached), ``spec.yaml`` is rewritten, and the old one is kept as
            ``spec.until-epoch-N.yaml``.

    Returns:
        The `TrainResult`.

    Raises:
        TrainError: unwritable folder, no disk space, a NaN/Inf loss, no checkpoint to resume,
            an earlier run in the folder (without ``overwrite``).
        CheckpointError: the checkpoint to resume is corrupt or fails its integrity check.
    """
    spec, cfg, device = setup.spec, setup.spec.train, setup.device
    report = report or RunProgress(quiet=True)
    folder = RunFolder(setup.run_dir, write_csv="csv" in cfg.loggers)
    trained_table = setup.plan.table(setup.role)

    # Data: images in [0, 1] (each model normalises its own input); under DDP one shard per rank.
    # The validation split chooses best/; the test split is reported and never chooses anything.
    splits = datasets or build_datasets(spec.data, budget=setup.role != "teacher")
    _check_classes(splits.info.num_classes, splits.info.num_test or None, setup, report)  # None: a stream
    shards = {"distributed": world_size() > 1, "rank": rank(), "world_size": world_size()}
    train_loader, eval_loader = build_loaders(_train_set(splits.train, setup), splits.test, spec.data, spec.seed,
                                              **shards)
    val_loader = build_eval_loader(splits.val, spec.data, spec.seed, **shards) if splits.val is not None else None
    updates_per_epoch = len(train_loader) // cfg.accumulate
    if updates_per_epoch == 0:
        raise TrainError(f"train.accumulate = {cfg.accumulate} exceeds the {len(train_loader)} batches of an epoch")

    # Engine: precision and memory format, DDP, compile; optimizer, schedule, EMA (see step.py).
    engine = build_engine(setup, updates_per_epoch, compile_backend)
    optimizer, scheduler, scaler, ema, precision = (
        engine.optimizer, engine.scheduler, engine.scaler, engine.ema, engine.precision
    )
    ema_system = Solo(ema.module, trained_table) if ema is not None else None

    # Start fresh, or continue from last/ exactly where it stopped. Rank 0 (the folder's
    # single writer, see RunFolder.lock) first tidies what an interrupted save left.
    if is_main():
        folder.check_writable()
        folder.recover()
    barrier()
    start, step, best, best_epoch = 0, 0, -math.inf, 0
    rows: list[dict[str, Any]] = []
    if resume:
        found = folder.resumable()
        if found is None:
            raise TrainError(f"nothing to resume: {folder.path} holds no checkpoint (no last/ or best/). "
                             "Run without --resume to start.")
        parts, state = load_checkpoint(found)  # verified against its manifest
        if state.get("plan_hash") != setup.key:
            raise TrainError(_changed_plan(found, state, setup, folder))
        # The run's spec.yaml is the record of what it trained: a resume goes on with it, or says
        # what would change and needs accept_changes to change it.
        changes = folder.spec_changes(spec, teacher_fit=setup.role == "teacher")
        if changes and not accept_changes:
            raise TrainError(_changed_spec(folder, changes, state["epoch"], setup.role))
        load_trainable(setup.optimised, parts, str(found))
        if ema is not None:  # EMA switched on since the checkpoint: start it from the weights
            ema.module.load_state_dict(parts.get("ema") or setup.trained_model.state_dict())
        if changes:
            _load_optimizer_under_new_settings(optimizer, state["optimizer"], changes)
        else:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])  # else the new spec's schedule, stepped to `step` below
        scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        start, step, best = state["epoch"], state["step"], state["best"]
        best_epoch = state.get("best_epoch", 0)
        rows = read_rows(found)
        if is_main():  # the metrics files become exactly the checkpoint's rows; best/ catches up
            folder.repair(found, read_manifest(found), rows)
            if changes:
                kept = folder.record_changed_spec(_spec_yaml(spec), start)
                report.warn(f"resuming {folder.path} under changed settings: {describe_changes(changes)}. "
                            f"spec.yaml now records them; the settings of epochs 1-{start} are kept in {kept}.")
            if find_checkpoint(folder.last) is None:
                report.warn(f"{folder.last} is gone: resuming from {found} (epoch {start}); the epochs after it are "
                            "trained again")
        barrier()
        report.log(f"resuming {folder.path} after epoch {start} (step {step})")
    elif is_main():
        removed = folder.start_fresh(_spec_yaml(spec), setup.plan.to_json(), overwrite=overwrite)
        if removed:
            report.log(f"--overwrite: removed {', '.join(removed)} of the earlier run in {folder.path}")
    estimate = _checkpoint_bytes(setup, ema, optimizer)
    if resume:  # a real checkpoint says better what the next one takes
        estimate = max(estimate, sum(f.stat().st_size for f in found.iterdir()))
    if is_main():
        folder.check_space(2 * estimate, "checkpoints", "(last/ and the next epoch's copy while it is written.) ")
    loggers = Loggers(spec, setup.plan, folder.path, role=setup.role, active=is_main())
    engine.step = step
    scheduler.step_update(step)  # the learning rate of the next update

    # The teacher's own accuracy, once, so a weak teacher is seen before hours of distilling.
    # (A teacher fit has no separate teacher: its own accuracy is the epoch's result, not a constant.)
    first = rows[0] if rows and setup.uses_teacher else {}
    teacher_metrics = {k: v for k, v in first.items() if k.startswith(("teacher_", "val_teacher_", "logit_"))}
    if setup.uses_teacher and "teacher_top1" not in teacher_metrics:
        teacher_metrics = _evaluate(setup.system, eval_loader, val_loader, device, precision, {"teacher": "teacher"})
        report.log(f"teacher top-1 on the test split: {teacher_metrics['teacher_top1']:.2f}%")
        weak = weak_teacher_message(teacher_metrics["teacher_top1"], setup.plan.num_classes)
        if weak is not None:
            report.warn(weak)
    teacher_metrics |= _logit_temperature(setup, splits.train, first, report)

    stop = setup.epochs if max_epochs is None else min(setup.epochs, max_epochs)
    tracker = engine.tracker
    mfu_per_image_per_s = _mfu_per_image_per_s(setup, device, report)
    report.start(stop * updates_per_epoch, step, f"{setup.role} {spec.name}")
    try:
        for epoch in range(start, stop):
            setup.system.train()
            reseed_loader(train_loader, spec.seed, epoch, rank())  # also the DistributedSampler's set_epoch
            hint = f"The last good checkpoint stays in {folder.last} (epoch {epoch})." if epoch else "No checkpoint was written."
            started, seen, lr = time.perf_counter(), 0, optimizer.param_groups[0]["lr"]
            batches = itertools.islice(train_loader, updates_per_epoch * cfg.accumulate)
            if hasattr(setup.objective, "set_epoch"):  # a method's warm-up reads it
                setup.objective.set_epoch(epoch + 1)
            for micro, (images, labels, *index) in enumerate(batches):
                update_now = (micro + 1) % cfg.accumulate == 0
                engine.micro_step(images, labels, update_now, index[0] if index else None)
                seen += images.shape[0]
                if not update_now:
                    continue
                step, lr = engine.step, engine.lr
                if step % cfg.log_interval == 0:  # the only host syncs of the epoch
                    tracker.check(hint)
                    rate = seen * world_size() / (time.perf_counter() - started)
                    interval = {**tracker.interval_means(), "lr": lr, "img/s": rate}
                    if mfu_per_image_per_s is not None:
                        interval["mfu"] = rate * mfu_per_image_per_s
                    report.update(step, interval)
                    loggers.step(step, interval)
            tracker.check(hint)
            seconds = time.perf_counter() - started
            average_buffers(setup.optimised)  # BN statistics: one model on every rank before eval and save

            # Evaluate (every train.eval_every epochs and after the run's last), then checkpoint:
            # last/ always, best/ when the trained model improved.
            results: dict[str, float] = {}
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == stop:
                names = {"student": setup.role, "assistant": "assistant"}
                results = _evaluate(setup.system, eval_loader, val_loader, device, precision, names)
                if ema_system is not None:
                    results |= _evaluate(ema_system, eval_loader, val_loader, device, precision,
                                         {"student": f"{setup.role}_ema"})
            losses = {("loss" if k == "loss" else f"loss.{k}"): v for k, v in tracker.epoch_means().items()}
            row = {"epoch": epoch + 1, "step": step, "lr": lr, **losses, **results, **teacher_metrics,
                   "images_per_s": seen * world_size() / seconds, "seconds": seconds}
            if mfu_per_image_per_s is not None:
                row["mfu"] = row["images_per_s"] * mfu_per_image_per_s
            # Best on validation only, among the evaluated epochs; without a validation split, best/
            # follows the last epoch (and best is its test top-1, once one is measured).
            top1 = results.get(f"val_{setup.role}_top1" if val_loader is not None else f"{setup.role}_top1")
            improved = val_loader is None or (top1 is not None and top1 > best)
            if top1 is not None:
                best = top1 if val_loader is None else max(best, top1)

            # One commit per epoch: last/ with every row so far, best/ when improved, then the metrics view.
            best_epoch = epoch + 1 if improved else best_epoch
            parts = _checkpoint_parts(setup, ema)
            _check_finite(parts, epoch + 1, hint)
            state = {
                "format": CHECKPOINT_FORMAT, "role": setup.role, "plan_hash": setup.key,
                "epoch": epoch + 1, "step": step, "best": best, "best_epoch": best_epoch, "epochs": setup.epochs,
                "optimizer": optimizer.state_dict(), "scheduler": scheduler_state(scheduler),
                "scaler": scaler.state_dict(), "rng": rng_state(),
            }
            rows.append(row)
            if is_main():
                meta = {"plan_hash": setup.key, "role": setup.role, "epoch": str(epoch + 1)}
                estimate = folder.commit_epoch(parts, state, meta, rows, improved=improved, estimate=estimate)
                loggers.epoch(row)
            barrier()
            report.log(_epoch_line(row, setup.role, stop))
    finally:
        report.stop()
        loggers.close()
    done = rows[-1]["epoch"] if rows else start
    return TrainResult(folder.path, done, setup.epochs, best, rows[-1] if rows else {})


def _logit_temperature(setup: Setup, train: Any, recorded: dict[str, Any], report: RunProgress) -> dict[str, float]:
    """Choose kd's ``temperature: auto`` from the teacher, before the first step; what the metrics record of it.

    A resumed run takes the confidence its first epoch recorded, so it goes on at the
    temperature it started with.
    """
    objective = setup.objective
    if not getattr(objective, "needs_teacher_confidence", False):
        return {}
    resumed = "teacher_confidence" in recorded
    if resumed:
        confidence = float(recorded["teacher_confidence"])
    else:
        confidence, images = teacher_confidence(setup.system, train, setup.device, rank=rank(),
                                                world_size=world_size())
    temperature = objective.set_teacher_confidence(confidence)
    if not resumed:
        threshold = objective.logit_temperature_threshold
        report.log(f"logit temperature (auto): the teacher's mean top probability on {images} training images is "
                   f"{confidence:.3f}, {'at or above' if temperature == CONFIDENT_TEMPERATURE else 'below'} "
                   f"distill.logits.auto_threshold {threshold:g}: T {temperature:g}")
    return {"teacher_confidence": confidence, "logit_temperature": temperature}


def _train_set(train: Any, setup: Setup) -> Any:
    """The training set, its items carrying their position when the method keeps a memory per image."""
    if not getattr(setup.objective, "needs_index", False):
        return train
    if isinstance(train, IterableDataset):
        raise TrainError(f"method {setup.plan.method} keeps a memory slot per training image, which a streamed "
                         "dataset cannot number: use a map-style dataset (not data.streaming, not wds)")
    return WithIndex(train)


def _evaluate(
    system: torch.nn.Module, test: DataLoader, val: DataLoader | None, device: torch.device,
    precision: Any, names: dict[str, str],
) -> dict[str, float]:
    """Top-1/top-5 on the test split (``<name>_top1``) and on the validation split (``val_<name>_top1``)."""
    results = accuracy(system, test, device, precision, names)
    if val is not None:
        results |= {f"val_{k}": v for k, v in accuracy(system, val, device, precision, names).items()}
    return results


def _checkpoint_parts(setup: Setup, ema: ModelEmaV3 | None) -> dict[str, dict[str, torch.Tensor]]:
    # Each part from its own module's state_dict: nothing is written twice under one prefix.
    parts = {name: module.state_dict() for name, module in setup.optimised.items()}
    if ema is not None:
        parts["ema"] = ema.module.state_dict()
    return parts


def _checkpoint_bytes(setup: Setup, ema: ModelEmaV3 | None, optimizer: torch.optim.Optimizer) -> int:
    """Bytes of a checkpoint before one is written: weights, optimizer slots, and headers.

    The optimizer's state is created lazily at its first step, so its slots are
    counted from its kind (SGD momentum: 1 per parameter, AdamW: 2). After the first
    save, the real size of ``last/`` is used instead.
    """
    weights = sum(t.numel() * t.element_size() for sd in _checkpoint_parts(setup, ema).values() for t in sd.values())
    params = [p for group in optimizer.param_groups for p in group["params"]]
    slots = 2 if isinstance(optimizer, torch.optim.AdamW | torch.optim.Adam) else 1
    slot_bytes = slots * sum(p.numel() * p.element_size() for p in params)
    return weights + slot_bytes + 1024 * (len(params) + 64)  # headers and key names, generously


def _spec_yaml(spec: Any) -> str:
    """The run's ``spec.yaml``: the resolved spec, standing alone."""
    dump = spec.model_dump(mode="json")
    dump.pop("extends", None)  # resolved already
    return yaml.safe_dump(dump, sort_keys=False)


def _changed_spec(folder: RunFolder, changes: list[tuple[str, Any, Any]], epoch: int, role: str) -> str:
    """Why a resume stops when the spec differs from the run's record, and the ways forward."""
    role_flag = " --role teacher" if role == "teacher" else ""  # a teacher fit's record names the run above it
    return (
        f"refusing to resume {folder.path}: the spec differs from the {folder.spec_file} its {epoch} "
        f"epoch{'s were' if epoch != 1 else ' was'} trained with: {describe_changes(changes)}. "
        f"To continue the run as recorded, leave the changes out (or resume the record itself: "
        f"`tasgen train {folder.spec_file}{role_flag} --resume`). To continue it under the new settings, add "
        f"--accept-changes (spec.yaml is rewritten; the old one is kept as spec.until-epoch-{epoch}.yaml). "
        "Or start a new run (another name: --set name=...), or start this one over with --overwrite."
    )


def _load_optimizer_under_new_settings(
    optimizer: torch.optim.Optimizer, state: dict[str, Any], changes: list[tuple[str, Any, Any]]
) -> None:
    """The checkpoint's optimizer slots (momentum, moments) under the new spec's hyper-parameters.

    ``load_state_dict`` would bring back the recorded learning rate, weight decay and
    momentum; the new spec's are put back over them. Another optimizer, or parameters
    grouped otherwise (weight decay switched on or off), starts with fresh slots (SGD's
    momentum means nothing to AdamW).
    """
    if any(key == "train.optimizer.name" for key, _, _ in changes):
        return
    settings = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    try:
        optimizer.load_state_dict(state)
    except ValueError:  # another number or size of parameter groups
        return
    for group, new in zip(optimizer.param_groups, settings, strict=True):
        group.update(new)


def _changed_plan(found: Path, state: dict[str, Any], setup: Setup, folder: RunFolder) -> str:
    """Why a checkpoint does not fit this spec, in the spec's words."""
    from tasgen.spec.load import SpecError, load_run_spec

    changed, before = "", {}
    try:
        before = load_run_spec(folder.spec_file).spec.model_dump(mode="json")
        changed = ", ".join(key for key, _, _ in spec_changes(before, setup.spec.model_dump(mode="json"))[:6])
    except (SpecError, OSError):
        pass
    head = (f"refusing to resume {found}: it was trained from plan {state.get('plan_hash')}, the spec now "
            f"gives plan {setup.key}.")
    if changed == "name":
        return (f"{head} The folder holds the run {before['name']!r} (copied or renamed?): a checkpoint resumes "
                f"only under the name it was trained as. Resume it as name: {before['name']} in its own folder, "
                "or start this one over with --overwrite.")
    if changed:
        return (f"{head} Changed since that run: {changed}. Restore them, start a new run (another name or "
                "train.output_dir), or start this one over with --overwrite.")
    return (f"{head} Start a new run (another name or train.output_dir), or start this one over with --overwrite.")


def _check_classes(dataset_classes: int, eval_images: int | None, setup: Setup, report: RunProgress) -> None:
    """Refuse labels the model cannot output; warn of splits whose accuracy means little."""
    classes = setup.plan.num_classes
    if dataset_classes > classes:
        raise TrainError(
            f"the dataset has {dataset_classes} classes (labels 0..{dataset_classes - 1}) but num_classes = {classes}: "
            f"set num_classes: {dataset_classes} in the spec, or leave it out"
        )
    if dataset_classes < 2:
        report.warn(f"the dataset has {dataset_classes} class: every prediction is right, so top-1 is 100 % "
                    "whatever the model learns. Check data.root (one folder per class).")
    if eval_images is not None and eval_images < classes:
        report.warn(f"the eval split holds {eval_images} image{'s' if eval_images != 1 else ''}, fewer than the "
                    f"{classes} classes: its accuracy says little. Raise data.eval_fraction (or data.num_samples).")


def _check_finite(parts: dict[str, dict[str, torch.Tensor]], epoch: int, hint: str) -> None:
    floats = [(f"{p}.{k}", t) for p, sd in parts.items() for k, t in sd.items() if t.is_floating_point()]
    if torch.stack([torch.isfinite(t).all() for _, t in floats]).all():
        return
    bad = [name for name, t in floats if not torch.isfinite(t).all()]
    raise TrainError(
        f"weights became NaN/Inf in epoch {epoch} ({', '.join(bad[:4])}{', ...' if len(bad) > 4 else ''}); "
        f"not saved. {hint}"
    )


def _mfu_per_image_per_s(setup: Setup, device: torch.device, report: RunProgress) -> float | None:
    """MFU of one image per second on each device: model FLOPs per image / the GPU's matmul peak / processes.

    CUDA only: a CPU's matmul peak, measured once on a machine other work shares, is
    too unsteady to divide by (it gave MFU above 100 %). None, with a warning, when
    the models' FLOPs cannot be counted on the meta device.
    """
    if device.type != "cuda":
        return None
    try:
        flops = flops_per_image(setup)
    except Exception as exc:  # noqa: BLE001 - MFU is a diagnostic: a model it cannot count still trains
        report.warn(f"MFU is not logged: counting the step's FLOPs failed ({type(exc).__name__}: {exc})")
        return None
    return flops / matmul_peak(device) / world_size()


def _epoch_line(row: dict[str, Any], role: str, epochs: int) -> str:
    parts = [f"epoch {row['epoch']}/{epochs}", f"loss {row['loss']:.4f}"]
    # Every term under its full name: the bar, fitted to the terminal, may show them short or not at all.
    parts += [f"{key.removeprefix('loss.')} {value:.4g}" for key, value in row.items() if key.startswith("loss.")]
    if f"{role}_top1" in row:  # not on the epochs train.eval_every skips
        parts.append(f"{role} top-1 {row[f'{role}_top1']:.2f}%")
    if "assistant_top1" in row:
        parts.append(f"assistant top-1 {row['assistant_top1']:.2f}%")
    parts += [f"lr {row['lr']:.2e}", f"{row['images_per_s']:.0f} img/s"]
    parts += [f"MFU {row['mfu']:.1%}"] if "mfu" in row else []
    parts.append(f"{row['seconds']:.1f}s")
    return "  ".join(parts)
