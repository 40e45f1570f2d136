"""`tasgen bench`: a thin shell over `tasgen.bench.run_bench`."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from tasgen_cli._args import SetOpt, SpecArg
from tasgen_cli._errors import user_errors


def register(app: typer.Typer) -> None:
    """Add the bench command to ``app``."""
    app.command("bench")(bench_command)


def bench_command(
    spec: SpecArg,
    overrides: SetOpt = None,
    steps: Annotated[
        int, typer.Option("--steps", min=1, help="Interleaved rounds; each times every compared step once.")
    ] = 5,
    warmup: Annotated[
        int, typer.Option("--warmup", min=0, help="Untimed steps before them (at least 1 runs: memory is read there).")
    ] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (keys: docs/benchmarks.md).")] = False,
    compile: Annotated[
        bool | None,
        typer.Option("--compile/--no-compile", help="Also time compiled steps. Default: on CUDA only.", show_default=False),
    ] = None,
    compile_backend: Annotated[
        str | None, typer.Option("--compile-backend", help="torch.compile backend (default inductor).")
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 when a ratio's median misses its target (docs/benchmarks.md).")
    ] = False,
) -> None:
    """Time a training step of SPEC (bare loop, trainer, plain KD), its FLOPs, MFU, memory and data loader."""
    from tasgen.spec import load_spec

    with user_errors(reading_spec=True):
        loaded = load_spec(spec, overrides or ())
        from tasgen.bench import run_bench

        result = run_bench(loaded, steps, warmup=warmup, compile=compile, compile_backend=compile_backend)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        from tasgen_cli._render import print_table

        for table in _tables(result):
            print_table(table)
    if check:
        from tasgen.bench import missed_targets

        missed = missed_targets(result)
        for sentence in missed:
            typer.echo(f"bench: {sentence}", err=True)
        if missed:
            raise typer.Exit(1)


def _tables(r: dict[str, Any]) -> list[Any]:
    from rich.table import Table

    title = (f"{r['spec']}: {r['device_name']} ({r['device']}, {r['threads']} threads), {r['precision']}, "
             f"batch {r['batch_size']} x {r['image_size']} px, median of {r['steps']} interleaved rounds")
    steps = Table(title=title)
    for column in ("method", "step", "s/step", "img/s", "GFLOP/step", "MFU", "peak MiB"):
        steps.add_column(column, justify="left" if column in ("method", "step") else "right")
    for method, m in r["methods"].items():
        rows = [("bare", "bare_step_s", m["bare_peak_memory_mib"]), ("trainer", "trainer_step_s", m["peak_memory_mib"])]
        if r["compile"]:
            rows += [("bare, compiled", "bare_step_compiled_s", None), ("trainer, compiled", "trainer_step_compiled_s", None)]
        for name, key, memory in rows:
            seconds = m[key]
            steps.add_row(
                method, name, f"{seconds:.4f}", f"{r['batch_size'] / seconds:.1f}", f"{m['flops_per_step'] / 1e9:.1f}",
                f"{100 * m['flops_per_step'] / seconds / r['matmul_flops_per_s']:.1f}%",
                "" if memory is None else f"{memory:.0f}",
            )
    figures = Table(title="against the targets, and the input pipeline")
    figures.add_column("figure")
    figures.add_column("median", justify="right")
    figures.add_column("IQR", justify="right")
    figures.add_column("target", justify="right")
    for key, value in r["targets"].items():
        spread = r["spread"].get(key)
        iqr = f"{spread['q1']:.2f}-{spread['q3']:.2f}x" if spread else ""
        target = ""
        if key in r["limits"]:
            target = f"<= {r['limits'][key]:.2f}x" + ("" if r["met"][key] else " MISSED")
        figures.add_row(key.replace("_", " "), f"{value:.2f}x", iqr, target)
    if "assistant" in r:
        a = r["assistant"]
        figures.add_row("assistant cost, time: system fwd+bwd / (teacher fwd + student fwd+bwd)",
                        f"{a['time_ratio']:.2f}x ({a['system_fwd_bwd_s']:.3f} / {a['teacher_forward_s'] + a['student_fwd_bwd_s']:.3f} s)",
                        f"{a['time_ratio_q1']:.2f}-{a['time_ratio_q3']:.2f}x", "")
        figures.add_row("assistant cost, memory: same ratio",
                        f"{a['memory_ratio']:.2f}x ({a['system_memory_mib']:.0f} / {a['reference_memory_mib']:.0f} MiB)", "", "")
    figures.add_row("matrix-product peak (MFU = model FLOP/s / this)", f"{r['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s", "", "")
    trainer_rate = r["methods"][next(iter(r["methods"]))]["images_per_s"]
    figures.add_row("data loader alone", f"{r['loader_images_per_s']:.0f} img/s", "", f">= {trainer_rate:.0f} img/s (the step)")
    return [steps, figures]
