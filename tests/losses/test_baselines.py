"""The baselines' losses (DKD, DIST, CRD, FitNet's hint) against the papers' formulas,
worked out here in plain Python on fixed numbers, and the identities that must hold."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tasgen.losses import kd_loss
from tasgen.losses.crd import ContrastMemory, CRDLoss, crd_nce_loss
from tasgen.losses.dist import dist_terms, pearson_rows
from tasgen.losses.dkd import dkd_loss, dkd_terms

STUDENT = [[1.0, 2.0, 0.5, -1.0], [0.3, -0.2, 2.5, 0.0], [-1.0, 0.0, 1.0, 3.0]]
TEACHER = [[0.5, 3.0, 1.0, -2.0], [0.0, 0.5, 1.5, 1.0], [2.0, -1.0, 0.0, 1.0]]
LABELS = [1, 2, 0]


def _softmax(row: list[float], t: float) -> list[float]:
    e = [math.exp(v / t) for v in row]
    return [v / sum(e) for v in e]


def _kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True) if a > 0)


def _dkd_by_hand(s: list[float], t: list[float], y: int, temp: float) -> tuple[float, float]:
    """Zhao et al., Eq. 1-4: b = (p_y, 1 - p_y); p_hat = the non-target probabilities renormalised."""
    ps, pt = _softmax(s, temp), _softmax(t, temp)
    tckd = _kl([pt[y], 1 - pt[y]], [ps[y], 1 - ps[y]])
    hat_s = [p / (1 - ps[y]) for i, p in enumerate(ps) if i != y]
    hat_t = [p / (1 - pt[y]) for i, p in enumerate(pt) if i != y]
    return tckd * temp**2, _kl(hat_t, hat_s) * temp**2


def _tensors() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (torch.tensor(STUDENT, dtype=torch.float64), torch.tensor(TEACHER, dtype=torch.float64),
            torch.tensor(LABELS))


# ----------------------------------------------------------------------- DKD
@pytest.mark.parametrize("temp", [1.0, 4.0])
def test_dkd_terms_match_the_paper_by_hand(temp: float) -> None:
    s, t, y = _tensors()
    tckd, nckd = dkd_terms(s, t, y, temp)
    for i in range(3):
        want_t, want_n = _dkd_by_hand(STUDENT[i], TEACHER[i], LABELS[i], temp)
        assert tckd[i].item() == pytest.approx(want_t, rel=1e-9)
        assert nckd[i].item() == pytest.approx(want_n, rel=1e-9)
    want = sum(1.0 * a + 8.0 * b for a, b in (_dkd_by_hand(*r, temp) for r in zip(STUDENT, TEACHER, LABELS, strict=True)))
    assert dkd_loss(s, t, y, alpha=1.0, beta=8.0, temperature=temp).item() == pytest.approx(want / 3, rel=1e-9)


def test_dkd_weighted_as_the_paper_says_is_classical_kd() -> None:
    """KD = TCKD + (1 - p_t^teacher) NCKD (Eq. 3): DKD with those weights is tasgen's KD."""
    s, t, y = _tensors()
    temp = 4.0
    tckd, nckd = dkd_terms(s, t, y, temp)
    p_target = F.softmax(t / temp, dim=-1).gather(1, y[:, None]).squeeze(1)
    assert (tckd + (1 - p_target) * nckd).mean().item() == pytest.approx(kd_loss(s, t, temp).item(), rel=1e-9)


def test_dkd_is_zero_for_the_teacher_itself_and_stable_when_confident() -> None:
    s, _, y = _tensors()
    tckd, nckd = dkd_terms(s, s, y, 4.0)
    assert torch.allclose(tckd, torch.zeros(3, dtype=s.dtype), atol=1e-12)
    assert torch.allclose(nckd, torch.zeros(3, dtype=s.dtype), atol=1e-12)
    # p_target = 1 - 1e-40 in float32: log(1 - p) must not be -inf, nor the gradient NaN.
    confident = torch.tensor([[0.0, 100.0, 0.0]], requires_grad=True)
    loss = dkd_loss(confident, torch.tensor([[100.0, 0.0, 0.0]]), torch.tensor([1]), temperature=1.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(confident.grad).all()


def test_dkd_soft_targets_count_as_their_most_probable_class() -> None:
    s, t, y = _tensors()
    soft = F.one_hot(y, 4).double() * 0.7 + 0.075
    assert dkd_loss(s, t, soft).item() == pytest.approx(dkd_loss(s, t, y).item(), rel=1e-12)


# ----------------------------------------------------------------------- DIST
def _pearson(a: list[float], b: list[float]) -> float:
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True))
    return cov / math.sqrt(sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b))


