"""`run_bench`: how fast a spec trains, and what its assistant costs, measured in one process.

Every figure comes from the same synthetic batch (the spec's batch size and image
size, on the training device) except the loader's, which reads the spec's real
dataset pipeline. Warm-up steps are not timed; each timed step ends with a device
synchronisation, and a phase reports the median of its steps (the machine may be
shared). Models have random weights: speed does not depend on them.

Memory: on CUDA, the peak of ``torch.cuda.max_memory_allocated`` during a phase.
On the CPU, the peak resident set size of the process during the phase minus its
size before the phase built its models (Linux: the peak is reset through
``/proc/self/clear_refs``; elsewhere ``ru_maxrss``, which only shows new peaks).
Both include weights, gradients, optimizer state and activations.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import platform
import re
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tasgen.compiler import build_models, num_classes, plan_spec, stage_tables
from tasgen.data import build_datasets, build_loaders
from tasgen.losses import cross_entropy
from tasgen.train.compile import compile_module
from tasgen.train.dist import default_device
from tasgen.train.distiller import Distiller
from tasgen.train.optim import build_optimizer
from tasgen.train.precision import Precision, resolve_precision
from tasgen.train.rng import deterministic
from tasgen.train.setup import Setup, assemble_student_setup
from tasgen.train.step import build_engine

if TYPE_CHECKING:
    from tasgen.plan import Plan
    from tasgen.spec.load import LoadedSpec
    from tasgen.spec.schema import Spec

__all__ = ["run_bench"]

_MIB = 2**20


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
        kd_spec = _with_method(spec, "kd")
        plans["kd"] = _plan(loaded, kd_spec)
    precision = resolve_precision(spec.train.precision, spec.train.channels_last, device)
    batch = _synthetic_batch(spec, plans[spec.distill.method], device, precision)
    _prefer_mmap()

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
        "memory_measure": _memory_measure(device),
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
        with _measure_memory(device) as memory:
            seconds, flops = _bare_phase(spec, plan, batch, device, precision, compiled, backend, steps, warmup)
        out[f"bare_step{suffix}_s"] = seconds
        if not compiled:
            out["bare_peak_memory_mib"], out["flops_per_step"] = memory(), flops
        with _measure_memory(device) as memory:
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
    seconds = _time(lambda: step(*batch), steps, warmup, device)
    flops = 0.0 if compiled else step_flops(Distiller(setup.system, setup.objective), *batch, precision)
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
    return _time(lambda: engine.micro_step(*batch, True), steps, warmup, device)


def _assistant_cost(
    spec: Spec, plan: Plan, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device, precision: Precision,
    steps: int, warmup: int,
) -> dict[str, float]:
    """The system's forward+backward against what any distillation must run: teacher forward, student forward+backward."""
    with _measure_memory(device) as memory:
        system_s = _system_phase(spec, plan, batch, device, precision, steps, warmup)
    system_mib = memory()
    with _measure_memory(device) as memory:
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
    distiller = Distiller(setup.system, setup.objective).train()

    def system_step() -> None:
        with precision.autocast():
            total, _ = distiller(*batch)
        total.backward()
        distiller.zero_grad(set_to_none=True)

    return _time(system_step, steps, warmup, device)


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

    return _time(teacher_forward, steps, warmup, device), _time(student_step, steps, warmup, device)


def _prime(
    spec: Spec, plan: Plan, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device, precision: Precision
) -> None:
    # One untimed step first: thread pools, kernel caches and lazy initialisation
    # would otherwise be charged to the memory and time of the first phase.
    setup = _setup(spec, plan, device)
    _bare_step(setup, precision, False, None)(*batch)


def _bare_step(setup: Setup, precision: Precision, compiled: bool, backend: str | None) -> Callable[..., None]:
    """The minimal loop a person would write by hand: forward, backward, step."""
    distiller = Distiller(setup.system, setup.objective)
    if precision.channels_last:
        distiller.to(memory_format=torch.channels_last)
    fn = compile_module(distiller, compiled, backend)
    optimizer = build_optimizer(setup.trainable, setup.spec.train.optimizer)
    setup.system.train()

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        with precision.autocast():
            total, _ = fn(images, labels)
        total.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


