"""`run_bench`: how fast a spec trains, and what its assistant costs, measured in one process.

Every figure comes from the same synthetic batch (the spec's batch size and image
size, on the training device) except the loader's, which reads the spec's real
dataset pipeline. Warm-up steps are not timed; each timed step ends with a device
synchronisation. Compared steps run alternately, in rounds, and a ratio is the
median of the rounds' ratios (the machine may be shared). Models have random
weights: speed does not depend on them. Memory is read after all timing, each
contender rebuilt alone (`tasgen.bench.memory`): weights, gradients, optimizer
state and a step's activations.
"""

from __future__ import annotations

import dataclasses
import functools
import platform
import statistics
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
from .timing import interleaved_seconds, loader_throughput, quartiles

if TYPE_CHECKING:
    from tasgen.plan import Plan
    from tasgen.spec.load import LoadedSpec
    from tasgen.spec.schema import Spec

__all__ = ["TARGETS", "missed_targets", "run_bench"]

# The targets docs/benchmarks.md states (a test reads them there): a ratio's median
# over the interleaved rounds must not exceed its target.
TARGETS: dict[str, float] = {"trainer_vs_bare": 1.05, "tas_vs_kd_step": 1.15, "tas_vs_kd_memory": 1.20}


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

    Steps that enter a ratio are timed interleaved (`tasgen.bench.timing.interleaved_seconds`),
    all before any memory is read. Measured, for the spec's method and for plain KD of the same pair:
    a bare step (system + objective forward, backward, optimizer step in a minimal
    loop), the trainer's own step (`tasgen.train.step.Engine.micro_step`), each
    eager and, with ``compile``, compiled; the model FLOPs of a step; its peak
    memory. Also: a matrix-product peak of the device (for MFU), the data loader
    alone, and, for TAS, the system's forward+backward against the teacher's
    forward plus the student's forward+backward measured alone.

    Args:
        loaded: the loaded spec.
        steps: interleaved rounds; each round times every compared step once.
        warmup: untimed steps before them (compilation happens here; at least one
            runs, since peak memory is read over it).
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
    warmup = max(warmup, 1)  # the first step allocates gradients and optimizer state: memory is read there
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
    method = spec.distill.method
    with deterministic(device):  # the trainer's setting on the CPU, so both loops run the same kernels
        result["matmul_flops_per_s"] = matmul_peak(device)
        _prime(spec, plans[method], batch, device, precision)
        # Every timing before any memory reading: measuring memory fixes glibc's mmap
        # threshold for the rest of the process (see tasgen.bench.memory), and steps
        # timed after it would pay page faults that a training run does not.
        makers = _method_makers(spec, plans, batch, device, precision, compile, compile_backend, steps + warmup)
        times = _timed(makers, steps, warmup, device)
        assistant_times = None
        if method == "tas":
            assistant_makers = _assistant_makers(spec, plans["tas"], batch, device, precision)
            assistant_times = _timed(assistant_makers, steps, warmup, device)
        result["methods"], ratios = _method_figures(plans, times, batch, result["matmul_flops_per_s"], compile)
        for m, plan in plans.items():
            figures = result["methods"][m]
            figures["flops_per_step"] = _flops(_with_method(spec, m), plan, batch, device, precision)
            figures["mfu"] = figures["flops_per_step"] / figures["trainer_step_s"] / result["matmul_flops_per_s"]
            figures["bare_peak_memory_mib"] = _peak_memory(makers[f"{m}.bare"], warmup, device)
            figures["peak_memory_mib"] = _peak_memory(makers[f"{m}.trainer"], warmup, device)
        if assistant_times is not None:
            result["assistant"] = _assistant_figures(assistant_times, assistant_makers, warmup, device)
    result["loader_images_per_s"] = loader_throughput(spec, loader_batches or max(steps, 10))
    timed = {"trainer_vs_bare": ratios[f"{method}.trainer_vs_bare"]}
    if method != "kd":
        timed[f"{method}_vs_kd_step"] = ratios[f"{method}_vs_kd_step"]
    result["targets"] = {name: quartiles(values)[1] for name, values in timed.items()}
    result["spread"] = {name: dict(zip(("q1", "q3"), quartiles(values)[::2], strict=True)) for name, values in timed.items()}
    if method != "kd":
        m = result["methods"]
        result["targets"][f"{method}_vs_kd_memory"] = m[method]["peak_memory_mib"] / m["kd"]["peak_memory_mib"]
    result["limits"] = {name: TARGETS[name] for name in result["targets"] if name in TARGETS}
    result["met"] = {name: result["targets"][name] <= limit for name, limit in result["limits"].items()}
    return result