@pytest.mark.parametrize("temp", [1.0, 4.0])
def test_dist_terms_match_the_paper_by_hand(temp: float) -> None:
    """Huang et al., Eq. 5-7: 1 - mean Pearson over images (rows) and over classes (columns), times tau^2."""
    s, t, _ = _tensors()
    ys = [_softmax(r, temp) for r in STUDENT]
    yt = [_softmax(r, temp) for r in TEACHER]
    inter = 1 - sum(_pearson(a, b) for a, b in zip(ys, yt, strict=True)) / 3
    cols_s, cols_t = list(zip(*ys, strict=True)), list(zip(*yt, strict=True))
    intra = 1 - sum(_pearson(list(a), list(b)) for a, b in zip(cols_s, cols_t, strict=True)) / 4
    got_inter, got_intra = dist_terms(s, t, temp)
    # rel 1e-5: the reference's eps 1e-8 beside norms of ~1e-2 (flat softmax at tau 4)
    assert got_inter.item() == pytest.approx(inter * temp**2, rel=1e-5)
    assert got_intra.item() == pytest.approx(intra * temp**2, rel=1e-5)


def test_dist_of_a_perfectly_correlated_pair_is_zero() -> None:
    s, _, _ = _tensors()
    inter, intra = dist_terms(s, s + 5.0, 1.0)  # a constant shift leaves softmax unchanged
    # (not exactly 0: the reference's eps 1e-8 in the denominator)
    assert inter.item() == pytest.approx(0.0, abs=1e-6) and intra.item() == pytest.approx(0.0, abs=1e-6)
    a = torch.rand(5, 7, dtype=torch.float64)
    assert torch.allclose(pearson_rows(a, 3 * a + 2), torch.ones(5, dtype=a.dtype))  # affine: correlation 1
    assert torch.allclose(pearson_rows(a, -a), -torch.ones(5, dtype=a.dtype))


# ----------------------------------------------------------------------- CRD
def test_crd_nce_loss_matches_eq_18_by_hand() -> None:
    """-[log(x0 / (x0 + K/N)) + sum_k log((K/N) / (x_k + K/N))] per image, averaged."""
    scores = torch.tensor([[2.0, 0.5, 0.1], [0.3, 1.0, 0.2]], dtype=torch.float64)
    n, k = 10, 2
    noise = k / n
    want = 0.0
    for row in scores.tolist():
        want -= math.log(row[0] / (row[0] + noise + 1e-7))
        want -= sum(math.log(noise / (x + noise + 1e-7)) for x in row[1:])
    assert crd_nce_loss(scores, n).item() == pytest.approx(want / 2, rel=1e-9)