# ------------------------------------------------------------------ measures
def step_flops(distiller: nn.Module, images: torch.Tensor, labels: torch.Tensor, precision: Precision) -> float:
    """Model FLOPs of one forward+backward (matrix products and convolutions, as FlopCounterMode counts them)."""
    distiller.train()
    with FlopCounterMode(display=False) as counter:
        with precision.autocast():
            total, _ = distiller(images, labels)
        total.backward()
    distiller.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def matmul_peak(device: torch.device, repeats: int = 5) -> float:
    """FLOP/s of the best of a few large matrix products: bf16 8192^2 on CUDA, fp32 2048^2 on the CPU."""
    n, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (2048, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = _best_time(lambda: a @ b, repeats, device)
    return 2 * n**3 / best


def loader_throughput(spec: Spec, batches: int) -> float:
    """Images/s of the spec's training loader alone (its workers, transforms and collation).

    The first batch (worker start-up) is not timed; the loader is restarted when an
    epoch ends before ``batches``.
    """
    splits = build_datasets(spec.data)
    loader, _ = build_loaders(splits.train, splits.test, spec.data, spec.seed)

    def forever() -> Iterator[torch.Tensor]:
        while True:
            for images, _ in loader:
                yield images

    it = forever()
    next(it)
    start, seen = time.perf_counter(), 0
    for _ in range(batches):
        seen += next(it).shape[0]
    return seen / (time.perf_counter() - start)


def _time(fn: Callable[[], Any], steps: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _best_time(fn: Callable[[], Any], repeats: int, device: torch.device) -> float:
    fn()
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------ memory
def _memory_measure(device: torch.device) -> str:
    if device.type == "cuda":
        return "cuda_max_allocated"
    return "rss_peak_delta" if _can_reset_rss_peak() else "ru_maxrss_delta"


@contextlib.contextmanager
def _measure_memory(device: torch.device) -> Iterator[Callable[[], float]]:
    """Peak memory (MiB) of the block, read through the callable it yields once the block ends."""
    box: list[float] = []
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        yield lambda: box[0]
        torch.cuda.synchronize(device)
        # What the block allocated on top of what was alive before it (the batch).
        box.append((torch.cuda.max_memory_allocated(device) - before) / _MIB)
        return
    _trim()
    before = _rss_kib()
    if _can_reset_rss_peak():
        Path("/proc/self/clear_refs").write_text("5")
    yield lambda: box[0]
    box.append(max(_rss_peak_kib() - before, 0) / 1024)


def _can_reset_rss_peak() -> bool:
    return os.access("/proc/self/clear_refs", os.W_OK) and Path("/proc/self/status").is_file()


def _rss_kib() -> int:
    status = Path("/proc/self/status")
    if status.is_file():
        return int(re.search(r"VmRSS:\s+(\d+)", status.read_text()).group(1))  # type: ignore[union-attr]
    return _rss_peak_kib()


def _rss_peak_kib() -> int:
    status = Path("/proc/self/status")
    if status.is_file():
        return int(re.search(r"VmHWM:\s+(\d+)", status.read_text()).group(1))  # type: ignore[union-attr]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if platform.system() == "Darwin" else peak  # bytes on macOS, KiB on Linux


def _libc() -> ctypes.CDLL | None:
    if platform.system() != "Linux":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def _prefer_mmap() -> None:
    # glibc raises its mmap threshold after large frees, so freed tensors would stay in
    # the heap and hide the next phase's memory; a fixed threshold returns them at once.
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD: allocations of 1 MiB and more are mmap'ed


def _trim() -> None:
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


# ------------------------------------------------------------------ set-up
def _with_method(spec: Spec, method: str) -> Spec:
    return spec.model_copy(update={"distill": spec.distill.model_copy(update={"method": method})})


def _plan(loaded: LoadedSpec, spec: Spec) -> Plan:
    from tasgen.planner import PlanError, build_plan

    tables = stage_tables(loaded)
    try:
        return build_plan(spec, tables["teacher"], tables["student"], num_classes=num_classes(spec),
                          image_size=spec.data.image_size)
    except PlanError as exc:
        raise loaded.error(exc.loc, str(exc)) from None


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
