"""Every baseline takes a training step on every pair of the study (heterogeneous ones
included), at the pair's own geometry: a few steps on untrained models, not a run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
PAIRS = sorted(p.name for p in (ROOT / "specs" / "study").glob("*.yaml"))
BASELINES = ["fitnet", "crd", "dkd", "dist"]


@pytest.mark.parametrize("pair", PAIRS)
def test_every_baseline_trains_on_every_study_pair(pair: str, tmp_path: Path) -> None:
    from tasgen.compiler import build_models, plan_spec
    from tasgen.spec.load import load_spec
    from tasgen.train.optim import build_optimizer
    from tasgen.train.setup import assemble_student_setup
    from tasgen.train.step import SystemLoss

    torch.manual_seed(0)
    for method in BASELINES:
        loaded = load_spec(ROOT / "specs" / "study" / pair, [f"distill.method={method}", "data.batch_size=4"])
        plan = plan_spec(loaded)
        teacher, student = build_models(loaded.spec, plan, device="cpu")
        setup = assemble_student_setup(loaded.spec, plan, tmp_path, torch.device("cpu"), teacher, student,
                                       num_train=12)
        step = SystemLoss(setup.system, setup.objective).train()
        optimizer = build_optimizer(setup.optimised, loaded.spec.train.optimizer)
        size = plan.image_size
        for index in (torch.tensor([0, 3, 7, 11]), torch.tensor([1, 2, 3, 4])):
            images, labels = torch.rand(4, 3, size, size), torch.randint(0, plan.num_classes, (4,))
            extra = (index,) if getattr(setup.objective, "needs_index", False) else ()
            total, terms = step(images, labels, *extra)
            assert set(terms) == set(setup.term_names) and torch.isfinite(total), (pair, method, terms)
            optimizer.zero_grad()
            total.backward()
            grads = [p.grad for p in setup.optimised.parameters() if p.requires_grad]
            assert all(g is not None and torch.isfinite(g).all() for g in grads), (pair, method)
            assert all(p.grad is None for p in teacher.parameters())  # the teacher never learns
            optimizer.step()
