"""One training step: the code the loop runs per micro-batch, and `tasgen bench` times."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.data import Mixup
from timm.scheduler.scheduler import Scheduler
from timm.utils import ModelEmaV3
from torch import nn

from tasgen.data import build_mixup

from .compile import compile_module
from .dist import no_sync, wrap_ddp
from .distiller import Distiller
from .ema import build_ema
from .loss_tracker import LossTracker
from .optim import build_optimizer, build_scheduler
from .precision import Precision, resolve_precision
from .setup import Setup


@dataclass
class Engine:
    """What turns a micro-batch into an optimizer update: the step module, the optimizer and friends.

    Attributes:
        step_fn: the `Distiller` (system + objective), in DDP and compiled as the spec asks.
        optimizer: over every trainable parameter.
        scheduler: stepped per update.
        scaler: gradient scaling (active for fp16 only).
        ema: the EMA of the trained model, or None.
        trained: the model being trained (what the EMA follows).
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

    step_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Scheduler
    scaler: torch.amp.GradScaler
    ema: ModelEmaV3 | None
    trained: nn.Module
    precision: Precision
    mixup: Mixup | None
    tracker: LossTracker
    device: torch.device
    accumulate: int
    grad_clip: float | None
    params: list[nn.Parameter]
    step: int = 0
    lr: float = 0.0

    def micro_step(self, images: torch.Tensor, labels: torch.Tensor, update: bool) -> None:
        """Forward and backward of one micro-batch; the optimizer update too when ``update``.

        Nothing here waits for the device: the losses stay in the tracker until a log point.
        """
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        if self.precision.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets = labels
        if self.mixup is not None:
            images, targets = self.mixup(images, labels)
        with no_sync(self.step_fn, skip=not update):  # DDP: all-reduce gradients on the last micro-batch only
            with self.precision.autocast():
                total, terms = self.step_fn(images, targets)
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
            self.ema.update(self.trained, step=self.step)


def build_engine(setup: Setup, updates_per_epoch: int, compile_backend: str | None = None) -> Engine:
    """The `Engine` of a setup: precision, DDP, compile, optimizer, schedule, scaler, EMA.

    Args:
        setup: what to train.
        updates_per_epoch: optimizer updates per epoch (the schedule's unit).
        compile_backend: torch.compile backend when ``train.compile`` is on (None: inductor).
    """
    spec, cfg, device = setup.spec, setup.spec.train, setup.device
    precision = resolve_precision(cfg.precision, cfg.channels_last, device)
    distiller = Distiller(setup.system, setup.objective)
    if precision.channels_last:
        distiller.to(memory_format=torch.channels_last)
    step_fn = compile_module(wrap_ddp(distiller, device), cfg.compile, compile_backend)
    optimizer = build_optimizer(setup.trainable, cfg.optimizer)
    scheduler = build_scheduler(optimizer, cfg.schedule, setup.epochs, updates_per_epoch)
    return Engine(
        step_fn=step_fn, optimizer=optimizer, scheduler=scheduler, scaler=precision.grad_scaler(),
        ema=build_ema(setup.trained, cfg.ema), trained=setup.trained, precision=precision,
        mixup=build_mixup(spec.data, setup.plan.num_classes, spec.distill.ce.label_smoothing),
        tracker=LossTracker(setup.term_names, device), device=device, accumulate=cfg.accumulate,
        grad_clip=cfg.grad_clip, params=[p for p in setup.trainable.parameters() if p.requires_grad],
        lr=optimizer.param_groups[0]["lr"],
    )
