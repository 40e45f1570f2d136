"""Where a run's starting weights come from: checkpoint files, timm's pretrained hub, a fitted teacher."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from safetensors import safe_open
from torch import nn

from tasgen.arch.models import create_timm_model
from tasgen.checkpoint import check_fits, load_weights
from tasgen.data import DatasetInfo
from tasgen.spec.schema import BackboneSpec, Spec, TimmModelSpec

from .errors import TrainError

TEACHER_FILE = "teacher.safetensors"
"""A fitted teacher's weights in a run folder, as tasgen before the teacher store wrote them."""


@dataclass(frozen=True)
class TeacherSource:
    """Where the teacher's weights come from."""

    kind: Literal["checkpoint", "fitted", "stored", "pretrained"]
    path: Path | None = None
    key: str | None = None
    """The teacher store's key (kind "stored")."""

    def __str__(self) -> str:
        if self.kind == "stored":
            return f"stored teacher {self.key} ({self.path})"
        return "timm pretrained weights" if self.kind == "pretrained" else f"{self.kind} {self.path}"


def teacher_source(spec: Spec, run_dir: Path, num_classes: int) -> TeacherSource | None:
    """The teacher's weights, in order of preference; None when the teacher must be fitted first.

    1. ``teacher.checkpoint`` of the spec;
    2. ``<run_dir>/teacher.safetensors``, where runs of earlier tasgen versions kept
       their fitted teacher;
    3. the teacher store's fit of this spec's teacher (`tasgen.teacher_store`);
    4. timm's pretrained weights, when ``pretrained: true`` and their classifier
       already has ``num_classes`` outputs (otherwise its head would be random).
    """
    from tasgen.teacher_store import TeacherStore, teacher_key

    teacher = spec.teacher
    if teacher.checkpoint is not None:
        return TeacherSource("checkpoint", Path(teacher.checkpoint))
    if (run_dir / TEACHER_FILE).is_file():
        return TeacherSource("fitted", run_dir / TEACHER_FILE)
    stored = TeacherStore().teacher(teacher_key(spec, num_classes))
    if stored.exists:
        return TeacherSource("stored", stored.weights, stored.key)
    if isinstance(teacher, TimmModelSpec) and teacher.pretrained and _pretrained_classes(teacher) == num_classes:
        return TeacherSource("pretrained")
    return None


def teacher_split_metadata(info: DatasetInfo) -> dict[str, str]:
    """What a fitted teacher records of the data split it was fitted on (safetensors metadata)."""
    return {"split_id": info.split_id, "dataset": info.name}


def check_teacher_split(source: TeacherSource, info: DatasetInfo) -> None:
    """Refuse a teacher whose weights record another train/validation/test split.

    A teacher fitted on another split has seen some of this run's validation or test
    images, which would leak them into every distilled student. Weights that record
    no split (trained elsewhere) are accepted as they are.

    Raises:
        TrainError: the recorded split differs from this run's.
    """
    if source.path is None or source.path.suffix != ".safetensors" or not source.path.is_file():
        return
    try:
        with safe_open(str(source.path), framework="pt") as handle:
            meta = handle.metadata() or {}
    except Exception:  # noqa: BLE001 - an unreadable file is reported by the weight loader itself
        return
    recorded = meta.get("split_id")
    if recorded is not None and recorded != info.split_id:
        raise TrainError(
            f"the teacher {source.path} was fitted on another data split ({meta.get('dataset', '?')} split "
            f"{recorded}; this run's {info.name} split is {info.split_id}), so it has seen some of this run's "
            "validation or test images. Use the same data.split_seed, eval_fraction, val_fraction and "
            "train_samples as the teacher's fit, or fit a new teacher (delete the file or set teacher.checkpoint)."
        )


def load_teacher(model: nn.Module, source: TeacherSource, spec: Spec, *, num_classes: int, image_size: int) -> None:
    """Fill the teacher from ``source`` (raises CheckpointError or TrainError)."""
    if source.kind == "pretrained":
        assert isinstance(spec.teacher, TimmModelSpec)
        load_pretrained(model, spec.teacher, role="teacher", num_classes=num_classes, image_size=image_size)
    else:
        assert source.path is not None
        load_weights(model, source.path, what="teacher")


def load_initial_weights(
    model: nn.Module, model_spec: TimmModelSpec | BackboneSpec, *, role: str, num_classes: int, image_size: int
) -> str | None:
    """Load what the spec says a model starts from: ``checkpoint:`` or ``pretrained: true``.

    Returns:
        A description of the weights loaded, or None (the model keeps its random init).
    """
    if model_spec.checkpoint is not None:
        load_weights(model, model_spec.checkpoint, what=role)
        return f"checkpoint {model_spec.checkpoint}"
    if isinstance(model_spec, TimmModelSpec) and model_spec.pretrained:
        load_pretrained(model, model_spec, role=role, num_classes=num_classes, image_size=image_size)
        return "timm pretrained weights"
    return None


def load_pretrained(model: nn.Module, spec: TimmModelSpec, *, role: str, num_classes: int, image_size: int) -> None:
    """Copy timm's pretrained weights into ``model`` (a classifier of another size is re-initialised).

    Raises:
        TrainError: no network (and no HF_HUB_OFFLINE cache), or timm has no such weights.
    """
    advice = (
        f"Download the weights where there is network and set `{role}.checkpoint:` to the file, "
        "or set HF_HUB_OFFLINE=1 to use a filled Hugging Face cache."
    )
    local = spec.timm.startswith("local-dir:")  # timm reads these weights from disk
    if not local and not os.environ.get("HF_HUB_OFFLINE") and not _hub_reachable():
        # The hub client would retry for half a minute before failing; say it now.
        raise TrainError(f"{role}.pretrained: cannot reach the Hugging Face hub (offline?). {advice}")
    kwargs = dict(spec.kwargs)
    kwargs["num_classes"] = num_classes
    try:
        source = create_timm_model(spec.timm, image_size=image_size, pretrained=True, **kwargs)
    except Exception as exc:  # noqa: BLE001 - hub, network and timm errors alike: one message
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TrainError(f"{role}.pretrained: timm could not load pretrained {spec.timm} ({first}). {advice}") from None
    state = source.state_dict()
    check_fits(model, state, f"timm pretrained {spec.timm}", role)
    model.load_state_dict(state)


def _pretrained_classes(spec: TimmModelSpec) -> int | None:
    from timm.models import get_pretrained_cfg_value

    if spec.timm.startswith("local-dir:"):  # a folder written by save_for_hf: its config.json says
        from tasgen.spec._timm_names import local_dir_config

        config = local_dir_config(spec.timm.removeprefix("local-dir:"))
        return config.get("num_classes") if isinstance(config, dict) else None

    try:
        return get_pretrained_cfg_value(spec.timm, "num_classes")
    except Exception:  # noqa: BLE001 - no pretrained config: no usable head
        return None


def _hub_reachable(timeout: float = 3.0) -> bool:
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True