def missed_targets(result: dict[str, Any]) -> list[str]:
    """One sentence per ratio of a `run_bench` result whose median misses its target."""
    return [
        f"{name.replace('_', ' ')} {result['targets'][name]:.2f}x misses its target <= {limit:.2f}x"
        for name, limit in result["limits"].items()
        if not result["met"][name]
    ]


# ------------------------------------------------------------------ phases
Step = Callable[[], None]
Maker = Callable[[], Step]  # builds a contender's models and returns its step


def _timed(makers: dict[str, Maker], steps: int, warmup: int, device: torch.device) -> dict[str, list[float]]:
    """Build every contender, warm each up, then time them in interleaved rounds."""
    built = {name: make() for name, make in makers.items()}
    for step in built.values():
        for _ in range(warmup):
            step()
    return interleaved_seconds(built, steps, device)


def _peak_memory(make: Maker, warmup: int, device: torch.device) -> float:
    """Peak MiB of building a contender and running its warm-up steps (models, gradients,
    optimizer state, a step's activations); the contender is freed afterwards."""
    with measure_memory(device) as memory:
        step = make()
        for _ in range(warmup):
            step()
        del step
    return memory()


def _method_makers(
    spec: Spec, plans: dict[str, Plan], batch: tuple[torch.Tensor, torch.Tensor], device: torch.device,
    precision: Precision, compile: bool, backend: str | None, updates: int,
) -> dict[str, Maker]:
    """``<method>.bare[_compiled]`` and ``<method>.trainer[_compiled]`` for every method."""
    makers: dict[str, Maker] = {}
    for method, plan in plans.items():
        method_spec = _with_method(spec, method)
        for compiled in [False, True] if compile else [False]:
            suffix = "_compiled" if compiled else ""
            makers[f"{method}.bare{suffix}"] = functools.partial(
                _bare_contender, method_spec, plan, batch, device, precision, compiled, backend)
            makers[f"{method}.trainer{suffix}"] = functools.partial(
                _trainer_step, method_spec, plan, batch, device, compiled, backend, updates)
    return makers


def _method_figures(
    plans: dict[str, Plan], times: dict[str, list[float]], batch: tuple[torch.Tensor, torch.Tensor],
    peak_flops: float, compile: bool,
) -> tuple[dict[str, dict[str, float]], dict[str, list[float]]]:
    """Per method: step times (medians) and throughput; and the rounds' ratios."""
    out: dict[str, dict[str, float]] = {}
    ratios: dict[str, list[float]] = {}
    for method in plans:
        m = out[method] = {}
        for suffix in ["", "_compiled"] if compile else [""]:
            m[f"bare_step{suffix}_s"] = statistics.median(times[f"{method}.bare{suffix}"])
            m[f"trainer_step{suffix}_s"] = statistics.median(times[f"{method}.trainer{suffix}"])
        ratios[f"{method}.trainer_vs_bare"] = _per_round(times[f"{method}.trainer"], times[f"{method}.bare"])
        m["trainer_overhead"] = statistics.median(ratios[f"{method}.trainer_vs_bare"])
        m["images_per_s"] = batch[0].shape[0] / m["trainer_step_s"]
        if method != "kd" and "kd" in plans:
            ratios[f"{method}_vs_kd_step"] = _per_round(times[f"{method}.trainer"], times["kd.trainer"])
    return out, ratios


def _per_round(numerator: list[float], denominator: list[float]) -> list[float]:
    return [a / b for a, b in zip(numerator, denominator, strict=True)]


