"""The Plan: tasgen's intermediate representation.

A frozen, versioned, JSON-serialisable record that fully determines the emitted
modules: both stage tables, the assistant's path (which part comes from which
model, and whether it is shared, frozen or new), the bridge's shapes, the loss
pairs, every candidate considered with its score, and a content hash.
No torch here.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from tasgen.arch.table import Layout, Mixer, StageTable

PLAN_VERSION = 2
Role = Literal["teacher", "student"]
Ownership = Literal["shared", "frozen", "finetune", "new"]


def ownership(source: Role | Literal["new"], teacher_stages: Literal["frozen", "finetune"]) -> Ownership:
    """How the assistant holds a part taken from ``source``: the one word plan, emit and the docs use.

    The student's parts are *shared* (the same modules, trained with the student);
    the teacher's are *frozen*, or a *finetune* copy (``assistant.teacher_stages``);
    the bridge is *new*.
    """
    if source == "new":
        return "new"
    return "shared" if source == "student" else teacher_stages


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AssistantPart(_Frozen):
    """One step of the assistant's forward pass."""

    name: str = Field(description="stem, stage<i>, bridge or head")
    source: Literal["teacher", "student", "new"]
    source_stage: int | None = Field(None, description="stage number in the source model (0 = stem)")
    modules: list[str] = Field(default_factory=list, description="submodule paths in the source model")
    mixer: Mixer | Literal["bridge", "head"]
    layout: Layout
    channels: int
    reduction: int
    prefix_tokens: int = 0
    params: int
    ownership: Ownership = Field(
        description="shared with the student, frozen from the teacher, a fine-tuned teacher copy, or new"
    )


class BridgeGeometry(_Frozen):
    """What the local-to-global projector receives and must produce."""

    in_channels: int
    in_reduction: int
    in_layout: Layout
    in_prefix_tokens: int
    out_channels: int
    out_reduction: int
    out_layout: Layout
    out_prefix_tokens: int
    resample: Literal["identity", "conv", "interpolate"]
    prefix_source: Literal["depth", "pooled", "embed"] = Field(
        description="where the prefix tokens after the bridge come from (assistant.bridge.prefix_tokens)"
    )
    window_size: int
    heads: int
    mlp_ratio: float
    params: int


class Candidate(_Frozen):
    """One assistant the local-to-global rule was asked about."""

    split: int = Field(description="local stages kept before the bridge")
    global_start: int = Field(description="first stage of the global member after the bridge")
    valid: bool
    reason: str = Field("", description="why the candidate was rejected; empty when valid")
    score: float | None = None
    components: dict[str, float] = Field(default_factory=dict)


class LossPair(_Frozen):
    """A distillation pair: the learner is pulled toward the (detached) target."""

    name: str
    target: Literal["teacher", "assistant"]
    learner: Literal["assistant", "student"]
    feature_weight: float
    logit_weight: float


class Losses(_Frozen):
    """The objective a run trains with: CE on the labels, the distillation pairs and their settings.

    `tasgen.planner.plan_losses` derives it from the spec (the one place it is
    derived); `tasgen plan` prints it and the trainer's objectives are built from it.
    """

    method: str = Field(description="a registered method (tasgen.methods)")
    loss_pairs: list[LossPair] = Field(description="pairs with at least one non-zero term, in tas.md's order")
    ce_weight: float
    label_smoothing: float
    feature: dict[str, float | int | str | bool]
    logits: dict[str, float | str] = Field(description="the logit loss of every pair ('ofa' or 'kd') and its settings")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="the method's own hyper-parameters, resolved (its distill.<method> section or options entry)",
    )


class Plan(Losses):
    """The complete, deterministic description of a distillation system (its objective included)."""

    version: int = PLAN_VERSION
    name: str
    num_classes: int
    image_size: int
    teacher: StageTable
    student: StageTable
    pair: Literal["heterogeneous", "homogeneous"]
    local_role: Role
    global_role: Role
    split: int
    global_start: int
    assistant: list[AssistantPart]
    bridge: BridgeGeometry
    teacher_stages: Literal["frozen", "finetune"]
    shared_grad: float = 1.0
    recompute: bool = False
    candidates: list[Candidate]
    reason: str

    @computed_field  # type: ignore[prop-decorator]
    @property
    def hash(self) -> str:
        """sha256 (first 16 hex digits) of the plan's canonical JSON, without the hash."""
        # Methods without params of their own keep the hash they had before `params` existed;
        # `recompute` changes how memory is spent, not what is computed.
        exclude = {"hash", "recompute"} | (set() if self.params else {"params"})
        blob = json.dumps(self.model_dump(mode="json", exclude=exclude), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def table(self, role: Role) -> StageTable:
        return self.teacher if role == "teacher" else self.student

    def ownership(self, source: Role | Literal["new"]) -> Ownership:
        """How the assistant holds the parts it takes from ``source`` (see `tasgen.plan.ownership`)."""
        return ownership(source, self.teacher_stages)

    def feature_width(self, role: Role | Literal["assistant"]) -> int:
        """Width of the feature f a model contributes to InfoNCE (the assistant's is its global member's)."""
        head = self.table(self.global_role if role == "assistant" else role).head
        return head.feature_channels if self.feature.get("pool", "avg") == "avg" else head.num_features

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        data = json.loads(text)
        data.pop("hash", None)
        plan = cls.model_validate(data)
        recorded = json.loads(text).get("hash")
        if recorded is not None and recorded != plan.hash:
            raise ValueError(f"plan hash mismatch: file says {recorded}, content gives {plan.hash}")
        return plan
