"""`tasgen train`, `tasgen eval`, `tasgen export`: thin shells over tasgen.train.

torch and the training modules are imported inside the commands, so that
`tasgen --help` and the commands that need no model stay fast.
"""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from tasgen_cli._args import SetOpt, SpecArg
from tasgen_cli._errors import USER_ERROR_EXIT, user_errors


class Role(str, Enum):
    student = "student"
    teacher = "teacher"


def register(app: typer.Typer) -> None:
    """Add the train, eval and export commands to ``app``."""
    app.command("train")(train_command)
    app.command("eval")(eval_command)
    app.command("export")(export_command)


def train_command(
    spec: SpecArg,
    set_: SetOpt = None,
    role: Annotated[Role, typer.Option(help="student: distil (fits the teacher first if needed); teacher: fit the teacher alone.")] = Role.student,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run from its last/ checkpoint.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Start over in a run folder that holds an earlier run, removing its checkpoints and metrics.")
    ] = False,
    epochs: Annotated[
        int | None,
        typer.Option("--epochs", min=1, help="Stop after this epoch; the schedule still spans train.epochs (continue with --resume)."),
    ] = None,
    accept_changes: Annotated[
        bool, typer.Option("--accept-changes", help="With --resume: continue although the spec differs from the run's "
                           "spec.yaml (rewritten; the old one is kept as spec.until-epoch-N.yaml).")
    ] = False,
    nproc: Annotated[
        int,
        typer.Option("--nproc", min=1, help="Train in N processes on this machine (DDP through torchrun; one per GPU). "
                     "data.batch_size is per process."),
    ] = 1,
) -> None:
    """Train: distil the student of SPEC into <train.output_dir>/<name>/."""
    if resume and overwrite:
        raise typer.BadParameter("--resume continues the run, --overwrite starts it over: give one")
    if accept_changes and not resume:
        raise typer.BadParameter("--accept-changes lets --resume continue under a changed spec: add --resume")
    if nproc > 1:
        if "LOCAL_RANK" in os.environ:
            typer.echo("error: --nproc starts torchrun itself; under torchrun leave it out", err=True)
            raise typer.Exit(USER_ERROR_EXIT)
        from tasgen_cli.launch import launch

        args = [str(spec), *(a for value in set_ or [] for a in ("--set", value)), "--role", role.value]
        args += ["--resume"] if resume else []
        args += ["--overwrite"] if overwrite else []
        args += ["--accept-changes"] if accept_changes else []
        args += ["--epochs", str(epochs)] if epochs is not None else []
        raise typer.Exit(launch(nproc, args))
    with user_errors():
        from tasgen.spec.load import load_spec
        from tasgen.train import train

        loaded = load_spec(spec, set_ or [])
        result = train(loaded, role=role.value, resume=resume, overwrite=overwrite, max_epochs=epochs,
                       accept_changes=accept_changes)
    if os.environ.get("RANK", "0") != "0":
        return
    from tasgen.study.figures import plot_run

    plot_run(result.run_dir)
    state = "finished" if result.finished else f"stopped after epoch {result.epochs_done} of {result.epochs}"
    last, val = result.last.get(f"{role.value}_top1"), result.last.get(f"val_{role.value}_top1")
    figures = [f"test top-1 {last:.2f}% at the last epoch"] if last is not None else []
    figures += [f"best validation top-1 {result.best_top1:.2f}%"] if val is not None else []
    typer.echo(f"{state}: {result.run_dir} ({'; '.join(figures + ['curves in curves.png'])})")


def eval_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder, <output_dir>/<name>.")],
    last: Annotated[bool, typer.Option("--last", help="Use last/ instead of best/.")] = False,
) -> None:
    """Evaluate a run: top-1 / top-5 of student, assistant and teacher on the eval split."""
    with user_errors():
        from tasgen.train import evaluate

        result = evaluate(run_dir, "last" if last else "best")
    from rich.table import Table

    from tasgen_cli._render import console

    table = Table(title=f"{run_dir} (epoch {result['epoch']}, {result['images']} eval images)")
    for column in ("model", "top-1 %", "top-5 %"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for model in ("student", "assistant", "teacher"):
        if f"{model}_top1" in result:
            table.add_row(model, f"{result[f'{model}_top1']:.2f}", f"{result[f'{model}_top5']:.2f}")
    console.print(table)


class ExportFormat(str, Enum):
    safetensors = "safetensors"
    timm = "timm"
    onnx = "onnx"


def export_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder, <output_dir>/<name>.")],
    output: Annotated[Path, typer.Option(
        "-o", "--output", help="The file (safetensors, onnx) or folder (timm) to write.")],
    last: Annotated[bool, typer.Option("--last", help="Export last/ instead of best/.")] = False,
    ema: Annotated[bool, typer.Option("--ema", help="Export the EMA weights.")] = False,
    format: Annotated[ExportFormat, typer.Option(
        "--format", "-f", help="safetensors: a plain state_dict; timm: a folder for "
        "timm.create_model('local-dir:FOLDER', pretrained=True); onnx: checked against onnxruntime.")
    ] = ExportFormat.safetensors,
    push_to_hub: Annotated[str | None, typer.Option(
        "--push-to-hub", metavar="REPO", help="With --format timm: also upload to this Hugging Face Hub repo "
        "(ORG/NAME; needs network and `hf auth login`).", show_default=False)] = None,
) -> None:
    """Export the student: a plain state_dict (safetensors), a timm model folder, or ONNX."""
    checkpoint = "last" if last else "best"
    if push_to_hub is not None and format is not ExportFormat.timm:
        typer.echo("--push-to-hub uploads a timm folder: add --format timm", err=True)
        raise typer.Exit(USER_ERROR_EXIT)
    with user_errors():
        if format is ExportFormat.timm:
            from tasgen.train.export_formats import export_timm

            path = export_timm(run_dir, output, checkpoint=checkpoint, ema=ema, push_to_hub=push_to_hub)
            typer.echo(f"timm model folder written to {path}; load it with "
                       f"timm.create_model('local-dir:{path}', pretrained=True)")
            if push_to_hub is not None:
                typer.echo(f"pushed to https://huggingface.co/{push_to_hub}; load it with "
                           f"timm.create_model('hf-hub:{push_to_hub}', pretrained=True)")
            return
        if format is ExportFormat.onnx:
            from tasgen.train.export_formats import ONNX_ATOL, export_onnx

            path, diff = export_onnx(run_dir, output, checkpoint=checkpoint, ema=ema)
            check = (f"onnxruntime agrees with PyTorch (max |logit difference| {diff:.1e} <= {ONNX_ATOL})"
                     if diff is not None else "not checked: pip install 'tasgen[onnx]' for onnxruntime")
            typer.echo(f"ONNX written to {path}; {check}")
            return
        from tasgen.train import export_student

        path = export_student(run_dir, output, checkpoint=checkpoint, ema=ema)
    typer.echo(f"student weights written to {path}")
