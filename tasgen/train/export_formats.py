"""Export a run's student the ways timm users share models: a timm folder (local or on the Hub) and ONNX.

Both start from `export_student` (the checkpoint is found, read and checked there)
and rebuild the model the weights belong to, so what is written is exactly the
student that ``tasgen eval`` measures.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from tasgen.checkpoint import read_weights
from tasgen.output import OutputError, check_output, prepare_output, written_file
from tasgen.spec.schema import BackboneSpec, TimmModelSpec

from .errors import TrainError
from .export import export_student
from .run_folder import RunFolder, check_outside_runs

__all__ = ["ONNX_ATOL", "export_onnx", "export_timm", "exported_model"]

ONNX_ATOL = 1e-4
"""Largest |logit difference| allowed between onnxruntime and PyTorch on the export check."""


def exported_model(run_dir: str | Path, *, checkpoint: str = "best", ema: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """The run's student (or fitted teacher) as a plain eval-mode model holding the trained weights.

    Returns:
        ``(model, info)``; info has ``num_classes``, ``image_size``, ``mean``, ``std``
        and ``timm`` (the timm name, or None for a stage-described backbone).
    """
    from tasgen.arch.models import create_model

    folder = Path(run_dir)
    with tempfile.TemporaryDirectory() as tmp:
        file = export_student(folder, Path(tmp) / "weights.safetensors", checkpoint=checkpoint, ema=ema)
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as f:
            meta = f.metadata() or {}
        state = read_weights(file)
    num_classes, image_size = int(meta["num_classes"]), int(meta["image_size"])
    if "timm" in meta:
        spec: TimmModelSpec | BackboneSpec = TimmModelSpec(timm=meta["timm"], kwargs=json.loads(meta.get("kwargs", "{}")))
    else:
        spec = BackboneSpec.model_validate(json.loads(meta["backbone"]))
    model = create_model(spec, num_classes=num_classes, image_size=image_size, device="cpu")
    model.load_state_dict(state)
    model.eval()
    plan = json.loads(RunFolder(folder).plan_file.read_text(encoding="utf-8"))
    role = _exported_role(folder, meta)
    table = plan[role]
    info = {"num_classes": num_classes, "image_size": image_size, "mean": tuple(table["mean"]),
            "std": tuple(table["std"]), "timm": meta.get("timm"), "role": role}
    return model, info


def export_timm(
    run_dir: str | Path, out_dir: str | Path, *, checkpoint: str = "best", ema: bool = False, push_to_hub: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the student as a timm model folder: ``config.json`` + ``model.safetensors`` (timm's ``save_for_hf``).

    ``timm.create_model("local-dir:OUT_DIR", pretrained=True)`` rebuilds it with the
    trained weights; ``config.json`` records the architecture, its arguments (image
    size, widths, classes) and the preprocessing (input size, mean, std).

    Args:
        run_dir: the run folder.
        out_dir: the folder to write (created; see `tasgen.output` for the policy).
        checkpoint: "best" (default) or "last".
        ema: export the EMA weights.
        push_to_hub: also upload to this Hugging Face Hub repo (``ORG/NAME``) with
            timm's ``push_to_hf_hub`` (needs network and a token: ``hf auth login``).
        overwrite: write into a folder that holds files (those of the same names are replaced).

    Returns:
        ``out_dir``.

    Raises:
        OutputError: ``out_dir`` cannot be written (a file, a folder with files, read-only).
        TrainError: the student is a stage-described backbone (no timm architecture),
            or the upload failed.
    """
    import timm.models

    # A run folder's files first: they are refused even with --overwrite, with the reason.
    check_outside_runs([Path(out_dir) / name for name in ("model.safetensors", "config.json")], Path(run_dir))
    check_output(out_dir, kind="folder", overwrite=overwrite)
    model, info = exported_model(run_dir, checkpoint=checkpoint, ema=ema)
    if info["timm"] is None:
        raise TrainError(
            f"--format timm needs a timm {info['role']}; this one is a stage-described backbone "
            "(export it with --format safetensors or --format onnx)"
        )
    if info["timm"].startswith(("hf-hub:", "hf_hub:", "local-dir:")):
        raise TrainError(f"--format timm: {info['timm']} names no timm architecture of its own; export with --format safetensors")
    from tasgen.arch.models import trained_cfg

    model.pretrained_cfg = model.default_cfg = trained_cfg(
        model.pretrained_cfg, image_size=info["image_size"], num_classes=info["num_classes"], mean=info["mean"],
        std=info["std"])
    data_config = {"input_size": (3, info["image_size"], info["image_size"]), "mean": info["mean"], "std": info["std"]}
    out = prepare_output(out_dir, kind="folder", overwrite=overwrite)
    try:
        timm.models.save_for_hf(model, str(out), safe_serialization=True, data_config=data_config)
        _drop_default_crop(out / "config.json")
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    if push_to_hub is not None:
        try:
            timm.models.push_to_hf_hub(model, push_to_hub, data_config=data_config, safe_serialization=True,
                                       commit_message=f"tasgen export of {Path(run_dir).name}")
        except Exception as exc:  # noqa: BLE001 - network, auth and hub errors alike: one message
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise TrainError(
                f"could not push to the Hub repo {push_to_hub} ({first}). Log in with `hf auth login` "
                f"(or set HF_TOKEN) where there is network; the folder {out} was written and can be uploaded as is."
            ) from None
    return out


