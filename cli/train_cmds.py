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

from tasgen_cli._args import OverwriteOpt, SetOpt, SpecArg
from tasgen_cli._errors import USER_ERROR_EXIT, say_created, user_errors


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
    role: Annotated[Role, typer.Option(help="student: distil (fits the teacher into the teacher store first if needed); teacher: fit the teacher alone, into the store (`tasgen teachers`).")] = Role.student,
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
    if "LOCAL_RANK" in os.environ:  # a worker of `--nproc`'s torchrun: stop when torchrun dies
        from tasgen.parent_death import die_with_parent_from_env

        die_with_parent_from_env()
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


class EvalSplit(str, Enum):
    test = "test"
    val = "val"
    both = "both"


def eval_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder, <output_dir>/<name>.")],
    last: Annotated[bool, typer.Option("--last", help="Use last/ instead of best/.")] = False,
    split: Annotated[EvalSplit, typer.Option(
        "--split", help="test, val (the validation split held out of the training images) or both.")
    ] = EvalSplit.both,
    data: Annotated[Path | None, typer.Option(
        "--data", metavar="FILE", help="Evaluate on other data: a YAML file with a data: mapping (a spec, or "
        "that section alone) whose keys replace the run's; paths relative to it.", show_default=False)
    ] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", metavar="data.KEY=VALUE", help="Override the run's data, e.g. --set data.root=other "
        "(repeatable; paths relative to the working folder).", show_default=False)
    ] = None,
) -> None:
    """Evaluate a run: top-1 / top-5 of student, assistant and teacher on the test and validation splits."""
    with user_errors():
        from tasgen.spec.load import load_eval_data
        from tasgen.train import evaluate
        from tasgen.train.run_folder import RunFolder

        other = None
        if data is not None or set_:
            spec_file = RunFolder(run_dir).spec_file
            other = load_eval_data(spec_file, data, set_ or []).spec.data if spec_file.is_file() else None
        result = evaluate(run_dir, "last" if last else "best", split=split.value, data=other)
    from rich.table import Table

    from tasgen_cli._render import console, print_table

    # Test results carry bare keys, validation results a val_ prefix (see tasgen.train.evaluate).
    splits = (("", "test", "images"), ("val_", "validation", "val_images"))
    shown = [(prefix, name, result[count]) for prefix, name, count in splits if count in result]
    sizes = ", ".join(f"{count} {name} images" for _, name, count in shown)
    # Above the table, unwrapped: a long run path must not split the figures.
    console.print(f"{run_dir} on {result['data']} (epoch {result['epoch']}; {sizes})", soft_wrap=True, markup=False)
    table = Table()
    table.add_column("model")
    for _, name, _ in shown:
        table.add_column(f"{name} top-1 %", justify="right")
        table.add_column(f"{name} top-5 %", justify="right")
    for model in ("student", "assistant", "teacher"):
        if any(f"{prefix}{model}_top1" in result for prefix, _, _ in shown):
            cells = [f"{result[f'{prefix}{model}_top{k}']:.2f}" if f"{prefix}{model}_top{k}" in result else "-"
                     for prefix, _, _ in shown for k in (1, 5)]
            table.add_row(model, *cells)
    print_table(table)
    if split is EvalSplit.both and "val_images" not in result:
        console.print("no validation split (data.val_fraction is 0): test split only")


class ExportPart(str, Enum):
    student = "student"
    assistant = "assistant"


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
    part: Annotated[ExportPart, typer.Option(
        "--part", help="student, or assistant: the whole TAS assistant (bridge and borrowed stages) as "
        "safetensors that `tasgen emit`'s Assistant().load_state_dict takes as is.")] = ExportPart.student,
    overwrite: OverwriteOpt = False,
) -> None:
    """Export the student (a plain state_dict, a timm model folder, or ONNX) or the whole assistant."""
    from tasgen.output import missing_folders

    checkpoint = "last" if last else "best"
    if part is ExportPart.assistant:
        if format is not ExportFormat.safetensors or ema or push_to_hub is not None:
            typer.echo("--part assistant writes safetensors for the emitted assistant.py: drop --format, --ema "
                       "and --push-to-hub (they apply to the student)", err=True)
            raise typer.Exit(USER_ERROR_EXIT)
        created = missing_folders(output)
        with user_errors():
            from tasgen.train import export_assistant

            path = export_assistant(run_dir, output, checkpoint=checkpoint, overwrite=overwrite)
        say_created(created)
        typer.echo(f"assistant weights written to {path}; load them with Assistant().load_state_dict("
                   f"safetensors.torch.load_file({str(path)!r})) of `tasgen emit SPEC -o assistant.py`")
        return
    if push_to_hub is not None and format is not ExportFormat.timm:
        typer.echo("--push-to-hub uploads a timm folder: add --format timm", err=True)
        raise typer.Exit(USER_ERROR_EXIT)
    created = missing_folders(output, kind="folder" if format is ExportFormat.timm else "file")
    with user_errors():
        if format is ExportFormat.timm:
            from tasgen.train.export_formats import export_timm

            path = export_timm(run_dir, output, checkpoint=checkpoint, ema=ema, push_to_hub=push_to_hub,
                               overwrite=overwrite)
            say_created(created[:-1])  # the model folder itself is the output
            typer.echo(f"timm model folder written to {path}; load it with "
                       f"timm.create_model('local-dir:{path}', pretrained=True)")
            if push_to_hub is not None:
                typer.echo(f"pushed to https://huggingface.co/{push_to_hub}; load it with "
                           f"timm.create_model('hf-hub:{push_to_hub}', pretrained=True)")
            return
        if format is ExportFormat.onnx:
            from tasgen.train.export_formats import ONNX_ATOL, export_onnx

            path, diff = export_onnx(run_dir, output, checkpoint=checkpoint, ema=ema, overwrite=overwrite)
            say_created(created)
            check = (f"onnxruntime agrees with PyTorch (max |logit difference| {diff:.1e} <= {ONNX_ATOL})"
                     if diff is not None else "not checked: pip install 'tasgen[onnx]' for onnxruntime")
            typer.echo(f"ONNX written to {path}; {check}")
            return
        from tasgen.train import export_student

        path = export_student(run_dir, output, checkpoint=checkpoint, ema=ema, overwrite=overwrite)
    say_created(created)
    typer.echo(f"student weights written to {path}")
