"""Export a run's student as a plain state_dict that a fresh model loads as is."""

from __future__ import annotations

import json
from pathlib import Path

from tasgen.checkpoint import (
    CheckpointError,
    read_weights,
    save_weights,
    split_prefixes,
)

from .errors import TrainError
from .run_folder import RunFolder, check_outside_runs


def export_student(run_dir: str | Path, out_path: str | Path, *, checkpoint: str = "best", ema: bool = False) -> Path:
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

    Returns:
        ``out_path``.

    Raises:
        TrainError: no checkpoint, or no EMA weights in it; ``out_path`` is a file of a run folder.
        CheckpointError: a corrupt checkpoint, or one that fails its integrity check.
        SpecError: the run's spec.yaml does not load.
    """
    from tasgen.spec.load import load_run_spec

    folder = RunFolder(Path(run_dir))
    out = Path(out_path)
    check_outside_runs([out], folder.path)
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
    out.parent.mkdir(parents=True, exist_ok=True)
    save_weights(parts[prefix], out, meta)
    return out
