"""The pure losses against values worked out by hand (numbers in the comments)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tasgen.losses import (
    FeatureProjector,
    LearnableTemperature,
    cross_entropy,
    info_nce,
    kd_loss,
    ofa_loss,
)

LN2 = math.log(2.0)
LN3 = math.log(3.0)

# Two rows, three classes. Row 0: log-softmax = [1, 2, 3] - 3.40760596 (= log(e + e^2 + e^3))
# = [-2.40760596, -1.40760596, -0.40760596]; row 1 is uniform: log(1/3) each.
LOGITS = torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]], dtype=torch.float64)


def test_cross_entropy_hard_labels() -> None:
    # (0.40760596 + log 3) / 2
    got = cross_entropy(LOGITS, torch.tensor([2, 0]))
    assert got.item() == pytest.approx(0.7531091265562448, abs=1e-7)


def test_cross_entropy_label_smoothing() -> None:
    # Row 0 target [0.1/3, 0.1/3, 0.9 + 0.1/3]: 0.1/3 * (2.4076 + 1.4076 + 0.4076) + 0.9 * 0.4076
    # = 0.50760596; row 1 stays log 3 = 1.09861229. Mean 0.80310913.
    got = cross_entropy(LOGITS, torch.tensor([2, 0]), label_smoothing=0.1)
    assert got.item() == pytest.approx(0.8031091265562449, abs=1e-7)


def test_cross_entropy_soft_targets() -> None:
    # Row 0 target [0.5, 0, 0.5]: 0.5 * (2.40760596 + 0.40760596) = 1.40760596;
    # row 1 (any target on uniform logits): log 3. Mean 1.25310913.
    soft = torch.tensor([[0.5, 0.0, 0.5], [0.2, 0.3, 0.5]], dtype=torch.float32)
    got = cross_entropy(LOGITS, soft)
    assert got.item() == pytest.approx(1.2531091265562448, abs=1e-7)


def test_kd_loss_at_temperature_one() -> None:
    # p_t = softmax([ln 3, 0]) = [3/4, 1/4]; p_s = [1/2, 1/2].
    # KL = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.13081204.
    student = torch.zeros(1, 2, dtype=torch.float64)
    teacher = torch.tensor([[LN3, 0.0]], dtype=torch.float64)
    assert kd_loss(student, teacher, 1.0).item() == pytest.approx(0.13081203594113697, abs=1e-9)


def test_kd_loss_at_temperature_two_scales_by_t_squared() -> None:
    # At T = 2, teacher logits [2 ln 3, 0] soften to the same [3/4, 1/4]: KL * T^2 = 4 * 0.13081204.
    student = torch.zeros(1, 2, dtype=torch.float64)
    teacher = torch.tensor([[2 * LN3, 0.0]], dtype=torch.float64)
    assert kd_loss(student, teacher, 2.0).item() == pytest.approx(4 * 0.13081203594113697, abs=1e-9)


def test_kd_loss_is_zero_for_equal_logits_and_batch_mean() -> None:
    x = torch.randn(5, 7)
    assert kd_loss(x, x, 4.0).item() == pytest.approx(0.0, abs=1e-6)
    # Batch mean: a row with KL 0 halves the value of the worked example.
    student = torch.zeros(2, 2, dtype=torch.float64)
    teacher = torch.tensor([[LN3, 0.0], [0.0, 0.0]], dtype=torch.float64)
    assert kd_loss(student, teacher, 1.0).item() == pytest.approx(0.13081203594113697 / 2, abs=1e-9)


def test_ofa_loss_worked_examples() -> None:
    teacher = torch.tensor([[LN3, 0.0]], dtype=torch.float64)  # p_t = [3/4, 1/4]
    target = torch.tensor([1])  # y = [0, 1]
    uniform = torch.zeros(1, 2, dtype=torch.float64)  # log p_s = [-ln 2, -ln 2]
    # eps 1: weights = p_t, sum 1 -> ln 2.
    assert ofa_loss(uniform, teacher, target, eps=1.0).item() == pytest.approx(LN2, abs=1e-9)
    # eps 2: (p_t + y)^2 - y = [9/16, 25/16 - 1] = [0.5625, 0.5625] -> 1.125 ln 2.
    got = ofa_loss(uniform, teacher, target, eps=2.0)
    assert got.item() == pytest.approx(0.7797905781299385, abs=1e-9)
    # eps 2 with p_s = [1/4, 3/4]: 0.5625 * (ln 4 + ln 4/3) = 0.94161174.
    skewed = torch.tensor([[0.0, LN3]], dtype=torch.float64)
    got = ofa_loss(skewed, teacher, target, eps=2.0)
    assert got.item() == pytest.approx(0.9416117438840651, abs=1e-9)


def test_ofa_eps_one_is_cross_entropy_against_teacher_probabilities() -> None:
    torch.manual_seed(0)
    student = torch.randn(8, 10, dtype=torch.float64)
    teacher = torch.randn(8, 10, dtype=torch.float64)
    target = torch.randint(0, 10, (8,))
    for temperature in (1.0, 3.0):
        p_teacher = F.softmax(teacher / temperature, dim=-1)
        reference = -(p_teacher * F.log_softmax(student / temperature, dim=-1)).sum(-1).mean()
        got = ofa_loss(student, teacher, target, eps=1.0, temperature=temperature)
        torch.testing.assert_close(got, reference)
        # ...and it does not depend on the label at eps 1.
        torch.testing.assert_close(
            got, ofa_loss(student, teacher, (target + 1) % 10, eps=1.0, temperature=temperature)
        )


def test_ofa_soft_target_equals_one_hot() -> None:
    torch.manual_seed(1)
    student, teacher = torch.randn(4, 5), torch.randn(4, 5)
    target = torch.tensor([0, 3, 1, 4])
    soft = F.one_hot(target, 5).float()
    torch.testing.assert_close(
        ofa_loss(student, teacher, target, eps=1.5), ofa_loss(student, teacher, soft, eps=1.5)
    )


def test_info_nce_worked_examples() -> None:
    eye = torch.eye(2, dtype=torch.float64)
    # Orthonormal pairs, T = 0.5: logits [[2, 0], [0, 2]] -> log(1 + e^-2) per row.
    assert info_nce(eye, eye, 0.5).item() == pytest.approx(0.1269280110429726, abs=1e-9)
    # Scale does not matter (both sides are L2-normalised).
    assert info_nce(3 * eye, 2 * eye, 0.5).item() == pytest.approx(0.1269280110429726, abs=1e-9)
    # Keys [1, 0] and [1, 1]/sqrt 2, T = 1: rows [1, a] and [0, a] with a = 1/sqrt 2:
    # ((log(e + e^a) - 1) + (log(1 + e^a) - a)) / 2 = 0.47910965.
    key = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    assert info_nce(eye, key, 1.0).item() == pytest.approx(0.4791096451834476, abs=1e-9)


def test_info_nce_aligned_low_random_high() -> None:
    torch.manual_seed(0)
    b, d = 32, 64
    feats = torch.randn(b, d)
    aligned = info_nce(feats, feats, 0.07).item()
    random = info_nce(feats, torch.randn(b, d), 0.07).item()
    assert aligned < 0.05
    assert random > math.log(b) * 0.5  # chance level is log(B) = 3.47
    assert aligned < random


def test_info_nce_accepts_tensor_temperature_and_gradients_flow() -> None:
    q = torch.randn(4, 3, requires_grad=True)
    tau = LearnableTemperature(0.1)
    info_nce(q, torch.randn(4, 3), tau()).backward()
    assert q.grad is not None and tau.log_inv_temperature.grad is not None


def test_feature_projector_shapes() -> None:
    proj = FeatureProjector({"teacher": 12, "student": 5}, dim=8)
    assert proj("teacher", torch.randn(3, 12)).shape == (3, 8)
    assert proj("student", torch.randn(3, 5)).shape == (3, 8)
    assert all(m.bias is None for m in proj.heads.values())


def test_learnable_temperature() -> None:
    tau = LearnableTemperature(0.07)
    assert tau().item() == pytest.approx(0.07, rel=1e-6)
    assert [n for n, _ in tau.named_parameters()] == ["log_inv_temperature"]
    with torch.no_grad():
        tau.log_inv_temperature.fill_(20.0)  # T = e^-20, below the floor
    assert tau().item() == pytest.approx(0.01, rel=1e-5)
    with torch.no_grad():
        tau.log_inv_temperature.fill_(-5.0)  # T = e^5, above the ceiling
    assert tau().item() == pytest.approx(1.0, rel=1e-5)

    fixed = LearnableTemperature(0.2, learnable=False)
    assert list(fixed.parameters()) == []
    assert "log_inv_temperature" in dict(fixed.named_buffers())
    assert fixed().item() == pytest.approx(0.2, rel=1e-6)
    # An initial value outside the default range widens it instead of being clamped.
    assert LearnableTemperature(2.0)().item() == pytest.approx(2.0, rel=1e-6)
    with pytest.raises(ValueError):
        LearnableTemperature(0.0)


def test_ofa_soft_target_uses_its_argmax_as_the_one_hot() -> None:
    # Mixup/cutmix/smoothing make soft targets; OFA-KD boosts the argmax class only.
    torch.manual_seed(2)
    student, teacher = torch.randn(4, 5), torch.randn(4, 5)
    hard = torch.tensor([0, 3, 1, 4])
    other = torch.tensor([2, 0, 4, 1])
    soft = 0.7 * F.one_hot(hard, 5).float() + 0.3 * F.one_hot(other, 5).float()
    for eps in (1.0, 1.5):
        torch.testing.assert_close(
            ofa_loss(student, teacher, soft, eps=eps), ofa_loss(student, teacher, hard, eps=eps)
        )


def test_info_nce_positive_offset_picks_the_right_key_among_more() -> None:
    # 2 queries against 4 keys (a global batch): the positives are keys 2 and 3.
    torch.manual_seed(3)
    keys = torch.randn(4, 6)
    query = torch.randn(2, 6)
    logits = F.normalize(query, dim=-1) @ F.normalize(keys, dim=-1).T / 0.5
    expected = F.cross_entropy(logits, torch.tensor([2, 3]))
    torch.testing.assert_close(info_nce(query, keys, 0.5, positive_offset=2), expected)


def test_temperature_past_a_bound_still_learns_and_comes_back() -> None:
    tau = LearnableTemperature(0.07)
    with torch.no_grad():
        tau.log_inv_temperature.fill_(8.0)  # T = e^-8, far below the floor 0.01
    assert tau().item() == pytest.approx(0.01, rel=1e-5)  # the value is bounded
    opt = torch.optim.SGD(tau.parameters(), lr=0.5)
    for step in range(20):
        opt.zero_grad()
        (-torch.log(tau())).backward()  # a loss that wants T larger
        grad = tau.log_inv_temperature.grad
        assert grad is not None and grad.abs().item() > 0, f"no gradient at step {step}"
        opt.step()
        if tau().item() > 0.01 * 1.01:
            break
    assert tau().item() > 0.01 * 1.01, "the temperature stayed at its floor"
    # And from above the ceiling.
    with torch.no_grad():
        tau.log_inv_temperature.fill_(-3.0)  # T = e^3 > 1
    tau.zero_grad()
    torch.log(tau()).backward()  # wants T smaller
    assert tau.log_inv_temperature.grad.abs().item() > 0


def test_info_nce_ignores_same_class_negatives() -> None:
    """With labels, the other keys of a query's class leave the softmax; the loss is computed by hand."""
    torch.manual_seed(3)
    q, k = torch.randn(4, 5, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    q_labels, k_labels = torch.tensor([0, 1, 0, 2]), torch.tensor([7, 0, 1, 0, 2, 1])
    offset = 1  # query i's positive is key i + 1 (e.g. rank 0 of 2 under DDP would be offset 0)
    qn, kn = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    expected = 0.0
    for i in range(4):
        pos = i + offset
        kept = [j for j in range(6) if j == pos or k_labels[j] != q_labels[i]]
        row = torch.stack([qn[i] @ kn[j] for j in kept]) / 0.3
        expected += -(row[kept.index(pos)] - torch.logsumexp(row, 0)).item()
    got = info_nce(q, k, 0.3, offset, q_labels, k_labels, same_class="ignore")
    assert got.item() == pytest.approx(expected / 4, abs=1e-9)
    # Labels that are all different change nothing.
    unique = torch.arange(6)
    torch.testing.assert_close(info_nce(q, k, 0.3, offset, unique[offset:offset + 4], unique, same_class="ignore"),
                               info_nce(q, k, 0.3, offset))
    # A key of the queries' own class gets no gradient from them: it is not in their softmax.
    k3 = k.clone().requires_grad_(True)
    info_nce(q[[0, 2]], k3, 0.3, 0, q_labels[[0, 2]], k_labels, same_class="ignore").backward()  # two class-0 queries: positives keys 0, 1
    assert k3.grad[3].abs().max() == 0  # a class-0 key that is nobody's positive
    assert k3.grad[1].abs().max() > 0  # a class-0 key that is a positive still counts
    assert k3.grad[4].abs().max() > 0  # a class-2 key stays a negative


def test_info_nce_same_class_positive_is_the_supervised_contrastive_form() -> None:
    """``same_class='positive'``: each query's loss is the mean over its class keys (its own key
    always among them) of -log softmax over every key; computed here by hand."""
    torch.manual_seed(5)
    q, k = torch.randn(4, 5, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    q_labels, k_labels = torch.tensor([0, 1, 0, 2]), torch.tensor([7, 0, 1, 0, 2, 1])
    offset = 1
    qn, kn = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    expected = 0.0
    for i in range(4):
        row = torch.stack([qn[i] @ kn[j] for j in range(6)]) / 0.3
        log_prob = row - torch.logsumexp(row, 0)
        chosen = [j for j in range(6) if j == i + offset or k_labels[j] == q_labels[i]]
        expected += -sum(log_prob[j].item() for j in chosen) / len(chosen)
    got = info_nce(q, k, 0.3, offset, q_labels, k_labels, same_class="positive")
    assert got.item() == pytest.approx(expected / 4, abs=1e-9)
    # Labels that are all different leave only the own key: the paper's InfoNCE.
    unique = torch.arange(6)
    torch.testing.assert_close(info_nce(q, k, 0.3, offset, unique[offset:offset + 4], unique, same_class="positive"),
                               info_nce(q, k, 0.3, offset))
    # 'negative' with labels is the paper's form too; an unknown mode is refused.
    torch.testing.assert_close(info_nce(q, k, 0.3, offset, q_labels, k_labels, same_class="negative"),
                               info_nce(q, k, 0.3, offset))
    with pytest.raises(ValueError, match="same_class"):
        info_nce(q, k, 0.3, offset, q_labels, k_labels, same_class="pull")
    # A same-class key that is not the query's own is a target of the loss (under 'ignore' it has no gradient).
    k3 = k.clone().requires_grad_(True)
    info_nce(q[[0, 2]], k3, 0.3, 0, q_labels[[0, 2]], k_labels, same_class="positive").backward()
    assert k3.grad[3].abs().max() > 0  # a class-0 key that is nobody's own
