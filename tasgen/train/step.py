"""One training step: the code the loop runs per micro-batch, and `tasgen bench` times.

Read top to bottom: how the forward runs (`Precision`), what it computes
(`SystemLoss`: the system, then the objective), and the `Engine` that turns a
micro-batch into an update (DDP, torch.compile, optimizer, schedule, clipping, EMA);
last, what model FLOPs utilisation divides: a step's FLOPs and the device's matmul peak.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from timm.data import Mixup
from timm.scheduler.scheduler import Scheduler
from timm.utils import ModelEmaV3
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tasgen.data import build_mixup
from tasgen.spec.schema import EmaSpec

from .dist import no_sync, wrap_ddp
from .errors import TrainError
from .loss_tracker import LossTracker
from .optim import build_optimizer, build_scheduler
from .setup import Setup


@dataclass(frozen=True)
class Precision:
    """How the forward pass runs.

    Attributes:
        device_type: "cuda" or "cpu".
        dtype: the autocast dtype, or None for plain fp32.
        channels_last: whether images and weights use the NHWC memory format.
    """

    device_type: str
    dtype: torch.dtype | None
    channels_last: bool = False

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """The autocast context of a forward pass (a null context in fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A scaler that is active only for fp16 (bf16 and fp32 need none)."""
        return torch.amp.GradScaler(self.device_type, enabled=self.dtype == torch.float16)

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]


def resolve_precision(precision: str, channels_last: bool | str, device: torch.device) -> Precision:
    """The spec's ``train.precision`` and ``train.channels_last`` on ``device``.

    ``auto`` is bf16 autocast (and channels_last) on CUDA, fp32 (contiguous) on CPU.

    Raises:
        TrainError: fp16 asked for on a CPU.
    """
    cuda = device.type == "cuda"
    if precision == "auto":
        dtype = torch.bfloat16 if cuda else None
    elif precision == "fp32":
        dtype = None
    elif precision == "bf16":
        dtype = torch.bfloat16
    else:
        if not cuda:
            raise TrainError("train.precision fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
        dtype = torch.float16
    nhwc = cuda if channels_last == "auto" else bool(channels_last)
    return Precision(device.type, dtype, nhwc)


class SystemLoss(nn.Module):
    """The system's forward, then the objective: ``forward(images, targets) -> (total loss, {term: loss})``.

    One module, so that torch.compile and DDP see the models and the losses together.

    Args:
        system: images in [0, 1] -> ``{name: (logits, pooled feature)}``.
        objective: ``(outputs, targets) -> (total, terms)``.
    """

    def __init__(self, system: nn.Module, objective: nn.Module) -> None:
        super().__init__()
        self.system = system
        self.objective = objective

    def forward(
        self, images: torch.Tensor, targets: torch.Tensor, index: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        outputs = self.system(images)
        if not getattr(self.objective, "needs_index", False):
            return self.objective(outputs, targets)
        if index is None:  # a batch without positions (tasgen bench's synthetic one): slots 0..B-1
            index = torch.arange(images.shape[0], device=images.device)
        return self.objective(outputs, targets, index)  # the images' positions, for a method's memory


def compile_module(module: nn.Module, setting: bool | str, backend: str | Callable | None = None) -> nn.Module:
    """Compile ``module`` when ``setting`` is true or a mode name; return it unchanged otherwise.

    Args:
        module: the module to compile (the whole training step: system + objective).
        setting: ``train.compile``: False, True (default mode) or a torch.compile mode.
        backend: torch.compile backend; None is inductor. Tests use "aot_eager".

    Returns:
        The compiled module (it shares parameters with ``module``), or ``module``.

    Shapes are static (``dynamic=False``): each batch shape the step meets (the
    training batch, a last partial batch, an evaluation batch) compiles once, as its
    own graph. torch's default would, after the second shape, retrace with a symbolic
    batch size, and in a process that has compiled the same code before (a notebook,
    the API called twice) that symbolic trace of the whole system took minutes where
    the static one takes seconds.
    """
    if setting is False:
        return module
    mode = None if setting is True or setting == "default" else setting
    kwargs = {"backend": backend} if backend else {}
    return torch.compile(module, mode=mode, dynamic=False, **kwargs)  # type: ignore[return-value]


def build_ema(model: nn.Module, spec: EmaSpec) -> ModelEmaV3 | None:
    """An EMA copy of ``model`` (update it with ``ema.update(model, step=n)``), or None when off."""
    if not spec.enabled:
        return None
    return ModelEmaV3(model, decay=spec.decay)


@dataclass
class Engine:
    """What turns a micro-batch into an optimizer update: the step module, the optimizer and friends.

    Attributes:
        system_loss: the `SystemLoss` (system + objective), in DDP and compiled as the spec asks.
        optimizer: over every trainable parameter.
        scheduler: stepped per update.
        scaler: gradient scaling (active for fp16 only).
        ema: the EMA of the trained model, or None.
        trained_model: the model being trained (what the EMA follows).
        precision: autocast and memory format.
        mixup: batch mixup/cutmix on the device, or None.
        tracker: running loss sums, read at log points only.
        device: where the step runs.
        accumulate: micro-batches per update.
        grad_clip: max gradient norm, or None.
        params: the parameters that clipping looks at.
        step: updates made so far.
        lr: learning rate of the last update.
    """

    system_loss: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Scheduler
    scaler: torch.amp.GradScaler
    ema: ModelEmaV3 | None
    trained_model: nn.Module
    precision: Precision
    mixup: Mixup | None
    tracker: LossTracker
    device: torch.device
    accumulate: int
    grad_clip: float | None
    params: list[nn.Parameter]
    step: int = 0
    lr: float = 0.0

    def micro_step(
        self, images: torch.Tensor, labels: torch.Tensor, update: bool, index: torch.Tensor | None = None
    ) -> None:
        """Forward and backward of one micro-batch; the optimizer update too when ``update``.

        Nothing here waits for the device: the losses stay in the tracker until a log point.
        ``index`` holds the images' positions in the training set, for methods that need them.
        """
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        if index is not None:
            index = index.to(self.device, non_blocking=True)
        if self.precision.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets = labels
        if self.mixup is not None:
            images, targets = self.mixup(images, labels)
        with no_sync(self.system_loss, skip=not update):  # DDP: all-reduce gradients on the last micro-batch only
            with self.precision.autocast():
                total, terms = self.system_loss(images, targets, index)
            self.scaler.scale(total / self.accumulate).backward()
        self.tracker.add(total, terms, self.step + 1)
        if not update:
            return
        if self.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.lr = self.optimizer.param_groups[0]["lr"]
        self.step += 1
        self.scheduler.step_update(self.step)  # the learning rate of the next update
        if self.ema is not None:
            self.ema.update(self.trained_model, step=self.step)


def build_engine(setup: Setup, updates_per_epoch: int, compile_backend: str | None = None) -> Engine:
    """The `Engine` of a setup: precision, DDP, compile, optimizer, schedule, scaler, EMA.

    Args:
        setup: what to train.
        updates_per_epoch: optimizer updates per epoch (the schedule's unit).
        compile_backend: torch.compile backend when ``train.compile`` is on (None: inductor).
    """
    spec, cfg, device = setup.spec, setup.spec.train, setup.device
    precision = resolve_precision(cfg.precision, cfg.channels_last, device)
    distiller = SystemLoss(setup.system, setup.objective)
    if precision.channels_last:
        distiller.to(memory_format=torch.channels_last)
    system_loss = compile_module(wrap_ddp(distiller, device), cfg.compile, compile_backend)
    optimizer = build_optimizer(setup.optimised, cfg.optimizer)
    scheduler = build_scheduler(optimizer, cfg.schedule, setup.epochs, updates_per_epoch)
    return Engine(
        system_loss=system_loss, optimizer=optimizer, scheduler=scheduler, scaler=precision.grad_scaler(),
        ema=build_ema(setup.trained_model, cfg.ema), trained_model=setup.trained_model, precision=precision,
        mixup=build_mixup(spec.data, setup.plan.num_classes, spec.distill.ce.label_smoothing),
        tracker=LossTracker(setup.term_names, device), device=device, accumulate=cfg.accumulate,
        grad_clip=cfg.grad_clip, params=[p for p in setup.optimised.parameters() if p.requires_grad],
        lr=optimizer.param_groups[0]["lr"],
    )


# ------------------------------------------------- model FLOPs utilisation
def step_flops(step: nn.Module, images: torch.Tensor, labels: torch.Tensor, precision: Precision | None = None) -> float:
    """Model FLOPs of one forward+backward (matrix products and convolutions, as FlopCounterMode counts them)."""
    step.train()
    with FlopCounterMode(display=False) as counter:
        with precision.autocast() if precision is not None else contextlib.nullcontext():
            total, _ = step(images, labels)
        total.backward()
    step.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def flops_per_image(setup: Setup) -> float:
    """Model FLOPs of a training step per image: the models' forward and backward (MFU's numerator).

    Counted once, on a twin of the setup on the meta device: the twin allocates and
    computes nothing, the real models are not touched (no extra step, no BN
    statistics) and the random state is left as it was, so a resumed run stays
    identical to an uninterrupted one. The losses' own FLOPs (a few small matrix
    products) are left out: the backward starts from the sum of the outputs.
    """
    from tasgen.compiler import build_models

    from .setup import assemble_student_setup, build_teacher_setup

    meta = torch.device("meta")
    spec = setup.spec.model_copy(update={"train": setup.spec.train.model_copy(update={"sync_bn": False})})
    # Model constructors may draw from the CPU generator; everything the system builds lives on meta.
    with torch.random.fork_rng(devices=[]), meta:
        if setup.role == "teacher":
            twin = build_teacher_setup(spec, setup.plan, setup.run_dir, meta, init=False)
        else:
            teacher, student = build_models(spec, setup.plan, device="meta")
            twin = assemble_student_setup(spec, setup.plan, setup.run_dir, meta, teacher, student)
    batch, size = spec.data.batch_size, setup.plan.image_size
    images = torch.empty(batch, setup.plan.student.input_size[0], size, size, device=meta)
    return model_flops(twin.system, images) / batch


def model_flops(system: nn.Module, images: torch.Tensor) -> float:
    """FLOPs of a system's forward on ``images`` and of the backward of its outputs' sum."""
    system.train()
    with FlopCounterMode(display=False) as counter:
        outputs = system(images)
        surrogate = sum(t.float().sum() for pair in outputs.values() for t in pair if t.requires_grad)
        if isinstance(surrogate, torch.Tensor):
            surrogate.backward()
    system.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


@functools.cache
def matmul_peak(device: torch.device, repeats: int = 5) -> float:
    """FLOP/s of the best of a few large matrix products: bf16 8192^2 on CUDA, fp32 2048^2 on the CPU.

    MFU's denominator; measured once per device and process.
    """
    n, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (2048, torch.float32)
    g = torch.Generator(device).manual_seed(0)  # its own generator: a run's random state is not touched
    a = torch.randn(n, n, device=device, dtype=dtype, generator=g)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=g)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best
