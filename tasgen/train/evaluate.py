"""Top-1 / top-5 accuracy of a system's outputs, and of a finished run."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from .dist import all_reduce_sum
from .step import Precision, resolve_precision


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


def evaluate(run_dir: str | Path, checkpoint: str = "best", device: torch.device | str | None = None) -> dict[str, Any]:
    """Accuracy of a run's student, assistant and teacher on the test and validation splits.

    The run is rebuilt from ``spec.yaml``, ``plan.json`` and the ``best`` (else
    ``last``) checkpoint; the teacher from the weights the run used.

    Args:
        run_dir: the run folder (``<output_dir>/<name>``; or its ``teacher/`` fit).
        checkpoint: "best" or "last".
        device: where to run; the GPU when there is one by default.

    Returns:
        ``{"student_top1", "student_top5", "assistant_top1", ..., "teacher_top1", ...,
        "epoch", "images", "val_images"}`` on the test split, and the same keys prefixed
        ``val_`` on the validation split (when there is one). A teacher fit reports
        ``teacher_*`` only.
    """
    from tasgen.data import build_datasets, build_eval_loader

    from .setup import restore_run

    setup, state = restore_run(run_dir, checkpoint, device)
    spec = setup.spec
    splits = build_datasets(spec.data)
    precision = resolve_precision(spec.train.precision, spec.train.channels_last, setup.device)
    names = {"student": setup.role, "assistant": "assistant", "teacher": "teacher"}
    test_loader = build_eval_loader(splits.test, spec.data, spec.seed)
    result: dict[str, Any] = accuracy(setup.system, test_loader, setup.device, precision, names)
    if splits.val is not None:
        val = accuracy(setup.system, build_eval_loader(splits.val, spec.data, spec.seed), setup.device, precision, names)
        result |= {f"val_{key}": value for key, value in val.items()}
    result["epoch"] = int(state.get("epoch", 0))
    result["images"] = splits.info.num_test
    result["val_images"] = splits.info.num_val
    return result