def export_onnx(
    run_dir: str | Path, out_path: str | Path, *, checkpoint: str = "best", ema: bool = False, opset: int = 17,
    overwrite: bool = False,
) -> tuple[Path, float | None]:
    """Write the student as ONNX (input ``images``: normalised (B, 3, S, S); output ``logits``), batch dynamic.

    When onnxruntime is installed the file is checked: its logits on a random batch
    must equal PyTorch's within `ONNX_ATOL`; a file that fails the check is not
    written. An existing file is replaced only with ``overwrite`` (`tasgen.output`).

    Returns:
        ``(out_path, max |difference|)``; the difference is None without onnxruntime.

    Raises:
        OutputError: ``out_path`` cannot be written (exists, is a folder, read-only).
        TrainError: the export failed, or onnxruntime disagrees with PyTorch.
    """
    check_outside_runs([Path(out_path)], Path(run_dir))  # refused even with --overwrite
    check_output(out_path, overwrite=overwrite)
    model, info = exported_model(run_dir, checkpoint=checkpoint, ema=ema)
    size = info["image_size"]
    sample = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with written_file(out_path, overwrite=overwrite) as staged:
        try:
            with warnings.catch_warnings():
                # The TorchScript exporter needs no onnxscript; torch warns that it is the legacy one.
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                torch.onnx.export(
                    model, (sample,), str(staged), dynamo=False, opset_version=opset, input_names=["images"],
                    output_names=["logits"], dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                )
        except OSError:
            raise  # the file cannot be written: said by written_file, naming it
        except Exception as exc:  # noqa: BLE001 - the exporter's errors are many; the user needs one line
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise TrainError(f"torch.onnx.export failed for the {info['role']} ({first}); --format timm or safetensors "
                             "still work") from None
        diff = check_onnx(model, staged, size)
    return Path(out_path), diff


def check_onnx(model: nn.Module, path: Path, image_size: int) -> float | None:
    """Max |logit difference| of onnxruntime vs PyTorch on 3 random images (None without onnxruntime).

    Raises:
        TrainError: the difference exceeds `ONNX_ATOL`.
    """
    try:
        import onnxruntime
    except ImportError:
        return None
    x = torch.randn(3, 3, image_size, image_size, generator=torch.Generator().manual_seed(1))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (ort_logits,) = session.run(["logits"], {"images": x.numpy()})
    with torch.no_grad():
        ref = model(x)
    diff = float((torch.from_numpy(ort_logits) - ref).abs().max())
    if not diff <= ONNX_ATOL:
        raise TrainError(f"{path}: onnxruntime's logits differ from PyTorch's by {diff:.2e} (> {ONNX_ATOL}); do not ship it")
    return diff


def _drop_default_crop(config_file: Path) -> None:
    """Remove the crop timm's ``save_for_hf`` fills in from its defaults (``crop_pct``, ``crop_mode``).

    tasgen trains and evaluates on whole images, so an ImageNet-style centre crop is not
    true of the exported model (see `tasgen.arch.models.trained_cfg`).
    """
    config = json.loads(config_file.read_text(encoding="utf-8"))
    cfg = config.get("pretrained_cfg")
    if isinstance(cfg, dict):
        for key in _DEFAULT_CROP_KEYS:
            cfg.pop(key, None)
    config_file.write_text(json.dumps(config, indent=2), encoding="utf-8")


_DEFAULT_CROP_KEYS = ("crop_pct", "crop_mode")


def _exported_role(folder: Path, meta: dict[str, str]) -> str:
    """Whose table describes the exported weights: the student's, or (a teacher fit) the teacher's."""
    spec_file = RunFolder(folder).spec_file
    spec = yaml.safe_load(spec_file.read_text(encoding="utf-8")) if spec_file.is_file() else {}
    student = spec.get("student") or {}
    if "timm" in meta:
        return "student" if student.get("timm") == meta["timm"] else "teacher"
    return "student" if "stages" in student and json.loads(meta["backbone"]).get("stages") == student["stages"] else "teacher"
