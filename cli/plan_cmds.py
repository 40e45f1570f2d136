"""`tasgen plan` and `tasgen emit`: show the assistant a spec compiles to."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from tasgen_cli._args import OverwriteOpt, SetOpt, SpecArg
from tasgen_cli._errors import say_created, user_errors


class PlanFormat(str, Enum):
    table = "table"
    json = "json"
    dot = "dot"
    mermaid = "mermaid"
    svg = "svg"
    png = "png"


class EmitFormat(str, Enum):
    source = "source"
    summary = "summary"




def _load_plan(spec: Path, overrides: list[str] | None, *, use_cache: bool = True):
    from tasgen.compiler import plan_spec
    from tasgen.spec import load_spec

    with user_errors(reading_spec=True):
        loaded = load_spec(spec, overrides or [])
        return loaded, plan_spec(loaded, use_cache=use_cache)


def _fmt(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K" if n >= 1e3 else str(n)


def render_plan_table(plan, *, show_all: bool, exact: dict[str, tuple[int, int]] | None = None) -> None:
    from rich.table import Table

    from tasgen.plan_views import exit_branches, method_members
    from tasgen.planner import SCORE_MEANING, plan_warnings
    from tasgen_cli._render import console

    console.print(f"[bold]{plan.name}[/]  plan {plan.hash}  method {plan.method}")
    console.print(method_members(plan))
    if plan.method == "tas":
        _assistant_tables(plan, exact)
    branches = exit_branches(plan)
    if branches:
        table = Table(title="exit branches (new)", title_justify="left")
        for col in ("part", "reads", "layers", "params"):
            table.add_column(col, justify="right" if col == "params" else "left")
        for branch in branches:
            table.add_row(branch.name, branch.reads, branch.body, _fmt(branch.params))
        console.print(table)
    _loss_table(plan)
    if show_all and plan.method == "tas":
        cands = Table(title=f"candidates ({plan.local_role} stage -> {plan.global_role} stage; {SCORE_MEANING})",
                      title_justify="left")
        for col in ("split", "global start", "score", "components", "verdict"):
            cands.add_column(col)
        for c in plan.candidates:
            chosen = c.split == plan.split and c.global_start == plan.global_start
            verdict = "[bold green]chosen[/]" if chosen else ("valid" if c.valid else f"[red]{c.reason}[/]")
            comps = " ".join(f"{k}={v:.3g}" for k, v in c.components.items())
            cands.add_row(str(c.split), str(c.global_start), "" if c.score is None else f"{c.score:.3f}", comps, verdict)
        console.print(cands)
    for warning in plan_warnings(plan):
        console.print(f"[bold yellow]warning:[/] {warning}")


def _assistant_tables(plan, exact: dict[str, tuple[int, int]] | None) -> None:
    from rich.table import Table

    from tasgen.plan_views import describe_source, output_shape
    from tasgen_cli._render import console

    console.print(plan.reason)
    table = Table(title="assistant", title_justify="left")
    columns = ["#", "part", "from", "mixer", "layout", "output", "params", "role"] + (["GFLOPs"] if exact else [])
    for col in columns:
        table.add_column(col, justify="right" if col in ("#", "params", "GFLOPs") else "left")
    colours = {"shared": "cyan", "frozen": "white", "finetune": "yellow", "new": "bold magenta"}
    for i, part in enumerate(plan.assistant):
        params, flops = exact[part.name] if exact else (part.params, None)
        row = [str(i), part.name, describe_source(part), part.mixer, part.layout,
               "x".join(map(str, output_shape(part, plan.image_size))), _fmt(params),
               f"[{colours[part.ownership]}]{part.ownership}[/]"]
        table.add_row(*row, *([f"{flops / 1e9:.3f}"] if exact else []))
    console.print(table)
    b = plan.bridge
    console.print(f"bridge: {b.in_channels}ch /{b.in_reduction} {b.in_layout} -> {b.out_channels}ch /{b.out_reduction} "
                  f"{b.out_layout}" + (f" +{b.out_prefix_tokens} prefix ({b.prefix_source})" if b.out_prefix_tokens else "")
                  + f", resample {b.resample}, window {b.window_size}, {b.heads} heads")


def _loss_table(plan) -> None:
    from rich.table import Table

    from tasgen.planner import feature_loss_note
    from tasgen_cli._render import console

    losses = Table(title=f"losses ({plan.method})", title_justify="left")
    for col in ("pair", "target -> learner", "feature", "logits"):
        losses.add_column(col)
    losses.add_row("ce", "labels -> student", "-", f"{plan.ce_weight} (smoothing {plan.label_smoothing})")
    logit = f"{plan.logits['loss']}, T {plan.logits['temperature']}" if plan.logits else ""
    if plan.logits.get("temperature") == "auto":  # chosen from the teacher when training starts
        logit += f": 4 if the teacher's confidence >= {plan.logits['threshold']:g}, else 1"
    if "eps" in plan.logits:  # OFA's exponent
        logit += f", eps {plan.logits['eps']}"
    if plan.method == "ofa":  # the trainer pulls every exit branch and the final logits
        logit += f", exits 1-{len(plan.student.stages)} + final"
    feature = {"infonce": "InfoNCE", "fitnet": "hint MSE", "crd": "CRD NCE"}.get(str(plan.feature.get("loss")),
                                                                                 str(plan.feature.get("loss")))
    if plan.feature.get("loss") == "infonce" and plan.feature.get("same_class", "negative") != "negative":
        feature += f", same class {plan.feature['same_class']}"  # how a query's own class is treated
    for pair in plan.loss_pairs:
        losses.add_row(pair.name, f"{pair.target} -> {pair.learner}",
                       f"{pair.feature_weight} ({feature})" if pair.feature_weight else "-",
                       f"{pair.logit_weight} ({logit})" if pair.logit_weight else "-")
    console.print(losses)
    if plan.params:  # the method's own hyper-parameters (its distill.<method> section, resolved)
        console.print(f"{plan.method} parameters: " + ", ".join(f"{k} {v}" for k, v in plan.params.items()))
    note = feature_loss_note(plan)
    if note:
        console.print(f"[bold]note:[/] {note}")


def register(app: typer.Typer) -> None:
    """Add `plan` and `emit` to the app."""

    @app.command()
    def plan(
        spec: SpecArg,
        set_: SetOpt = None,
        format: Annotated[PlanFormat, typer.Option("--format", "-f", help="Output format.")] = PlanFormat.table,
        all_: Annotated[bool, typer.Option("--all", help="List every candidate with its score.")] = False,
        exact: Annotated[bool, typer.Option("--exact", help="Count parameters and FLOPs on the built modules.")] = False,
        no_cache: Annotated[bool, typer.Option("--no-cache", help="Re-read the models' stage tables.")] = False,
        output: Annotated[Path | None, typer.Option(
            "--output", "-o", help="The picture to write (svg, png); default <name>-plan.<format>.",
            show_default=False)] = None,
        overwrite: OverwriteOpt = False,
    ) -> None:
        """Derive the assistant for SPEC and show it (a table, JSON, DOT, Mermaid, or a picture)."""
        loaded, result = _load_plan(spec, set_, use_cache=not no_cache)
        if format is not PlanFormat.table:  # the table prints them last; other formats keep stdout clean
            from tasgen.planner import plan_warnings

            for warning in plan_warnings(result):
                typer.echo(f"warning: {warning}", err=True)
        if format in (PlanFormat.svg, PlanFormat.png):
            from tasgen.output import missing_folders
            from tasgen.plan_draw import draw_plan

            target = output or Path(f"{result.name}-plan.{format.value}")
            created = missing_folders(target)
            with user_errors(reading_spec=True):
                written = draw_plan(result, target, show_scores=all_, format=format.value, overwrite=overwrite)
            say_created(created)
            typer.echo(f"wrote {written} (plan {result.hash})", err=True)
        elif format is PlanFormat.json:
            typer.echo(result.to_json())
        elif format is PlanFormat.dot:
            from tasgen.plan_views import to_dot

            typer.echo(to_dot(result), nl=False)
        elif format is PlanFormat.mermaid:
            from tasgen.plan_views import to_mermaid

            typer.echo(to_mermaid(result), nl=False)
        else:
            counts = None
            if exact and result.method == "tas":  # the other methods build no assistant to count
                from tasgen.emit.summary import part_costs

                counts = part_costs(loaded.spec, result)
            render_plan_table(result, show_all=all_, exact=counts)

    @app.command()
    def emit(
        spec: SpecArg,
        set_: SetOpt = None,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the assistant's source here.")] = None,
        format: Annotated[EmitFormat, typer.Option("--format", "-f", help="source or summary.")] = EmitFormat.source,
        overwrite: OverwriteOpt = False,
    ) -> None:
        """Emit the assistant as a standalone Python file, or summarise the modules."""
        loaded, result = _load_plan(spec, set_)
        if format is EmitFormat.summary:
            from rich.table import Table

            from tasgen.emit.summary import system_costs
            from tasgen_cli._render import console

            rows = system_costs(loaded.spec, result)
            table = Table(title=f"{result.name} at {result.image_size}px, batch 1", title_justify="left")
            for col in ("part", "params", "trainable", "GFLOPs (fwd)"):
                table.add_column(col, justify="left" if col == "part" else "right")
            for row in rows:
                table.add_row(row.name, _fmt(row.params), _fmt(row.trainable), f"{row.flops / 1e9:.3f}")
            console.print(table)
            return
        from tasgen.emit.source import assistant_source

        text = assistant_source(loaded.spec, result)
        if output is None:
            typer.echo(text, nl=False)
        else:
            from tasgen.output import missing_folders, write_text

            created = missing_folders(output)
            with user_errors(reading_spec=True):
                write_text(output, text, overwrite=overwrite)
            say_created(created)
            typer.echo(f"wrote {output} (plan {result.hash})", err=True)