def _bare_contender(
    spec: Spec, plan: Plan, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device, precision: Precision,
    compiled: bool, backend: str | None,
) -> Step:
    step, _ = _bare_step(_setup(spec, plan, device), precision, compiled, backend)
    return lambda: step(*batch)


def _flops(
    spec: Spec, plan: Plan, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device, precision: Precision
) -> float:
    """Model FLOPs of one forward+backward of the bare step's module (eager)."""
    setup = _setup(spec, plan, device)
    return step_flops(SystemLoss(setup.system, setup.objective), *batch, precision)


def _trainer_step(
    spec: Spec, plan: Plan, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device,
    compiled: bool, backend: str | None, updates: int,
) -> Step:
    """The trainer's own step (every micro-step an update, as with accumulate 1)."""
    spec = spec.model_copy(update={"train": spec.train.model_copy(update={"compile": compiled})})
    setup = _setup(spec, plan, device)
    engine = build_engine(setup, updates_per_epoch=max(updates, 1), compile_backend=backend)
    setup.system.train()
    return lambda: engine.micro_step(*batch, True)


def _assistant_makers(
    spec: Spec, plan: Plan, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device, precision: Precision,
) -> dict[str, Maker]:
    """The system's forward+backward, and what any distillation must run: the teacher's
    forward and the student's forward+backward (built together: one memory figure)."""
    reference: dict[str, Step] = {}

    def reference_step(name: str) -> Step:
        if not reference:
            reference.update(_reference_steps(spec, plan, batch, device, precision))
        return reference.pop(name)

    return {
        "system": functools.partial(_system_step, spec, plan, batch, device, precision),
        "teacher": functools.partial(reference_step, "teacher"),
        "student": functools.partial(reference_step, "student"),
    }


def _assistant_figures(
    times: dict[str, list[float]], makers: dict[str, Maker], warmup: int, device: torch.device
) -> dict[str, float]:
    """The assistant's cost: time ratio (median of the rounds' ratios, quartiles) and memory ratio."""
    ratios = _per_round(times["system"], [t + s for t, s in zip(times["teacher"], times["student"], strict=True)])
    q1, time_ratio, q3 = quartiles(ratios)

    def make_reference() -> Step:
        teacher, student = makers["teacher"](), makers["student"]()
        return lambda: (teacher(), student())

    system_mib = _peak_memory(makers["system"], warmup, device)
    reference_mib = _peak_memory(make_reference, warmup, device)
    return {
        "system_fwd_bwd_s": statistics.median(times["system"]),
        "teacher_forward_s": statistics.median(times["teacher"]),
        "student_fwd_bwd_s": statistics.median(times["student"]),
        "time_ratio": time_ratio,
        "time_ratio_q1": q1,
        "time_ratio_q3": q3,
        "system_memory_mib": system_mib,
        "reference_memory_mib": reference_mib,
        "memory_ratio": system_mib / reference_mib,
    }


def _system_step(
    spec: Spec, plan: Plan, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device, precision: Precision,
) -> Callable[[], None]:
    setup = _setup(spec, plan, device)
    system_loss = SystemLoss(setup.system, setup.objective).train()

    def system_step() -> None:
        with precision.autocast():
            total, _ = system_loss(*batch)
        total.backward()
        system_loss.zero_grad(set_to_none=True)

    return system_step


def _reference_steps(
    spec: Spec, plan: Plan, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device, precision: Precision,
) -> dict[str, Callable[[], None]]:
    """The teacher's forward (no_grad) and the student's forward+backward (CE), as two steps."""
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

    return {"teacher": teacher_forward, "student": student_step}


def _prime(
    spec: Spec, plan: Plan, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device, precision: Precision
) -> None:
    # One untimed step first: thread pools, kernel caches and lazy initialisation
    # would otherwise be charged to the memory and time of the first phase.
    setup = _setup(spec, plan, device)
    _bare_step(setup, precision, False, None)[0](*batch)


def _bare_step(
    setup: Setup, precision: Precision, compiled: bool, backend: str | None
) -> tuple[Callable[..., None], SystemLoss]:
    """The minimal loop a person would write by hand: forward, backward, step (and its module, for FLOPs)."""
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

    return step, system_loss


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
