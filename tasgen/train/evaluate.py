"""Top-1 / top-5 accuracy of a system's outputs, and of a finished run."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader

from .dist import all_reduce_sum
from .step import Precision, resolve_precision

if TYPE_CHECKING:
    from tasgen.spec.schema import DataSpec


@torch.no_grad()
def accuracy(
    system: nn.Module, loader: DataLoader, device: torch.device, precision: Precision, names: Mapping[str, str]
) -> dict[str, float]:
    """Top-1 and top-5 accuracy (%) of some of a system's outputs over a loader.

    Every process counts its shard; the counts are summed over processes.

    Args:
        system: images in [0, 1] -> ``{name: (logits, feature)}``; put in eval mode.
        loader: the eval loader.
        device: where the system runs.
        precision: the run's precision (autocast, memory format).
        names: output name -> metric prefix, e.g. ``{"student": "student"}``;
            outputs the system does not return are skipped.

    Returns:
        ``{"<prefix>_top1": .., "<prefix>_top5": ..}`` for every output present.
    """
    system.eval()
    counts: dict[str, torch.Tensor] = {}
    total = torch.zeros((), device=device, dtype=torch.long)
    for images, labels in loader:
        images = images.to(device, non_blocking=True)
        if precision.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = labels.to(device, non_blocking=True)
        with precision.autocast():
            outputs = system(images, members=tuple(names))  # only what is measured runs
        total += labels.numel()
        for key in names:
            if key not in outputs:
                continue
            logits = outputs[key][0]
            top = logits.topk(min(5, logits.shape[-1]), dim=-1).indices
            hits = top == labels[:, None]
            counts.setdefault(key, torch.zeros(2, device=device, dtype=torch.long))
            counts[key] += torch.stack([hits[:, 0].sum(), hits.any(dim=1).sum()])
    stacked = torch.stack([total.expand(2), *counts.values()]) if counts else total.expand(1, 2)
    stacked = all_reduce_sum(stacked.clone()).tolist()
    n = max(stacked[0][0], 1)
    result = {}
    for key, (top1, top5) in zip(counts, stacked[1:], strict=True):
        result[f"{names[key]}_top1"] = 100.0 * top1 / n
        result[f"{names[key]}_top5"] = 100.0 * top5 / n
    return result


EvalSplit = Literal["test", "val", "both"]


def evaluate(
    run_dir: str | Path,
    checkpoint: str = "best",
    device: torch.device | str | None = None,
    *,
    split: EvalSplit = "both",
    data: DataSpec | None = None,
) -> dict[str, Any]:
    """Accuracy of a run's student, assistant and teacher on the test and validation splits.

    The run is rebuilt from ``spec.yaml``, ``plan.json`` and the ``best`` (else
    ``last``) checkpoint; the teacher from the weights the run used.

    Args:
        run_dir: the run folder (``<output_dir>/<name>``; or a teacher's fit folder).
        checkpoint: "best" or "last".
        device: where to run; the GPU when there is one by default.
        split: "test", "val" (the validation split held out of the training images)
            or "both"; "both" skips a validation split the data does not have.
        data: other data to evaluate on (see `tasgen.spec.load_eval_data`), split by
            its own fields; default: the run's. Its class count must be the run's.

    Returns:
        ``{"student_top1", "student_top5", "assistant_top1", ..., "teacher_top1", ...,
        "images"}`` on the test split, and ``{"val_student_top1", ..., "val_images"}``
        on the validation split; ``"epoch"``, and ``"data"`` (the dataset's name). A
        teacher's fit reports ``teacher_*`` only.

    Raises:
        TrainError: no validation split where ``split="val"``; data of another class count.
    """
    from tasgen.data import build_datasets, build_eval_loader

    from .errors import TrainError
    from .setup import restore_run

    setup, state = restore_run(run_dir, checkpoint, device)
    spec = setup.spec
    data = data if data is not None else spec.data
    splits = build_datasets(data)
    if data is not spec.data and splits.info.num_classes != setup.plan.num_classes:
        raise TrainError(f"the evaluation data ({splits.info.name}) has {splits.info.num_classes} classes; "
                         f"the run's models predict {setup.plan.num_classes}")
    if split == "val" and splits.val is None:
        raise TrainError(f"{splits.info.name} has no validation split here (data.val_fraction is "
                         f"{data.val_fraction}); use --split test")
    precision = resolve_precision(spec.train.precision, spec.train.channels_last, setup.device)
    names = {"student": setup.role, "assistant": "assistant", "teacher": "teacher"}
    result: dict[str, Any] = {"epoch": int(state.get("epoch", 0)), "data": splits.info.name}
    if split in ("test", "both"):
        test_loader = build_eval_loader(splits.test, data, spec.seed)
        result |= accuracy(setup.system, test_loader, setup.device, precision, names)
        result["images"] = splits.info.num_test
    if split in ("val", "both") and splits.val is not None:
        val = accuracy(setup.system, build_eval_loader(splits.val, data, spec.seed), setup.device, precision, names)
        result |= {f"val_{key}": value for key, value in val.items()}
        result["val_images"] = splits.info.num_val
    return result
