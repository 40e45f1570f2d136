"""The compiler's passes, as library functions: spec -> stage tables -> plan -> system.

Each pass is a pure function of what it receives. Failures of a later pass are
reported as spec errors located at the spec node that caused them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from tasgen.arch.table import StageTable
from tasgen.plan import Plan
from tasgen.spec.schema import Spec, TimmModelSpec

if TYPE_CHECKING:
    from torch import nn

    from tasgen.emit.system import DistillationSystem
    from tasgen.spec.load import LoadedSpec

def num_classes(spec: Spec) -> int:
    """The class count: the spec's, else the dataset's (read from its files; see `tasgen.spec.dataset_classes`)."""
    if spec.num_classes is not None:
        return spec.num_classes
    from tasgen.spec.dataset_classes import count_classes

    count, where = count_classes(spec.data)
    if count is None:
        raise ValueError(f"cannot count classes of {where}: set num_classes in the spec")
    return count


def stage_tables(
    loaded: LoadedSpec, *, use_cache: bool = True, models: Mapping[str, nn.Module] | None = None
) -> dict[str, StageTable]:
    """Read the teacher's and the student's stage tables.

    Args:
        use_cache: read (and store) tables in the on-disk cache; False re-reads the models.
        models: model objects by role, read instead of the spec's models of those roles.

    Raises:
        SpecError: located at the model that cannot be built or read.
        ModelReadError: a model object cannot be read (the message names it).
    """
    from tasgen.arch.models import stage_table
    from tasgen.spec.dataset_classes import DatasetNotFound
    from tasgen.spec.hub import HubUnreachable
    from tasgen.spec.image_folder import ImageFolderError

    spec = loaded.spec
    try:
        classes = num_classes(spec)
    except (HubUnreachable, DatasetNotFound) as exc:  # the cause is the dataset, not a missing num_classes
        raise loaded.error(("data", "name"), str(exc)) from None
    except ImageFolderError as exc:
        raise loaded.error(("data", "root"), str(exc)) from None
    except ValueError as exc:
        raise loaded.error(("num_classes",), str(exc)) from None
    from tasgen.arch.errors import ImageSizeError

    tables: dict[str, StageTable] = {}
    failures: dict[str, Exception] = {}
    for role in ("teacher", "student"):
        if models and models.get(role) is not None:
            from tasgen.arch.models import module_stage_table

            tables[role] = module_stage_table(models[role], role=role, num_classes=classes,
                                              image_size=spec.data.image_size)
            continue
        model = getattr(spec, role)
        try:
            tables[role] = stage_table(model, role=role, num_classes=classes, image_size=spec.data.image_size,
                                       use_cache=use_cache)
        except Exception as exc:  # noqa: BLE001 - whatever timm raises, the user needs one located line
            failures[role] = exc
            if not isinstance(exc, ImageSizeError):
                break  # the first model that cannot be read is the one to fix
    for role, exc in failures.items():
        model = getattr(spec, role)
        if isinstance(exc, ImageSizeError):
            raise loaded.error(("data", "image_size"),
                               _image_size_message(spec.data.image_size, exc, tables, failures)) from None
        from tasgen.spec._timm_names import hub_model_error

        where = (role, "timm") if isinstance(model, TimmModelSpec) else (role, "stages")
        name = model.timm if isinstance(model, TimmModelSpec) else "stage-described backbone"
        from tasgen.arch.size import ModelTooLargeError

        message = hub_model_error(name, exc) or (
            str(exc) if isinstance(exc, ModelTooLargeError) else f"tasgen cannot read {name}: {_one_line(exc)}")
        raise loaded.error(where, message) from None
    return tables


def _image_size_message(
    size: int, exc: Exception, tables: dict[str, StageTable], failures: dict[str, Exception]
) -> str:
    """What is wrong with the image size, and the sizes near it that both models accept."""
    import math

    from tasgen.arch.errors import ImageSizeError

    # A model read as tokens needs its patch to divide the size; a convolutional stem takes any size.
    multiples = [t.stem.reduction for t in tables.values() if t.stem.layout == "NLC"]
    multiples += [e.multiple for e in failures.values() if isinstance(e, ImageSizeError)]
    step = math.lcm(*multiples)
    below, above = (size // step) * step, (size // step + 1) * step
    sizes = " or ".join(str(s) for s in (below, above) if s > 0)
    return f"{_one_line(exc)}; set data.image_size to a size both models accept, a multiple of {step}: {sizes}"


def plan_spec(loaded: LoadedSpec, *, use_cache: bool = True, models: Mapping[str, nn.Module] | None = None) -> Plan:
    """Spec -> Plan. Raises SpecError, located, when no assistant can be built.

    Args:
        models: model objects by role, planned instead of the spec's models of those roles.
    """
    from tasgen.planner import PlanError, build_plan

    tables = stage_tables(loaded, use_cache=use_cache, models=models)
    spec = loaded.spec
    try:
        return build_plan(spec, tables["teacher"], tables["student"], num_classes=num_classes(spec),
                          image_size=spec.data.image_size)
    except PlanError as exc:
        raise loaded.error(exc.loc, str(exc)) from None


def build_models(spec: Spec, plan: Plan, device: str | None = None) -> tuple[nn.Module, nn.Module]:
    """Freshly initialised (teacher, student) for a plan (weights load elsewhere)."""
    from tasgen.arch.models import create_model

    return tuple(  # type: ignore[return-value]
        create_model(getattr(spec, role), num_classes=plan.num_classes, image_size=plan.image_size, device=device)
        for role in ("teacher", "student")
    )


def build_system(plan: Plan, teacher: nn.Module, student: nn.Module) -> DistillationSystem:
    """Plan + models -> the DistillationSystem (the bridge checked against the plan's shapes)."""
    import torch

    from tasgen.emit.system import DistillationSystem
    from tasgen.plan_views import output_shape

    system = DistillationSystem(plan, teacher, student)
    if system.assistant is not None:
        a = system.assistant
        local = plan.table(plan.local_role).stages[plan.split - 1]
        sample = torch.zeros(1, *output_shape(local, plan.image_size))
        with torch.no_grad():
            a.bridge.check(sample.to(next(a.bridge.parameters()).device))
    return system


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
