"""The OFA-KD baseline's exit branches: one per student stage, the last included."""

from __future__ import annotations

import pytest
import torch

from tasgen.emit.ofa import ExitBranch, OFASystem
from tasgen.losses import OFAObjective

from .test_system import PAIRS, SIZE, TINY_VIT, make


@pytest.mark.parametrize("pair", ["vit->cnn", "cnn->vit"])
def test_a_branch_on_every_student_stage_and_ofa_on_each(pair: str) -> None:
    spec, plan, system = make(*PAIRS[pair], distill={"method": "ofa"})
    ofa = OFASystem(system)
    stages = len(plan.student.stages)
    assert len(ofa.branches) == stages  # OFA-KD's default: stages 1..4 plus the final logits
    out = ofa(torch.rand(2, 3, SIZE, SIZE))
    assert set(out) == {"teacher", "student"} | {f"exit{i}" for i in range(1, stages + 1)}
    objective = OFAObjective(plan, len(ofa.branches))
    _, terms = objective(out, torch.tensor([1, 2]))
    assert list(terms) == ["ce", *[f"ofa.exit{i}" for i in range(1, stages + 1)], "ofa.final"]


def test_token_branches_read_the_class_token_when_the_stage_has_one() -> None:
    _, plan, system = make({"timm": "resnet18"}, TINY_VIT, distill={"method": "ofa"})
    ofa = OFASystem(system)
    assert all(s.prefix_tokens == 1 for s in plan.student.stages)
    assert all(b.prefix_tokens == 1 for b in ofa.branches)
    branch = ofa.branches[-1].eval()
    x = torch.randn(2, 17, TINY_VIT["kwargs"]["embed_dim"])
    y = x.clone()
    y[:, 1:] = torch.randn_like(y[:, 1:])  # other grid tokens, same class token
    torch.testing.assert_close(branch(x)[0], branch(y)[0])
    # Without prefix tokens (Mixer, ResMLP) the branch averages every token.
    mean_branch = ExitBranch("NLC", 8, 3).eval()
    z = torch.randn(2, 5, 8)
    torch.testing.assert_close(mean_branch(z)[1], mean_branch.body(z).mean(1))
