"""TASObjective: which terms exist, where gradients go, and that it compiles."""

from __future__ import annotations

import pytest
import torch

from tasgen.losses import TASObjective, cross_entropy, info_nce, kd_loss, ofa_loss
from tasgen.plan import Losses
from tasgen.planner import plan_losses
from tasgen.spec.schema import DistillSpec

NUM_CLASSES = 5
DIMS = {"teacher": 12, "assistant": 10, "student": 8}
ALL_TERMS = [
    "ce",
    "teacher_student.feature",
    "teacher_student.logit",
    "teacher_assistant.feature",
    "teacher_assistant.logit",
    "assistant_student.feature",
    "assistant_student.logit",
]


def _spec(**overrides: object) -> Losses:
    """The objective the planner derives from a distill section with ``overrides``."""
    return plan_losses(DistillSpec.model_validate(overrides))


def _outputs(batch: int = 6, seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return {
        role: (
            torch.randn(batch, NUM_CLASSES, generator=g).requires_grad_(),
            torch.randn(batch, width, generator=g).requires_grad_(),
        )
        for role, width in DIMS.items()
    }


TARGET = torch.tensor([0, 1, 2, 3, 4, 0])


def test_tas_builds_all_terms_and_sums_them() -> None:
    objective = TASObjective(_spec(), DIMS, NUM_CLASSES)
    total, terms = objective(_outputs(), TARGET)
    assert list(terms) == ALL_TERMS == objective.term_names
    assert objective.models == ("teacher", "assistant", "student")
    torch.testing.assert_close(total, sum(terms.values()))
    assert all(t.ndim == 0 and torch.isfinite(t) for t in terms.values())


def test_terms_are_the_weighted_pure_losses() -> None:
    spec = _spec(
        ce={"weight": 0.5, "label_smoothing": 0.1},
        logits={"loss": "ofa", "eps": 1.5, "temperature": 2.0},
        pairs={"teacher_student": {"feature_weight": 3.0, "logit_weight": 2.0}},
    )
    objective = TASObjective(spec, DIMS, NUM_CLASSES)
    outs = _outputs()
    _, terms = objective(outs, TARGET)
    (s_logits, s_feats), (t_logits, t_feats) = outs["student"], outs["teacher"]
    torch.testing.assert_close(terms["ce"], 0.5 * cross_entropy(s_logits, TARGET, 0.1))
    torch.testing.assert_close(
        terms["teacher_student.logit"], 2.0 * ofa_loss(s_logits, t_logits, TARGET, 1.5, 2.0)
    )
    proj, tau = objective.projector, objective.temperatures["teacher_student"]()
    # the default same_class: ignore (a query's other same-class keys leave its softmax)
    expected = 3.0 * info_nce(proj("student", s_feats), proj("teacher", t_feats), tau, 0, TARGET, TARGET, "ignore")
    torch.testing.assert_close(terms["teacher_student.feature"], expected)


@pytest.mark.parametrize("same_class", ["ignore", "positive"])
def test_same_class_reaches_every_infonce_term_with_the_batch_labels(same_class: str) -> None:
    """`feature.same_class` hands the labels (a mixup target's largest share) to each InfoNCE term."""
    objective = TASObjective(_spec(feature={"same_class": same_class}), DIMS, NUM_CLASSES)
    outs = _outputs()
    soft = torch.nn.functional.one_hot(TARGET, NUM_CLASSES).float() * 0.7 + 0.06  # mixup-like soft targets
    for target in (TARGET, soft):
        _, terms = objective(outs, target)
        proj = objective.projector
        for name, (t_role, s_role) in {"teacher_student": ("teacher", "student"),
                                        "assistant_student": ("assistant", "student")}.items():
            tau = objective.temperatures[name]()
            expected = info_nce(proj(s_role, outs[s_role][1]), proj(t_role, outs[t_role][1]), tau, 0,
                                TARGET, TARGET, same_class)
            torch.testing.assert_close(terms[f"{name}.feature"], expected)
            plain = info_nce(proj(s_role, outs[s_role][1]), proj(t_role, outs[t_role][1]), tau)
            assert not torch.allclose(terms[f"{name}.feature"], plain)  # TARGET repeats class 0


def test_disabled_pair_and_zero_weights_build_nothing() -> None:
    spec = _spec(
        pairs={
            "teacher_assistant": {"enabled": False},
            "assistant_student": {"logit_weight": 0.0},
            "teacher_student": {"feature_weight": 0.0},
        }
    )
    objective = TASObjective(spec, DIMS, NUM_CLASSES)
    _, terms = objective(_outputs(), TARGET)
    assert list(terms) == ["ce", "teacher_student.logit", "assistant_student.feature"]
    assert set(objective.temperatures) == {"assistant_student"}
    assert set(objective.projector.heads) == {"assistant", "student"}


def test_feature_loss_none_drops_feature_terms_and_heads() -> None:
    objective = TASObjective(_spec(feature={"loss": "none"}), {}, NUM_CLASSES)
    _, terms = objective(_outputs(), TARGET)
    assert list(terms) == [
        "ce",
        "teacher_student.logit",
        "teacher_assistant.logit",
        "assistant_student.logit",
    ]
    assert len(objective.projector.heads) == 0 and len(objective.temperatures) == 0


def test_missing_feature_dims_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="assistant"):
        TASObjective(_spec(), {"teacher": 12, "student": 8}, NUM_CLASSES)


