"""Systems built from models read as graphs (EVA-02, LeViT, XCiT, EfficientViM): sharing, gradients, source."""

from __future__ import annotations

import pytest
import torch

from tasgen.emit.source import assistant_source

from .test_system import _stage_calls, make, run_emitted

TINY_VIT = {"timm": "vit_tiny_patch16_224", "kwargs": {"depth": 4, "embed_dim": 64, "num_heads": 2}}
# (teacher, student, image size): EVA-02 returns (tokens, rope) from _pos_embed; LeViT
# flattens its stem's output in forward_features; XCiT passes H and W to every block.
PAIRS = {
    "eva02->cnn": ({"timm": "eva02_tiny_patch14_224", "kwargs": {"depth": 4}}, {"timm": "resnet10t"}, 56),
    "levit->vit": ({"timm": "levit_128s"}, TINY_VIT, 64),
    "xcit->cnn": ({"timm": "xcit_nano_12_p16_224", "kwargs": {"depth": 4}}, {"timm": "resnet10t"}, 64),
    # EfficientViM's head fuses every stage's hidden state: forward_features returns a list.
    "efficientvim->cnn": ({"timm": "efficientvim_m1"}, {"timm": "resnet10t"}, 64),
}


@pytest.mark.parametrize("pair", list(PAIRS), ids=list(PAIRS))
def test_graph_read_pair_trains_and_shares(pair: str) -> None:
    teacher, student, size = PAIRS[pair]
    _, plan, system = make(teacher, student, size)
    assert plan.table("teacher").reader == "graph"
    system.train()
    out = system(torch.rand(2, 3, size, size))
    for name, (logits, feat) in out.items():
        assert logits.shape == (2, 10), name
        assert feat.shape == (2, plan.feature_width(name))  # the final map, average pooled
    sum(o[0].square().mean() + o[1].square().mean() for k, o in out.items() if k != "teacher").backward()
    a = system.assistant
    assert all(p.grad is not None for p in a.bridge.parameters())
    assert all(p.grad is None for p in system.teacher.parameters())
    shared = [p for m in a.local.stage_modules(plan.split) for p in m.parameters()]
    assert plan.local_role == "student" and shared and all(p.grad is not None for p in shared)
    # The assistant owns the bridge only; borrowed stages are the models' own modules.
    assert {id(p) for p in a.parameters()} == {id(p) for p in a.bridge.parameters()}
    assert a.local.model is system.student and a.glob.model is system.teacher

    system.zero_grad(set_to_none=True)
    calls = _stage_calls(plan, system, size)
    student = {k: v for k, v in calls.items() if k.startswith("student")}
    assert student and set(student.values()) == {1}  # shared stages run once per step
    teacher_t = plan.table("teacher")
    for s in teacher_t.stages:
        want = 2 if s.index >= plan.global_start else 1  # the assistant reruns the teacher's later stages
        assert all(calls[f"teacher:{p}"] == want for p in s.modules), s.index


def test_carried_values_come_from_the_global_members_own_run() -> None:
    # XCiT's blocks read H and W besides their tokens: the assistant's global stage gets
    # them from the teacher's run at the bridge's depth, which the system made anyway.
    _, plan, system = make(*PAIRS["xcit->cnn"])
    a = system.assistant
    assert a.carries and plan.table("teacher").stage_input(plan.global_start).extras
    system.eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = system(x)["assistant"][0]
        alone = a(system.norm_student(x))  # runs the teacher's early stages itself
    torch.testing.assert_close(out, alone)


def test_graph_parts_follow_the_model_to_another_dtype() -> None:
    # Parts read parameters and buffers from the model when they run, so converting the
    # model (which replaces its buffers) leaves no part behind.
    _, _, system = make(*PAIRS["eva02->cnn"])
    system.eval().double()
    with torch.no_grad():
        out = system(torch.rand(2, 3, 56, 56, dtype=torch.float64))
    assert all(v[0].dtype == torch.float64 for v in out.values())


def test_graph_read_system_compiles_whole() -> None:
    _, _, system = make(*PAIRS["xcit->cnn"])
    system.eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        eager = system(x)
    torch._dynamo.reset()
    compiled = torch.compile(system, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        out = compiled(x)
    for name in eager:
        torch.testing.assert_close(out[name][0], eager[name][0], rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("pair", ["eva02->cnn", "xcit->cnn", "efficientvim->cnn"])
def test_emitted_source_of_graph_parts_reproduces_the_assistant(pair: str, tmp_path) -> None:
    teacher, student, size = PAIRS[pair]
    spec, plan, system = make(teacher, student, size)
    system.eval()
    x = system.norm_student(torch.rand(2, 3, size, size))
    with torch.no_grad():
        expected = system.assistant(x)
    source = assistant_source(spec, plan)
    assert "import tasgen" not in source and "from tasgen" not in source
    assert "def teacher_final(self" in source  # graph parts are emitted as Python
    run_emitted(tmp_path, source, system, {"x": x, "expected": expected})
