"""Planner invariants over every ordered pair of a set of timm models."""

from __future__ import annotations

import itertools

import pytest

from tasgen.arch.models import stage_table
from tasgen.arch.table import GLOBAL_MIXERS
from tasgen.plan import Plan
from tasgen.planner import (
    PlanError,
    build_plan,
    candidate_paths,
    local_student,
    pair_roles,
    resolve_feature_loss,
    stage_graph,
)
from tasgen.spec.schema import BackboneSpec, Spec, TimmModelSpec
from tests.models import PAIR_MODELS

SIZE = 224


@pytest.fixture(scope="module")
def tables():
    return {n: stage_table(TimmModelSpec(timm=n), role="x", num_classes=100, image_size=SIZE) for n in PAIR_MODELS}


def _spec(teacher: dict, student: dict, **extra) -> Spec:
    return Spec.model_validate({"name": "t", "teacher": teacher, "student": student, **extra})


def _plan(tables, t: str, s: str, **extra) -> Plan:
    spec = _spec({"timm": t}, {"timm": s}, **extra)
    return build_plan(spec, tables[t], tables[s], num_classes=100, image_size=SIZE)


@pytest.mark.parametrize(("teacher", "student"), list(itertools.permutations(PAIR_MODELS, 2)))
def test_every_pair_has_a_plan_that_keeps_local_before_global(tables, teacher: str, student: str) -> None:
    plan = _plan(tables, teacher, student)
    mixers = [p.mixer for p in plan.assistant if p.name.startswith("stage")]
    first_global = next((i for i, m in enumerate(mixers) if m in GLOBAL_MIXERS), len(mixers))
    assert "conv" not in mixers[first_global:], mixers
    # The assistant changes source exactly once, through the bridge.
    sources = [p.source for p in plan.assistant]
    bridge = sources.index("new")
    assert set(sources[:bridge]) == {plan.local_role} and set(sources[bridge + 1 :]) == {plan.global_role}
    # Labels: student parts shared, teacher parts frozen, the bridge new.
    for part in plan.assistant:
        expected = {"student": "shared", "teacher": "frozen", "new": "new"}[part.source]
        assert part.ownership == expected, part
    # The bridge maps the local stage's output to what the global stage expects.
    local = plan.table(plan.local_role).stages[plan.split - 1]
    target = plan.table(plan.global_role).stage_input(plan.global_start)
    assert (plan.bridge.in_channels, plan.bridge.in_reduction, plan.bridge.in_layout) == (
        local.channels, local.reduction, local.layout)
    assert (plan.bridge.out_channels, plan.bridge.out_reduction, plan.bridge.out_layout,
            plan.bridge.out_prefix_tokens) == (target.channels, target.reduction, target.layout, target.prefix_tokens)
    assert [c for c in plan.candidates if c.valid][0].split == plan.split
    # JSON parses back into the same Plan.
    again = Plan.from_json(plan.to_json())
    assert again == plan and again.hash == plan.hash


def test_heterogeneous_pair_takes_cnn_early_stages(tables) -> None:
    plan = _plan(tables, "deit_tiny_patch16_224", "resnet18")
    assert (plan.pair, plan.local_role, plan.split, plan.global_start) == ("heterogeneous", "student", 3, 4)
    plan = _plan(tables, "convnext_atto", "deit_tiny_patch16_224")
    assert (plan.local_role, plan.split, plan.global_start) == ("teacher", 3, 4)
    assert plan.bridge.out_layout == "NLC" and plan.bridge.out_prefix_tokens == 1


def test_homogeneous_pair_takes_student_early_stages(tables) -> None:
    assert pair_roles(tables["convnext_atto"], tables["resnet18"]) == ("homogeneous", "student", "teacher")
    assert pair_roles(tables["swin_tiny_patch4_window7_224"], tables["resmlp_12_224"])[1] == "student"


