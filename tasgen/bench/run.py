"""`run_bench`: how fast a spec trains, and what its assistant costs, measured in one process.

Every figure comes from the same synthetic batch (the spec's batch size and image
size, on the training device) except the loader's, which reads the spec's real
dataset pipeline. Warm-up steps are not timed; each timed step ends with a device
synchronisation, and a phase reports the median of its steps (the machine may be
shared). Models have random weights: speed does not depend on them. Memory is
each phase's peak (`tasgen.bench.memory`): weights, gradients, optimizer state and
activations.
"""

from __future__ import annotations

import dataclasses
import platform
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from tasgen.compiler import build_models, plan_spec
from tasgen.losses import cross_entropy
from tasgen.train.dist import default_device
from tasgen.train.optim import build_optimizer
from tasgen.train.rng import deterministic
from tasgen.train.setup import Setup, assemble_student_setup
from tasgen.train.step import (
    Precision,
    SystemLoss,
    build_engine,
    compile_module,
    matmul_peak,
    resolve_precision,
    step_flops,
)

from .memory import measure_memory, memory_measure
from .timing import loader_throughput, median_seconds

if TYPE_CHECKING:
    from tasgen.plan import Plan
    from tasgen.spec.load import LoadedSpec
    from tasgen.spec.schema import Spec

__all__ = ["run_bench"]