def _grads(loss: torch.Tensor, outs: dict) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    leaves = [t for role in DIMS for t in outs[role]]
    grads = torch.autograd.grad(loss, leaves, retain_graph=True, allow_unused=True)
    zero = [torch.zeros_like(t) if g is None else g for t, g in zip(leaves, grads, strict=True)]
    return {role: (zero[2 * i], zero[2 * i + 1]) for i, role in enumerate(DIMS)}


def test_targets_are_detached_learners_are_not() -> None:
    objective = TASObjective(_spec(), DIMS, NUM_CLASSES)
    outs = _outputs()
    total, terms = objective(outs, TARGET)
    grads = _grads(total, outs)
    # The teacher is a target in every pair.
    assert all(g.abs().sum() == 0 for g in grads["teacher"])
    # The assistant learns from the teacher...
    assert all(g.abs().sum() > 0 for g in grads["assistant"])
    # ...and is only a (detached) target of the student: its gradient comes from T->A alone.
    from_teacher = _grads(
        terms["teacher_assistant.feature"] + terms["teacher_assistant.logit"], outs
    )
    for got, expected in zip(grads["assistant"], from_teacher["assistant"], strict=True):
        torch.testing.assert_close(got, expected)
    assert all(g.abs().sum() > 0 for g in grads["student"])
    # The target's projection head still learns (only the backbone side is detached).
    heads = objective.projector.heads
    head_grads = torch.autograd.grad(total, [heads["teacher"].weight], retain_graph=True)
    assert head_grads[0].abs().sum() > 0


def test_assistant_student_pair_alone_leaves_assistant_untouched() -> None:
    spec = _spec(
        pairs={"teacher_student": {"enabled": False}, "teacher_assistant": {"enabled": False}}
    )
    objective = TASObjective(spec, DIMS, NUM_CLASSES)
    assert objective.models == ("assistant", "student")
    outs = _outputs()
    total, _ = objective(outs, TARGET)
    grads = _grads(total, outs)
    assert all(g.abs().sum() == 0 for g in grads["assistant"])
    assert all(g.abs().sum() > 0 for g in grads["student"])


def test_kd_method_is_ce_plus_hinton_kd() -> None:
    spec = _spec(
        method="kd",
        ce={"weight": 1.0, "label_smoothing": 0.0},
        logits={"loss": "ofa", "temperature": 1.0},  # kd reads distill.kd, not the TAS logit settings
        pairs={"teacher_student": {"logit_weight": 1.0}},
        kd={"temperature": 2.0, "ce_weight": 0.3, "kd_weight": 0.7},
    )
    objective = TASObjective(spec, {}, NUM_CLASSES)
    assert objective.models == ("teacher", "student")
    outs = _outputs()
    total, terms = objective(outs, TARGET)
    assert list(terms) == ["ce", "teacher_student.logit"]
    s_logits, t_logits = outs["student"][0], outs["teacher"][0]
    expected = 0.3 * cross_entropy(s_logits, TARGET) + 0.7 * kd_loss(s_logits, t_logits, 2.0)
    torch.testing.assert_close(total, expected)