def test_crd_memory_updates_by_its_momentum_rule() -> None:
    torch.manual_seed(0)
    memory = ContrastMemory(dim=3, num_data=5, negatives=16384, temperature=0.07, momentum=0.5)
    before = memory.memory_student.clone()
    v = F.normalize(torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]), dim=1)
    teacher = F.normalize(torch.tensor([[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]), dim=1)
    memory.update(v, teacher, torch.tensor([3, 1]))
    for row, slot in ((0, 3), (1, 1)):
        moved = 0.5 * before[slot] + 0.5 * v[row]
        assert torch.allclose(memory.memory_student[slot], moved / moved.norm())
    untouched = [0, 2, 4]
    assert torch.equal(memory.memory_student[untouched], before[untouched])


def test_crd_negatives_are_clamped_to_the_dataset_and_skip_the_positive() -> None:
    torch.manual_seed(0)
    memory = ContrastMemory(dim=4, num_data=6, negatives=16384, temperature=0.07, momentum=0.5)
    assert memory.negatives == 5  # clamped to num_data - 1
    index = torch.tensor([0, 5, 2])
    slots = memory.sample(index)
    assert slots.shape == (3, 6) and torch.equal(slots[:, 0], index)
    assert ((slots[:, 1:] != index[:, None]) & (slots[:, 1:] >= 0) & (slots[:, 1:] < 6)).all()


def test_crd_scores_use_the_memory_and_z_is_fixed_after_the_first_batch() -> None:
    torch.manual_seed(0)
    memory = ContrastMemory(dim=4, num_data=8, negatives=3, temperature=0.5, momentum=0.5)
    v_s, v_t = F.normalize(torch.randn(2, 4), dim=1), F.normalize(torch.randn(2, 4), dim=1)
    slots = memory.sample(torch.tensor([1, 6]))
    scores_s, scores_t = memory(v_s, v_t, slots)
    raw = torch.exp((memory.memory_teacher[slots] * v_s[:, None]).sum(-1) / 0.5)
    assert memory.z_student.item() == pytest.approx(raw.mean().item() * 8, rel=1e-6)
    assert torch.allclose(scores_s, raw / memory.z_student)
    z = memory.z_student.clone()
    memory(v_s * 0.5, v_t, slots)
    assert torch.equal(memory.z_student, z)
    assert scores_t.shape == (2, 4)


def test_crd_loss_trains_the_student_head_only_and_refills_the_memory() -> None:
    torch.manual_seed(0)
    crd = CRDLoss(student_dim=6, teacher_dim=5, dim=4, num_data=10, negatives=4, temperature=0.07, momentum=0.5)
    student = torch.randn(3, 6, requires_grad=True)
    teacher = torch.randn(3, 5, requires_grad=True)
    before = crd.memory.memory_teacher.clone()
    loss = crd(student, teacher, torch.tensor([0, 4, 9]))
    loss.backward()
    assert torch.isfinite(loss) and student.grad is not None and teacher.grad is None
    assert crd.embed_teacher.weight.grad is not None  # the teacher's head learns, the teacher does not
    changed = (crd.memory.memory_teacher != before).any(dim=1)
    assert changed.tolist() == [i in (0, 4, 9) for i in range(10)]


# --------------------------------------------------------------------- FitNet
def test_hint_regressor_aligns_tokens_and_grids() -> None:
    from tasgen.arch.table import Part
    from tasgen.emit.hint import HintRegressor, as_map

    tokens = Part(modules=[], channels=8, reduction=8, layout="NLC", prefix_tokens=1)
    x = torch.randn(2, 1 + 16, 8)  # class token + a 4x4 grid at 32 px / 8
    grid = as_map(x, tokens, 32)
    assert grid.shape == (2, 8, 4, 4) and torch.equal(grid[:, :, 0, 1], x[:, 2])  # row-major, prefix dropped
    nhwc = Part(modules=[], channels=8, reduction=4, layout="NHWC")
    maps = torch.randn(2, 8, 8, 8)
    assert torch.equal(as_map(maps.permute(0, 2, 3, 1), nhwc, 32), maps)
    regressor = HintRegressor(tokens, teacher_channels=12, image_size=32)
    assert regressor(x, (2, 2)).shape == (2, 12, 2, 2)  # pooled down to a coarser teacher grid
    assert regressor(x, (8, 8)).shape == (2, 12, 8, 8)  # interpolated up to a finer one


def test_dkd_objective_warms_up_over_its_epochs() -> None:
    """The DKD terms scale by min(epoch / warmup_epochs, 1), the reference's 1-based epoch."""
    from tasgen.losses.baselines import DKDObjective
    from tasgen.losses.method import MethodContext
    from tasgen.planner import plan_losses
    from tasgen.spec.schema import DistillSpec

    d = DistillSpec(method="dkd")
    objective = DKDObjective(MethodContext(plan=plan_losses(d), params=d.dkd, feature_dims={}, num_classes=4))
    s, t, y = (x.float() if x.is_floating_point() else x for x in _tensors())
    tckd, nckd = dkd_terms(s, t, y, 4.0)
    outputs = {"student": (s, s), "teacher": (t, t)}
    for epoch, ramp in ((1, 1 / 20), (10, 0.5), (20, 1.0), (45, 1.0)):
        objective.set_epoch(epoch)
        total, terms = objective(outputs, y)
        assert terms["dkd.tckd"].item() == pytest.approx(ramp * 1.0 * tckd.mean().item(), rel=1e-6)
        assert terms["dkd.nckd"].item() == pytest.approx(ramp * 8.0 * nckd.mean().item(), rel=1e-6)
        assert list(terms) == objective.term_names == ["ce", "dkd.tckd", "dkd.nckd"]
