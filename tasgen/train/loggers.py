"""Metric loggers beyond the run folder's own record: TensorBoard and Weights & Biases.

``metrics.jsonl`` and ``metrics.csv`` are written by `RunFolder.commit_epoch` (they are what
``--resume``, ``tasgen eval`` and ``tasgen compare`` read); ``train.loggers`` adds
``tensorboard`` (``<run>/tensorboard/``, through ``torch.utils.tensorboard``) and
``wandb`` (``<run>/wandb/``; ``WANDB_MODE=offline`` keeps it on disk). Only rank 0
logs: the other ranks get a `Loggers` that does nothing.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

from tasgen.plan import Plan
from tasgen.plan_views import describe_source
from tasgen.spec.schema import Spec

from .errors import TrainError

__all__ = ["Loggers", "check_loggers", "flat_hparams", "plan_text"]

# logger -> (module it needs, the extra that installs it)
_NEEDS = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb")}


def check_loggers(names: list[str]) -> None:
    """Raise a `TrainError` naming the extra to install when a logger's package is absent."""
    for name in names:
        if name in _NEEDS and importlib.util.find_spec(_NEEDS[name][0]) is None:
            module, extra = _NEEDS[name]
            raise TrainError(
                f"train.loggers has {name}, but the {module} package is not installed: "
                f"pip install 'tasgen[{extra}]' (or remove {name} from train.loggers)"
            )


def plan_text(plan: Plan) -> str:
    """The plan as Markdown (TensorBoard's text tab renders it): the reason, then one row per part."""
    rows = [f"**{plan.name}** plan `{plan.hash}`, method {plan.method}", "", plan.reason, "",
            "| # | part | from | mixer | layout | role |", "| --- | --- | --- | --- | --- | --- |"]
    rows += [f"| {i} | {p.name} | {describe_source(p)} | {p.mixer} | {p.layout} | {p.ownership} |"
             for i, p in enumerate(plan.assistant)]
    rows += ["", "| pair | target -> learner | feature | logits |", "| --- | --- | --- | --- |"]
    rows += [f"| {p.name} | {p.target} -> {p.learner} | {p.feature_weight} | {p.logit_weight} |"
             for p in plan.loss_pairs]
    return "\n".join(rows)


def flat_hparams(spec: Spec) -> dict[str, int | float | bool | str]:
    """The spec as ``{"train.optimizer.lr": 0.05, ...}`` (lists and None as strings), for hparams tables."""
    out: dict[str, int | float | bool | str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, child in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), child)
        elif isinstance(value, bool | int | float | str):
            out[prefix] = value
        else:
            out[prefix] = str(value)

    walk("", spec.model_dump(mode="json"))
    return out


class Loggers:
    """The loggers ``train.loggers`` asks for beyond jsonl/csv, for one run.

    Args:
        spec: the resolved spec (its ``train.loggers``; logged as hyperparameters).
        plan: the plan (logged as text).
        run_dir: the run folder; each logger writes under it.
        role: "student" or "teacher" (a teacher fit logs as its own run).
        active: False on ranks other than 0: nothing is created or written.
    """

    def __init__(self, spec: Spec, plan: Plan, run_dir, *, role: str, active: bool = True) -> None:
        self.writer: Any = None
        self.wandb_run: Any = None
        self.best: dict[str, float] = {}
        self.spec = spec
        names = list(spec.train.loggers) if active else []
        check_loggers(names)
        if "tensorboard" in names:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
            self.writer.add_text("plan", plan_text(plan), 0)
            self.writer.add_text("spec", "```yaml\n" + _yaml(spec) + "```", 0)
        if "wandb" in names:
            import wandb

            (run_dir / "wandb").mkdir(parents=True, exist_ok=True)
            self.wandb_run = wandb.init(
                project=spec.train.wandb_project, name=spec.name if role == "student" else f"{spec.name}-teacher",
                dir=str(run_dir), config=flat_hparams(spec), job_type=role, reinit="finish_previous",
            )
            self.wandb_run.summary["plan_hash"] = plan.hash
            self.wandb_run.log({"plan": wandb.Html(f"<pre>{plan_text(plan)}</pre>")}, commit=False)

    def step(self, step: int, metrics: Mapping[str, float]) -> None:
        """Scalars of one logging interval (loss terms, lr, images/s) at update ``step``."""
        if self.writer is not None:
            for key, value in metrics.items():
                self.writer.add_scalar(f"step/{key}", float(value), step)
        if self.wandb_run is not None:
            self.wandb_run.log({f"step/{k}": float(v) for k, v in metrics.items()}, step=step)

    def epoch(self, row: Mapping[str, Any]) -> None:
        """One epoch's metrics row (losses, accuracies, throughput), at its epoch number."""
        scalars = {k: float(v) for k, v in row.items() if k != "epoch" and isinstance(v, int | float)}
        for key, value in scalars.items():
            if key.endswith(("_top1", "_top5")):
                self.best[key] = max(self.best.get(key, value), value)
        if self.writer is not None:
            for key, value in scalars.items():
                self.writer.add_scalar(f"epoch/{key}", value, row["epoch"])
            self.writer.flush()
        if self.wandb_run is not None:
            # wandb's step must grow: log epochs at the update count they ended on.
            self.wandb_run.log({"epoch": row["epoch"], **{f"epoch/{k}": v for k, v in scalars.items()}},
                               step=int(row.get("step", 0)), commit=True)

    def close(self) -> None:
        """Write the hyperparameters with the best accuracies, and close every logger (idempotent)."""
        if self.writer is not None:
            metrics = {f"hparam/best_{k}": v for k, v in self.best.items()}
            self.writer.add_hparams(flat_hparams(self.spec), metrics or {"hparam/best_none": 0.0}, run_name=".")
            self.writer.close()
            self.writer = None
        if self.wandb_run is not None:
            for key, value in self.best.items():
                self.wandb_run.summary[f"best_{key}"] = value
            self.wandb_run.finish()
            self.wandb_run = None


def _yaml(spec: Spec) -> str:
    import yaml

    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