def test_switching_a_tas_spec_to_kd_gives_the_recipe_baseline() -> None:
    # What `--set distill.method=kd` does to a TAS spec: T = 4, CE 0.1 + KD 0.9 (mdistiller).
    tas = {"ce": {"label_smoothing": 0.0}, "logits": {"loss": "ofa", "temperature": 1.0}}
    objective = TASObjective(_spec(**tas, method="kd"), {}, NUM_CLASSES)
    outs = _outputs()
    total, _ = objective(outs, TARGET)
    s_logits, t_logits = outs["student"][0], outs["teacher"][0]
    expected = 0.1 * cross_entropy(s_logits, TARGET) + 0.9 * kd_loss(s_logits, t_logits, 4.0)
    torch.testing.assert_close(total, expected)


def test_none_method_is_ce_only() -> None:
    objective = TASObjective(_spec(method="none"), {}, NUM_CLASSES)
    assert objective.models == ("student",)
    student = {"student": _outputs()["student"]}
    total, terms = objective(student, TARGET)
    assert list(terms) == ["ce"]
    torch.testing.assert_close(total, cross_entropy(student["student"][0], TARGET, 0.1))


def test_no_terms_and_unknown_method_are_errors() -> None:
    with pytest.raises(ValueError, match="no terms"):
        TASObjective(_spec(method="none", ce={"weight": 0.0}), {}, NUM_CLASSES)
    with pytest.raises(NotImplementedError, match="ofa"):
        TASObjective(_spec(method="ofa"), DIMS, NUM_CLASSES)


def test_soft_targets_are_not_smoothed_twice() -> None:
    objective = TASObjective(_spec(method="none"), {}, NUM_CLASSES)
    soft = torch.softmax(torch.randn(6, NUM_CLASSES), dim=-1)
    logits = torch.randn(6, NUM_CLASSES)
    _, terms = objective({"student": (logits, torch.randn(6, 8))}, soft)
    torch.testing.assert_close(terms["ce"], cross_entropy(logits, soft))


def test_unpooled_features_are_rejected() -> None:
    objective = TASObjective(_spec(), DIMS, NUM_CLASSES)
    outs = _outputs()
    outs["student"] = (outs["student"][0], torch.randn(6, 8, 2, 2))
    with pytest.raises(ValueError, match="pooled"):
        objective(outs, TARGET)


@pytest.mark.parametrize("same_class", ["ignore", "positive"])  # the default's masked path, and positives
def test_compiles_fullgraph(same_class: str) -> None:
    torch._dynamo.reset()
    objective = TASObjective(_spec(feature={"same_class": same_class}), DIMS, NUM_CLASSES)
    compiled = torch.compile(objective, backend="aot_eager", fullgraph=True)
    outs = _outputs()
    total, terms = compiled(outs, TARGET)
    eager_total, eager_terms = objective(outs, TARGET)
    torch.testing.assert_close(total, eager_total)
    assert list(terms) == list(eager_terms)
    total.backward()
    assert outs["student"][1].grad is not None
    assert objective.temperatures["teacher_student"].log_inv_temperature.grad is not None


def test_logit_temperature_auto_follows_the_loss() -> None:
    """TAS's default logit loss is KD at a T chosen from the teacher; auto gives OFA T 1; a number wins."""
    assert _spec().logits == {"loss": "kd", "temperature": "auto", "threshold": 0.8}
    assert _spec(logits={"auto_threshold": 0.6}).logits == {"loss": "kd", "temperature": "auto", "threshold": 0.6}
    assert _spec(method="ofa").logits == {"loss": "ofa", "temperature": 1.0, "eps": 1.0}
    assert _spec(logits={"loss": "ofa", "eps": 1.5}).logits == {"loss": "ofa", "temperature": 1.0, "eps": 1.5}
    assert _spec(logits={"temperature": 2.0}).logits == {"loss": "kd", "temperature": 2.0}
    assert _spec(method="kd").logits == {"loss": "kd", "temperature": 4.0}  # distill.kd's recipe
    assert _spec().feature["same_class"] == "ignore"


