"""Optimizer and learning-rate schedule, from timm's factories.

The schedule steps per optimizer update (not per epoch): warm-up and decay are
smooth even in runs of a few epochs, and the learning rate at any point is a
function of the update count alone, which is what a resumed run restores.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.scheduler.scheduler import Scheduler
from torch import nn

from tasgen.spec.schema import OptimizerSpec, ScheduleSpec

# Our "sgd" is SGD with (heavy-ball) momentum, as in the peers' recipes; timm's own
# "sgd" would be Nesterov.
_TIMM_OPT = {"sgd": "momentum", "adamw": "adamw"}


def build_optimizer(trainable: nn.Module, spec: OptimizerSpec) -> torch.optim.Optimizer:
    """The optimizer over every parameter of ``trainable`` that requires a gradient.

    Biases, norm weights and other 1-d parameters get no weight decay (timm's rule).

    Args:
        trainable: the modules to optimise (student, assistant-own parts, objective).
        spec: ``train.optimizer``.
    """
    kwargs: dict[str, Any] = {"momentum": spec.momentum} if spec.name == "sgd" else {}
    return create_optimizer_v2(
        trainable, opt=_TIMM_OPT[spec.name], lr=spec.lr, weight_decay=spec.weight_decay, **kwargs
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, spec: ScheduleSpec, epochs: int, updates_per_epoch: int
) -> Scheduler:
    """The learning-rate schedule, stepped with ``scheduler.step_update(num_updates)``.

    Args:
        optimizer: the optimizer whose learning rate it sets.
        spec: ``train.schedule`` (cosine, step or constant; warm-up from ``warmup_lr``).
        epochs: epochs the schedule spans.
        updates_per_epoch: optimizer updates per epoch.
    """
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched=spec.name,
        num_epochs=epochs,
        decay_epochs=spec.decay_epochs,
        decay_rate=spec.decay_rate,
        min_lr=spec.min_lr,
        warmup_lr=spec.warmup_lr,
        warmup_epochs=spec.warmup_epochs,
        step_on_epochs=False,
        updates_per_epoch=updates_per_epoch,
    )
    return scheduler


def scheduler_state(scheduler: Scheduler) -> dict[str, Any]:
    """The schedule's plain state (numbers, strings, lists), for a weights_only checkpoint."""
    plain = (int, float, str, bool, type(None))
    return {
        k: v for k, v in scheduler.state_dict().items()
        if isinstance(v, plain) or (isinstance(v, list | tuple) and all(isinstance(x, plain) for x in v))
    }
