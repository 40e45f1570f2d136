"""InfoNCE negatives under DDP: `distill.feature.negatives` global (gathered keys) or local."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tasgen.losses import TASObjective
from tasgen.plan import Losses
from tasgen.planner import plan_losses
from tasgen.spec.schema import DistillSpec

DIMS = {"teacher": 6, "student": 5}
BATCH = 8  # the global batch; each of the 2 processes holds half


def _spec(negatives: str) -> Losses:
    # InfoNCE teacher -> student alone, so the loss is the feature term only.
    return plan_losses(DistillSpec.model_validate({
        "ce": {"weight": 0.0},
        "feature": {"negatives": negatives, "learnable_temperature": False},
        "pairs": {"teacher_student": {"logit_weight": 0.0}, "teacher_assistant": {"enabled": False},
                  "assistant_student": {"enabled": False}},
    }))


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    # Labels with repeats, so the default same_class: ignore masks keys of the query's class, and a
    # process must gather the other's labels with its keys to mask the right ones.
    return {"teacher": torch.randn(BATCH, DIMS["teacher"], generator=g),
            "student": torch.randn(BATCH, DIMS["student"], generator=g),
            "labels": torch.arange(BATCH) % 3}


def _loss(objective: TASObjective, feats: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, gradient wrt the student's features)."""
    student = feats["student"].clone().requires_grad_()
    logits = torch.zeros(len(student), 3)
    outputs = {"teacher": (logits, feats["teacher"]), "student": (logits, student)}
    total, _ = objective(outputs, feats["labels"])
    total.backward()
    return total.detach(), student.grad


def _worker(rank: int, store_file: str, negatives: str, out_dir: str) -> None:
    import torch.distributed as tdist

    tdist.init_process_group("gloo", store=tdist.FileStore(store_file, 2), rank=rank, world_size=2)
    try:
        torch.manual_seed(0)  # the same projection heads in both processes, as DDP broadcasts them
        objective = TASObjective(_spec(negatives), DIMS, 3)
        half = {k: v[rank * BATCH // 2 : (rank + 1) * BATCH // 2] for k, v in _batch().items()}
        loss, grad = _loss(objective, half)
        head = objective.projector.heads["student"].weight.grad
        torch.save({"loss": loss, "grad": grad, "head": head}, Path(out_dir) / f"{rank}.pt")
    finally:
        tdist.destroy_process_group()


def _two_processes(tmp_path: Path, negatives: str) -> list[dict[str, torch.Tensor]]:
    out = tmp_path / negatives
    out.mkdir()
    torch.multiprocessing.spawn(_worker, args=(str(tmp_path / f"store-{negatives}"), negatives, str(out)),
                                nprocs=2, join=True)
    return [torch.load(out / f"{r}.pt") for r in (0, 1)]


def test_global_negatives_make_two_processes_equal_one_with_the_global_batch(tmp_path: Path) -> None:
    ranks = _two_processes(tmp_path, "global")
    torch.manual_seed(0)
    objective = TASObjective(_spec("global"), DIMS, 3)
    loss, grad = _loss(objective, _batch())
    head = objective.projector.heads["student"].weight.grad
    # DDP averages the ranks' gradients; each rank's loss is the mean over its half of the queries.
    assert loss > 0.1  # the default masks same-class keys, yet every query keeps negatives
    torch.testing.assert_close((ranks[0]["loss"] + ranks[1]["loss"]) / 2, loss)
    torch.testing.assert_close(torch.cat([r["grad"] for r in ranks]) / 2, grad)
    torch.testing.assert_close((ranks[0]["head"] + ranks[1]["head"]) / 2, head)


def test_local_negatives_see_only_their_process_batch(tmp_path: Path) -> None:
    ranks = _two_processes(tmp_path, "local")
    torch.manual_seed(0)
    objective = TASObjective(_spec("local"), DIMS, 3)
    batch = _batch()
    for rank, got in enumerate(ranks):
        half = {k: v[rank * BATCH // 2 : (rank + 1) * BATCH // 2] for k, v in batch.items()}
        torch.testing.assert_close(got["loss"], _loss(objective, half)[0])
    global_loss = _loss(objective, batch)[0]
    assert global_loss > 0.1  # not the trivial loss of a softmax over the positive alone
    assert (ranks[0]["loss"] + ranks[1]["loss"]) / 2 != pytest.approx(global_loss.item(), abs=1e-4)