def test_candidates_are_all_single_bridge_paths(tables) -> None:
    local, glob = tables["resnet18"], tables["deit_tiny_patch16_224"]
    g = stage_graph(glob, local, "student")
    paths = candidate_paths(g)
    assert len(paths) == len(local.stages) * len(glob.stages)
    plan = _plan(tables, "deit_tiny_patch16_224", "resnet18")
    assert len(plan.candidates) == len(paths)


def test_fixed_split_and_start_are_obeyed(tables) -> None:
    plan = _plan(tables, "deit_tiny_patch16_224", "resnet18", assistant={"split": 2, "global_start": 3})
    assert (plan.split, plan.global_start) == (2, 3)
    rejected = [c for c in plan.candidates if not c.valid]
    assert all("spec fixes" in c.reason for c in rejected)


def test_finetuned_teacher_stages_are_labelled(tables) -> None:
    plan = _plan(tables, "deit_tiny_patch16_224", "resnet18", assistant={"teacher_stages": "finetune"})
    assert {p.ownership for p in plan.assistant if p.source == "teacher"} == {"finetune"}


def test_same_spec_gives_the_same_hash(tables) -> None:
    a = _plan(tables, "swin_tiny_patch4_window7_224", "mobilenetv2_100")
    b = _plan(tables, "swin_tiny_patch4_window7_224", "mobilenetv2_100")
    c = _plan(tables, "swin_tiny_patch4_window7_224", "mobilenetv2_100", distill={"logits": {"temperature": 2.0}})
    assert a.hash == b.hash != c.hash


def test_loss_pairs_follow_the_spec(tables) -> None:
    plan = _plan(tables, "deit_tiny_patch16_224", "resnet18",
                 distill={"pairs": {"assistant_student": {"enabled": False}}, "feature": {"loss": "none"}})
    assert [p.name for p in plan.loss_pairs] == ["teacher_student", "teacher_assistant"]
    assert all(p.feature_weight == 0 for p in plan.loss_pairs)
    kd = _plan(tables, "deit_tiny_patch16_224", "resnet18", distill={"method": "kd"})
    assert [(p.target, p.learner) for p in kd.loss_pairs] == [("teacher", "student")]


@pytest.mark.parametrize(("teacher", "student", "expected"), [
    ("deit_tiny_patch16_224", "resnet18", "none"),  # a CNN student of a ViT teacher: the local member
    ("resmlp_12_224", "mobilenetv2_100", "none"),  # ... of an MLP teacher
    ("convnext_atto", "deit_tiny_patch16_224", "infonce"),  # the teacher gives the local stages
    ("convnext_atto", "resnet18", "none"),  # homogeneous: the student's stages lead the assistant
    ("swin_tiny_patch4_window7_224", "deit_tiny_patch16_224", "none"),  # ... of two ViTs too
    ("deit_tiny_patch16_224", "resmlp_12_224", "none"),  # ViT and MLP: both global, a homogeneous pair
    ("resnet18", "resmlp_12_224", "infonce"),  # an MLP student of a CNN teacher: the teacher's stages lead
])
def test_auto_feature_loss_follows_the_pairs_shape(tables, teacher: str, student: str, expected: str) -> None:
    """``distill.feature.loss: auto`` is the plan with that value spelled out: same terms, same hash."""
    auto = _plan(tables, teacher, student)
    spelled = _plan(tables, teacher, student, distill={"feature": {"loss": expected}})
    other = _plan(tables, teacher, student, distill={"feature": {"loss": "infonce" if expected == "none" else "none"}})
    assert auto.feature["loss"] == expected
    assert auto.hash == spelled.hash != other.hash
    assert any(p.feature_weight > 0 for p in auto.loss_pairs) == (expected == "infonce")
    assert local_student(auto.local_role) == (expected == "none")


