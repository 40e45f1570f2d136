"""A picture of a plan: the planner's own stage graph, drawn by networkx on matplotlib.

The teacher's parts make the top row and the student's the bottom row; every
candidate bridge (a local stage -> a global stage) is a grey edge, and the chosen
assistant path is drawn thick, its parts coloured by ownership (shared with the
student, frozen from the teacher, a fine-tuned teacher copy, new).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import networkx as nx

from tasgen.output import check_output, written_file
from tasgen.plan import Plan
from tasgen.planner import stage_graph

__all__ = ["OWNERSHIP_COLOURS", "draw_plan", "plan_figure"]

OWNERSHIP_COLOURS = {"shared": "#7fc8f8", "frozen": "#c8c8c8", "finetune": "#f6d365", "new": "#f4978e"}
_UNUSED = "#ffffff"
_PATH = "#c0392b"
_CANDIDATE = "#b0b0b0"
_FORMATS = ("svg", "png", "pdf")


def _assistant_nodes(plan: Plan) -> dict[Any, str]:
    """Graph node -> ownership, for the parts the assistant borrows."""
    out: dict[Any, str] = {}
    for part in plan.assistant:
        if part.source == "new":
            continue
        key = "head" if part.name == "head" else part.source_stage
        out[(part.source, key)] = part.ownership
    return out


def _path_edges(plan: Plan, g: nx.DiGraph) -> list[tuple[Any, Any]]:
    """The chosen input -> logits path: local stem .. split, the bridge, global start .. head."""
    local, glob = plan.local_role, plan.global_role
    nodes = ["input", *[(local, i) for i in range(plan.split + 1)]]
    nodes += [(glob, j) for j in range(plan.global_start, len(plan.table(glob).stages) + 1)]
    nodes += [(glob, "head"), "logits"]
    edges = list(zip(nodes, nodes[1:], strict=False))
    missing = [e for e in edges if not g.has_edge(*e)]
    if missing:  # the plan and the graph come from the same tables; this would be a planner bug
        raise RuntimeError(f"bug: the plan's path leaves the stage graph at {missing[0]}")
    return edges


def _layout(plan: Plan) -> dict[Any, tuple[float, float]]:
    pos: dict[Any, tuple[float, float]] = {}
    width = max(len(plan.teacher.stages), len(plan.student.stages)) + 1
    for role, y in (("teacher", 1.0), ("student", 0.0)):
        table = plan.table(role)
        n = len(table.stages)
        # Spread a shorter model over the same width, so both heads line up.
        step = width / (n + 1)
        pos[(role, 0)] = (0.0, y)
        for i in range(1, n + 1):
            pos[(role, i)] = (i * step, y)
        pos[(role, "head")] = (width, y)
    pos["input"] = (-1.0, 0.5)
    pos["logits"] = (width + 1.0, 0.5)
    return pos


def _label(node: Any, g: nx.DiGraph) -> str:
    if isinstance(node, str):
        return node
    data = g.nodes[node]
    role, index = node
    if index == "head":
        return "head"
    if index == 0:
        return "stem"
    part = data["part"]
    return f"stage {index}\n{part.mixer} {part.channels}ch\n/{part.reduction}"


def plan_figure(plan: Plan, *, show_scores: bool = False):
    """The plan drawn on a new matplotlib `Figure` (no pyplot state is touched).

    Args:
        plan: the plan to draw.
        show_scores: label every candidate bridge with its score ("x" when invalid).

    Returns:
        The `matplotlib.figure.Figure`.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    g = stage_graph(plan.teacher, plan.student, plan.local_role)
    pos = _layout(plan)
    owned = _assistant_nodes(plan)
    path = _path_edges(plan, g)
    chosen_bridge = ((plan.local_role, plan.split), (plan.global_role, plan.global_start))

    width = max(len(plan.teacher.stages), len(plan.student.stages)) + 3
    fig = Figure(figsize=(max(8.0, 2.0 * width), 5.6), layout="constrained")
    ax = fig.add_subplot()
    ax.set_axis_off()

    bridges = [e for e in g.edges if g.edges[e]["kind"] == "bridge" and e != chosen_bridge]
    flows = [e for e in g.edges if g.edges[e]["kind"] == "flow" and e not in path]
    curve = "arc3,rad=0.08"
    nx.draw_networkx_edges(g, pos, ax=ax, edgelist=bridges, edge_color=_CANDIDATE, style="dashed", width=0.8,
                           arrows=True, arrowsize=8, connectionstyle=curve, node_size=3400)
    nx.draw_networkx_edges(g, pos, ax=ax, edgelist=flows, edge_color="#555555", width=1.0, arrows=True,
                           arrowsize=10, node_size=3400)
    nx.draw_networkx_edges(g, pos, ax=ax, edgelist=[e for e in path if e != chosen_bridge], edge_color=_PATH,
                           width=3.0, arrows=True, arrowsize=14, node_size=3400)
    nx.draw_networkx_edges(g, pos, ax=ax, edgelist=[chosen_bridge], edge_color=OWNERSHIP_COLOURS["new"], width=4.0,
                           arrows=True, arrowsize=16, connectionstyle=curve, node_size=3400)

    parts = [n for n in g.nodes if not isinstance(n, str)]
    nx.draw_networkx_nodes(g, pos, ax=ax, nodelist=parts, node_shape="s", node_size=3400,
                           node_color=[OWNERSHIP_COLOURS[owned[n]] if n in owned else _UNUSED for n in parts],
                           edgecolors=[_PATH if n in owned else "#888888" for n in parts], linewidths=1.5)
    nx.draw_networkx_nodes(g, pos, ax=ax, nodelist=["input", "logits"], node_shape="o", node_size=1400,
                           node_color="#eeeeee", edgecolors="#555555")
    nx.draw_networkx_labels(g, pos, ax=ax, labels={n: _label(n, g) for n in g.nodes}, font_size=7)

    b = plan.bridge
    bridge_label = f"bridge\n{b.in_channels}ch/{b.in_reduction} -> {b.out_channels}ch/{b.out_reduction}"
    box = {"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85}
    if show_scores:
        scores = {}
        for c in plan.candidates:
            edge = ((plan.local_role, c.split), (plan.global_role, c.global_start))
            score = f"{c.score:.3f}" if c.valid and c.score is not None else "x"
            if edge == chosen_bridge:
                bridge_label += f"\nscore {score}"
            else:
                scores[edge] = score
        # Away from the middle, where the candidate edges cross.
        nx.draw_networkx_edge_labels(g, pos, ax=ax, edge_labels=scores, font_size=6, font_color="#666666",
                                     connectionstyle=curve, rotate=False, label_pos=0.78, bbox=box)
    nx.draw_networkx_edge_labels(g, pos, ax=ax, edge_labels={chosen_bridge: bridge_label}, font_size=7,
                                 font_weight="bold", connectionstyle=curve, rotate=False, bbox=box)

    for role, y in (("teacher", 1.0), ("student", 0.0)):
        table = plan.table(role)
        ax.annotate(f"{role}: {table.model}", (-1.4, y + 0.28), fontsize=10, fontweight="bold", annotation_clip=False)
    ax.set_title(f"{plan.name}  plan {plan.hash}  method {plan.method}: assistant = {plan.local_role} stem..stage "
                 f"{plan.split} -> bridge -> {plan.global_role} stage {plan.global_start}..head", fontsize=9)
    handles = [Patch(facecolor=c, edgecolor="#555555", label=k) for k, c in OWNERSHIP_COLOURS.items()]
    handles.append(Patch(facecolor=_UNUSED, edgecolor="#888888", label="not in the assistant"))
    ax.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7, frameon=False,
              bbox_to_anchor=(0.5, -0.12))
    ax.set_ylim(-0.45, 1.45)
    return fig


def draw_plan(
    plan: Plan, path: str | Path, *, show_scores: bool = False, format: str | None = None, overwrite: bool = False
) -> Path:
    """Draw the plan into an SVG, PNG or PDF file (the format from ``format`` or the suffix).

    SVG text stays text (searchable, selectable), not glyph outlines. An existing
    file is replaced only with ``overwrite`` (see `tasgen.output`).

    Returns:
        The path written.

    Raises:
        OutputError: ``path`` cannot be written (exists, is a folder, read-only).
    """
    import matplotlib

    out = Path(path)
    fmt = (format or out.suffix.lstrip(".") or "svg").lower()
    if fmt not in _FORMATS:
        raise ValueError(f"cannot draw a plan as {fmt!r}: use one of {', '.join(_FORMATS)}")
    check_output(out, overwrite=overwrite)
    fig = plan_figure(plan, show_scores=show_scores)
    with written_file(out, overwrite=overwrite) as staged, matplotlib.rc_context(
        {"svg.fonttype": "none", "svg.hashsalt": plan.hash}
    ):
        fig.savefig(staged, format=fmt, dpi=150)
    return out
