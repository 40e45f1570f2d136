"""Export a run's student, or its whole assistant, as a plain state_dict that a fresh model loads as is."""

from __future__ import annotations

import json
from pathlib import Path

from tasgen.checkpoint import (
    CheckpointError,
    read_weights,
    save_weights,
    split_prefixes,
)
from tasgen.output import check_output, written_file

from .errors import TrainError
from .run_folder import RunFolder, check_outside_runs


def export_student(
    run_dir: str | Path, out_path: str | Path, *, checkpoint: str = "best", ema: bool = False, overwrite: bool = False
) -> Path:
    """Write the run's student weights as safetensors, without any prefix.

    The file loads with ``load_state_dict`` into ``timm.create_model(name,
    num_classes=N, **kwargs)`` (or ``Backbone.from_spec(...)`` for a stage-described
    student); the header's metadata says how it was built (``timm``, ``num_classes``,
    ``kwargs``; models that take ``img_size`` were built with the run's image size).

    Args:
        run_dir: the run folder.
        out_path: the ``.safetensors`` file to write.
        checkpoint: "best" (default) or "last"; falls back to the other one.
        ema: export the EMA weights (the run must have had ``train.ema.enabled``).
        overwrite: replace an existing ``out_path`` (see `tasgen.output` for the policy).

    Returns:
        ``out_path``.

    Raises:
        OutputError: ``out_path`` cannot be written (exists, is a folder, read-only).
        TrainError: no checkpoint, or no EMA weights in it; ``out_path`` is a file of a run folder.
        CheckpointError: a corrupt checkpoint, or one that fails its integrity check.
        SpecError: the run's spec.yaml does not load.
    """
    from tasgen.spec.load import load_run_spec

    # Before reading the checkpoint: a refusal costs nothing. A run folder's files first: they are
    # refused even with --overwrite, and the message says why.
    folder = RunFolder(Path(run_dir))
    check_outside_runs([Path(out_path)], folder.path)
    check_output(out_path, overwrite=overwrite)
    found = folder.checkpoint(checkpoint)  # verified against its manifest
    parts = split_prefixes(read_weights(found / "model.safetensors"))
    prefix = "ema" if ema else "student" if "student" in parts else "teacher"
    if prefix not in parts:
        hint = " (the run had no train.ema.enabled)" if ema else ""
        raise CheckpointError(f"{found} holds no {prefix} weights{hint}")
    spec = load_run_spec(folder.spec_file).raw if folder.spec_file.is_file() else {}
    try:
        plan = json.loads(folder.plan_file.read_text(encoding="utf-8")) if folder.plan_file.is_file() else {}
    except (ValueError, RecursionError):
        raise TrainError(f"{folder.plan_file} is not valid JSON; the run folder was altered") from None
    if not isinstance(plan, dict):
        raise TrainError(f"{folder.plan_file} is not a tasgen plan; the run folder was altered")
    model = (spec.get("student") if prefix != "teacher" else spec.get("teacher")) or {}
    meta = {"source": str(found), "num_classes": str(plan.get("num_classes", "")), "image_size": str(plan.get("image_size", ""))}
    if "timm" in model:
        meta |= {"timm": model["timm"], "kwargs": json.dumps(model.get("kwargs", {}))}
    else:
        meta["backbone"] = json.dumps({k: v for k, v in model.items() if k not in ("checkpoint",)})
    with written_file(out_path, overwrite=overwrite) as staged:
        save_weights(parts[prefix], staged, meta)
    return Path(out_path)


def export_assistant(
    run_dir: str | Path, out_path: str | Path, *, checkpoint: str = "best", overwrite: bool = False
) -> Path:
    """Write a TAS run's whole assistant as safetensors: its bridge and the stages it borrows.

    The keys are those of the standalone ``Assistant`` that ``tasgen emit SPEC -o
    assistant.py`` writes (``local.*``, ``glob.*``, ``bridge.*``; see
    `Assistant.standalone_state_dict`), so ``Assistant().load_state_dict(load_file(out))``
    takes the file as is. The borrowed stages are the trained student's and the
    teacher's (or the fine-tuned teacher copy's) weights; the header's metadata names
    the plan.

    Args:
        run_dir: the run folder of a ``distill.method: tas`` run.
        out_path: the ``.safetensors`` file to write.
        checkpoint: "best" (default) or "last"; falls back to the other one.
        overwrite: replace an existing file (`tasgen.output`'s policy).

    Returns:
        ``out_path``.

    Raises:
        TrainError: the run has no assistant (another method, a teacher fit), or its
            teacher's weights are gone.
        CheckpointError: a corrupt checkpoint, or one that fails its integrity check.
        SpecError: the run's spec.yaml does not load.
    """
    import torch

    from .setup import restore_run

    check_outside_runs([Path(out_path)], Path(run_dir))  # refused even with --overwrite
    check_output(out_path, overwrite=overwrite)
    setup, state = restore_run(run_dir, checkpoint, device=torch.device("cpu"))
    assistant = getattr(setup.system, "assistant", None)
    if setup.role == "teacher" or assistant is None:
        what = "a teacher fit" if setup.role == "teacher" else f"a distill.method: {setup.plan.method} run"
        raise TrainError(f"{run_dir} is {what}: only a tas run has an assistant. Export its student with "
                         f"`tasgen export {run_dir} -o student.safetensors`.")
    meta = {"plan_hash": setup.plan.hash, "epoch": str(state.get("epoch", "")), "num_classes": str(setup.plan.num_classes),
            "image_size": str(setup.plan.image_size), "load": "Assistant().load_state_dict(...) of `tasgen emit SPEC -o assistant.py`"}
    with written_file(out_path, overwrite=overwrite) as staged:
        save_weights(assistant.standalone_state_dict(), staged, meta)
    return Path(out_path)
