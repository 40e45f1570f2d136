"""Text views of a Plan: output shapes, Graphviz DOT and Mermaid (no torch)."""

from __future__ import annotations

from dataclasses import dataclass

from tasgen.arch.table import Part, sample_shape, token_grid
from tasgen.plan import AssistantPart, Plan


def output_shape(part: AssistantPart | Part, image_size: int) -> tuple[int, ...]:
    """Shape of one sample's output of a part (an assistant part or a stage table's), in its own layout."""
    if getattr(part, "mixer", None) == "head":
        return (part.channels,)
    return sample_shape(part.layout, part.channels, token_grid(image_size, part.reduction), part.prefix_tokens)


def describe_source(part: AssistantPart) -> str:
    """Where a part comes from: "new", or its source model and stage ("teacher stage 3")."""
    if part.source == "new":
        return "new"
    where = "stem" if part.source_stage == 0 else ("head" if part.source_stage is None else f"stage {part.source_stage}")
    return f"{part.source} {where}"


@dataclass(frozen=True)
class ExitBranchView:
    """One of OFA-KD's exit branches as `tasgen.emit.ofa.ExitBranch` builds it, counted without torch."""

    name: str
    reads: str
    body: str
    params: int


def exit_branches(plan: Plan) -> list[ExitBranchView]:
    """The exit branches method ofa adds after each student stage (none for another method)."""
    if plan.method != "ofa":
        return []
    out = []
    k = plan.num_classes
    for s in plan.student.stages:
        c = s.channels
        if s.layout == "NCHW":
            body, params = "1x1 conv, BN, ReLU, mean pool, linear", c * c + 2 * c
        else:
            pool = "class token" if s.layout == "NLC" and s.prefix_tokens else "mean pool"
            body, params = f"LayerNorm, {pool}, linear", 2 * c
        out.append(ExitBranchView(name=f"exit{s.index}", reads=f"student stage {s.index} ({c}ch {s.layout})",
                                  body=f"{body} -> {k} logits", params=params + c * k + k))
    return out


def method_members(plan: Plan) -> str:
    """One sentence: what the plan's method builds and trains (TAS alone adds the assistant).

    The built-in methods are described here; a package's registered method by its registry summary.
    """
    student, teacher, method = plan.student.model, plan.teacher.model, plan.method
    p = plan.params
    known = {
        "tas": lambda: f"method tas: teacher {teacher} ({plan.ownership('teacher')}), student {student} and the "
                       "assistant below, distilled jointly",
        "ofa": lambda: f"method ofa: no assistant; student {student} with an exit branch after each stage, every exit "
                       f"and the student's logits pulled toward teacher {teacher}'s (frozen) with the OFA loss",
        "kd": lambda: f"method kd: no assistant; student {student} pulled toward teacher {teacher}'s (frozen) logits",
        "fitnet": lambda: f"method fitnet: no assistant; a new regressor on student {student}'s stage "
                          f"{p.get('student_stage')} pulled toward teacher {teacher}'s (frozen) stage "
                          f"{p.get('teacher_stage')} with a hint MSE",
        "crd": lambda: f"method crd: no assistant; new embedding heads on student {student}'s and teacher {teacher}'s "
                       "(frozen) pooled final features, contrasted against a memory of "
                       f"{p.get('negatives')} negatives (CRD NCE)",
        "dkd": lambda: f"method dkd: no assistant; student {student} pulled toward teacher {teacher}'s (frozen) "
                       "logits with decoupled KD (target-class and non-target-class terms, weighted apart)",
        "dist": lambda: f"method dist: no assistant; student {student}'s predictions matched to teacher {teacher}'s "
                        "(frozen) by inter- and intra-class Pearson correlation",
        "none": lambda: f"method none: no assistant, no teacher; student {student} on the labels alone",
    }
    if method in known:
        return known[method]()
    from tasgen.methods import get_method  # a package's method: what its registration says

    entry = get_method(method)
    return f"method {method} (from {entry.origin}): no assistant; student {student}, teacher {teacher}: {entry.summary}"


def _node(part: AssistantPart) -> str:
    return f"a_{part.name}"


def to_dot(plan: Plan) -> str:
    """The assistant as a Graphviz digraph, next to both models' stage chains."""
    colours = {"shared": "lightblue", "frozen": "lightgrey", "finetune": "khaki", "new": "orange"}
    lines = [f'digraph "{plan.name}" {{', "  rankdir=LR;", "  node [shape=box, style=filled];"]
    for role in ("student", "teacher"):
        table = plan.table(role)
        lines.append(f'  subgraph "cluster_{role}" {{ label="{role}: {table.model}"; color=grey;')
        names = [f"{role}_stem"] + [f"{role}_s{s.index}" for s in table.stages]
        labels = ["stem"] + [f"stage {s.index}\\n{s.mixer} {s.channels}ch /{s.reduction}" for s in table.stages]
        for n, label in zip(names, labels, strict=True):
            lines.append(f'    {n} [label="{label}", fillcolor=white];')
        lines.append("    " + " -> ".join(names) + ";")
        lines.append("  }")
    lines.append('  subgraph "cluster_assistant" { label="assistant"; color=black;')
    for part in plan.assistant:
        label = f"{part.name}\\n{describe_source(part)}\\n{part.ownership}"
        lines.append(f'    {_node(part)} [label="{label}", fillcolor={colours[part.ownership]}];')
    lines.append("    " + " -> ".join(_node(p) for p in plan.assistant) + ";")
    lines.append("  }")
    for part in plan.assistant:
        if part.source != "new" and part.source_stage is not None:
            target = f"{part.source}_stem" if part.source_stage == 0 else f"{part.source}_s{part.source_stage}"
            lines.append(f"  {target} -> {_node(part)} [style=dashed, arrowhead=none];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(plan: Plan) -> str:
    """The assistant as a Mermaid flowchart (renders on GitHub and in many editors)."""
    lines = ["flowchart LR"]
    for part in plan.assistant:
        lines.append(f'  {_node(part)}["{part.name}<br/>{describe_source(part)}<br/>{part.ownership}"]')
    lines.append("  " + " --> ".join(_node(p) for p in plan.assistant))
    lines += [f"  classDef {k} fill:{v}" for k, v in
              (("shared", "#cde"), ("frozen", "#ddd"), ("finetune", "#eed"), ("new", "#fc9"))]
    for part in plan.assistant:
        lines.append(f"  class {_node(part)} {part.ownership}")
    return "\n".join(lines) + "\n"