def run_bench(
    loaded: LoadedSpec,
    steps: int = 5,
    *,
    warmup: int = 2,
    compile: bool | None = None,
    compile_backend: str | None = None,
    device: torch.device | str | None = None,
    loader_batches: int | None = None,
) -> dict[str, Any]:
    """Time one training step of a spec in several forms, with FLOPs, MFU and peak memory.

    Measured, for the spec's method and for plain KD of the same pair:
    a bare step (system + objective forward, backward, optimizer step in a minimal
    loop), the trainer's own step (`tasgen.train.step.Engine.micro_step`), each
    eager and, with ``compile``, compiled; the model FLOPs of a step; its peak
    memory. Also: a matrix-product peak of the device (for MFU), the data loader
    alone, and, for TAS, the system's forward+backward against the teacher's
    forward plus the student's forward+backward measured alone.

    Args:
        loaded: the loaded spec.
        steps: timed steps per measurement.
        warmup: untimed steps before them (compilation happens here).
        compile: also time compiled steps; default: on CUDA only.
        compile_backend: torch.compile backend (None: inductor; tests use aot_eager).
        device: default: the GPU when there is one, else the CPU.
        loader_batches: batches the loader is timed over (default ``max(steps, 10)``).

    Returns:
        One JSON-serialisable dict; its keys are documented in docs/benchmarks.md.

    Raises:
        SpecError: the spec cannot be planned.
        DataError: the dataset cannot be read.
    """
    device = torch.device(device) if device is not None else default_device()
    compile = device.type == "cuda" if compile is None else compile
    spec = loaded.spec
    plans = {spec.distill.method: plan_spec(loaded)}
    if spec.distill.method != "kd":
        plans["kd"] = plan_spec(dataclasses.replace(loaded, spec=_with_method(spec, "kd")))
    precision = resolve_precision(spec.train.precision, spec.train.channels_last, device)
    batch = _synthetic_batch(spec, plans[spec.distill.method], device, precision)

    result: dict[str, Any] = {
        "spec": spec.name,
        "device": device.type,
        "device_name": _device_name(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__.split("+")[0],
        "precision": precision.name,
        "batch_size": spec.data.batch_size,
        "image_size": spec.data.image_size,
        "steps": steps,
        "warmup": warmup,
        "compile": compile,
        "memory_measure": memory_measure(device),
    }
    with deterministic(device):  # the trainer's setting on the CPU, so both loops run the same kernels
        result["matmul_flops_per_s"] = matmul_peak(device)
        _prime(spec, plans[spec.distill.method], batch, device, precision)
        methods = {}
        for method, plan in plans.items():
            method_spec = _with_method(spec, method)
            methods[method] = _method_figures(method_spec, plan, batch, device, precision, steps, warmup,
                                              compile, compile_backend, result["matmul_flops_per_s"])
        result["methods"] = methods
        if spec.distill.method == "tas":
            result["assistant"] = _assistant_cost(spec, plans["tas"], batch, device, precision, steps, warmup)
    result["loader_images_per_s"] = loader_throughput(spec, loader_batches or max(steps, 10))
    result["targets"] = _targets(result, spec.distill.method)
    return result


# ------------------------------------------------------------------ phases
def _method_figures(
    spec: Spec, plan: Plan, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device, precision: Precision,
    steps: int, warmup: int, compile: bool, backend: str | None, peak_flops: float,
) -> dict[str, float]:
    out: dict[str, float] = {}
    for compiled in [False, True] if compile else [False]:
        suffix = "_compiled" if compiled else ""
        with measure_memory(device) as memory:
            seconds, flops = _bare_phase(spec, plan, batch, device, precision, compiled, backend, steps, warmup)
        out[f"bare_step{suffix}_s"] = seconds
        if not compiled:
            out["bare_peak_memory_mib"], out["flops_per_step"] = memory(), flops
        with measure_memory(device) as memory:
            out[f"trainer_step{suffix}_s"] = _trainer_phase(spec, plan, batch, device, compiled, backend, steps, warmup)
        if not compiled:
            out["peak_memory_mib"] = memory()
    out["trainer_overhead"] = out["trainer_step_s"] / out["bare_step_s"]
    out["images_per_s"] = batch[0].shape[0] / out["trainer_step_s"]
    out["mfu"] = out["flops_per_step"] / out["trainer_step_s"] / peak_flops
    return out


def _bare_phase(
    spec: Spec, plan: Plan, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device, precision: Precision,
    compiled: bool, backend: str | None, steps: int, warmup: int,
) -> tuple[float, float]:
    """Seconds of a bare step, and the model FLOPs of one forward+backward (eager)."""
    setup = _setup(spec, plan, device)
    step = _bare_step(setup, precision, compiled, backend)
    seconds = median_seconds(lambda: step(*batch), steps, warmup, device)
    flops = 0.0 if compiled else step_flops(SystemLoss(setup.system, setup.objective), *batch, precision)
    return seconds, flops


def _trainer_phase(
    spec: Spec, plan: Plan, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device,
    compiled: bool, backend: str | None, steps: int, warmup: int,
) -> float:
    """Seconds of the trainer's own step (every micro-step an update, as with accumulate 1)."""
    spec = spec.model_copy(update={"train": spec.train.model_copy(update={"compile": compiled})})
    setup = _setup(spec, plan, device)
    engine = build_engine(setup, updates_per_epoch=max(steps + warmup, 1), compile_backend=backend)
    setup.system.train()
    return median_seconds(lambda: engine.micro_step(*batch, True), steps, warmup, device)


def _assistant_cost(
    spec: Spec, plan: Plan, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device, precision: Precision,
    steps: int, warmup: int,
) -> dict[str, float]:
    """The system's forward+backward against what any distillation must run: teacher forward, student forward+backward."""
    with measure_memory(device) as memory:
        system_s = _system_phase(spec, plan, batch, device, precision, steps, warmup)
    system_mib = memory()
    with measure_memory(device) as memory:
        teacher_s, student_s = _reference_phase(spec, plan, batch, device, precision, steps, warmup)
    reference_mib = memory()
    return {
        "system_fwd_bwd_s": system_s,
        "teacher_forward_s": teacher_s,
        "student_fwd_bwd_s": student_s,
        "time_ratio": system_s / (teacher_s + student_s),
        "system_memory_mib": system_mib,
        "reference_memory_mib": reference_mib,
        "memory_ratio": system_mib / reference_mib,
    }


def _system_phase(
    spec: Spec, plan: Plan, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device, precision: Precision,
    steps: int, warmup: int,
) -> float:
    setup = _setup(spec, plan, device)
    system_loss = SystemLoss(setup.system, setup.objective).train()

    def system_step() -> None:
        with precision.autocast():
            total, _ = system_loss(*batch)
        total.backward()
        system_loss.zero_grad(set_to_none=True)

    return median_seconds(system_step, steps, warmup, device)


def _reference_phase(
    spec: Spec, plan: Plan, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device, precision: Precision,
    steps: int, warmup: int,
) -> tuple[float, float]:
    """Seconds of the teacher's forward (no_grad) and of the student's forward+backward (CE), each alone."""
    images, labels = batch
    teacher, student = build_models(spec, plan, device=str(device))
    teacher.eval().requires_grad_(False)
    student.train()

    def teacher_forward() -> None:
        with torch.no_grad(), precision.autocast():
            teacher(images)

    def student_step() -> None:
        with precision.autocast():
            loss = cross_entropy(student(images).float(), labels, 0.0)
        loss.backward()
        student.zero_grad(set_to_none=True)

    return median_seconds(teacher_forward, steps, warmup, device), median_seconds(student_step, steps, warmup, device)


def _prime(
    spec: Spec, plan: Plan, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device, precision: Precision
) -> None:
    # One untimed step first: thread pools, kernel caches and lazy initialisation
    # would otherwise be charged to the memory and time of the first phase.
    setup = _setup(spec, plan, device)
    _bare_step(setup, precision, False, None)(*batch)


def _bare_step(setup: Setup, precision: Precision, compiled: bool, backend: str | None) -> Callable[..., None]:
    """The minimal loop a person would write by hand: forward, backward, step."""
    system_loss = SystemLoss(setup.system, setup.objective)
    if precision.channels_last:
        system_loss.to(memory_format=torch.channels_last)
    fn = compile_module(system_loss, compiled, backend)
    optimizer = build_optimizer(setup.optimised, setup.spec.train.optimizer)
    setup.system.train()

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        with precision.autocast():
            total, _ = fn(images, labels)
        total.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


# ------------------------------------------------------------------ set-up
def _with_method(spec: Spec, method: str) -> Spec:
    return spec.model_copy(update={"distill": spec.distill.model_copy(update={"method": method})})


def _setup(spec: Spec, plan: Plan, device: torch.device) -> Setup:
    torch.manual_seed(spec.seed)
    teacher, student = build_models(spec, plan, device=str(device))
    return assemble_student_setup(spec, plan, Path("."), device, teacher, student)


def _synthetic_batch(
    spec: Spec, plan: Plan, device: torch.device, precision: Precision
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(spec.seed)
    size = spec.data.image_size
    images = torch.rand(spec.data.batch_size, 3, size, size, generator=g).to(device)
    labels = torch.randint(0, plan.num_classes, (spec.data.batch_size,), generator=g).to(device)
    if precision.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, labels


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def _targets(result: dict[str, Any], method: str) -> dict[str, float]:
    methods = result["methods"]
    out = {"trainer_vs_bare": methods[method]["trainer_overhead"]}
    if method != "kd":
        out[f"{method}_vs_kd_step"] = methods[method]["trainer_step_s"] / methods["kd"]["trainer_step_s"]
        out[f"{method}_vs_kd_memory"] = methods[method]["peak_memory_mib"] / methods["kd"]["peak_memory_mib"]
    return out