def test_resolve_feature_loss_keeps_what_is_set_and_reads_roles_only_for_auto() -> None:
    assert resolve_feature_loss("auto", ("heterogeneous", "student")) == "none"
    assert resolve_feature_loss("auto", ("heterogeneous", "teacher")) == "infonce"
    assert resolve_feature_loss("auto", ("homogeneous", "student")) == "none"
    assert resolve_feature_loss("auto", None) == "infonce"  # an objective built without a plan: the paper's
    for loss in ("infonce", "none"):
        assert {resolve_feature_loss(loss, r) for r in (None, ("heterogeneous", "student"))} == {loss}


def test_pair_without_valid_path_names_the_stages() -> None:
    # A teacher that mixes globally before locally leaves no local-to-global path.
    backwards = BackboneSpec.model_validate({
        "stem": {"channels": 16, "stride": 4},
        "stages": [{"mixer": "attention", "channels": 32, "depth": 1, "stride": 2},
                   {"mixer": "conv", "channels": 64, "depth": 1, "stride": 2}],
    })
    student = TimmModelSpec(timm="resnet18")
    t = stage_table(backwards, role="teacher", num_classes=10, image_size=64)
    s = stage_table(student, role="student", num_classes=10, image_size=64)
    spec = Spec(name="x", teacher=backwards, student=student)
    with pytest.raises(PlanError) as err:
        build_plan(spec, t, s, num_classes=10, image_size=64)
    assert "student stage 1 -> teacher stage 1" in str(err.value)
    assert "global stage before a local one" in str(err.value)


def test_unstaged_model_is_refused_with_the_reason() -> None:
    # A table tasgen can plan from but not run part by part (what the readers give
    # when neither the chain nor the graph reproduces forward_features).
    t = stage_table(TimmModelSpec(timm="levit_128s"), role="teacher", num_classes=10, image_size=224)
    reason = "cannot run levit_128s stage by stage: its forward_features has control flow that depends on tensor values"
    t = t.model_copy(update={"staged": False, "staged_error": reason})
    s = stage_table(TimmModelSpec(timm="resnet18"), role="student", num_classes=10, image_size=224)
    spec = _spec({"timm": "levit_128s"}, {"timm": "resnet18"})
    with pytest.raises(PlanError, match="teacher levit_128s: cannot run levit_128s stage by stage: its forward"):
        build_plan(spec, t, s, num_classes=10, image_size=224)


def test_auto_heads_is_the_blocks_rule() -> None:
    from tasgen.blocks import default_num_heads
    from tasgen.planner import auto_heads

    assert all(auto_heads(c) == default_num_heads(c) for c in range(1, 1025))


@pytest.mark.parametrize(
    ("window", "grid", "expected"),
    [(7, 14, 7), (7, 56, 7), (7, 8, 4), (7, 16, 4), (7, 12, 6), (7, 4, 4), (7, 2, 2), (7, 1, 1),
     (7, 13, 13), (7, 11, 11), (7, 9, 9), (3, 8, 2), (32, 8, 8)],
)
def test_bridge_window_tiles_the_grid(window: int, grid: int, expected: int) -> None:
    """The window divides the grid (no padded positions); a prime grid gets one global window."""
    from tasgen.planner import bridge_window

    got = bridge_window(window, grid)
    assert got == expected
    assert grid % got == 0


def test_the_plan_bridge_window_divides_an_8x8_grid(tables) -> None:
    """deit_tiny at 128 px has an 8x8 grid: the bridge's window is 4, not a 7 padded to 14x14."""
    t = stage_table(TimmModelSpec(timm="deit_tiny_patch16_224"), role="x", num_classes=10, image_size=128)
    s = stage_table(TimmModelSpec(timm="resnet18"), role="x", num_classes=10, image_size=128)
    plan = build_plan(_spec({"timm": "deit_tiny_patch16_224"}, {"timm": "resnet18"}), t, s,
                      num_classes=10, image_size=128)
    assert plan.bridge.window_size == 4