def test_warmup_ramps_the_pair_terms_and_leaves_ce_whole() -> None:
    """distill.warmup_epochs w: each pair term is min(epoch / w, 1) times its value without warm-up; CE is not."""
    plain = TASObjective(_spec(), DIMS, NUM_CLASSES)
    warm = TASObjective(_spec(warmup_epochs=4), DIMS, NUM_CLASSES)
    warm.load_state_dict(plain.state_dict())  # the same projection heads and temperatures
    outs = _outputs()
    _, reference = plain(outs, TARGET)
    for epoch, factor in [(1, 0.25), (3, 0.75), (4, 1.0), (9, 1.0)]:
        warm.set_epoch(epoch)
        total, terms = warm(outs, TARGET)
        assert list(terms) == list(reference)
        torch.testing.assert_close(terms["ce"], reference["ce"])
        for name in ALL_TERMS[1:]:
            torch.testing.assert_close(terms[name], factor * reference[name])
        torch.testing.assert_close(total, sum(terms.values()))
    assert "epoch" not in warm.state_dict()  # not a checkpointed value: the trainer sets it each epoch


def test_warmup_is_tas_only_and_recorded_only_when_set() -> None:
    assert _spec().params == {} and _spec(warmup_epochs=0).params == {}  # runs without one keep their plan hash
    assert _spec(warmup_epochs=5).params == {"warmup_epochs": 5}
    for method in ("kd", "none", "dkd"):  # not read by another method (DKD has its own in distill.dkd)
        assert _spec(method=method, warmup_epochs=5) == _spec(method=method)
    kd = TASObjective(_spec(method="kd", warmup_epochs=5), DIMS, NUM_CLASSES)
    assert kd.warmup_epochs == 0


def test_warmup_compiles_once_across_epochs() -> None:
    """The epoch is a buffer, so a compiled objective does not recompile as the ramp moves."""
    torch._dynamo.reset()
    objective = TASObjective(_spec(warmup_epochs=3), DIMS, NUM_CLASSES)
    counter = torch._dynamo.testing.CompileCounter()
    compiled = torch.compile(objective, backend=counter, fullgraph=True)
    outs = _outputs()
    for epoch in (1, 2, 5):
        objective.set_epoch(epoch)
        total, _ = compiled(outs, TARGET)
        torch.testing.assert_close(total, objective(outs, TARGET)[0])
    assert counter.frame_count == 1


def test_kd_auto_temperature_is_chosen_from_the_teacher_confidence() -> None:
    """kd's auto runs at T 4 until told the teacher's confidence, then 4 at or above the threshold and 1 below.

    The chosen T is the loss's T to the last bit: the objective with auto, told 0.5, equals one built with T 1.
    """
    auto = TASObjective(_spec(), DIMS, NUM_CLASSES)
    assert auto.needs_teacher_confidence and auto.logit_temperature == 4.0
    fixed = {t: TASObjective(_spec(logits={"temperature": t}), DIMS, NUM_CLASSES) for t in (1.0, 4.0)}
    for objective in fixed.values():
        objective.load_state_dict(auto.state_dict())
        assert not objective.needs_teacher_confidence
    outs = _outputs()
    for confidence, expected in [(0.95, 4.0), (0.8, 4.0), (0.79, 1.0), (0.3, 1.0)]:
        assert auto.set_teacher_confidence(confidence) == expected
        total, terms = auto(outs, TARGET)
        ref_total, ref_terms = fixed[expected](outs, TARGET)
        assert torch.equal(total, ref_total) and terms.keys() == ref_terms.keys()
    assert not torch.equal(fixed[1.0](outs, TARGET)[0], fixed[4.0](outs, TARGET)[0])  # the choice matters
    with pytest.raises(ValueError, match="set in the spec"):
        fixed[1.0].set_teacher_confidence(0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        auto.set_teacher_confidence(1.5)
    no_logits = TASObjective(_spec(pairs={name: {"logit_weight": 0.0} for name in
                                          ("teacher_student", "teacher_assistant", "assistant_student")}),
                             DIMS, NUM_CLASSES)
    assert not no_logits.needs_teacher_confidence  # no logit term reads it
