"""The graph planner: derive the assistant from two stage tables.

Both models' parts become nodes of a networkx DiGraph (input -> stem -> stages ->
head -> logits, once per model). Every (local stage i -> global stage j) pair is a
candidate bridge edge, so every input -> logits path that changes model is a
candidate assistant; it changes model exactly once because bridges only run from
the local member to the global one. Each candidate is checked against the
local-to-global rule (convolution first, global mixing after, never the reverse),
scored, and the best one becomes the Plan.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import networkx as nx

from tasgen.arch.table import GLOBAL_MIXERS, Part, Stage, StageTable, token_grid
from tasgen.plan import (
    AssistantPart,
    BridgeGeometry,
    Candidate,
    Losses,
    LossPair,
    Ownership,
    Plan,
    Role,
    ownership,
)
from tasgen.spec.schema import DistillSpec, Spec

PAPER_SPLIT = 0.75  # the paper keeps 3 of 4 stages local
WEIGHTS = {"split": 4.0, "alignment": 2.0, "resolution": 0.5, "width": 0.25, "added_params": 1.0}
# What a candidate's score is, wherever one is shown (docs/design.md has the table of terms).
SCORE_MEANING = ("score: lower is better, unitless; the weighted sum of the split's distance from the paper's "
                 "3 of 4, the stage misalignment, the resolution and width gaps (abs log2) and the bridge's "
                 "share of the parameters")


class PlanError(Exception):
    """No assistant can be built for this pair; the message says why.

    Attributes:
        loc: the spec path at fault (e.g. ("student",) or ("assistant", "split")).
    """

    def __init__(self, message: str, loc: tuple[str, ...] = ("assistant",)) -> None:
        super().__init__(message)
        self.loc = loc


# ------------------------------------------------------------------- members
def pair_roles(teacher: StageTable, student: StageTable) -> tuple[str, Role, Role]:
    """Return (pair kind, local role, global role).

    Homogeneous pairs (both CNN, or both ViT/MLP) take the student's early stages.
    Otherwise the member whose stages stay convolutional longer is the local one
    (ties: the student).
    """
    kinds = {teacher.kind, student.kind}
    if kinds == {"cnn"} or kinds <= {"vit", "mlp"}:
        return "homogeneous", "student", "teacher"

    def locality(t: StageTable) -> float:
        return t.local_stages / len(t.stages)

    if locality(teacher) > locality(student):
        return "heterogeneous", "teacher", "student"
    return "heterogeneous", "student", "teacher"


def local_student(local_role: Role) -> bool:
    """Whether the student gives the assistant its stem and first stages, which then feed the
    teacher's late stages: the student is the local member of a heterogeneous pair (a CNN student of
    a ViT or MLP teacher), or the pair is homogeneous (the planner takes the student's early stages).

    The direction in which TAS's InfoNCE terms were measured to do harm (docs/design.md,
    ``distill.feature.loss``): the rule ``auto`` reads, and `plan_warnings` names. Only a global
    student of a local teacher (the teacher's stages first) keeps them. The pair's kind does not
    enter: the homogeneous pairs were measured after the heterogeneous ones (docs/results.md, "The
    homogeneous pairs") and gave the same answer.
    """
    return local_role == "student"


def resolve_feature_loss(loss: str, roles: tuple[str, Role] | None) -> str:
    """``distill.feature.loss`` for a pair of kind and local role ``roles`` (`pair_roles`' first two).

    ``auto`` is none for a `local_student` and infonce otherwise; without ``roles`` it is the
    paper's infonce (an objective built outside a plan). Other values are kept.
    """
    if loss != "auto":
        return loss
    return "none" if roles is not None and local_student(roles[1]) else "infonce"


# --------------------------------------------------------------------- graph
def stage_graph(teacher: StageTable, student: StageTable, local: Role) -> nx.DiGraph:
    """Both models' parts as a DiGraph, plus every candidate bridge edge."""
    g = nx.DiGraph()
    g.add_node("input")
    g.add_node("logits")
    for role, table in (("teacher", teacher), ("student", student)):
        prev = "input"
        g.add_node((role, 0), role=role, stage=0, part=table.stem, mixer="stem")
        g.add_edge(prev, (role, 0), kind="flow")
        prev = (role, 0)
        for stage in table.stages:
            node = (role, stage.index)
            g.add_node(node, role=role, stage=stage.index, part=stage, mixer=stage.mixer)
            g.add_edge(prev, node, kind="flow")
            prev = node
        g.add_node((role, "head"), role=role, stage=None, mixer="head")
        g.add_edge(prev, (role, "head"), kind="flow")
        g.add_edge((role, "head"), "logits", kind="flow")
    glob: Role = "teacher" if local == "student" else "student"
    for i in range(1, len(_table(teacher, student, local).stages) + 1):
        for j in range(1, len(_table(teacher, student, glob).stages) + 1):
            g.add_edge((local, i), (glob, j), kind="bridge")
    return g


def _table(teacher: StageTable, student: StageTable, role: Role) -> StageTable:
    return teacher if role == "teacher" else student


def candidate_paths(g: nx.DiGraph) -> list[list]:
    """Every input -> logits path that crosses exactly one bridge."""
    paths = []
    for path in nx.all_simple_paths(g, "input", "logits"):
        bridges = [(u, v) for u, v in zip(path, path[1:], strict=False) if g.edges[u, v]["kind"] == "bridge"]
        if len(bridges) == 1:
            paths.append(path)
    return paths


# ------------------------------------------------------------------ geometry
def auto_heads(channels: int) -> int:
    """channels // 32 (at least 1), lowered until it divides channels.

    `tasgen.blocks.default_num_heads`'s rule, restated so that planning imports no
    torch (a test holds the two equal).
    """
    heads = max(1, channels // 32)
    while channels % heads:
        heads -= 1
    return heads


def bridge_window(window_size: int, grid: int) -> int:
    """The bridge's attention window on a ``grid`` x ``grid`` map: a side that divides the grid.

    The largest divisor of ``grid`` not above ``window_size``, so that the windows tile
    the map with no padded positions (an 8x8 grid with window 7 would be padded to
    14x14, three quarters of it padding). When that divisor is under half the asked
    window (a prime grid such as 13 has only 1), the smallest divisor above it is
    taken instead, at most the whole grid: one window of global attention rather than
    windows too small to mix anything.
    """
    divisors = [d for d in range(1, grid + 1) if grid % d == 0]
    below = max(d for d in divisors if d <= window_size)
    if 2 * below >= min(window_size, grid):
        return below
    return min(d for d in divisors if d >= window_size)


def bridge_geometry(src: Part, dst: Part, spec: Spec, image_size: int) -> tuple[BridgeGeometry | None, str]:
    """The bridge between two parts, or (None, reason) when none can be built."""
    opts = spec.assistant.bridge
    ratio = dst.reduction / src.reduction
    if dst.reduction == src.reduction:
        resample, kernel = "identity", 1
    elif ratio > 1 and float(ratio).is_integer() and opts.resample != "interpolate":
        resample, kernel = "conv", int(ratio)
    elif opts.resample == "conv":
        return None, f"resample: conv cannot map reduction {src.reduction} to {dst.reduction}"
    else:
        resample, kernel = "interpolate", 1
    grid = token_grid(image_size, dst.reduction)[0]
    window = bridge_window(opts.window_size, grid)
    heads = auto_heads(dst.channels) if opts.heads == "auto" else opts.heads
    if dst.channels % heads:
        return None, f"bridge heads ({heads}) must divide {dst.channels} channels"
    c_in, c = src.channels, dst.channels
    hidden = max(1, int(c * opts.mlp_ratio))  # as tasgen.blocks.hidden_width (kept torch-free here)
    # The bridge's layers are torch modules (emit.bridge.Bridge), so planning, which must not import
    # torch, counts them here; test_bridge_params_are_the_planners_count_for_every_design holds this
    # equal to the built Bridge for every layout, prefix-token design, resampling, heads and window.
    params = (
        c_in * c * kernel * kernel + c  # resampling conv
        + 2 * c + 3 * c * c + 3 * c + c * c + c  # norm, qkv, proj
        + (2 * window - 1) ** 2 * heads  # relative position bias
        + 2 * c + c * hidden + hidden + hidden * c + c  # norm, mlp
    )
    return BridgeGeometry(
        in_channels=c_in, in_reduction=src.reduction, in_layout=src.layout, in_prefix_tokens=src.prefix_tokens,
        out_channels=c, out_reduction=dst.reduction, out_layout=dst.layout, out_prefix_tokens=dst.prefix_tokens,
        resample=resample, prefix_source=opts.prefix_tokens, window_size=window, heads=heads,
        mlp_ratio=opts.mlp_ratio, params=params,
    ), ""


# ------------------------------------------------------------------- scoring
def _check(split: int, start: int, local: StageTable, glob: StageTable, pair: str, spec: Spec) -> str:
    """Why the candidate breaks a rule, or "" when it does not."""
    mixers = [s.mixer for s in local.stages[:split]] + [s.mixer for s in glob.stages[start - 1 :]]
    first_global = next((k for k, m in enumerate(mixers) if m in GLOBAL_MIXERS), len(mixers))
    if any(m == "conv" for m in mixers[first_global:]):
        where = [f"{m}" for m in mixers]
        return f"global stage before a local one ({' -> '.join(where)})"
    if pair == "heterogeneous" and first_global == len(mixers):
        return "no global stage after the bridge (the assistant would be a CNN)"
    if pair == "heterogeneous" and first_global == 0:
        return "no convolution stage before the bridge"
    if isinstance(spec.assistant.split, int) and split != spec.assistant.split:
        return f"spec fixes split = {spec.assistant.split}"
    if isinstance(spec.assistant.global_start, int) and start != spec.assistant.global_start:
        return f"spec fixes global_start = {spec.assistant.global_start}"
    return ""


def _score(split: int, start: int, local: StageTable, glob: StageTable, bridge: BridgeGeometry) -> dict[str, float]:
    n_l, n_g = len(local.stages), len(glob.stages)
    src, dst = local.stages[split - 1], glob.stage_input(start)
    body = local.stem.params + sum(s.params for s in local.stages[:split])
    body += sum(s.params for s in glob.stages[start - 1 :]) + glob.head.params
    return {
        "split": abs(split / n_l - PAPER_SPLIT),
        "alignment": abs((start - 1) / n_g - split / n_l),
        "resolution": abs(math.log2(src.reduction / dst.reduction)),
        "width": abs(math.log2(src.channels / dst.channels)),
        "added_params": bridge.params / max(1, body + bridge.params),
    }


# ---------------------------------------------------------------------- plan
def build_plan(spec: Spec, teacher: StageTable, student: StageTable, *, num_classes: int, image_size: int) -> Plan:
    """Derive the Plan for a spec from its two stage tables.

    Raises:
        PlanError: when no candidate satisfies the rules (the message lists them).
    """
    for role, table in (("teacher", teacher), ("student", student)):
        if not table.staged:
            raise PlanError(f"{role} {table.model}: {table.staged_error}", loc=(role,))
    pair, local_role, global_role = pair_roles(teacher, student)
    local, glob = _table(teacher, student, local_role), _table(teacher, student, global_role)
    for key, member, role in (("split", local, local_role), ("global_start", glob, global_role)):
        value = getattr(spec.assistant, key)
        if isinstance(value, int) and value > len(member.stages):
            raise PlanError(f"{key} is {value} but the {role} ({member.model}, the "
                            f"{'local' if member is local else 'global'} member) has {len(member.stages)} stages",
                            loc=("assistant", key))
    g = stage_graph(teacher, student, local_role)

    candidates: list[Candidate] = []
    best: tuple[float, int, int, BridgeGeometry] | None = None
    for path in candidate_paths(g):
        u, v = next((a, b) for a, b in zip(path, path[1:], strict=False) if g.edges[a, b]["kind"] == "bridge")
        split, start = u[1], v[1]
        reason = _check(split, start, local, glob, pair, spec)
        bridge, why = bridge_geometry(local.stages[split - 1], glob.stage_input(start), spec, image_size)
        reason = reason or why
        if reason or bridge is None:
            candidates.append(Candidate(split=split, global_start=start, valid=False, reason=reason))
            continue
        parts = _score(split, start, local, glob, bridge)
        score = round(sum(WEIGHTS[k] * val for k, val in parts.items()), 6)
        candidates.append(Candidate(split=split, global_start=start, valid=True, score=score,
                                    components={k: round(val, 6) for k, val in parts.items()}))
        if best is None or (score, split, start) < best[:3]:
            best = (score, split, start, bridge)
    candidates.sort(key=lambda c: (not c.valid, c.score if c.score is not None else 0.0, c.split, c.global_start))
    if best is None:
        lines = "; ".join(f"{local_role} stage {c.split} -> {global_role} stage {c.global_start}: {c.reason}"
                          for c in candidates)
        raise PlanError(f"no valid assistant for {teacher.model} -> {student.model}: {lines}")
    score, split, start, bridge = best

    parts = _assistant_parts(local_role, global_role, local, glob, split, start, bridge, spec)
    reason = (
        f"{pair} pair: {local_role} {local.model} ({local.kind}) gives the local stages, "
        f"{global_role} {glob.model} ({glob.kind}) the global ones; keeps {split} of {len(local.stages)} local "
        f"stages (the paper keeps 3 of 4), resumes at {global_role} stage {start} of {len(glob.stages)}; "
        f"lowest score {score} of {sum(c.valid for c in candidates)} valid candidates ({SCORE_MEANING})"
    )
    losses = plan_losses(spec.distill, (pair, local_role))
    if losses.method == "fitnet":
        losses = losses.model_copy(update={"params": {**losses.params, **_hint_stages(spec, teacher, student)}})
    return Plan(
        **dict(losses),
        name=spec.name, num_classes=num_classes, image_size=image_size,
        teacher=teacher, student=student, pair=pair, local_role=local_role, global_role=global_role,
        split=split, global_start=start, assistant=parts, bridge=bridge,
        teacher_stages=spec.assistant.teacher_stages, shared_grad=spec.assistant.shared_grad,
        recompute=spec.assistant.recompute,
        candidates=candidates, reason=reason,
    )


LOCAL_STUDENT_EVIDENCE = (
    "Measured (docs/results.md, \"The local-student rule\", mean validation over 5 seeds, the student alone / "
    "with the InfoNCE terms / without): vit-to-cnn at 32 px 87.8 / 88.3 / 89.2 %, at 128 px with matched 8x8 "
    "grids 86.1 / 73.6 (2 seeds) / 87.6 %, mlp-to-cnn 84.4 / 86.1 / 87.6 %, vit-to-cnn on Fashion-MNIST "
    "(3 seeds) 73.0 / 72.8 / 73.9 %, on mnist5k (3 seeds) 75.6 / 70.5 / 79.3 %; the homogeneous pairs (3 seeds) "
    "cnn-to-cnn 89.8 / 87.5 / 88.4 %, vit-to-vit 87.5 / 83.6 / 86.6 %. With them the student underfits "
    "its labels (training CE 1.55 against 0.66 at 128 px) while their gradient on it is 2.6-3.7x the label "
    "loss's at a cosine near 0."
)
"""What `feature_loss_note` and `plan_warnings` say of a `local_student`, with the figures behind the rule."""

LOCAL_STUDENT_CAP = (
    "What is left in this direction (docs/results.md, \"The goal, dataset by dataset and pair by pair\", five "
    "seeds): the assistant, built on the student's stages, ended below the student alone on test in five of the "
    "seven settings measured and at most 2.1 points above it in the other two, and TAS was at most 1.0 "
    "validation point over the better of KD and OFA in five settings (behind KD in two); on the homogeneous "
    "pairs it was below the student alone. Compare on your data with "
    "`tasgen study SPEC --methods none,kd,ofa,tas`."
)
"""The measured cap of TAS where the student leads the assistant, and what to run about it."""


def _leading_kind(plan: Plan) -> str:
    """Which shape of pair makes the student lead the assistant, in the words of the plan's roles."""
    if plan.pair == "homogeneous":
        return "a homogeneous pair"
    return "the local member of the pair: its stages stay convolutional longer than the teacher's"


def feature_loss_note(plan: Plan) -> str | None:
    """Why a TAS plan has no InfoNCE terms when the pair's shape turned them off (None otherwise)."""
    if plan.method != "tas" or plan.feature.get("loss") != "none" or not local_student(plan.local_role):
        return None
    return (f"no InfoNCE terms: the student {plan.student.model} gives the assistant its stem and first stages "
            f"({_leading_kind(plan)}), where distill.feature.loss auto takes none. {LOCAL_STUDENT_EVIDENCE} "
            f"Set distill.feature.loss: infonce to keep the paper's terms. {LOCAL_STUDENT_CAP}")


def plan_warnings(plan: Plan) -> list[str]:
    """What in a valid plan deserves a word before training, each with what to do.

    A bridge with more parameters than the student (a wide global stage after the
    split, the MLP at ``mlp_ratio``) makes the assistant's new part the biggest thing
    the run trains. The rest are the assistant's measured failure modes
    (docs/results.md, "Where TAS hurts"): shapes of plan under which TAS was measured
    to fall behind the student trained alone, with the option that addresses each.
    """
    if plan.method != "tas":  # no assistant is built
        return []
    b, student = plan.bridge, plan.student
    warnings = []
    if b.params > student.params:
        warnings.append(
            f"the bridge has {b.params / 1e6:.2f}M parameters, more than the student {student.model} "
            f"({student.params / 1e6:.2f}M): it maps {b.in_channels} to {b.out_channels} channels with an MLP of "
            f"ratio {b.mlp_ratio:g}; lower assistant.bridge.mlp_ratio, or set assistant.split / assistant.global_start "
            "to narrower stages (`tasgen plan --all` lists the candidates)"
        )
    frozen_global = plan.local_role == "student" and plan.global_role == "teacher" and plan.teacher_stages == "frozen"
    if local_student(plan.local_role) and any(p.feature_weight > 0 for p in plan.loss_pairs):
        warnings.append(
            f"distill.feature.loss is {plan.feature.get('loss')} where the student {student.model} gives the "
            f"assistant its stem and stages 1-{plan.split}, which feed the teacher's stages ({_leading_kind(plan)}): "
            "the direction in which "
            f"the InfoNCE terms were measured to do harm, so auto turns them off here. {LOCAL_STUDENT_EVIDENCE} "
            "Set distill.feature.loss: auto, or compare on your data with `tasgen study SPEC --methods none,kd,tas "
            "--arm 'tas-infonce:distill.method=tas;distill.feature.loss=infonce'`"
        )
    grid_in, grid_out = token_grid(plan.image_size, b.in_reduction)[0], token_grid(plan.image_size, b.out_reduction)[0]
    if frozen_global and grid_out >= 4 * grid_in:
        warnings.append(
            f"the bridge hands the teacher's frozen stages a {grid_out}x{grid_out} grid interpolated from the student's "
            f"{grid_in}x{grid_in} map: an assistant that reads so few positions was measured weaker than the student "
            "it teaches (vit-to-cnn at 32 px: 2x2 into 8x8, 83.79 % against 90.86 % on digits, 62-66 % against "
            "72.67 % on mnist5k, where each of its two ways into the student, the teacher -> assistant gradient in "
            "the shared stages and its own lesson, alone held the student 3.8 test points under KD; docs/results.md); "
            "an earlier split (assistant.split, `tasgen plan --all`) or larger images give the bridge a finer map"
        )
    return warnings


def _ownership(role: Role, spec: Spec) -> Ownership:
    return ownership(role, spec.assistant.teacher_stages)


def _assistant_parts(local_role: Role, global_role: Role, local: StageTable, glob: StageTable,
                     split: int, start: int, bridge: BridgeGeometry, spec: Spec) -> list[AssistantPart]:
    def part(name: str, role: Role, index: int, p: Part, mixer: str) -> AssistantPart:
        return AssistantPart(name=name, source=role, source_stage=index, modules=p.modules, mixer=mixer,
                             layout=p.layout, channels=p.channels, reduction=p.reduction,
                             prefix_tokens=p.prefix_tokens, params=p.params, ownership=_ownership(role, spec))

    out = [part("stem", local_role, 0, local.stem, "conv")]
    out += [part(f"stage{s.index}", local_role, s.index, s, s.mixer) for s in local.stages[:split]]
    out.append(AssistantPart(name="bridge", source="new", mixer="bridge", layout=bridge.out_layout,
                             channels=bridge.out_channels, reduction=bridge.out_reduction,
                             prefix_tokens=bridge.out_prefix_tokens, params=bridge.params, ownership="new"))
    out += [part(f"stage{s.index}", global_role, s.index, s, s.mixer) for s in glob.stages[start - 1 :]]
    last = glob.stages[-1]
    out.append(AssistantPart(name="head", source=global_role, modules=[*glob.head.final_modules, "forward_head"],
                             mixer="head", layout=last.layout, channels=glob.head.num_features, reduction=last.reduction,
                             params=glob.head.params, ownership=_ownership(global_role, spec)))
    return out


def default_hint_stages(teacher: StageTable, student: StageTable) -> tuple[int, int]:
    """FitNet's middle layers: the teacher's middle stage ceil(n / 2), and the student stage of the
    closest total stride to it, so that the two grids agree where they can (ties: the closest
    relative depth, then the deeper stage)."""
    t = math.ceil(len(teacher.stages) / 2)
    want, depth = math.log2(teacher.stages[t - 1].reduction), t / len(teacher.stages)

    def distance(st: Stage) -> tuple[float, float, int]:
        return abs(math.log2(st.reduction) - want), abs(st.index / len(student.stages) - depth), -st.index

    return t, min(student.stages, key=distance).index


def _hint_stages(spec: Spec, teacher: StageTable, student: StageTable) -> dict[str, int]:
    """``distill.fitnet``'s stages, "auto" resolved by `default_hint_stages` and checked against the tables."""
    auto_t, auto_s = default_hint_stages(teacher, student)
    f = spec.distill.fitnet
    chosen = {"teacher_stage": auto_t if f.teacher_stage == "auto" else f.teacher_stage,
              "student_stage": auto_s if f.student_stage == "auto" else f.student_stage}
    for key, table in (("teacher_stage", teacher), ("student_stage", student)):
        if chosen[key] > len(table.stages):
            raise PlanError(f"{key} is {chosen[key]} but the {key.split('_')[0]} {table.model} has "
                            f"{len(table.stages)} stages", loc=("distill", "fitnet", key))
    return chosen


# The built-in baselines: which pair term carries their loss, from which field of their section.
_BASELINE_WEIGHTS = {"fitnet": ("feature", "weight"), "crd": ("feature", "weight"), "dkd": ("logit", None),
                     "dist": ("logit", None)}


_PAIR_METHODS = ("tas", "kd", "ofa", "none")
"""tasgen's methods whose terms are `distill.pairs`' (a package's method reads both weights of each pair)."""


def plan_losses(d: DistillSpec, roles: tuple[str, Role] | None = None) -> Losses:
    """The objective of ``distill.method``: the one derivation of the loss pairs and their settings.

    `build_plan` records it in the Plan, `tasgen plan` prints it, and the trainer's
    objectives (`TASObjective`, `OFAObjective`, the baselines', a plugin's) are built
    from it. Method kd has its own recipe (``distill.kd``: Hinton KD, logit-only);
    ofa's logit loss is always OFA; the baselines carry their recipe in ``params``
    (their ``distill.<method>`` section); a registered method of a package gets its
    ``distill.options`` entry and the weights of ``distill.pairs`` for its pairs. A
    pair with no non-zero term is left out. ``roles`` (the pair's kind and local role,
    as `pair_roles` gives them) resolve ``distill.feature.loss: auto``
    (`resolve_feature_loss`); the Losses record the resolved value.
    """
    from tasgen.methods import get_method

    method = get_method(d.method)
    if d.method == "kd":
        ce_weight = d.kd.ce_weight
        logits: dict[str, float | str] = {"loss": "kd", "temperature": d.kd.temperature}
    else:
        ce_weight = d.ce.weight
        loss = "ofa" if d.method == "ofa" else d.logits.loss
        logits = {"loss": loss, "temperature": d.logits.resolved_temperature(loss)}
        if logits["temperature"] == "auto":  # chosen from the teacher when training starts
            logits["threshold"] = d.logits.auto_threshold
        if loss == "ofa":
            logits["eps"] = d.logits.eps
    feature_loss = resolve_feature_loss(d.feature.loss, roles)
    feature = {"loss": feature_loss, "pool": d.feature.pool, "dim": d.feature.dim,
               "temperature": d.feature.temperature, "learnable_temperature": d.feature.learnable_temperature,
               "negatives": d.feature.negatives, "same_class": d.feature.same_class}
    params: dict = {}
    if d.method in _BASELINE_WEIGHTS:
        params = getattr(d, d.method).model_dump(mode="json")
        term, key = _BASELINE_WEIGHTS[d.method]
        weight = float(params[key]) if key else 1.0
        if term == "feature":
            feature = {"loss": d.method, "pool": d.feature.pool}
            logits = {}
        else:
            feature = {"loss": "none", "pool": d.feature.pool}
            logits = {"loss": d.method, "temperature": params["temperature"]}
        pairs = [LossPair(name="teacher_student", target="teacher", learner="student",
                          feature_weight=weight if term == "feature" else 0.0,
                          logit_weight=weight if term == "logit" else 0.0)]
        pairs = [p for p in pairs if p.feature_weight > 0 or p.logit_weight > 0]
    else:
        if method.params is not None and method.section is None:
            params = method.params.model_validate(d.options.get(d.method, {})).model_dump(mode="json")
        if d.method == "tas" and d.warmup_epochs > 0:  # recorded only when set: runs without one keep their hash
            params = {"warmup_epochs": d.warmup_epochs}
        pairs = []
        for name in method.pairs:
            p = getattr(d.pairs, name)
            if not p.enabled:
                continue
            target, learner = name.split("_")
            feature_weight = p.feature_weight if d.method == "tas" and feature_loss != "none" else 0.0
            if d.method not in _PAIR_METHODS:  # a package's method reads both weights
                feature_weight = p.feature_weight
            logit_weight = d.kd.kd_weight if d.method == "kd" else p.logit_weight
            if feature_weight > 0 or logit_weight > 0:
                pairs.append(LossPair(name=name, target=target, learner=learner,
                                      feature_weight=feature_weight, logit_weight=logit_weight))
    return Losses(
        method=d.method, loss_pairs=pairs, ce_weight=ce_weight, label_smoothing=d.ce.label_smoothing,
        feature=feature, logits=logits, params=params,
    )


def objective_record(d: DistillSpec, roles: tuple[str, Role] | None = None) -> dict | None:
    """What of ``distill`` a run's result depends on: `plan_losses` without the settings its method never reads.

    Two specs with equal records train the same objective, whatever else their
    ``distill`` sections say (method kd does not read ``distill.logits``, the student
    alone reads no loss pair's settings), so a run recorded under other defaults of
    a method it does not use is still the same run. ``roles`` resolve
    ``distill.feature.loss: auto`` as `plan_losses` does; without them an auto that
    a feature term reads stays "auto", equal to neither value. None when the method
    is not registered here (its plugin is missing): such a record decides nothing.
    """
    from tasgen.methods import MethodError

    try:
        losses = plan_losses(d, roles)
    except MethodError:
        return None
    record = losses.model_dump(mode="json")
    if roles is None and d.feature.loss == "auto" and "dim" in record["feature"]:
        record["feature"]["loss"] = "auto"  # its value depends on the pair, which is not known here
    return _read_settings(record)


def planned_objective(plan: Mapping[str, Any]) -> dict | None:
    """`objective_record` of the objective a run's ``plan.json`` says it trained (None when it does not say).

    The plan records the objective as its version of tasgen resolved it, so a run
    whose spec still reads the same is another run when a default it relies on now
    resolves otherwise (``distill.logits.temperature: auto`` was T 4 for kd before it
    was chosen from the teacher).
    """
    fields = tuple(Losses.model_fields)
    if not all(f in plan for f in fields):
        return None
    try:
        losses = Losses.model_validate({f: plan[f] for f in fields})
    except ValueError:
        return None
    return _read_settings(losses.model_dump(mode="json"))


def _read_settings(record: dict) -> dict:
    """``record`` (a `Losses` dump) without the feature and logit settings no term of it reads."""
    pairs = record["loss_pairs"]
    if not any(p["feature_weight"] > 0 for p in pairs) and record["method"] in _PAIR_METHODS:
        record["feature"] = {"pool": record["feature"].get("pool", "avg")}  # built in; no feature term reads the rest
    if not any(p["logit_weight"] > 0 for p in pairs):
        record["logits"] = {}
    return record
